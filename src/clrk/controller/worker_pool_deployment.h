// Cluster mode of the WorkerPool controller: the Deployment and headless Service of `clrk-worker`
// pods that run a WorkerPool on a real cluster, both named clrk-worker-<pool> in the pool's
// namespace and owned by the pool (ownerReferences: deleting the pool deletes them).
//
// The pod is the pool's curated `spec.template` (image, resources, scheduling, env, volumes)
// merged onto a fixed base: one privileged container (gVisor and the per-sandbox netns, veth and
// nftables need it) running `clrk-worker --pool P --namespace NS` with its API on port 7443,
// advertised at the pod IP, and emptyDir volumes `state`, `run` and `varlog`. Controller-owned
// names win: labels, env POD_NAME/POD_IP, the reserved volume names.
// Thread model: pure functions, plus applyWorkerObjects() which only uses the thread-safe client.
#pragma once

#include "clrk/base/status.h"
#include "clrk/kube/client.h"

#include <string>
#include <string_view>

namespace clrk::controller {

inline constexpr std::string_view kWorkerPoolLabel = "clrk.apoxy.dev/worker-pool";
inline constexpr std::string_view kWorkerFieldManager = "clrk-controller-manager";
inline constexpr int kWorkerApiPort = 7443;

struct WorkerDeploymentOptions {
  std::string system_namespace = "clrk-system";  // where workers register their Leases
  std::string runtime = "gvisor";                // clrk-worker --runtime
};

// "clrk-worker-<pool>", or InvalidArgument when that exceeds 63 characters (a Service name).
Result<std::string> workerObjectName(std::string_view pool);

// The apps/v1 Deployment of `pool` (a WorkerPool with metadata.uid). REQUIRES: workerObjectName ok.
kube::Json workerDeployment(const kube::Json& pool, const WorkerDeploymentOptions& options);
// The headless v1 Service selecting the pool's worker pods (port "worker").
kube::Json workerService(const kube::Json& pool);

// Writes the pool's Deployment and Service (server-side apply, field manager
// clrk-controller-manager, forced) and returns the Deployment as stored.
Result<kube::Json> applyWorkerObjects(kube::Client& client, const kube::Json& pool,
                                      const WorkerDeploymentOptions& options);

// Sets the WorkerPool condition `Available` in `status` from the Deployment's status: True iff
// every desired replica of the current template is available.
void setAvailableCondition(kube::Json& status, const kube::Json& deployment);

}  // namespace clrk::controller
