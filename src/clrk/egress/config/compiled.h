// Internal model of a compiled snapshot (not part of the contract): per gateway, its listeners in
// evaluation order, each with the route rules attached to it, every matcher pre-parsed.
#pragma once

#include "clrk/egress/config/match.h"
#include "clrk/egress/config/snapshot.h"

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::egress::config {

struct DenyAction {
  std::string policy;  // "namespace/name" of the EgressDenyPolicy
  int status = 403;
  std::string message;
};

struct L4Match {
  std::vector<Cidr> cidrs;                           // any; empty = any address
  std::vector<HostPattern> hostnames;                // any; empty = any name
  std::vector<std::pair<uint16_t, uint16_t>> ports;  // inclusive ranges; empty = any port
  bool udp_only = false;                             // never matches a TCP connection
  std::optional<LabelSelector> source_agents;
};

struct L4Rule {
  std::string ns;                // namespace of the route (identity scoping)
  std::string route;             // "EgressL4Route ns/name"
  std::string rule;              // "EgressL4Route ns/name rule 0"
  std::vector<L4Match> matches;  // any; empty = everything
  std::optional<DenyAction> deny;
  std::vector<RateLimit> rate_limits;
  std::optional<CapturePolicy> capture;
};

struct AiMatch {
  bool any_provider = false;  // provider "custom": endpoint-only matching
  llm::Provider provider = llm::Provider::kNone;
  std::vector<std::string> models;     // globs; empty = any
  std::vector<std::string> endpoints;  // exact paths or globs; empty = any
};

struct McpMatch {
  std::vector<std::string> servers;  // globs over "host/path" (scheme stripped)
  std::vector<std::string> tools;    // globs
  std::vector<std::regex> tools_regex;
  std::vector<std::string> methods;  // exact JSON-RPC methods
};

struct ToolRateLimit {
  std::vector<std::string> tools;  // globs; with tools_regex empty too = every tool
  std::vector<std::regex> tools_regex;
  RateLimit limit;
};

struct L7Rule {
  bool mcp = false;
  std::string ns;
  std::string route;                   // "AIProviderRoute ns/name"
  std::string rule;                    // "AIProviderRoute ns/name rule 0"
  std::vector<HostPattern> hostnames;  // MCPRoute spec.hostnames; empty = any host
  std::vector<AiMatch> ai_matches;     // any; empty = everything
  std::vector<McpMatch> mcp_matches;   // any; empty = everything
  std::optional<DenyAction> deny;
  std::vector<Backend> backends;
  std::optional<FallbackPolicy> fallback;
  std::optional<Credential> credential;
  std::string credential_warning;
  HeaderMutation request_headers;
  HeaderMutation response_headers;
  std::vector<RateLimit> rate_limits;
  std::optional<TokenBudget> budget;
  std::optional<ToolPolicy> tool_policy;
  std::vector<std::regex> allowed_tools_regex;
  std::vector<std::regex> denied_tools_regex;
  std::vector<ToolRateLimit> tool_rate_limits;
  std::optional<CapturePolicy> capture;  // from LoggingPolicy refs
};

struct Listener {
  std::string name;
  std::string protocol;  // as written: TCP, TLS, HTTP, HTTPS
  std::optional<uint16_t> port;
  int priority = 0;  // among equally specific listeners, higher wins
  // What the listener does with each sniffed kind; nullopt = not accepted.
  std::optional<ConnectionDecision::Action> on_tls;
  std::optional<ConnectionDecision::Action> on_http;
  std::optional<ConnectionDecision::Action> on_tcp;
  std::vector<std::shared_ptr<const L4Rule>> l4_rules;
  std::vector<std::shared_ptr<const L7Rule>> l7_rules;
  std::optional<Credential> credential;  // CredentialInjectionPolicy on gateway + sectionName
  std::string credential_warning;
};

struct Gateway {
  std::string ns;
  std::string key;     // "ns/name"
  std::string object;  // "EgressGateway ns/name"
  bool allow_all = false;
  std::vector<Listener> listeners;
  GatewaySettings settings;
  CapturePolicy capture;  // defaults for every decision (max_bytes from otlp.captureBody)
  std::optional<Credential> credential;  // gateway-wide CredentialInjectionPolicy
  std::string credential_warning;
};

class CompiledSnapshot final : public Snapshot {
 public:
  CompiledSnapshot(uint64_t generation, std::vector<Gateway> gateways);

  uint64_t generation() const override { return generation_; }
  const GatewaySettings* gateway(std::string_view gateway) const override;
  ConnectionDecision decideConnection(const ConnectionInfo& info) const override;
  RequestDecision decideRequest(const RequestInfo& info) const override;

 private:
  const Gateway* findGateway(std::string_view name, const Identity* identity) const;

  uint64_t generation_;
  std::vector<Gateway> gateways_;
  std::map<std::string, size_t, std::less<>> by_name_;
  const Gateway* default_ = nullptr;
};

}  // namespace clrk::egress::config
