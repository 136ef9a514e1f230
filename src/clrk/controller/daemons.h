// DaemonAgent controller: keeps one long-lived process of each DaemonAgent running on a worker
// of its pool, restarting it as spec.restartPolicy says with crash-loop backoff.
//
// Semantics (status fields in parentheses):
//   - One instance at a time, placed like a TaskAgent execution (most free slots in the pool).
//     While it runs: phase Running, Ready True (worker, executionId, upSince).
//   - When it exits (lastExitCode, lastExitTime): Always restarts it, OnFailure restarts it
//     unless it exited 0, Never does not; spec.maxRestarts > 0 caps restarts (restartCount).
//     Not restarted: phase Stopped, Ready False with reason Completed, Failed or
//     RestartLimitReached.
//   - Restarts wait base * 2^(n-1), capped (CrashLoopBackOff, nextRestartTime), n counting
//     consecutive instances that ran shorter than the reset period (like the kubelet: 10 s
//     doubling to 5 min, reset after 10 min of running).
//   - spec.maxLifetimeSeconds > 0 is the instance's timeout; reaching it ends the instance as a
//     failure (so Always and OnFailure start a fresh one).
//   - A worker that stops renewing its Lease (or forgets the execution) loses the instance: it is
//     started again elsewhere at once, counted as a restart, without backoff.
//   - A template change (new AgentSandboxRevision) stops the running instance and starts one of
//     the new revision without backoff; latestReadyRevisionName is the running one's revision.
//   - Deletion (finalizer clrk.apoxy.dev/executions) stops the instance before the object goes.
//   - After a controller restart the instance recorded in status is adopted, not duplicated.
//
// Thread model: reconcile() runs on the controller's workers (one key at a time); each running
// instance has a watcher thread long-polling its worker. stop() cancels and joins them.
#pragma once

#include "clrk/controller/controller.h"
#include "clrk/controller/reconcilers.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

namespace clrk::controller {

struct DaemonOptions {
  std::chrono::milliseconds backoff_base{std::chrono::seconds(10)};
  std::chrono::milliseconds backoff_max{std::chrono::minutes(5)};
  // An instance that ran at least this long clears the crash-loop count.
  std::chrono::milliseconds backoff_reset{std::chrono::minutes(10)};
};

// How one instance ended.
struct DaemonExit {
  std::optional<int> exit_code;
  bool failed = true;  // nonzero exit, killed, timed out, failed to start or lost
  bool lost = false;   // its worker went away
  std::string message;
};

// Whether `policy` (Always | OnFailure | Never) restarts after `exit`. A lost instance is
// restarted unless the policy is Never.
bool shouldRestart(std::string_view policy, const DaemonExit& exit);

// The wait before restart number `consecutive_failures` (>= 1) of a crash loop.
std::chrono::milliseconds crashLoopDelay(const DaemonOptions& options, int consecutive_failures);

class DaemonAgentReconciler : public Reconciler {
 public:
  // `daemons` is the DaemonAgent informer; `enqueue` requeues a key (a watcher calls it when an
  // instance ends).
  DaemonAgentReconciler(ControllerContext& context, kube::Informer& daemons, DaemonOptions options,
                        std::function<void(const std::string&)> enqueue);
  ~DaemonAgentReconciler() override;

  Result<ReconcileResult> reconcile(const Request& request) override;
  // Cancels and joins the watchers; the instances keep running on their workers.
  void stop();

 private:
  struct Instance {
    std::string worker;
    std::string execution_id;
    std::string revision;
    std::string started_at;  // RFC 3339
    std::chrono::steady_clock::time_point started;
    bool stop_requested = false;  // by us: template change or deletion
    std::optional<DaemonExit> exit;
  };
  struct State {
    std::optional<Instance> current;
    int restarts = 0;
    int consecutive_failures = 0;
    std::optional<std::chrono::system_clock::time_point> restart_at;  // in a crash loop
    bool restored = false;  // status read back after a controller restart
  };

  // Places a new instance; Unavailable when no worker of the pool takes it.
  Status startInstance(const std::string& key, const kube::Json& agent, const std::string& revision,
                       State& state);
  // Asks the instance's worker to stop it (best effort; the watcher sees the end).
  void requestStop(Instance& instance);
  // Long-polls the instance until it ends or its worker is lost, then records the exit.
  void watch(std::string key, std::string execution_id, std::string worker_name);
  void recordExit(const std::string& key, const std::string& execution_id, DaemonExit exit);
  void startWatcher(const std::string& key, const Instance& instance);
  void reapWatchers();

  ControllerContext& context_;
  kube::Informer& daemons_;
  DaemonOptions options_;
  std::function<void(const std::string&)> enqueue_;

  std::mutex mutex_;
  std::map<std::string, State> states_;          // by "namespace/name"
  std::map<std::string, std::thread> watchers_;  // by execution id
  std::vector<std::string> finished_watchers_;
  std::stop_source stop_source_;
  std::condition_variable cv_;
};

}  // namespace clrk::controller
