// The clrk-worker daemon: wires the sandbox runtime, per-sandbox networking, the image store, the
// in-process egress data plane (config from the API, CA from the clrk-ca Secret, telemetry to
// the state dir and optionally an OTLP collector), the execution manager, the worker API server and
// the Lease registration.
//
// Start-up order (nothing is registered before the host is clean):
//   runtime.cleanupLeftovers() -> API bootstrap (namespace, CA, token) -> egress config synced
//   -> egress proxy -> NetworkManager::create (deletes the tag's leftovers) -> image store
//   -> execution manager -> worker API -> Lease (Ready).
// shutdown(): Lease Draining, new runs refused (503), running executions waited for up to the
// drain timeout then stopped, everything released, Lease deleted.
// Thread model: start() and shutdown() from one thread (main); the rest is internal.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace clrk::worker {

struct DaemonOptions {
  std::string kubeconfig;  // empty: in-cluster when KUBERNETES_SERVICE_HOST, else the default
  std::string name;        // worker name (Lease worker-<name>)
  std::string pool;        // WorkerPool name
  std::string pool_namespace = "default";
  // A local dev worker that may run executions of every pool in every namespace (Lease annotation
  // clrk.apoxy.dev/any-pool: "true"); `pool` stays its own pool.
  bool any_pool = false;
  std::string system_namespace = "clrk-system";
  std::string listen = "127.0.0.1:0";  // worker API
  std::string advertise;               // host:port the controller uses; default: the bound one
  std::string runtime = "gvisor";
  std::filesystem::path state_dir;
  int max_executions = 4;
  std::string net_tag;  // 1-3 of [a-z0-9]; default derived from the name
  std::string pool_cidr = "10.200.0.0/16";
  uint16_t egress_port = 15001;                 // 0 = any free port
  uint16_t dns_port = 15053;                    // 0 = any free port
  std::vector<std::string> upstream_overrides;  // host:port=ip:port
  std::string upstream_ca;                      // PEM file
  std::vector<std::string> insecure_registries;
  std::vector<std::string> shares;  // HOST_DIR:SANDBOX_PATH[:rw] (see parseShare)
  std::chrono::seconds drain_timeout{30};
  int egress_threads = 2;
  // Collector base URL (http(s)://host[:port][/prefix]) the records are also exported to (OTLP
  // traces, protobuf), next to the local store; empty: local store only.
  std::string otlp_endpoint;
  // File holding the collector's bearer token (surrounding whitespace ignored); empty: none.
  std::string otlp_token_file;
};

class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> start(DaemonOptions options);
  virtual ~Daemon() = default;
  // https URL of the worker API.
  virtual std::string endpoint() const = 0;
  virtual std::string fingerprint() const = 0;
  // Graceful drain and release (see above). Idempotent.
  virtual Status shutdown() = 0;
};

// "w" + 2 base-36 characters derived from `name` (stable across restarts).
std::string defaultNetTag(const std::string& name);

}  // namespace clrk::worker
