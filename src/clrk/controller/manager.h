// Manager: owns the controllers of clrk-controller-manager and what they share: the API client,
// the informer caches (TaskAgent, DaemonAgent, WorkerPool, Invocation, worker Leases), the worker
// registry, the InvocationManager and the HTTP trigger server.
//
// Reconcilers (level-based, see controller.h):
//   * TaskAgent: finalizer clrk.apoxy.dev/executions (deleting an agent stops its executions);
//     an AgentSandboxRevision <agent>-<generation> per template change; status conditions Ready
//     (reasons Ready, InvalidTemplate, WorkerPoolNotFound, NoReadyWorkers), observedGeneration,
//     activeExecutions, warmSandboxes (ready across workers: warm_pools.h, which also tells the
//     workers which warm pools to keep), latest{Created,Ready}RevisionName.
//   * WorkerPool: status readyReplicas, capacity, activeExecutions and Ready from the Leases of
//     the workers serving it; with ManagerOptions::worker_deployments (cluster mode) also the
//     pool's clrk-worker Deployment and Service and the Available condition
//     (worker_pool_deployment.h). Local dev workers are started by `clrk dev` instead.
//   * DaemonAgent: keeps one instance running with restart policy and crash-loop backoff
//     (semantics in daemons.h).
//   * Finished Invocations are deleted after a TTL and beyond a per-agent history limit
//     (invocation_gc.h).
//   * Egress kinds: statuses from compiling the egress configuration (egress_status.h).
//   * Invocation: dispatches Invocations created through the API (`clrk run-task`, trigger CLI)
//     that are still Pending (the trigger server dispatches its own at once), and resumes
//     Dispatched/Running ones no controller waits for (after a restart): it waits for their
//     execution on the worker that has it, or fails them as WorkerLost when that worker is gone.
// Thread model: start() spawns informer, controller and server threads; stop() joins them.
#pragma once

#include "clrk/base/status.h"
#include "clrk/controller/daemons.h"
#include "clrk/controller/invocation_gc.h"
#include "clrk/controller/warm_pools.h"
#include "clrk/controller/worker_pool_deployment.h"
#include "clrk/kube/client.h"

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace clrk::controller {

struct ManagerOptions {
  std::string system_namespace = "clrk-system";
  std::string trigger_listen = "127.0.0.1:0";
  int reconcile_workers = 2;
  DaemonOptions daemons;              // crash-loop backoff of DaemonAgents
  InvocationGcOptions invocation_gc;  // deleting finished Invocations
  WarmPoolSyncOptions warm_pools;     // pushing warm pools to workers (warm_pools.h)
  bool egress_statuses = true;        // egress_status.h
  // Set in cluster mode: WorkerPools get worker Deployments and Services.
  std::optional<WorkerDeploymentOptions> worker_deployments;
  // Called (on the Invocation informer's thread; must not block) when an Invocation moves into a
  // terminal phase (Succeeded, Failed, Timeout, Rejected), with the object as updated; the
  // controller-manager exports its trace spans from here.
  std::function<void(const kube::Json& invocation)> on_invocation_finished;
};

class Manager {
 public:
  static std::unique_ptr<Manager> create(kube::ClientPtr client, ManagerOptions options);
  virtual ~Manager() = default;
  // Starts informers, waits (bounded) for their first list, starts controllers and the trigger.
  virtual Status start() = 0;
  virtual void stop() = 0;
  // "http://127.0.0.1:PORT" of the HTTP trigger.
  virtual std::string triggerUrl() const = 0;
};

}  // namespace clrk::controller
