// AIProviderRoute: provider-aware routing of outbound AI API calls (model routing, backend
// selection, token budgets) on an EgressGateway.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

SchemaBuilder rule() {
  auto match = obj({
      field("provider", str().required().minLength(1).doc(
                            "AI API provider: openai, anthropic, google, azure-openai, bedrock, "
                            "or custom for endpoint-only matching.")),
      field("models", arr(str()).doc("Model ID globs matched (\"claude-*\").")),
      field("endpoints", arr(str()).doc("API paths matched (\"/v1/messages\").")),
  });
  auto token_budget = obj({
      field("maxTokensPerExecution", i64().doc("Input plus output tokens allowed per agent run.")),
      field("maxTokensPerDay", i64().doc("Tokens allowed per day across runs on this route.")),
      field("maxOutputTokensPerRequest", i64().doc("Output tokens allowed per API call.")),
      field("budgetRef", str().doc("Shared budget object used across agents or routes.")),
  });
  auto filter = obj({
      field("type", str()
                        .required()
                        .oneOf({"TokenBudget", "ExtensionRef", "RequestHeaderModifier",
                                "ResponseHeaderModifier"})
                        .doc("Filter type: TokenBudget, ExtensionRef, RequestHeaderModifier or "
                             "ResponseHeaderModifier.")),
      field("tokenBudget", token_budget.doc("Inline token consumption limits.")),
      field("extensionRef", typedLocalObjectReference().doc(
                                "Cross-cutting policy, or a classifier choosing among the "
                                "rule's backendRefs.")),
      field("requestHeaderModifier",
            headerModifier("request").doc("Header edits applied to the request before it is "
                                          "sent upstream (type RequestHeaderModifier).")),
      field("responseHeaderModifier", headerModifier("response")
                                          .doc("Header edits applied to the response before it "
                                               "reaches the agent (type ResponseHeaderModifier).")),
  });
  return obj({
      field("matches", arr(match).doc("Criteria; any match selects the rule.")),
      field("filters", arr(filter).doc("Policies applied to matched traffic.")),
      field("backendRefs", arr(backendRef())
                               .doc("Candidate Backends (clrk.apoxy.dev) the request may be "
                                    "re-pointed to, split by weight.")),
  });
}

}  // namespace

ResourceType aiProviderRouteType() {
  ResourceType type = newKind("AIProviderRoute", "aiproviderroutes", {"aipr"}, true);
  auto spec = obj({
      field(
          "parentRefs",
          arr(parentReference()).required().doc("EgressGateway listeners the route attaches to.")),
      field("rules", arr(rule()).required().doc("Rules, first match wins in order.")),
  });
  type.schema = objectSchema(
      "AIProviderRoute matches outbound AI provider API calls and applies provider-aware policy.",
      spec.doc("Desired state of the AIProviderRoute."),
      routeStatus().doc("Observed state of the AIProviderRoute."));
  return type;
}

}  // namespace clrk::api::v1alpha1
