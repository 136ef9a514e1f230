// ExecutionManager: runs executions on this worker. One dedicated thread per execution drives
// its lifecycle:
//   resolve the root filesystem (host | dir:/path | OCI image via ImageStore)
//   -> allocate the sandbox network (NetworkManager)
//   -> publish the identity (egress::IdentityMap, keyed by the sandbox address) and, for
//      DeliveryMode::Metadata, the event (egress::MetadataStore, served at $CLRK_METADATA_URL)
//   -> prepare + start the sandbox (CA certificate, netns, limits, timeout, stdin), or instead
//      of the network and the sandbox, claim a warm one of the agent's pool and launch it
//      (warm_pool.h; pools set through setWarmPools())
//   -> wait (stop requests: SIGTERM, then SIGKILL after the grace period)
//   -> take the metadata response (what the agent POSTed to /response), mark the execution
//      terminal, then destroy the sandbox and release the network
//   -> remove the identity after `identity_linger` so late egress records still attribute.
// Finished executions are kept (bounded) so their result and logs can be read.
//
// Dependencies are interfaces (Runtime, NetworkManager, ImageStore) so tests can use fakes; the
// network and image store may be null (no network; only "host" and "dir:" roots). Metadata
// delivery needs the network, the identity map and the metadata store; without them such an
// execution fails with a message saying so.
// Thread model: every public method is thread-safe and never blocks on a sandbox except wait*()
// and drain(), which block by contract.
#pragma once

#include "clrk/egress/identity.h"
#include "clrk/egress/metadata.h"
#include "clrk/sandbox/image/image_store.h"
#include "clrk/sandbox/net/network.h"
#include "clrk/sandbox/runtime.h"
#include "clrk/worker/api.h"
#include "clrk/worker/warm_pool.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace clrk::worker {

// Credentials for pulling `registry` images with the named pull Secrets of namespace `ns`
// (nullopt: anonymous). Injected so the manager does not depend on the API client.
using PullAuthResolver = std::function<Result<std::optional<sandbox::image::RegistryAuth>>(
    const std::string& ns, const std::vector<std::string>& secret_names,
    const std::string& registry)>;

struct ExecutionManagerOptions {
  int max_executions = 4;
  std::string ca_cert_pem;  // the egress MITM CA certificate (never its key)
  std::chrono::milliseconds identity_linger{3000};
  std::chrono::milliseconds stop_grace{5000};  // SIGTERM -> SIGKILL
  std::chrono::minutes retention{60};          // finished executions kept this long ...
  size_t max_retained = 1000;                  // ... and at most this many
  // Metadata responses (up to 8 MiB each) kept in finished executions, all together; beyond it
  // the oldest finished executions drop their response body (ExecutionResponse::discarded).
  size_t max_retained_response_bytes = 256 << 20;
  size_t log_lines_max = 50000;  // per execution, in memory (for /logs)
  int64_t default_pids_limit = 4096;
  std::vector<std::string> insecure_registries;  // "host:port" pulled over plain HTTP
  // Host directories every sandbox sees (read-only unless marked), e.g. the examples of
  // `clrk dev` at /opt/clrk/examples.
  std::vector<sandbox::BindMount> shared_mounts;
};

// Parses a --share value "HOST_DIR:SANDBOX_PATH[:rw]" (both absolute; read-only by default).
Result<sandbox::BindMount> parseShare(std::string_view text);

class ExecutionManager {
 public:
  ExecutionManager(ExecutionManagerOptions options, sandbox::Runtime& runtime,
                   sandbox::net::NetworkManager* network, sandbox::image::ImageStore* images,
                   egress::IdentityMap* identities, egress::MetadataStore* metadata = nullptr,
                   PullAuthResolver pull_auth = {});
  // Stops every execution (SIGKILL), waits for the clean-up and removes identities.
  ~ExecutionManager();
  ExecutionManager(const ExecutionManager&) = delete;
  ExecutionManager& operator=(const ExecutionManager&) = delete;

  // Accepts an execution and starts its thread. Errors: AlreadyExists (duplicate id),
  // Unavailable (draining, or full: isFullError()), InvalidArgument.
  Result<ExecutionStatus> submit(ExecutionRequest request);
  static bool isFullError(const Status& status);

  std::optional<ExecutionStatus> get(const std::string& id) const;
  // Blocks until the execution is terminal or `timeout` passed; the latest status, nullopt when
  // the id is unknown.
  std::optional<ExecutionStatus> waitTerminal(const std::string& id,
                                              std::chrono::milliseconds timeout) const;
  // Requests a stop (SIGTERM now, SIGKILL after stop_grace). NotFound for an unknown id; a
  // terminal execution is returned unchanged.
  Result<ExecutionStatus> stop(const std::string& id);
  std::vector<ExecutionStatus> list() const;

  struct LogSlice {
    std::vector<LogEntry> entries;
    size_t next = 0;        // index to ask for next
    bool finished = false;  // the execution is terminal and every line was returned
  };
  // Log lines with index >= `from` (indices count every line since the start; lines that fell
  // out of the in-memory window are skipped). nullopt when the id is unknown.
  std::optional<LogSlice> logs(const std::string& id, size_t from, size_t max = 1000) const;

  // Replaces the warm pools (PUT /v1/warm-pools); see warm_pool.h.
  void setWarmPools(std::vector<WarmPoolSpec> pools);
  std::vector<WarmPoolState> warmPools() const;
  // The sandbox spec of `request` without id, network and on_log: root filesystem (pulling the
  // image; `progress` hears "pulling ..."), argv, env, working dir, user, mounts, CA, limits,
  // timeout, stdin. InvalidArgument naming the field when the request cannot run here.
  Result<sandbox::SandboxSpec> sandboxSpecFor(
      const ExecutionRequest& request,
      const std::function<void(const std::string&)>& progress = {}) const;

  // Draining: new submissions are refused with Unavailable, warm sandboxes are destroyed.
  void setDraining();
  bool draining() const;
  int running() const;  // executions not yet terminal
  int maxExecutions() const { return options_.max_executions; }
  WorkerCapacity capacity() const;
  // setDraining(), waits up to `timeout` for running executions, then stops the rest and waits
  // for their clean-up. Returns how many had to be stopped.
  int drain(std::chrono::milliseconds timeout);
  // Called (from an execution thread) whenever an execution changes phase.
  void setOnChange(std::function<void()> on_change);
  // More such listeners (the worker API's long polls). They must not call back into the
  // manager; after removeListener() returns the listener is never called again.
  uint64_t addListener(std::function<void()> listener);
  void removeListener(uint64_t id);

  struct Execution;

 private:
  void run(const std::shared_ptr<Execution>& execution);
  void lifecycle(const std::shared_ptr<Execution>& execution);
  void finish(Execution& execution, Phase phase, std::optional<int> exit_code, std::string message);
  void notifyChange();
  void janitorLoop();
  void scheduleIdentityRemoval(const std::string& address, const std::string& execution_id);
  void prune();
  void discardOldResponses();

  ExecutionManagerOptions options_;
  sandbox::Runtime& runtime_;
  sandbox::net::NetworkManager* network_;
  sandbox::image::ImageStore* images_;
  egress::IdentityMap* identities_;
  egress::MetadataStore* metadata_;
  PullAuthResolver pull_auth_;

  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Execution>> executions_;
  bool draining_ = false;
  bool stopping_ = false;
  std::function<void()> on_change_;
  std::mutex listeners_mutex_;  // held while listeners run
  std::map<uint64_t, std::function<void()>> listeners_;
  uint64_t next_listener_ = 0;

  // Identity removals due later (janitor thread).
  struct PendingRemoval {
    std::chrono::steady_clock::time_point due;
    std::string address;
    std::string execution_id;
  };
  std::mutex identity_mutex_;  // serialises set/remove of identities
  std::vector<PendingRemoval> removals_;
  std::condition_variable janitor_cv_;
  std::thread janitor_;

  std::unique_ptr<WarmPool> warm_pool_;  // built in the constructor, stopped first
};

}  // namespace clrk::worker
