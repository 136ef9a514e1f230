// DaemonAgent: a single long-lived, outbound-only agent process supervised on a WorkerPool.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

SchemaBuilder spec() {
  return obj({
                 field("template", sandboxRevisionTemplate().required().doc(
                                       "Sandbox template; each change creates a new "
                                       "AgentSandboxRevision.")),
                 field("workerPoolRef", str().required().minLength(1).doc(
                                            "Name of the WorkerPool (same namespace) that runs the "
                                            "daemon.")),
                 field("resources", executionResources().doc("Limits applied to the daemon "
                                                             "process.")),
                 field(
                     "restartPolicy",
                     str()
                         .oneOf({"Always", "OnFailure", "Never"})
                         .defaultTo("Always")
                         .doc("What happens when the process exits: Always, OnFailure or Never.")),
                 field("maxRestarts", i32().minimum(0).doc("Cap on restart attempts; 0 means "
                                                           "unlimited.")),
                 field("maxLifetimeSeconds",
                       i32().minimum(0).doc("Seconds the daemon may run before it is stopped "
                                            "(and maybe restarted); 0 means forever.")),
                 field("egressRefs",
                       arr(agentEgressRef())
                           .doc("EgressGateways the agent's outbound traffic goes through.")),
             })
      .doc("Desired state of the DaemonAgent.");
}

SchemaBuilder status() {
  return obj({
                 field("conditions", conditions()),
                 field("phase", str().doc("Lifecycle phase: Pending, Running, CrashLoopBackOff "
                                          "or Stopped.")),
                 field("upSince", timestamp().doc("When the current process instance started.")),
                 field("restartCount", i32().doc("Times the daemon has been restarted.")),
                 field("worker", str().doc("Worker running the current instance.")),
                 field("executionId",
                       str().doc("Execution id of the current instance on its worker (for "
                                 "`clrk logs`).")),
                 field("lastExitCode", i32().doc("Exit code of the previous instance.")),
                 field("lastExitTime", timestamp().doc("When the previous instance ended.")),
                 field("nextRestartTime",
                       timestamp().doc("When a crash-looping daemon is started again.")),
                 field("latestCreatedRevisionName", str().doc("Newest AgentSandboxRevision "
                                                              "created.")),
                 field("latestReadyRevisionName", str().doc("Newest AgentSandboxRevision that "
                                                            "became ready.")),
                 field("observedGeneration", i64().doc("Generation last acted on by the "
                                                       "controller.")),
             })
      .doc("Observed state of the DaemonAgent.");
}

}  // namespace

ResourceType daemonAgentType() {
  ResourceType type = newKind("DaemonAgent", "daemonagents", {"da"}, true);
  type.printer_columns = {
      column("Image", "string", ".spec.template.spec.image", "Agent image."),
      column("Pool", "string", ".spec.workerPoolRef", "WorkerPool running the daemon."),
      column("Latest Ready", "string", ".status.latestReadyRevisionName",
             "Newest ready AgentSandboxRevision."),
      column("Phase", "string", ".status.phase", "Lifecycle phase."),
      column("Restarts", "integer", ".status.restartCount", "Restart count."),
  };
  type.schema = objectSchema(
      "DaemonAgent keeps one long-lived, outbound-only agent process running on a WorkerPool.",
      spec(), status());
  return type;
}

}  // namespace clrk::api::v1alpha1
