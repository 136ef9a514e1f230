// WorkerRegistry: the controller's view of the registered workers, read from their Leases
// (`worker-<name>` in the system namespace, written by clrk-worker; format in
// docs/architecture/worker.md) through an informer, plus the worker API token from the Secret
// clrk-worker-token. Scheduler: picks the worker for one execution.
// Thread model: WorkerRegistry is thread-safe; pickWorker() is a pure function.
#pragma once

#include "clrk/base/status.h"
#include "clrk/kube/watch.h"
#include "clrk/worker/api.h"
#include "clrk/worker/client.h"

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace clrk::controller {

struct WorkerInfo {
  std::string name;  // holderIdentity (the Lease is worker-<name>)
  std::string pool;
  std::string pool_namespace;
  bool any_pool = false;  // a local dev worker serving every pool
  std::string endpoint;
  std::string fingerprint;
  std::string state;  // "Ready" | "Draining"
  worker::WorkerCapacity capacity;
  std::chrono::system_clock::time_point renew_time{};
  std::chrono::seconds lease_duration{15};

  bool alive(std::chrono::system_clock::time_point now) const {
    return now <= renew_time + lease_duration;
  }
  bool serves(const std::string& ns, const std::string& pool_name) const {
    return any_pool || (pool == pool_name && pool_namespace == ns);
  }
};

// Parses a worker Lease; InvalidArgument naming what is missing or malformed.
Result<WorkerInfo> parseWorkerLease(const kube::Json& lease);

struct PickOptions {
  std::string pool_namespace;
  std::string pool;
  std::chrono::system_clock::time_point now;
  // Executions this controller has placed on each worker and not yet seen finish.
  std::map<std::string, int> in_flight;
  // Workers not to use (e.g. one that just refused).
  std::vector<std::string> exclude;
  // Warm sandboxes of the agent ready on each worker (warm_pools.h), as far as known.
  std::map<std::string, int> warm;
};

// The eligible worker (alive, Ready, serving the pool, not excluded) with a warm sandbox of the
// agent if any has one, else with the most free slots, counting in_flight; ties go to the name
// that sorts first. Unavailable with a message saying
// how many workers exist, are alive and serve the pool when none has room.
Result<WorkerInfo> pickWorker(const std::vector<WorkerInfo>& workers, const PickOptions& options);

class WorkerRegistry {
 public:
  WorkerRegistry(kube::ClientPtr client, std::string system_namespace);
  ~WorkerRegistry();

  void start();
  void stop();
  bool waitForSync(std::chrono::milliseconds timeout) const;

  // Every parseable worker Lease (alive or not).
  std::vector<WorkerInfo> workers() const;
  std::optional<WorkerInfo> find(const std::string& name) const;
  // A client for `worker` (token read from the Secret, cached). The clients of one worker share
  // its pool of keep-alive connections (pools of workers no longer registered are dropped).
  Result<std::unique_ptr<worker::WorkerClient>> clientFor(const WorkerInfo& worker);

  // Called (on the informer thread) whenever a worker Lease changes.
  void onChange(std::function<void()> callback);

 private:
  Result<std::string> token();

  kube::ClientPtr client_;
  std::string system_namespace_;
  kube::Informer leases_;
  std::mutex mutex_;
  std::string token_;
  // By endpoint, fingerprint and token (a restarted worker has a new certificate).
  std::map<std::string, std::shared_ptr<worker::WorkerConnectionPool>> pools_;
};

}  // namespace clrk::controller
