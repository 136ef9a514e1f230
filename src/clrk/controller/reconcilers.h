// The reconcilers the Manager runs (semantics in manager.h) and the status helpers they share.
#pragma once

#include "clrk/controller/controller.h"
#include "clrk/controller/invocations.h"
#include "clrk/controller/warm_pools.h"
#include "clrk/controller/worker_pool_deployment.h"
#include "clrk/controller/worker_registry.h"
#include "clrk/kube/watch.h"

#include <mutex>
#include <set>

namespace clrk::controller {

inline constexpr std::string_view kFinalizerExecutions = "clrk.apoxy.dev/executions";

// What the reconcilers read and write.
struct ControllerContext {
  kube::ClientPtr client;
  kube::Informer& task_agents;
  kube::Informer& worker_pools;
  kube::Informer& invocations;
  WorkerRegistry& workers;
  InvocationManager& invocation_manager;
  const WarmPoolSync* warm_pools;  // null: no warm pools (status.warmSandboxes not written)
};

// Sets (replaces by type) a condition in `status`; keeps lastTransitionTime when the condition's
// status did not change.
void setStatusCondition(kube::Json& status, const std::string& type, bool value,
                        const std::string& reason, const std::string& message);

// Writes `status` through the status subresource when it differs from the object's current
// status (ignoring condition timestamps). Conflict errors are returned for a requeue.
Status updateStatusIfChanged(kube::Client& client, const api::ResourceType& type,
                             const kube::Json& object, kube::Json status);

bool hasFinalizer(const kube::Json& object, std::string_view finalizer);
// Adds or removes a finalizer with an optimistic-concurrency update of the object.
Status setFinalizer(kube::Client& client, const api::ResourceType& type, kube::Json object,
                    std::string_view finalizer, bool present);
// Workers alive and serving WorkerPool `ns/pool`.
std::vector<WorkerInfo> poolWorkers(WorkerRegistry& registry, const std::string& ns,
                                    const std::string& pool);
// The AgentSandboxRevision for the agent's current template: the latest one when its spec still
// matches, else a new `<agent>-<generation>` owned by the agent (TaskAgent or DaemonAgent).
Result<std::string> ensureRevision(kube::Client& client, const kube::Json& agent,
                                   std::string_view kind);

class TaskAgentReconciler : public Reconciler {
 public:
  explicit TaskAgentReconciler(ControllerContext& context) : context_(context) {}
  Result<ReconcileResult> reconcile(const Request& request) override;

 private:
  // Cron trigger: updates lastScheduleTime/nextScheduleTime and the Scheduled condition in
  // `status`, lowers result.requeue_after to the next firing time, and returns the run to start
  // when a scheduled time has come (missed times older than kMissedRunWindow are skipped).
  std::optional<InvokeRequest> schedule(const kube::Json& agent, kube::Json& status,
                                        ReconcileResult& result);
  ControllerContext& context_;
};

inline constexpr std::chrono::minutes kMissedRunWindow{5};

// Status from the workers' Leases; in cluster mode (`cluster` set) it also applies the pool's
// worker Deployment and Service (worker_pool_deployment.h) and reports their Available condition.
class WorkerPoolReconciler : public Reconciler {
 public:
  explicit WorkerPoolReconciler(ControllerContext& context,
                                std::optional<WorkerDeploymentOptions> cluster = std::nullopt)
      : context_(context), cluster_(std::move(cluster)) {}
  Result<ReconcileResult> reconcile(const Request& request) override;

 private:
  ControllerContext& context_;
  std::optional<WorkerDeploymentOptions> cluster_;
};

class InvocationReconciler : public Reconciler {
 public:
  explicit InvocationReconciler(ControllerContext& context) : context_(context) {}
  Result<ReconcileResult> reconcile(const Request& request) override;

 private:
  // A Dispatched/Running Invocation nobody waits for (the controller restarted): resumed.
  Result<ReconcileResult> resumeOrphan(const Request& request);
  ControllerContext& context_;
  std::mutex mutex_;
  std::set<std::string> claimed_;  // Invocations handed to the InvocationManager
};

}  // namespace clrk::controller
