// Backend: an addressable AI provider upstream an AIProviderRoute rule can route to.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {

ResourceType backendType() {
  ResourceType type = newKind("Backend", "backends", {"be"}, true);
  type.printer_columns = {
      column("Type", "string", ".spec.type", "Destination kind."),
      column("Schema", "string", ".spec.schema.name", "Wire schema of the upstream."),
  };
  auto upstream = obj({
      field("host", str().required().minLength(1).doc("DNS name or IP the proxy dials.")),
      field("port", i32().minimum(1).maximum(65535).defaultTo(443).doc("Upstream TCP port.")),
  });
  auto model_rewrite = obj({
      field("from", str().required().minLength(1).doc("Glob over the request's model ID.")),
      field("to", str().required().minLength(1).doc("Model ID sent upstream instead.")),
  });
  auto spec = obj({
      field("type", str()
                        .required()
                        .oneOf({"Upstream", "InferencePool"})
                        .defaultTo("Upstream")
                        .doc("Destination kind: Upstream (external host) or InferencePool.")),
      field("schema", obj({field("name", str().required().minLength(1).doc(
                                             "Wire schema: openai, anthropic, google, "
                                             "azure-openai, bedrock or custom."))})
                          .required()
                          .doc("Wire schema the upstream speaks.")),
      field("upstream", upstream.doc("External destination; required for type Upstream.")),
      field("inferencePoolRef", typedLocalObjectReference().doc(
                                    "InferencePool in the same namespace; required for type "
                                    "InferencePool.")),
      field("modelRewrites", arr(model_rewrite)
                                 .doc("Model ID rewrites; the first matching "
                                      "entry wins.")),
      field("bodyMutation",
            obj({field("ensureStreamUsage", boolean().doc("Force usage reporting on "
                                                          "OpenAI-style streaming "
                                                          "requests."))})
                .doc("Request body rewrites applied when selected.")),
  });
  auto status = obj({field("conditions", conditions().doc("Accepted and ResolvedRefs."))});
  type.schema = objectSchema(
      "Backend is an AI provider upstream that AIProviderRoute rules can route requests to.",
      spec.doc("Desired state of the Backend."), status.doc("Observed state of the Backend."));
  return type;
}

}  // namespace clrk::api::v1alpha1
