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
      field("identity",
            obj({
                    field("audiences", arr(str()).doc("Validated audiences.")),
                    field("fields", mapOf(str().maxLength(256))
                                        .doc("Caller identity fields (user, tenant, ...) the "
                                             "TaskAgent's spec.identity extracted.")),
                    field("sources", mapOf(str()).doc("Which extractor filled each field.")),
                    field("verified", boolean().doc("Whether the fields were authenticated; "
                                                    "false: asserted by the caller (a JWT's "
                                                    "signature is not checked).")),
                    field("notes", arr(str()).maxItems(16).doc(
                                       "Why extractors yielded nothing (missing header, malformed "
                                       "JWT or body, value too long).")),
                })
                .doc("Identity asserted at ingress.")),
      field("requestId", str().doc("Request id carried to every egress record the invocation "
                                   "causes (X-Request-Id of an HTTP trigger, else generated).")),
      field("input",
            obj({
                    field("contentType", str().doc("Media type of data (default "
                                                   "application/json).")),
                    field("data", str().doc("The request body delivered to the agent.")),
                })
                .doc("Payload of a CLI-created invocation; HTTP triggers deliver the request "
                     "body directly.")),
  });
  auto status = obj({
      field("phase", str()
                         .oneOf({"Pending", "Dispatched", "Running", "Succeeded", "Failed",
                                 "Timeout", "Rejected"})
                         .doc("Lifecycle phase; transitions are monotonic.")),
      field("conditions", conditions()),
      field("executionId", str().doc("Id of the (last) execution on a worker.")),
      field("worker", str().doc("Worker that ran the (last) execution.")),
      field("sandboxId",
            str().doc("Sandbox that ran the (last) execution on its worker (\"wp-...\" when it "
                      "came from the agent's warm pool).")),
      field("attempts", i32().doc("Placements tried (a worker that refused counts).")),
      field("startTime", timestamp().doc("When the execution started on the worker.")),
      field("completionTime", timestamp().doc("When the invocation reached a terminal phase.")),
      field("exitCode", i32().doc("Exit code of the agent process.")),
      field("message", str().doc("Human-readable outcome.")),
      field("output", str().doc("The response body, first 64 KiB: the agent's stdout, or with "
                                "spec.delivery.mode Metadata what it POSTed to "
                                "$CLRK_METADATA_URL/response (stdout when it posted nothing; "
                                "empty when the body is not UTF-8).")),
      field("outputTruncated", boolean().doc("Whether output was cut at 64 KiB (or left out).")),
      field("outputSource", str()
                                .oneOf({"Stdout", "Response"})
                                .doc("Where output came from: the agent's stdout, or the body it "
                                     "POSTed to $CLRK_METADATA_URL/response.")),
      field("stderrTail", str().doc("The last 4 KiB of the agent's stderr.")),
  });
  type.schema = objectSchema(
      "Invocation records one request to an agent from admission to a terminal phase.",
      spec.doc("Immutable ingress-known descriptors."), status.doc("Observed lifecycle."));
  return type;
}

}  // namespace clrk::api::v1alpha1
