#include "clrk/controller/daemons.h"

#include "clrk/api/builtin_types.h"
#include "clrk/api/registry.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <algorithm>

namespace clrk::controller {
namespace {

using Json = kube::Json;
using SystemClock = std::chrono::system_clock;
using namespace std::chrono_literals;

std::string describe(const DaemonExit& exit) {
  std::string text = exit.lost                    ? std::string("its worker was lost")
                     : exit.exit_code.has_value() ? "exited " + std::to_string(*exit.exit_code)
                                                  : std::string("ended");
  if (!exit.message.empty()) text += ": " + exit.message;
  return text;
}

}  // namespace

bool shouldRestart(std::string_view policy, const DaemonExit& exit) {
  if (policy == "Never") return false;
  if (policy == "OnFailure") return exit.failed || exit.lost;
  return true;  // Always (the default)
}

std::chrono::milliseconds crashLoopDelay(const DaemonOptions& options, int consecutive_failures) {
  auto delay = options.backoff_base;
  for (int i = 1; i < consecutive_failures && delay < options.backoff_max; ++i) delay *= 2;
  return std::min(delay, options.backoff_max);
}

DaemonAgentReconciler::DaemonAgentReconciler(ControllerContext& context, kube::Informer& daemons,
                                             DaemonOptions options,
                                             std::function<void(const std::string&)> enqueue)
    : context_(context), daemons_(daemons), options_(options), enqueue_(std::move(enqueue)) {}

DaemonAgentReconciler::~DaemonAgentReconciler() { stop(); }

void DaemonAgentReconciler::stop() {
  std::map<std::string, std::thread> watchers;
  {
    std::lock_guard lock(mutex_);
    stop_source_.request_stop();
    cv_.notify_all();
    watchers.swap(watchers_);
    finished_watchers_.clear();
  }
  for (auto& [id, thread] : watchers) {
    if (thread.joinable()) thread.join();
  }
}

void DaemonAgentReconciler::reapWatchers() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mutex_);
    for (const auto& id : finished_watchers_) {
      auto it = watchers_.find(id);
      if (it == watchers_.end()) continue;
      done.push_back(std::move(it->second));
      watchers_.erase(it);
    }
    finished_watchers_.clear();
  }
  for (auto& thread : done) {
    if (thread.joinable()) thread.join();
  }
}

void DaemonAgentReconciler::startWatcher(const std::string& key, const Instance& instance) {
  std::lock_guard lock(mutex_);
  if (stop_source_.stop_requested() || watchers_.count(instance.execution_id) > 0) return;
  watchers_.emplace(instance.execution_id,
                    std::thread([this, key, id = instance.execution_id, worker = instance.worker] {
                      watch(key, id, worker);
                    }));
}

void DaemonAgentReconciler::watch(std::string key, std::string execution_id,
                                  std::string worker_name) {
  std::stop_token cancel = stop_source_.get_token();
  std::optional<std::chrono::steady_clock::time_point> unreachable_since;
  std::unique_ptr<worker::WorkerClient> client;
  DaemonExit exit;
  while (!cancel.stop_requested()) {
    auto info = context_.workers.find(worker_name);
    bool lease_gone = !info || !info->alive(SystemClock::now());
    Status failure;
    if (info && !client) {
      auto made = context_.workers.clientFor(*info);
      if (made.ok()) {
        client = std::move(made).value();
      } else {
        failure = made.status();
      }
    }
    if (client) {
      auto polled = client->get(execution_id, kWorkerPollWait, cancel);
      if (cancel.stop_requested()) break;
      if (polled.ok()) {
        unreachable_since.reset();
        if (!worker::isTerminal(polled->phase)) continue;
        exit.exit_code = polled->exit_code;
        exit.failed = polled->phase != worker::Phase::Succeeded;
        exit.message = polled->phase == worker::Phase::TimedOut ? "spec.maxLifetimeSeconds reached"
                                                                : polled->message;
        recordExit(key, execution_id, std::move(exit));
        break;
      }
      failure = polled.status();
      if (failure.code() == Code::NotFound) lease_gone = true;  // the worker forgot it
      client.reset();
    }
    auto now = std::chrono::steady_clock::now();
    if (!unreachable_since) unreachable_since = now;
    if (lease_gone || now - *unreachable_since > kWorkerUnreachableLimit) {
      exit.lost = true;
      exit.message = "worker " + worker_name +
                     (lease_gone ? " stopped renewing its Lease or forgot the execution"
                                 : " stayed unreachable") +
                     (failure.ok() ? "" : ": " + failure.message());
      recordExit(key, execution_id, std::move(exit));
      break;
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, 1s, [&] { return cancel.stop_requested(); });
  }
  std::lock_guard lock(mutex_);
  finished_watchers_.push_back(execution_id);
}

void DaemonAgentReconciler::recordExit(const std::string& key, const std::string& execution_id,
                                       DaemonExit exit) {
  {
    std::lock_guard lock(mutex_);
    auto it = states_.find(key);
    if (it == states_.end() || !it->second.current ||
        it->second.current->execution_id != execution_id) {
      return;
    }
    it->second.current->exit = std::move(exit);
  }
  logger("controller")->info("DaemonAgent {}: instance {} ended", key, execution_id);
  enqueue_(key);
}

void DaemonAgentReconciler::requestStop(Instance& instance) {
  if (instance.stop_requested) return;
  instance.stop_requested = true;
  auto info = context_.workers.find(instance.worker);
  if (!info) return;  // the watcher reports it lost
  auto client = context_.workers.clientFor(*info);
  if (client.ok()) {
    auto stopped = (*client)->stop(instance.execution_id);
    if (!stopped.ok() && stopped.status().code() != Code::NotFound) {
      logger("controller")
          ->warn("stopping daemon instance {} on {}: {}", instance.execution_id, instance.worker,
                 stopped.status().message());
    }
  }
}

Status DaemonAgentReconciler::startInstance(const std::string& key, const Json& agent,
                                            const std::string& revision, State& state) {
  CLRK_ASSIGN_OR_RETURN(worker::ExecutionRequest exec,
                        executionFromAgentTemplate(agent, "DaemonAgent"));
  const Json& spec = agent["spec"];
  exec.timeout_seconds = spec.value("maxLifetimeSeconds", int64_t{0});
  exec.execution_id = runNameFor(exec.agent);
  exec.env.push_back({"CLRK_AGENT", exec.agent});
  exec.env.push_back({"CLRK_NAMESPACE", exec.namespace_name});
  exec.env.push_back({"CLRK_EXECUTION", exec.execution_id});
  exec.env.push_back({"CLRK_RESTART_COUNT", std::to_string(state.restarts)});

  std::string pool = spec.value("workerPoolRef", "");
  std::vector<std::string> refused;
  std::string last_error = "no live worker serves WorkerPool " + exec.namespace_name + "/" + pool;
  for (int attempt = 0; attempt < 3; ++attempt) {
    PickOptions pick;
    pick.pool_namespace = exec.namespace_name;
    pick.pool = pool;
    pick.now = SystemClock::now();
    pick.exclude = refused;
    auto chosen = pickWorker(context_.workers.workers(), pick);
    if (!chosen.ok()) {
      last_error = chosen.status().message();
      break;
    }
    auto client = context_.workers.clientFor(*chosen);
    auto accepted =
        client.ok() ? (*client)->run(exec) : Result<worker::ExecutionStatus>(client.status());
    if (!accepted.ok()) {
      last_error = "worker " + chosen->name + ": " + accepted.status().message();
      refused.push_back(chosen->name);
      continue;
    }
    Instance instance;
    instance.worker = chosen->name;
    instance.execution_id = exec.execution_id;
    instance.revision = revision;
    instance.started_at = formatRfc3339(SystemClock::now());
    instance.started = std::chrono::steady_clock::now();
    {
      std::lock_guard lock(mutex_);
      state.current = instance;
    }
    startWatcher(key, instance);
    logger("controller")
        ->info("DaemonAgent {}: instance {} started on worker {}", key, instance.execution_id,
               instance.worker);
    return {};
  }
  return Status(Code::Unavailable, last_error);
}

Result<ReconcileResult> DaemonAgentReconciler::reconcile(const Request& request) {
  reapWatchers();
  const auto& type = api::clrkType("DaemonAgent");
  const std::string key = request.key();
  auto cached = daemons_.get(key);
  State* state_ptr = nullptr;
  {
    std::lock_guard lock(mutex_);
    state_ptr = &states_[key];
  }
  State& state = *state_ptr;  // reconciles of one key never overlap

  auto forget = [&] {
    std::lock_guard lock(mutex_);
    states_.erase(key);
  };
  auto current_exit = [&]() -> std::optional<DaemonExit> {
    std::lock_guard lock(mutex_);
    return state.current ? state.current->exit : std::nullopt;
  };

  if (!cached) {
    // Gone without our finalizer running (e.g. removed by hand): stop what we know of.
    if (state.current && !current_exit()) requestStop(*state.current);
    forget();
    return ReconcileResult{};
  }
  Json agent = std::move(*cached);
  const Json& metadata = agent["metadata"];
  Json status = agent.value("status", Json::object());

  if (!state.restored) {
    // First sight since this controller started: adopt the instance the status names.
    state.restored = true;
    state.restarts = status.value("restartCount", 0);
    std::string worker = status.value("worker", "");
    std::string id = status.value("executionId", "");
    if (status.value("phase", "") == "Running" && !worker.empty() && !id.empty()) {
      Instance adopted;
      adopted.worker = worker;
      adopted.execution_id = id;
      adopted.revision = status.value("latestReadyRevisionName", "");
      adopted.started_at = status.value("upSince", "");
      adopted.started = std::chrono::steady_clock::now();
      {
        std::lock_guard lock(mutex_);
        state.current = adopted;
      }
      startWatcher(key, adopted);
    }
  }

  if (metadata.contains("deletionTimestamp") && !metadata["deletionTimestamp"].is_null()) {
    if (!hasFinalizer(agent, kFinalizerExecutions)) return ReconcileResult{};
    if (state.current && !current_exit()) {
      requestStop(*state.current);
      return ReconcileResult{1s};
    }
    CLRK_RETURN_IF_ERROR(setFinalizer(*context_.client, type, agent, kFinalizerExecutions, false));
    forget();
    return ReconcileResult{};
  }
  if (!hasFinalizer(agent, kFinalizerExecutions)) {
    CLRK_RETURN_IF_ERROR(setFinalizer(*context_.client, type, agent, kFinalizerExecutions, true));
    return ReconcileResult{};
  }

  status["observedGeneration"] = metadata.value("generation", int64_t{1});
  ReconcileResult result;
  auto finish = [&]() -> Result<ReconcileResult> {
    status["restartCount"] = state.restarts;
    CLRK_RETURN_IF_ERROR(updateStatusIfChanged(*context_.client, type, agent, std::move(status)));
    return result;
  };

  auto execution = executionFromAgentTemplate(agent, "DaemonAgent");
  if (!execution.ok()) {
    setStatusCondition(status, "Ready", false, "InvalidTemplate", execution.status().message());
    return finish();
  }
  CLRK_ASSIGN_OR_RETURN(std::string revision,
                        ensureRevision(*context_.client, agent, "DaemonAgent"));
  status["latestCreatedRevisionName"] = revision;
  const Json& spec = agent["spec"];
  std::string pool = spec.value("workerPoolRef", "");
  std::string policy = spec.value("restartPolicy", "Always");
  int max_restarts = spec.value("maxRestarts", 0);

  // The running instance: keep it, or stop it when its template is outdated.
  std::optional<DaemonExit> ended = current_exit();
  if (state.current && !ended) {
    if (state.current->revision != revision) {
      requestStop(*state.current);
      setStatusCondition(
          status, "Ready", false, "Updating",
          "stopping instance " + state.current->execution_id + " to start revision " + revision);
      result.requeue_after = 1s;
      return finish();
    }
    status["phase"] = "Running";
    status["worker"] = state.current->worker;
    status["executionId"] = state.current->execution_id;
    status["upSince"] = state.current->started_at;
    status["latestReadyRevisionName"] = state.current->revision;
    status.erase("nextRestartTime");
    setStatusCondition(
        status, "Ready", true, "Running",
        "instance " + state.current->execution_id + " runs on worker " + state.current->worker);
    return finish();
  }

  // No instance running: decide whether (and when) to start one.
  bool first_start = !state.current;
  bool replacement = false;
  if (ended) {
    const Instance& last = *state.current;
    replacement = last.stop_requested;  // stopped by us for a new revision
    if (!replacement) {
      status["lastExitTime"] = formatRfc3339(SystemClock::now());
      if (ended->exit_code) {
        status["lastExitCode"] = *ended->exit_code;
      } else {
        status.erase("lastExitCode");
      }
      if (!state.restart_at) {
        // First look at this exit: count it and fix when the restart may happen.
        bool long_run = std::chrono::steady_clock::now() - last.started >= options_.backoff_reset;
        state.consecutive_failures = long_run ? 1 : state.consecutive_failures + 1;
        auto delay = ended->lost ? std::chrono::milliseconds(0)
                                 : crashLoopDelay(options_, state.consecutive_failures);
        state.restart_at = SystemClock::now() + delay;
      }
      bool restart = shouldRestart(policy, *ended);
      if (restart && max_restarts > 0 && state.restarts >= max_restarts) {
        status["phase"] = "Stopped";
        status.erase("nextRestartTime");
        setStatusCondition(status, "Ready", false, "RestartLimitReached",
                           "instance " + last.execution_id + " " + describe(*ended) + "; " +
                               std::to_string(state.restarts) + " restarts reached maxRestarts");
        return finish();
      }
      if (!restart) {
        status["phase"] = "Stopped";
        status.erase("nextRestartTime");
        setStatusCondition(
            status, "Ready", false, ended->failed ? "Failed" : "Completed",
            "instance " + last.execution_id + " " + describe(*ended) + "; restartPolicy " + policy);
        return finish();
      }
      auto now = SystemClock::now();
      if (*state.restart_at > now) {
        status["phase"] = "CrashLoopBackOff";
        status["nextRestartTime"] = formatRfc3339(*state.restart_at);
        setStatusCondition(
            status, "Ready", false, "CrashLoopBackOff",
            "instance " + last.execution_id + " " + describe(*ended) + "; restarting in " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::milliseconds>(*state.restart_at - now)
                        .count()) +
                " ms");
        result.requeue_after =
            std::chrono::duration_cast<std::chrono::milliseconds>(*state.restart_at - now) + 10ms;
        return finish();
      }
    }
  }

  if (!context_.worker_pools.get(request.namespace_name + "/" + pool)) {
    status["phase"] = "Pending";
    setStatusCondition(status, "Ready", false, "WorkerPoolNotFound",
                       "WorkerPool " + request.namespace_name + "/" + pool + " does not exist");
    return finish();
  }
  Status started = startInstance(key, agent, revision, state);
  if (!started.ok()) {
    if (started.code() == Code::InvalidArgument) {
      setStatusCondition(status, "Ready", false, "InvalidTemplate", started.message());
      return finish();
    }
    status["phase"] = ended && !replacement ? "CrashLoopBackOff" : "Pending";
    setStatusCondition(status, "Ready", false, "NoReadyWorkers", started.message());
    result.requeue_after = 5s;
    return finish();
  }
  if (!first_start && !replacement) ++state.restarts;
  if (replacement) state.consecutive_failures = 0;
  state.restart_at.reset();
  status["phase"] = "Running";
  status["worker"] = state.current->worker;
  status["executionId"] = state.current->execution_id;
  status["upSince"] = state.current->started_at;
  status["latestReadyRevisionName"] = revision;
  status.erase("nextRestartTime");
  setStatusCondition(
      status, "Ready", true, "Running",
      "instance " + state.current->execution_id + " runs on worker " + state.current->worker);
  return finish();
}

}  // namespace clrk::controller
