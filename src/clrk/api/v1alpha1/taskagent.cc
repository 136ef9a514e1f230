// TaskAgent: triggered (HTTP or cron), run-to-completion agent work multiplexed across the shared
// worker pods of a WorkerPool.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

// Mirrors the checks of controller/caller_identity.h, so mistakes surface when the object is
// applied (a real Kubernetes API server checks the same patterns).
constexpr const char* kIdentityFieldPattern = "^[a-z][a-z0-9_]{0,62}$";
constexpr const char* kHeaderNamePattern = "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$";
// controller/json_path.h kJsonPathPattern: $ then .name, ['name'], ["name"] or [index] segments.
constexpr const char* kJsonPathPattern =
    R"(^\$(\.[A-Za-z0-9_-]+|\[[0-9]{1,6}\]|\['[^'\\]*'\]|\["[^"\\]*"\])*$)";

SchemaBuilder identityField() {
  return str()
      .required()
      .pattern(kIdentityFieldPattern)
      .doc(
          "Identity field to fill, lower snake case (user, tenant_id); recorded as "
          "clrk.identity.<field>.");
}

SchemaBuilder identity() {
  auto extractor = obj({
      field("type", str()
                        .required()
                        .oneOf({"Header", "Body", "JWT"})
                        .doc("Extraction method: Header, Body or JWT.")),
      field("header",
            obj({
                    field("name",
                          str()
                              .required()
                              .maxLength(256)
                              .pattern(kHeaderNamePattern)
                              .doc("HTTP header to read (not Authorization, Proxy-Authorization "
                                   "or Cookie, which carry credentials).")),
                    field("field", identityField()),
                })
                .doc("Reads the identity from a request header (type Header).")),
      field("body", obj({
                            field("jsonPath",
                                  str()
                                      .required()
                                      .maxLength(256)
                                      .pattern(kJsonPathPattern)
                                      .doc("JSONPath into the request body: $ followed by .name, "
                                           "['name'] or [index] segments, e.g. $.user.id.")),
                            field("field", identityField()),
                        })
                        .doc("Reads the identity from the JSON request body (type Body).")),
      field("jwt", obj({
                           field("claim", str().required().minLength(1).maxLength(256).doc(
                                              "Top-level claim of the bearer token in "
                                              "Authorization (the signature is not verified).")),
                           field("field", identityField()),
                       })
                       .doc("Reads the identity from a JWT claim (type JWT).")),
  });
  return obj({field("extractors", arr(extractor).required().maxItems(16).doc(
                                      "Identity extraction rules, tried in order; the first that "
                                      "yields a value for a field wins."))});
}

SchemaBuilder spec() {
  return obj({
                 field("template", sandboxRevisionTemplate().required().doc(
                                       "Sandbox template; each change creates a new "
                                       "AgentSandboxRevision.")),
                 field("workerPoolRef", str().required().minLength(1).doc(
                                            "Name of the WorkerPool (same namespace) that runs the "
                                            "executions.")),
                 field("resources", executionResources().doc("Limits applied to each execution.")),
                 field("timeout",
                       duration().defaultTo("100s").doc(
                           "Maximum run time of one execution, as a Go duration (\"100s\", "
                           "\"5m\", \"1h30m\").")),
                 field(
                     "maxConcurrent",
                     i32().minimum(0).doc("Executions allowed at once across all workers; 0 means "
                                          "unlimited.")),
                 field("warmPoolSize", i32().defaultTo(0).doc(
                                           "Per-worker count of pre-created sandboxes kept ready; "
                                           "capped by the worker at half its execution slots.")),
                 field("warmPoolIdleTTL",
                       duration().doc("How long a warm sandbox may sit idle before it is "
                                      "replaced (10m when unset).")),
                 field("schedule", str().doc("Cron expression adding a scheduled trigger; HTTP "
                                             "triggering stays enabled.")),
                 field("scheduleInput",
                       anyJson().doc("JSON body delivered on cron triggers, kept as "
                                     "written.")),
                 field("egressRefs",
                       arr(agentEgressRef())
                           .doc("EgressGateways the agent's outbound traffic goes through.")),
                 field("identity", identity().doc("How the caller identity is extracted from "
                                                  "incoming requests.")),
                 field("streaming",
                       obj({field("enabled", boolean().doc("Stream stdout/stderr while the "
                                                           "execution runs."))})
                           .doc("Output streaming settings.")),
                 field("state",
                       obj({
                               field("backend", str().doc("Storage backend; only \"sqlite\" is "
                                                          "supported.")),
                               field("sizeLimitMB", i32().doc("Size cap of the state in MB "
                                                              "(default 100).")),
                               field("mountPath", str().doc("Absolute path of the state inside the "
                                                            "sandbox (default /var/clrk/state).")),
                           })
                           .doc("Persistent state kept across executions.")),
                 field("delivery",
                       obj({field("mode",
                                  str()
                                      .oneOf({"Stdin", "Metadata"})
                                      .defaultTo("Stdin")
                                      .doc("Stdin writes a CloudEvents JSON envelope to stdin; "
                                           "Metadata serves the event over HTTP at "
                                           "$CLRK_METADATA_URL."))})
                           .doc("How the request payload reaches the agent.")),
             })
      .doc("Desired state of the TaskAgent.");
}

SchemaBuilder status() {
  return obj({
                 field("conditions", conditions()),
                 field("activeExecutions", i32().doc("In-flight (non-terminal) invocations.")),
                 field("warmSandboxes",
                       i32().doc("Pre-warmed sandboxes currently held ready across "
                                 "workers.")),
                 field("latestCreatedRevisionName", str().doc("Newest AgentSandboxRevision "
                                                              "created.")),
                 field("latestReadyRevisionName", str().doc("Newest AgentSandboxRevision that "
                                                            "became ready.")),
                 field("lastScheduleTime", timestamp().doc("When the cron schedule last fired.")),
                 field("nextScheduleTime", timestamp().doc("When the cron schedule fires next.")),
                 field("observedGeneration", i64().doc("Generation last acted on by the "
                                                       "controller.")),
             })
      .doc("Observed state of the TaskAgent.");
}

}  // namespace

ResourceType taskAgentType() {
  ResourceType type = newKind("TaskAgent", "taskagents", {"ta"}, true);
  type.printer_columns = {
      column("Image", "string", ".spec.template.spec.image", "Agent image."),
      column("Pool", "string", ".spec.workerPoolRef", "WorkerPool running the executions."),
      column("Latest Ready", "string", ".status.latestReadyRevisionName",
             "Newest ready AgentSandboxRevision."),
      column("Active", "integer", ".status.activeExecutions", "In-flight invocations."),
      column("Warm", "integer", ".status.warmSandboxes", "Pre-warmed sandboxes."),
      column("Schedule", "string", ".spec.schedule", "Cron schedule."),
      column("Last Run", "date", ".status.lastScheduleTime", "Last cron fire."),
  };
  type.schema = objectSchema(
      "TaskAgent runs triggered, run-to-completion agent executions (HTTP or cron) on a shared "
      "WorkerPool.",
      spec(), status());
  return type;
}

}  // namespace clrk::api::v1alpha1
