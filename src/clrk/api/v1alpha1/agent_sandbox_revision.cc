// AgentSandboxRevision: the immutable snapshot of an agent's sandbox created on each template
// change, and SandboxState, the older per-agent readiness record.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {

ResourceType agentSandboxRevisionType() {
  ResourceType type = newKind("AgentSandboxRevision", "agentsandboxrevisions", {"asr"}, true);
  type.printer_columns = {
      column("Image", "string", ".spec.image", "Agent image."),
      column("Ready Workers", "integer", ".status.readyWorkers",
             "Workers with this revision's sandbox ready."),
      column("Ready", "string", ".status.conditions[?(@.type==\"Ready\")].status",
             "Ready condition."),
  };
  auto status = obj({
      field("conditions", conditions().doc("Observations; known types are Ready and Active.")),
      field("workers", arr(workerSandboxStatus()).doc("Sandbox state on each worker pod.")),
      field("readyWorkers", i32().doc("Workers that have this revision's sandbox ready.")),
  });
  type.schema = objectSchema(
      "AgentSandboxRevision is an immutable snapshot of an agent's sandbox, named "
      "<agent>-<generation>.",
      obj(agentSandboxFields()).doc("The captured image and process settings."),
      status.doc("Observed state of the revision."));
  return type;
}

ResourceType sandboxStateType() {
  ResourceType type = newKind("SandboxState", "sandboxstates", {"ss"}, true);
  type.printer_columns = {
      column("Agent", "string", ".spec.agentRef", "TaskAgent tracked."),
      column("Pool", "string", ".spec.poolRef", "WorkerPool of the agent."),
      column("Ready Workers", "integer", ".status.readyWorkers", "Workers with the sandbox ready."),
  };
  auto spec = obj({
      field("agentRef", str().required().doc("Name of the TaskAgent tracked.")),
      field("poolRef", str().required().doc("Name of the agent's WorkerPool.")),
      field("sandbox", obj(agentSandboxFields()).required().doc("Copy of the agent's sandbox.")),
      field("resources", executionResources().doc("Copy of the agent's execution limits.")),
  });
  auto status = obj({
      field("workers", arr(workerSandboxStatus()).doc("Sandbox state on each worker pod.")),
      field("readyWorkers", i32().doc("Workers with the sandbox ready.")),
      field("conditions", conditions()),
  });
  type.schema =
      objectSchema("SandboxState tracks per-worker sandbox readiness of one TaskAgent.",
                   spec.doc("The agent and pool tracked."), status.doc("Observed readiness."));
  return type;
}

}  // namespace clrk::api::v1alpha1
