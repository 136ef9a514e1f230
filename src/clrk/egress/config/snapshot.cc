// Decisions of a compiled snapshot: listener selection, L4 rules, L7 rules, default policy.
#include "clrk/egress/config/compiled.h"

#include <algorithm>

namespace clrk::egress::config {
namespace {

using Action = ConnectionDecision::Action;

const std::map<std::string, std::string>& labelsOf(const Identity* identity) {
  static const std::map<std::string, std::string> kNone;
  return identity ? identity->agent_labels : kNone;
}

// Namespace whose routes and policies apply: the agent's, or the gateway's for an unknown client.
std::string_view scopeOf(const Identity* identity, const Gateway& gw) {
  if (identity && !identity->namespace_name.empty()) return identity->namespace_name;
  return gw.ns;
}

enum class Sniffed { kTls, kHttp, kTcp };

std::string_view sniffedName(Sniffed s) {
  switch (s) {
    case Sniffed::kTls:
      return "TLS";
    case Sniffed::kHttp:
      return "HTTP";
    case Sniffed::kTcp:
      break;
  }
  return "TCP";
}

std::optional<Action> actionFor(const Listener& l, Sniffed s) {
  switch (s) {
    case Sniffed::kTls:
      return l.on_tls;
    case Sniffed::kHttp:
      return l.on_http;
    case Sniffed::kTcp:
      break;
  }
  return l.on_tcp;
}

// Listeners accepting a kind on `port`, most specific first: when any listener names the port,
// only those; otherwise the port-less ones. Within a group, gateway order (priority, then spec
// order). Visits candidates until `visit` returns true; returns the listener it stopped at.
template <typename Accept, typename Visit>
const Listener* forCandidates(const Gateway& gw, uint16_t port, Accept accept, Visit visit) {
  bool exact = std::any_of(gw.listeners.begin(), gw.listeners.end(), [&](const Listener& l) {
    return l.port && *l.port == port && accept(l);
  });
  for (const Listener& l : gw.listeners) {
    bool in_group = exact ? (l.port && *l.port == port) : !l.port;
    if (in_group && accept(l) && visit(l)) return &l;
  }
  return nullptr;
}

template <typename Accept>
const Listener* firstCandidate(const Gateway& gw, uint16_t port, Accept accept) {
  return forCandidates(gw, port, accept, [](const Listener&) { return true; });
}

struct L4Target {
  std::string_view hostname;
  std::optional<IpAddress> ip;
  uint16_t port = 0;
  const std::map<std::string, std::string>* labels = nullptr;
};

bool matchesL4(const L4Match& m, const L4Target& t) {
  if (m.udp_only) return false;
  if (!m.cidrs.empty()) {
    if (!t.ip) return false;
    if (std::none_of(m.cidrs.begin(), m.cidrs.end(),
                     [&](const Cidr& c) { return c.contains(*t.ip); })) {
      return false;
    }
  }
  if (!m.hostnames.empty()) {
    if (t.hostname.empty()) return false;
    if (std::none_of(m.hostnames.begin(), m.hostnames.end(),
                     [&](const HostPattern& h) { return h.matches(t.hostname); })) {
      return false;
    }
  }
  if (!m.ports.empty() && std::none_of(m.ports.begin(), m.ports.end(), [&](const auto& r) {
        return t.port >= r.first && t.port <= r.second;
      })) {
    return false;
  }
  if (m.source_agents && !m.source_agents->matches(*t.labels)) return false;
  return true;
}

const L4Rule* firstL4(const Listener& l, std::string_view ns, const L4Target& t) {
  for (const auto& rule : l.l4_rules) {
    if (rule->ns != ns) continue;
    if (rule->matches.empty()) return rule.get();
    for (const L4Match& m : rule->matches) {
      if (matchesL4(m, t)) return rule.get();
    }
  }
  return nullptr;
}

std::string describeConnection(Sniffed s, const ConnectionInfo& info) {
  std::string out(sniffedName(s));
  out += " to ";
  out += info.hostname.empty() ? (info.dst_ip.empty() ? "?" : info.dst_ip) : info.hostname;
  out += ':';
  out += std::to_string(info.dst_port);
  if (!info.hostname.empty() && !info.dst_ip.empty()) out += " (" + info.dst_ip + ")";
  return out;
}

std::string listenerLabel(const Gateway& gw, const Listener& l) {
  return gw.object + " listener " + l.name;
}

bool endpointMatches(const std::string& endpoint, std::string_view path) {
  if (endpoint.find_first_of("*?[\\") == std::string::npos) return endpoint == path;
  return globMatch(endpoint, path);
}

bool anyGlob(const std::vector<std::string>& globs, std::string_view text) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& g) { return globMatch(g, text); });
}

bool anyRegex(const std::vector<std::regex>& res, std::string_view text) {
  return std::any_of(res.begin(), res.end(), [&](const std::regex& re) {
    return std::regex_match(text.begin(), text.end(), re);
  });
}

bool matchesAi(const AiMatch& m, const RequestInfo& info) {
  if (!m.any_provider && m.provider != info.provider) return false;
  if (!m.models.empty() && (info.model.empty() || !anyGlob(m.models, info.model))) return false;
  if (!m.endpoints.empty() &&
      std::none_of(m.endpoints.begin(), m.endpoints.end(),
                   [&](const std::string& e) { return endpointMatches(e, info.path); })) {
    return false;
  }
  return true;
}

bool matchesMcp(const McpMatch& m, const RequestInfo& info) {
  if (!m.methods.empty() &&
      std::find(m.methods.begin(), m.methods.end(), info.mcp_method) == m.methods.end()) {
    return false;
  }
  if (!m.tools.empty() || !m.tools_regex.empty()) {
    if (info.mcp_tool.empty()) return false;
    if (!anyGlob(m.tools, info.mcp_tool) && !anyRegex(m.tools_regex, info.mcp_tool)) return false;
  }
  if (!m.servers.empty()) {
    bool hit = false;
    for (const std::string& s : m.servers) {
      if (s.find('/') == std::string::npos) {
        hit = globMatch(s, info.host);
      } else {
        std::string full(info.host);
        full += info.path;
        hit = globMatch(s, full);
      }
      if (hit) break;
    }
    if (!hit) return false;
  }
  return true;
}

bool matchesL7(const L7Rule& r, const RequestInfo& info) {
  if (!r.hostnames.empty() &&
      std::none_of(r.hostnames.begin(), r.hostnames.end(),
                   [&](const HostPattern& h) { return h.matches(info.host); })) {
    return false;
  }
  if (r.mcp) {
    return r.mcp_matches.empty() ||
           std::any_of(r.mcp_matches.begin(), r.mcp_matches.end(),
                       [&](const McpMatch& m) { return matchesMcp(m, info); });
  }
  return r.ai_matches.empty() || std::any_of(r.ai_matches.begin(), r.ai_matches.end(),
                                             [&](const AiMatch& m) { return matchesAi(m, info); });
}

void mergeCapture(CapturePolicy& into, const std::optional<CapturePolicy>& from) {
  if (!from) return;
  into.request_body = into.request_body || from->request_body;
  into.response_body = into.response_body || from->response_body;
  into.redact_headers.insert(into.redact_headers.end(), from->redact_headers.begin(),
                             from->redact_headers.end());
}

// Route-level credential if any, else the listener's, else the gateway's.
void applyCredential(RequestDecision& d, const std::optional<Credential>& route_credential,
                     const std::string& route_warning, const Listener& l, const Gateway& gw) {
  if (route_credential) {
    d.credential = route_credential;
  } else if (l.credential) {
    d.credential = l.credential;
  } else if (gw.credential) {
    d.credential = gw.credential;
  }
  if (!route_warning.empty()) {
    d.credential_warning = route_warning;
  } else if (!d.credential) {
    d.credential_warning =
        !l.credential_warning.empty() ? l.credential_warning : gw.credential_warning;
  }
}

RequestDecision denyBy(const std::string& rule, const std::string& route, const DenyAction& deny) {
  RequestDecision d;
  d.action = RequestDecision::Action::kDeny;
  d.rule = rule;
  d.route = route;
  d.reason = rule + " is denied by EgressDenyPolicy " + deny.policy;
  d.deny_status = deny.status;
  d.deny_message = deny.message;
  return d;
}

std::optional<std::string> toolPolicyDenial(const L7Rule& r, std::string_view tool) {
  if (!r.tool_policy) return std::nullopt;
  const ToolPolicy& p = *r.tool_policy;
  std::string quoted = "tool \"" + std::string(tool) + "\"";
  if ((!p.allowed_tools.empty() || !r.allowed_tools_regex.empty()) &&
      !anyGlob(p.allowed_tools, tool) && !anyRegex(r.allowed_tools_regex, tool)) {
    return quoted + " is not in the allowedTools of " + r.rule + " toolPolicy";
  }
  if (anyGlob(p.denied_tools, tool) || anyRegex(r.denied_tools_regex, tool)) {
    return quoted + " is in the deniedTools of " + r.rule + " toolPolicy";
  }
  return std::nullopt;
}

RequestDecision allowL7(const L7Rule& r, const RequestInfo& info, const Listener& l,
                        const Gateway& gw) {
  if (r.deny) return denyBy(r.rule, r.route, *r.deny);
  bool tool_call = info.mcp_method == "tools/call" && !info.mcp_tool.empty();
  if (r.mcp && tool_call) {
    if (auto why = toolPolicyDenial(r, info.mcp_tool)) {
      RequestDecision d;
      d.rule = r.rule;
      d.route = r.route;
      d.reason = *why;
      return d;
    }
  }
  RequestDecision d;
  d.action = RequestDecision::Action::kAllow;
  d.rule = r.rule;
  d.route = r.route;
  d.backends = r.backends;
  d.fallback = r.fallback;
  applyCredential(d, r.credential, r.credential_warning, l, gw);
  d.request_headers = r.request_headers;
  d.response_headers = r.response_headers;
  d.rate_limits = r.rate_limits;
  if (r.mcp && tool_call) {
    for (const ToolRateLimit& t : r.tool_rate_limits) {
      bool all = t.tools.empty() && t.tools_regex.empty();
      if (all || anyGlob(t.tools, info.mcp_tool) || anyRegex(t.tools_regex, info.mcp_tool)) {
        d.rate_limits.push_back(t.limit);
      }
    }
  }
  d.budget = r.budget;
  d.tool_policy = r.tool_policy;
  d.capture = gw.capture;
  mergeCapture(d.capture, r.capture);
  return d;
}

RequestDecision allowL4(const L4Rule& r, const Listener& l, const Gateway& gw) {
  if (r.deny) return denyBy(r.rule, r.route, *r.deny);
  RequestDecision d;
  d.action = RequestDecision::Action::kAllow;
  d.rule = r.rule;
  d.route = r.route;
  applyCredential(d, std::nullopt, std::string(), l, gw);
  d.rate_limits = r.rate_limits;
  d.capture = gw.capture;
  mergeCapture(d.capture, r.capture);
  return d;
}

}  // namespace

CompiledSnapshot::CompiledSnapshot(uint64_t generation, std::vector<Gateway> gateways)
    : generation_(generation), gateways_(std::move(gateways)) {
  for (size_t i = 0; i < gateways_.size(); ++i) by_name_.emplace(gateways_[i].key, i);
  if (gateways_.size() == 1) {
    default_ = &gateways_[0];
  } else if (auto it = by_name_.find("default/default"); it != by_name_.end()) {
    default_ = &gateways_[it->second];
  }
}

const Gateway* CompiledSnapshot::findGateway(std::string_view name,
                                             const Identity* identity) const {
  if (name.empty() && identity) name = identity->gateway;
  if (name.empty()) return default_;
  if (auto it = by_name_.find(name); it != by_name_.end()) return &gateways_[it->second];
  if (name.find('/') == std::string_view::npos) {  // a bare name: the agent's namespace
    std::string ns =
        identity && !identity->namespace_name.empty() ? identity->namespace_name : "default";
    if (auto it = by_name_.find(ns + "/" + std::string(name)); it != by_name_.end()) {
      return &gateways_[it->second];
    }
  }
  return nullptr;
}

const GatewaySettings* CompiledSnapshot::gateway(std::string_view gateway) const {
  const Gateway* gw = findGateway(gateway, nullptr);
  return gw ? &gw->settings : nullptr;
}

ConnectionDecision CompiledSnapshot::decideConnection(const ConnectionInfo& info) const {
  ConnectionDecision d;
  const Gateway* gw = findGateway(info.gateway, info.identity);
  if (!gw) {
    d.reason =
        info.gateway.empty() && (!info.identity || info.identity->gateway.empty())
            ? "no default EgressGateway (accepted gateways: " + std::to_string(gateways_.size()) +
                  "; with several, name one default/default)"
            : "EgressGateway \"" +
                  std::string(info.gateway.empty() ? info.identity->gateway : info.gateway) +
                  "\" is not configured or not accepted";
    return d;
  }
  Sniffed s = info.is_tls ? Sniffed::kTls : (info.is_http ? Sniffed::kHttp : Sniffed::kTcp);
  auto accepts = [&](const Listener& l) { return actionFor(l, s).has_value(); };
  const Listener* top = firstCandidate(*gw, info.dst_port, accepts);
  if (!top) {
    d.rule = gw->object;
    d.reason = "no listener for " + std::string(sniffedName(s)) + " on port " +
               std::to_string(info.dst_port) + " (" + describeConnection(s, info) + ")";
    return d;
  }
  std::string_view ns = scopeOf(info.identity, *gw);
  L4Target target{info.hostname, parseIp(info.dst_ip), info.dst_port, &labelsOf(info.identity)};

  // An explicit L4 route on a passthrough listener beats generic termination on the same ports.
  const L4Rule* matched = nullptr;
  const Listener* through = forCandidates(*gw, info.dst_port, accepts, [&](const Listener& l) {
    if (*actionFor(l, s) != Action::kPassthrough) return false;
    matched = firstL4(l, ns, target);
    return matched != nullptr;
  });
  if (through) {
    d.listener = through->name;
    d.rule = matched->rule;
    if (matched->deny) {
      d.reason = "denied by EgressDenyPolicy " + matched->deny->policy + ": " +
                 describeConnection(s, info);
      return d;
    }
    d.action = Action::kPassthrough;
    d.reason = "passthrough: " + describeConnection(s, info);
    return d;
  }

  const Listener& l = *top;
  Action action = *actionFor(l, s);
  d.listener = l.name;
  if (action == Action::kPassthrough) {
    d.rule = gw->object + " defaultPolicy " + (gw->allow_all ? "allow-all" : "deny-all");
    if (gw->allow_all) {
      d.action = Action::kPassthrough;
      d.reason = "no EgressL4Route matches " + describeConnection(s, info) +
                 "; the default policy allows it";
    } else {
      d.reason = d.rule + ": no EgressL4Route matches " + describeConnection(s, info) +
                 " on listener " + l.name;
    }
    return d;
  }
  // Terminating / inspecting listener: requests are decided one by one, except that an L4 route
  // matching the destination and turned into a deny closes the connection right away.
  if (const L4Rule* rule = firstL4(l, ns, target)) {
    d.rule = rule->rule;
    if (rule->deny) {
      d.reason =
          "denied by EgressDenyPolicy " + rule->deny->policy + ": " + describeConnection(s, info);
      return d;
    }
  } else {
    d.rule = listenerLabel(*gw, l);
  }
  if (action == Action::kTerminate && info.hostname.empty() && info.dst_ip.empty()) {
    d.reason =
        "TLS without SNI and without a destination address: no name to mint a "
        "certificate for";
    return d;
  }
  d.action = action;
  d.reason = std::string(action == Action::kTerminate ? "terminated" : "inspected") +
             " for per-request policy: " + describeConnection(s, info);
  return d;
}

RequestDecision CompiledSnapshot::decideRequest(const RequestInfo& info) const {
  RequestDecision d;
  const Gateway* gw = findGateway(info.gateway, info.identity);
  if (!gw) {
    d.reason = "no EgressGateway for this request (gateway \"" + info.gateway +
               "\" is not configured or not accepted)";
    return d;
  }
  Action wanted = info.tls ? Action::kTerminate : Action::kInspectHttp;
  const Listener* found = firstCandidate(*gw, info.port, [&](const Listener& l) {
    const auto& a = info.tls ? l.on_tls : l.on_http;
    return a && *a == wanted;
  });
  if (!found) {
    d.rule = gw->object;
    d.reason = "no listener " + std::string(info.tls ? "terminating TLS" : "for HTTP") +
               " on port " + std::to_string(info.port);
    return d;
  }
  const Listener& l = *found;
  std::string_view ns = scopeOf(info.identity, *gw);
  for (const auto& rule : l.l7_rules) {
    if (rule->ns == ns && matchesL7(*rule, info)) return allowL7(*rule, info, l, *gw);
  }
  L4Target target{info.host, parseIp(info.host), info.port, &labelsOf(info.identity)};
  if (const L4Rule* rule = firstL4(l, ns, target)) return allowL4(*rule, l, *gw);

  d.rule = gw->object + " defaultPolicy " + (gw->allow_all ? "allow-all" : "deny-all");
  if (gw->allow_all) {
    d.action = RequestDecision::Action::kAllow;
    d.capture = gw->capture;
    return d;
  }
  d.reason = d.rule + ": no route matches " + std::string(info.method) + " " +
             std::string(info.host) + std::string(info.path);
  return d;
}

}  // namespace clrk::egress::config
