// Egress policies attached to routes and gateways: CredentialInjectionPolicy,
// FallbackRoutingPolicy, RateLimitPolicy, LoggingPolicy and EgressDenyPolicy.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

SchemaBuilder rateLimitScope() {
  return str()
      .oneOf({"PerAgent", "PerExecution", "PerRoute"})
      .defaultTo("PerAgent")
      .doc("Counter dimension: PerAgent, PerExecution or PerRoute.");
}

}  // namespace

ResourceType credentialInjectionPolicyType() {
  ResourceType type =
      newKind("CredentialInjectionPolicy", "credentialinjectionpolicies", {"cip"}, true);
  type.printer_columns = {column("Target", "string", ".spec.target", "Where the credential goes.")};
  auto provider_auth = obj({
      field("type", str()
                        .required()
                        .oneOf({"AWSv4", "GCPServiceAccount"})
                        .doc("Signing scheme: AWSv4 or GCPServiceAccount (reserved).")),
      field("region", str().doc("AWSv4 region; derived from the target host when unset.")),
      field("service", str().doc("AWSv4 service name (default bedrock).")),
  });
  auto spec = obj({
      field("targetRefs", arr(policyTargetReference())
                              .required()
                              .doc("AIProviderRoutes, MCPRoutes or EgressGateways the credential "
                                   "applies to; a sectionName on a route names one Backend.")),
      field("secretRef", secretObjectReference().required().doc(
                             "Secret holding the credential, in the policy's namespace.")),
      field("secretKey", str().defaultTo("token").doc("Key of the Secret holding the value.")),
      field("target", str()
                          .required()
                          .oneOf({"Header", "QueryParam", "ProviderAuth"})
                          .doc("Where the credential is injected: Header, QueryParam or "
                               "ProviderAuth.")),
      field("headerName", str().doc("Header set when target is Header.")),
      field("queryParamName", str().doc("Query parameter set when target is QueryParam.")),
      field("providerAuth", provider_auth.doc("Request signing used when target is "
                                              "ProviderAuth.")),
  });
  type.schema = objectSchema(
      "CredentialInjectionPolicy injects a Secret's credential into matching outbound requests "
      "so agents never hold keys.",
      spec.doc("Desired state of the policy."), policyStatus().doc("Attachment status."));
  return type;
}

ResourceType fallbackRoutingPolicyType() {
  ResourceType type = newKind("FallbackRoutingPolicy", "fallbackroutingpolicies", {"frp"}, true);
  auto retry = obj({
      field("numRetries",
            i32().minimum(0).doc("Retries after the first attempt (default: backends minus one, at "
                                 "most 5).")),
      field("retriableStatusCodes", arr(i32().minimum(400).maximum(599))
                                        .doc("Upstream statuses that trigger a retry (default "
                                             "429 and 503).")),
      field("perTryTimeout", duration().doc("Bound on each attempt; unbounded when unset.")),
  });
  auto ejection =
      obj({field("maxEjectionTime", duration().doc("Longest time a failing backend stays "
                                                   "ejected (default 300s)."))});
  auto spec = obj({
      field("targetRefs", arr(policyTargetReference())
                              .required()
                              .doc("AIProviderRoutes whose backendRefs order becomes a fallback "
                                   "chain.")),
      field("retry", retry.doc("Retry behaviour.")),
      field("ejection", ejection.doc("Passive ejection of failing backends.")),
  });
  type.schema = objectSchema(
      "FallbackRoutingPolicy turns an AIProviderRoute's backend list into an ordered failover "
      "chain.",
      spec.doc("Desired state of the policy."), policyStatus().doc("Attachment status."));
  return type;
}

ResourceType rateLimitPolicyType() {
  ResourceType type = newKind("RateLimitPolicy", "ratelimitpolicies", {"rlp"}, false);
  type.printer_columns = {
      column("Requests", "integer", ".spec.requests", "Requests allowed per window."),
      column("Window", "string", ".spec.window", "Counting window."),
      column("Scope", "string", ".spec.scope", "Counter dimension."),
  };
  auto spec = obj({
      field("requests", i32().required().doc("Requests allowed per window.")),
      field("window", duration().required().doc("Counting window as a Go duration (\"1m\").")),
      field("scope", rateLimitScope()),
  });
  type.schema = objectSchema(
      "RateLimitPolicy limits request rates on the routes that reference "
      "it.",
      spec.doc("Desired state of the policy."), std::nullopt);
  return type;
}

ResourceType loggingPolicyType() {
  ResourceType type = newKind("LoggingPolicy", "loggingpolicies", {"lp"}, false);
  auto spec = obj({
      field("captureRequest", boolean().doc("Record request bodies.")),
      field("captureResponse", boolean().doc("Record response bodies.")),
      field("redactHeaders", arr(str()).doc("Headers replaced before recording.")),
      field("sinkRef", str().doc("Where records are sent.")),
  });
  type.schema = objectSchema(
      "LoggingPolicy controls capture of traffic on the routes that "
      "reference it.",
      spec.doc("Desired state of the policy."), std::nullopt);
  return type;
}

ResourceType egressDenyPolicyType() {
  ResourceType type = newKind("EgressDenyPolicy", "egressdenypolicies", {"edp"}, true);
  auto deny_response = obj({
      field("statusCode", i32().defaultTo(403).doc("HTTP status returned to the caller.")),
      field("message", str().doc("Body returned to the caller.")),
  });
  auto spec = obj({
      field("targetRefs", arr(policyTargetReference())
                              .required()
                              .doc("Routes (or route sections) turned from allow into deny.")),
      field("denyResponse", deny_response.doc("Rejection returned to the caller.")),
  });
  type.schema = objectSchema("EgressDenyPolicy inverts the routes it targets from allow to deny.",
                             spec.doc("Desired state of the policy."),
                             policyStatus().doc("Attachment status."));
  return type;
}

}  // namespace clrk::api::v1alpha1
