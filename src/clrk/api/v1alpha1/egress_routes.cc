// EgressL4Route and MCPRoute: routes attached to EgressGateway listeners, for raw L4 traffic and
// for Model Context Protocol traffic.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

SchemaBuilder l4Rule() {
  auto port_match = obj({
      field("port", portNumber().doc("A single destination port.")),
      field("startPort", portNumber().doc("First port of an inclusive range (with endPort).")),
      field("endPort", portNumber().doc("Last port of an inclusive range (with startPort).")),
  });
  auto match = obj({
      field("destinationCIDRs", arr(str().doc("An IPv4 or IPv6 CIDR; single IPs as /32 or /128."))
                                    .listType("set")
                                    .doc("Destination IP ranges matched.")),
      field("destinationHostnames", arr(hostname())
                                        .listType("set")
                                        .doc("Destination hostnames matched, exact or \"*.\" "
                                             "wildcard (SNI or DNS-bound name).")),
      field("ports", arr(port_match).doc("Destination ports or port ranges matched.")),
      field("protocol",
            str().oneOf({"TCP", "UDP"}).doc("TCP or UDP; inherited from the listener when unset.")),
      field("sourceAgents", labelSelector().doc("Agents whose traffic the match applies to.")),
  });
  auto filter = obj({
      field("type", str().required().oneOf({"ExtensionRef"}).doc("Filter type: ExtensionRef.")),
      field("extensionRef", typedLocalObjectReference().doc(
                                "Policy object applied (LoggingPolicy, RateLimitPolicy, ...).")),
  });
  return obj({
      field("matches", arr(match).doc("Criteria; any match selects the rule.")),
      field("filters", arr(filter).doc("Policies applied to matched traffic.")),
      field("backendRefs",
            arr(backendRef())
                .doc("Explicit proxies to route through; empty passes through to the "
                     "original destination.")),
  });
}

SchemaBuilder toolPolicy() {
  auto rate_limit = obj({
      field("tools", arr(str()).doc("Tool globs the limit covers; empty means all matched.")),
      field("toolsRegex", arr(str()).doc("Tool regular expressions the limit covers.")),
      field("requests", i32().required().doc("Invocations allowed per window.")),
      field("window", duration().required().doc("Counting window as a Go duration (\"1m\").")),
      field("scope", str()
                         .oneOf({"PerAgent", "PerExecution", "PerRoute"})
                         .defaultTo("PerAgent")
                         .doc("Counter dimension: PerAgent, PerExecution or PerRoute.")),
  });
  return obj({
      field("allowedTools", arr(str()).doc("Tool globs allowed; when set, others are denied.")),
      field("allowedToolsRegex", arr(str()).doc("Tool regular expressions allowed.")),
      field("deniedTools", arr(str()).doc("Tool globs denied, checked after the allow lists.")),
      field("deniedToolsRegex", arr(str()).doc("Tool regular expressions denied.")),
      field("requireConfirmation", arr(str()).doc("Tools needing human confirmation.")),
      field("maxCallsPerExecution", i32().doc("Cap on tool calls per agent run.")),
      field("rateLimits", arr(rate_limit).doc("Per-tool rate limits.")),
  });
}

SchemaBuilder mcpRule() {
  auto match = obj({
      field("servers", arr(str()).doc("MCP server URL patterns matched.")),
      field("tools", arr(str()).doc("Tool name globs matched (\"github_*\").")),
      field("toolsRegex", arr(str()).doc("Tool name regular expressions matched.")),
      field("resources", arr(str()).doc("MCP resource URI patterns matched.")),
      field("methods", arr(str()).doc("MCP JSON-RPC methods matched.")),
  });
  auto filter = obj({
      field("type", str()
                        .required()
                        .oneOf({"ToolPolicy", "ExtensionRef", "RequestHeaderModifier",
                                "ResponseHeaderModifier"})
                        .doc("Filter type: ToolPolicy, ExtensionRef, RequestHeaderModifier or "
                             "ResponseHeaderModifier.")),
      field("toolPolicy", toolPolicy().doc("Inline tool-call policy.")),
      field("extensionRef", typedLocalObjectReference().doc("Cross-cutting policy applied.")),
      field("requestHeaderModifier",
            headerModifier("request").doc("Header edits applied to the request before it is "
                                          "sent upstream (type RequestHeaderModifier).")),
      field("responseHeaderModifier", headerModifier("response")
                                          .doc("Header edits applied to the response before it "
                                               "reaches the agent (type ResponseHeaderModifier).")),
  });
  return obj({
      field("matches", arr(match).doc("Criteria; any match selects the rule.")),
      field("filters", arr(filter).doc("Policies applied to matched MCP traffic.")),
      field("backendRefs",
            arr(backendRef()).doc("Explicit proxies to route through; empty passes through.")),
  });
}

}  // namespace

ResourceType egressL4RouteType() {
  ResourceType type = newKind("EgressL4Route", "egressl4routes", {"el4r"}, true);
  auto spec = obj({
      field("parentRefs", arr(parentReference())
                              .required()
                              .doc("EgressGateway TCP or UDP listeners the route attaches to.")),
      field("rules", arr(l4Rule()).required().doc("Routing rules.")),
  });
  type.schema = objectSchema(
      "EgressL4Route matches raw L4 egress traffic by destination CIDR, hostname, port and "
      "protocol.",
      spec.doc("Desired state of the EgressL4Route."),
      routeStatus().doc("Observed state of the EgressL4Route."));
  return type;
}

ResourceType mcpRouteType() {
  ResourceType type = newKind("MCPRoute", "mcproutes", {"mcpr"}, true);
  auto spec = obj({
      field(
          "parentRefs",
          arr(parentReference()).required().doc("EgressGateway listeners the route attaches to.")),
      field("hostnames", arr(hostname()).doc("MCP server hosts (Host header) the route covers.")),
      field("rules", arr(mcpRule()).required().doc("Routing and policy rules.")),
  });
  type.schema = objectSchema(
      "MCPRoute routes and applies tool-level policy to outbound Model Context Protocol traffic.",
      spec.doc("Desired state of the MCPRoute."),
      routeStatus().doc("Observed state of the MCPRoute."));
  return type;
}

}  // namespace clrk::api::v1alpha1
