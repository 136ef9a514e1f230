// How a worker makes itself known through the API server:
//   * bootstrap objects in the system namespace, created race-safely when absent (create; on 409
//     read what the winner created): the namespace itself, the Secret `clrk-worker-token` (key
//     `token`, the worker API's bearer token) and the Secret `clrk-ca` (kubernetes.io/tls, the
//     egress MITM CA shared by every worker);
//   * a coordination.k8s.io/v1 Lease `worker-<name>` renewed every 5 s that carries the worker's
//     endpoint, certificate fingerprint, capacity and state (see docs/architecture/worker.md).
// Thread model: LeaseKeeper runs one renew thread; its public methods are thread-safe.
#pragma once

#include "clrk/base/status.h"
#include "clrk/kube/client.h"
#include "clrk/worker/api.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

namespace clrk::worker {

// Creates namespace `ns` unless it exists.
Status ensureNamespace(kube::Client& client, const std::string& ns);
// Returns the worker API token from Secret clrk-worker-token (key "token") in `ns`, creating the
// Secret with a random token when absent.
Result<std::string> ensureWorkerToken(kube::Client& client, const std::string& ns);

struct CaPem {
  std::string cert_pem;
  std::string key_pem;
};
// Returns the egress MITM CA from Secret clrk-ca (tls.crt, tls.key) in `ns`, generating and
// creating it when absent.
Result<CaPem> ensureEgressCa(kube::Client& client, const std::string& ns);

// Reads a Secret's data[key] (base64-decoded) or stringData[key].
Result<std::string> secretValue(const Json& secret, const std::string& key);

struct LeaseOptions {
  std::string system_namespace = "clrk-system";
  std::string worker_name;
  std::string pool;
  std::string pool_namespace = "default";
  std::string endpoint;     // https://host:port
  std::string fingerprint;  // sha256 hex
  bool any_pool = false;    // adds the kAnnotationAnyPool annotation
  int lease_duration_seconds = 15;
  std::chrono::milliseconds renew_interval{5000};
  // A poke() renews this much later (pokes meanwhile join it), and only when the capacity then
  // differs from what the Lease says: an execution that starts and ends within it writes nothing.
  std::chrono::milliseconds poke_delay{250};
};

class LeaseKeeper {
 public:
  // `capacity` is called at every renewal.
  LeaseKeeper(kube::ClientPtr client, LeaseOptions options,
              std::function<WorkerCapacity()> capacity);
  ~LeaseKeeper();  // stops renewing (does not delete)

  // Creates or takes over the Lease (state Ready) and starts the renew thread.
  Status start();
  // "Ready" | "Draining"; written at once.
  void setState(const std::string& state);
  // The capacity may have changed: renews after poke_delay if it did; asynchronous.
  void poke();
  // Stops renewing and deletes the Lease.
  Status stopAndDelete();
  std::string leaseName() const { return "worker-" + options_.worker_name; }
  int renewals() const;

 private:
  Status renewOnce();
  Json desired(const Json* current, const std::string& capacity) const;
  void loop();

  kube::ClientPtr client_;
  LeaseOptions options_;
  std::function<WorkerCapacity()> capacity_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string state_ = "Ready";
  bool stopping_ = false;
  bool poked_ = false;
  int renewals_ = 0;
  std::string written_capacity_;  // the capacity annotation last written
  std::string acquire_time_;
  std::thread thread_;
};

}  // namespace clrk::worker
