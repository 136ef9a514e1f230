// Invocation: the durable lifecycle record of one request to a TaskAgent or DaemonAgent.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {

ResourceType invocationType() {
  ResourceType type = newKind("Invocation", "invocations", {"inv"}, false);
  type.printer_columns = {
      column("Phase", "string", ".status.phase", "Lifecycle phase."),
      column("Trigger", "string", ".spec.trigger.type", "How the invocation started."),
      column("Parent", "string", ".spec.parentRef.kind", "Kind of the owning agent."),
      column("ParentName", "string", ".spec.parentRef.name", "Name of the owning agent."),
  };
  auto spec = obj({
      field("parentRef", obj({
                                 field("kind", str()
                                                   .required()
                                                   .oneOf({"TaskAgent", "DaemonAgent"})
                                                   .doc("TaskAgent or DaemonAgent.")),
                                 field("name", str().required().doc("Agent name, same namespace.")),
                             })
                             .required()
                             .doc("The agent this invocation belongs to.")),
      field(
          "trigger",
          obj({
                  field("type",
                        str().required().oneOf({"HTTP", "Cron", "CLI"}).doc("HTTP, Cron or CLI.")),
                  field("source", str().doc("Route name, cron expression or "
                                            "principal that triggered it.")),
              })
              .required()
              .doc("How the invocation was initiated.")),
      field("identity", obj({field("audiences", arr(str()).doc("Validated audiences."))})
                            .doc("Identity asserted at ingress.")),
  });
  auto status = obj({
      field("phase", str()
                         .oneOf({"Pending", "Dispatched", "Running", "Succeeded", "Failed",
                                 "Timeout", "Rejected"})
                         .doc("Lifecycle phase; transitions are monotonic.")),
      field("conditions", conditions()),
  });
  type.schema = objectSchema(
      "Invocation records one request to an agent from admission to a terminal phase.",
      spec.doc("Immutable ingress-known descriptors."), status.doc("Observed lifecycle."));
  return type;
}

}  // namespace clrk::api::v1alpha1
