// WarmPoolSync: tells each worker which warm pools to keep (TaskAgent spec.warmPoolSize and
// spec.warmPoolIdleTTL; the worker side is worker/warm_pool.h) and keeps, per TaskAgent, how many
// warm sandboxes the workers report ready, for status.warmSandboxes.
//
// Level-based: every `interval` (and at once after wake(): a TaskAgent or worker Lease changed)
// each live, Ready worker gets PUT /v1/warm-pools with the full set it should hold: one pool per
// TaskAgent of a WorkerPool it serves with warmPoolSize > 0 and a runnable template. A worker
// that restarted, or missed a push, is thus corrected within one interval. Workers that have
// never been sent a pool and should hold none are left alone.
// Thread model: one thread; public methods are thread-safe. on_change runs on that thread.
#pragma once

#include "clrk/controller/worker_registry.h"
#include "clrk/kube/watch.h"
#include "clrk/worker/api.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace clrk::controller {

struct WarmPoolSyncOptions {
  std::chrono::milliseconds interval{std::chrono::seconds(5)};
};

// The warm pools `worker` should keep, from the TaskAgents in the informer cache.
std::vector<worker::WarmPoolSpec> desiredWarmPools(const std::vector<kube::Json>& task_agents,
                                                   const WorkerInfo& worker);

class WarmPoolSync {
 public:
  // on_change(agent key) is called when the ready count of an agent changed.
  WarmPoolSync(kube::Informer& task_agents, WorkerRegistry& workers, WarmPoolSyncOptions options,
               std::function<void(const std::string&)> on_change);
  ~WarmPoolSync();  // stop()

  void start();
  void stop();
  void wake();
  // One round now (tests; the thread calls it every interval).
  void syncOnce();
  // Warm sandboxes ready for the agent ("namespace/name") across workers, as last reported.
  int ready(const std::string& agent_key) const;
  // The same per worker, minus the placements noted since (the scheduler's hint).
  std::map<std::string, int> readyByWorker(const std::string& agent_key) const;
  // An execution of the agent was placed on `worker`: it probably claimed a warm sandbox there.
  // Counts one down and asks for a fresh report within a second.
  void notePlaced(const std::string& worker, const std::string& agent_key);

 private:
  kube::Informer& task_agents_;
  WorkerRegistry& workers_;
  WarmPoolSyncOptions options_;
  std::function<void(const std::string&)> on_change_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = false;
  std::optional<std::chrono::steady_clock::time_point> refresh_at_;  // after notePlaced()
  std::map<std::string, std::map<std::string, int>> ready_;          // agent key -> worker -> ready
  std::set<std::string> pushed_;  // workers sent a non-empty set at least once
  std::stop_source cancel_;
  std::thread thread_;
};

}  // namespace clrk::controller
