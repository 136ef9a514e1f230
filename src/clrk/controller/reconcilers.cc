#include "clrk/controller/reconcilers.h"

#include "clrk/api/builtin_types.h"
#include "clrk/api/registry.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"
#include "clrk/controller/cron.h"

#include <algorithm>

namespace clrk::controller {
namespace {

using Json = kube::Json;
using namespace std::chrono_literals;

// A copy of `status` without condition timestamps, for change detection.
Json comparable(Json status) {
  if (status.contains("conditions") && status["conditions"].is_array()) {
    for (auto& cond : status["conditions"]) cond.erase("lastTransitionTime");
  }
  return status;
}

}  // namespace

bool hasFinalizer(const Json& object, std::string_view finalizer) {
  const Json& metadata = object["metadata"];
  if (!metadata.contains("finalizers") || !metadata["finalizers"].is_array()) return false;
  for (const auto& entry : metadata["finalizers"]) {
    if (entry.is_string() && entry.get<std::string>() == finalizer) return true;
  }
  return false;
}

Status setFinalizer(kube::Client& client, const api::ResourceType& type, Json object,
                    std::string_view finalizer, bool present) {
  Json& list = object["metadata"]["finalizers"];
  if (!list.is_array()) list = Json::array();
  Json kept = Json::array();
  for (const auto& entry : list) {
    if (!(entry.is_string() && entry.get<std::string>() == finalizer)) kept.push_back(entry);
  }
  if (present) kept.push_back(std::string(finalizer));
  list = std::move(kept);
  auto updated = client.update(type, object);
  return updated.ok() ? Status() : updated.status();
}

std::vector<WorkerInfo> poolWorkers(WorkerRegistry& registry, const std::string& ns,
                                    const std::string& pool) {
  std::vector<WorkerInfo> out;
  auto now = std::chrono::system_clock::now();
  for (auto& info : registry.workers()) {
    if (info.alive(now) && info.serves(ns, pool)) out.push_back(std::move(info));
  }
  return out;
}

void setStatusCondition(Json& status, const std::string& type, bool value,
                        const std::string& reason, const std::string& message) {
  Json cond = {{"type", type},
               {"status", value ? "True" : "False"},
               {"reason", reason},
               {"message", message},
               {"lastTransitionTime", formatRfc3339(std::chrono::system_clock::now())}};
  Json& list = status["conditions"];
  if (!list.is_array()) list = Json::array();
  for (auto& existing : list) {
    if (existing.value("type", "") != type) continue;
    if (existing.value("status", "") == cond["status"].get<std::string>()) {
      cond["lastTransitionTime"] = existing.value("lastTransitionTime", "");
    }
    existing = std::move(cond);
    return;
  }
  list.push_back(std::move(cond));
}

Status updateStatusIfChanged(kube::Client& client, const api::ResourceType& type,
                             const Json& object, Json status) {
  Json current = object.value("status", Json::object());
  if (comparable(current) == comparable(status)) return {};
  Json desired = object;
  desired["status"] = std::move(status);
  auto written = type.has_status_subresource ? client.updateStatus(type, desired)
                                             : client.update(type, desired);
  return written.ok() ? Status() : written.status();
}

Result<std::string> ensureRevision(kube::Client& client, const Json& agent, std::string_view kind) {
  const auto& type = api::clrkType("AgentSandboxRevision");
  const Json& metadata = agent["metadata"];
  std::string ns = metadata.value("namespace", "default");
  std::string name = metadata.value("name", "");
  Json sandbox = agent["spec"].value("template", Json::object()).value("spec", Json::object());
  std::string latest = agent.value("status", Json::object()).value("latestCreatedRevisionName", "");
  if (!latest.empty()) {
    auto existing = client.get(type, ns, latest);
    if (existing.ok() && existing->value("spec", Json::object()) == sandbox) return latest;
    if (!existing.ok() && existing.status().code() != Code::NotFound) return existing.status();
  }
  std::string revision = name + "-" + std::to_string(metadata.value("generation", int64_t{1}));
  Json labels = agent["spec"]
                    .value("template", Json::object())
                    .value("metadata", Json::object())
                    .value("labels", Json::object());
  labels[std::string(kLabelAgent)] = name;
  Json object = {
      {"apiVersion", "clrk.apoxy.dev/v1alpha1"},
      {"kind", "AgentSandboxRevision"},
      {"metadata",
       {{"name", revision},
        {"namespace", ns},
        {"labels", labels},
        {"ownerReferences", Json::array({{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                                          {"kind", std::string(kind)},
                                          {"name", name},
                                          {"uid", metadata.value("uid", "")},
                                          {"controller", true},
                                          {"blockOwnerDeletion", true}}})}}},
      {"spec", sandbox},
  };
  auto created = client.create(type, ns, object);
  if (!created.ok() && created.status().code() != Code::AlreadyExists) return created.status();
  return revision;
}

// ---- TaskAgent ------------------------------------------------------------------------------

Result<ReconcileResult> TaskAgentReconciler::reconcile(const Request& request) {
  const auto& type = api::clrkType("TaskAgent");
  auto cached = context_.task_agents.get(request.key());
  if (!cached) return ReconcileResult{};  // deleted; Invocations go with owner references
  Json agent = std::move(*cached);
  const Json& metadata = agent["metadata"];

  if (metadata.contains("deletionTimestamp") && !metadata["deletionTimestamp"].is_null()) {
    if (!hasFinalizer(agent, kFinalizerExecutions)) return ReconcileResult{};
    int asked = context_.invocation_manager.stopAgent(request.key());
    if (context_.invocation_manager.active(request.key()) > 0) {
      logger("controller")
          ->info("TaskAgent {} is being deleted: stopping {} executions", request.key(), asked);
      return ReconcileResult{1s};
    }
    CLRK_RETURN_IF_ERROR(setFinalizer(*context_.client, type, agent, kFinalizerExecutions, false));
    return ReconcileResult{};
  }
  if (!hasFinalizer(agent, kFinalizerExecutions)) {
    // The update triggers another reconcile that sees the finalizer.
    CLRK_RETURN_IF_ERROR(setFinalizer(*context_.client, type, agent, kFinalizerExecutions, true));
    return ReconcileResult{};
  }

  Json status = agent.value("status", Json::object());
  status["observedGeneration"] = metadata.value("generation", int64_t{1});
  status["activeExecutions"] = context_.invocation_manager.active(request.key());
  if (context_.warm_pools != nullptr) {
    status["warmSandboxes"] = context_.warm_pools->ready(request.key());
  }
  ReconcileResult result;

  auto execution = executionFromTaskAgent(agent);
  std::string pool = agent["spec"].value("workerPoolRef", "");
  if (!execution.ok()) {
    setStatusCondition(status, "Ready", false, "InvalidTemplate", execution.status().message());
  } else {
    CLRK_ASSIGN_OR_RETURN(std::string revision,
                          ensureRevision(*context_.client, agent, "TaskAgent"));
    status["latestCreatedRevisionName"] = revision;
    status["latestReadyRevisionName"] = revision;
    if (!context_.worker_pools.get(request.namespace_name + "/" + pool)) {
      setStatusCondition(status, "Ready", false, "WorkerPoolNotFound",
                         "WorkerPool " + request.namespace_name + "/" + pool + " does not exist");
    } else if (auto workers = poolWorkers(context_.workers, request.namespace_name, pool);
               workers.empty()) {
      setStatusCondition(status, "Ready", false, "NoReadyWorkers",
                         "no live worker serves WorkerPool " + request.namespace_name + "/" + pool);
      result.requeue_after = 5s;
    } else {
      setStatusCondition(status, "Ready", true, "Ready",
                         std::to_string(workers.size()) + " worker(s) serve WorkerPool " + pool);
      result.requeue_after = 15s;  // notices Leases that expire without an event
    }
  }
  std::optional<InvokeRequest> fire = schedule(agent, status, result);
  CLRK_RETURN_IF_ERROR(updateStatusIfChanged(*context_.client, type, agent, std::move(status)));
  // Fired only once lastScheduleTime is written: a failed write retries the reconcile without
  // having started a run, so one scheduled time starts at most one invocation.
  if (fire) {
    Status started = context_.invocation_manager.runAsync(std::move(*fire), nullptr);
    if (!started.ok()) {
      logger("controller")
          ->warn("TaskAgent {}: cron run not started: {}", request.key(), started.message());
    }
  }
  return result;
}

std::optional<InvokeRequest> TaskAgentReconciler::schedule(const Json& agent, Json& status,
                                                           ReconcileResult& result) {
  std::string expression = agent["spec"].value("schedule", "");
  if (expression.empty()) {
    status.erase("nextScheduleTime");
    if (status.contains("conditions") && status["conditions"].is_array()) {
      auto& list = status["conditions"];
      list.erase(std::remove_if(list.begin(), list.end(),
                                [](const Json& c) { return c.value("type", "") == "Scheduled"; }),
                 list.end());
    }
    return std::nullopt;
  }
  auto parsed = CronSchedule::parse(expression);
  if (!parsed.ok()) {
    status.erase("nextScheduleTime");
    setStatusCondition(status, "Scheduled", false, "InvalidSchedule", parsed.status().message());
    return std::nullopt;
  }
  auto now = std::chrono::system_clock::now();
  auto base = parseRfc3339(status.value("lastScheduleTime", ""));
  if (!base) base = parseRfc3339(agent["metadata"].value("creationTimestamp", ""));
  if (!base) base = now;
  auto due = parsed->next(*base);
  std::optional<InvokeRequest> fire;
  if (due != CronSchedule::kNever && due <= now) {
    // Catch up on missed times by running only the newest one, and only if it is recent.
    auto newest = due;
    for (int steps = 0; steps < 100000; ++steps) {
      auto following = parsed->next(newest);
      if (following == CronSchedule::kNever || following > now) break;
      newest = following;
    }
    status["lastScheduleTime"] = formatRfc3339(newest);
    if (now - newest <= kMissedRunWindow) {
      InvokeRequest run;
      run.namespace_name = agent["metadata"].value("namespace", "default");
      run.agent = agent["metadata"].value("name", "");
      run.trigger_type = "Cron";
      run.trigger_source = expression;
      Json input = agent["spec"].value("scheduleInput", Json::object());
      run.body = input.dump();
      fire = std::move(run);
    }
    due = parsed->next(newest);
  }
  if (due == CronSchedule::kNever) {
    status.erase("nextScheduleTime");
    setStatusCondition(status, "Scheduled", false, "NeverFires",
                       "schedule \"" + expression + "\" has no future firing time");
    return fire;
  }
  status["nextScheduleTime"] = formatRfc3339(due);
  setStatusCondition(status, "Scheduled", true, "Scheduled", "next run at " + formatRfc3339(due));
  auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(due - now) +
              std::chrono::milliseconds(5);
  if (result.requeue_after.count() == 0 || wait < result.requeue_after) {
    result.requeue_after = wait;
  }
  return fire;
}

// ---- WorkerPool -----------------------------------------------------------------------------

Result<ReconcileResult> WorkerPoolReconciler::reconcile(const Request& request) {
  const auto& type = api::clrkType("WorkerPool");
  auto cached = context_.worker_pools.get(request.key());
  if (!cached) return ReconcileResult{};
  Json pool = std::move(*cached);
  auto workers = poolWorkers(context_.workers, request.namespace_name, request.name);
  int max_executions = 0, available = 0, ready = 0;
  for (const auto& info : workers) {
    if (info.state != "Ready") continue;
    ++ready;
    max_executions += info.capacity.max_executions;
    available += info.capacity.free;
  }
  int active = 0;
  for (const auto& agent : context_.task_agents.list()) {
    const Json& metadata = agent["metadata"];
    if (metadata.value("namespace", "") != request.namespace_name ||
        agent["spec"].value("workerPoolRef", "") != request.name) {
      continue;
    }
    active += context_.invocation_manager.active(request.namespace_name + "/" +
                                                 metadata.value("name", ""));
  }
  Json status = pool.value("status", Json::object());
  if (cluster_) {
    auto deployment = applyWorkerObjects(*context_.client, pool, *cluster_);
    if (deployment.ok()) {
      setAvailableCondition(status, *deployment);
    } else {
      setStatusCondition(status, "Available", false, "DeploymentFailed",
                         deployment.status().message());
    }
  }
  status["observedGeneration"] = pool["metadata"].value("generation", int64_t{1});
  status["readyReplicas"] = ready;
  status["capacity"] = {{"maxExecutions", max_executions}, {"availableExecutions", available}};
  status["activeExecutions"] = active;
  if (ready > 0) {
    setStatusCondition(status, "Ready", true, "WorkersReady",
                       std::to_string(ready) + " worker(s) ready");
  } else {
    setStatusCondition(status, "Ready", false, "NoReadyWorkers", "no live worker serves this pool");
  }
  CLRK_RETURN_IF_ERROR(updateStatusIfChanged(*context_.client, type, pool, std::move(status)));
  return ReconcileResult{10s};
}

// ---- Invocation -----------------------------------------------------------------------------

Result<ReconcileResult> InvocationReconciler::resumeOrphan(const Request& request) {
  {
    std::lock_guard lock(mutex_);
    if (!claimed_.insert(request.key()).second) return ReconcileResult{};
  }
  auto release = [this, key = request.key()] {
    std::lock_guard lock(mutex_);
    claimed_.erase(key);
  };
  // The cache may lag a run of this process that just finished: decide on the stored object.
  auto fresh =
      context_.client->get(api::clrkType("Invocation"), request.namespace_name, request.name);
  std::string phase =
      fresh.ok() ? fresh->value("status", Json::object()).value("phase", "") : std::string();
  if (!fresh.ok() || !(phase == "Dispatched" || phase == "Running") ||
      context_.invocation_manager.tracking(request.name)) {
    release();
    return fresh.ok() || fresh.status().code() == Code::NotFound
               ? Result<ReconcileResult>(ReconcileResult{})
               : Result<ReconcileResult>(fresh.status());
  }
  logger("controller")
      ->info("Invocation {} is {} with no controller waiting: resuming", request.key(), phase);
  Status started = context_.invocation_manager.resumeAsync(std::move(fresh).value(),
                                                           [release](InvokeResult) { release(); });
  if (!started.ok()) {
    release();
    return started;
  }
  return ReconcileResult{};
}

Result<ReconcileResult> InvocationReconciler::reconcile(const Request& request) {
  auto cached = context_.invocations.get(request.key());
  if (!cached) {
    std::lock_guard lock(mutex_);
    claimed_.erase(request.key());
    return ReconcileResult{};
  }
  const Json& invocation = *cached;
  std::string phase = invocation.value("status", Json::object()).value("phase", "");
  const Json spec = invocation.value("spec", Json::object());
  std::string trigger = spec.value("trigger", Json::object()).value("type", "");
  if ((phase == "Dispatched" || phase == "Running") &&
      !context_.invocation_manager.tracking(request.name)) {
    return resumeOrphan(request);
  }
  if (!(phase.empty() || phase == "Pending") || trigger != "CLI") return ReconcileResult{};
  {
    std::lock_guard lock(mutex_);
    if (!claimed_.insert(request.key()).second) return ReconcileResult{};
  }
  InvokeRequest invoke;
  invoke.namespace_name = request.namespace_name;
  invoke.invocation_name = request.name;
  invoke.agent = spec.value("parentRef", Json::object()).value("name", "");
  invoke.trigger_type = "CLI";
  invoke.trigger_source = spec.value("trigger", Json::object()).value("source", "");
  const Json input = spec.value("input", Json::object());
  invoke.content_type = input.value("contentType", "application/json");
  invoke.body = input.value("data", "");
  // The claim ends with the run: by then the Invocation is terminal and is not dispatched again.
  std::string key = request.key();
  Status started =
      context_.invocation_manager.runAsync(std::move(invoke), [this, key](InvokeResult) {
        std::lock_guard lock(mutex_);
        claimed_.erase(key);
      });
  if (!started.ok()) {
    std::lock_guard lock(mutex_);
    claimed_.erase(request.key());
    return started;
  }
  return ReconcileResult{};
}

}  // namespace clrk::controller
