// The egress configuration compiled from API objects (EgressGateway, EgressL4Route, MCPRoute,
// AIProviderRoute, Backend, the policy kinds and the Secrets they name) into an immutable snapshot
// the data plane consults per connection and per request. Snapshots are built off the hot path and
// swapped atomically (SnapshotHolder); a request keeps the snapshot it started with.
#pragma once

#include "clrk/egress/identity.h"
#include "clrk/egress/llm/provider.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::egress::config {

// Semantics compile() implements (decisions are evaluated against the immutable snapshot):
//
// Gateways and listeners. A connection is classified by what was sniffed: TLS (ClientHello), HTTP
//   (plaintext request line) or opaque TCP. Candidate listeners are those accepting that kind on
//   the destination port; listeners naming the port win over port-less ones. What a listener does:
//     TLS + tls.mode Terminate   TLS -> kTerminate                              (priority 5)
//     HTTPS                      TLS -> kTerminate, HTTP -> kInspectHttp        (priority 4)
//     HTTP                       HTTP -> kInspectHttp; with tls, TLS -> its mode (priority 3)
//     TLS + Passthrough          TLS -> kPassthrough under L4 rules             (priority 2)
//     TCP                        anything -> kPassthrough under L4 rules        (priority 1)
//     UDP                        nothing (routes may attach; this data plane is TCP only)
//   Among equally specific candidates, a passthrough listener with a matching EgressL4Route rule
//   wins (an explicit L4 route beats generic termination); otherwise the highest priority does.
//   No candidate -> kDeny, reason "no listener for TLS on port 443 (...)".
//   A terminating listener terminates every connection with a usable name or address, even under
//   deny-all, so that a denied request gets a readable 403 naming the rule instead of a TLS reset;
//   only an EgressL4Route matching the destination and targeted by an EgressDenyPolicy closes it
//   at L4. A terminating listener without tls.caCertRef uses the data plane's default CA
//   (GatewaySettings::ca_cert_pem is then empty). One CA per gateway: listeners naming different
//   CA Secrets reject the gateway.
// Attachment. Routes attach through spec.parentRefs (group clrk.apoxy.dev or empty, kind
//   EgressGateway or empty, namespace defaults to the route's, sectionName = listener name, port
//   = listener port). Without sectionName a route attaches to every listener that allows it:
//   allowedRoutes.namespaces.from (Same by default, All, Selector over Namespace objects' labels)
//   and allowedRoutes.kinds, or by default: EgressL4Route anywhere, AIProviderRoute/MCPRoute only
//   on listeners that terminate TLS or inspect HTTP. Any parentRef that resolves to no listener
//   rejects the route.
// Identity scoping. A route (and the policies on it) applies only to agents in the route's
//   namespace (Identity::namespace_name); an unknown client counts as the gateway's namespace.
// Connection decisions (passthrough listeners). Routes in namespace/name order, rules in order:
//   the first EgressL4Route rule whose match holds decides; within one match every given field
//   must hold (destinationCIDRs vs dst_ip, destinationHostnames exact or "*." = exactly one extra
//   label vs hostname, ports / ranges, protocol UDP never matches, sourceAgents vs agent labels),
//   and a rule without matches matches everything. No rule: defaultPolicy allow-all passes
//   through, deny-all denies ("EgressGateway ns/gw defaultPolicy deny-all").
// Request decisions (terminated/inspected). The listener is chosen as for connections among the
//   terminating (tls) or HTTP-inspecting listeners. Then, first match wins: AIProviderRoute and
//   MCPRoute rules (routes in namespace/name order, AIProviderRoute first on equal names, rules in
//   order); then EgressL4Route rules attached to that listener matched against the Host (CIDRs
//   only when the Host is an IP literal), which allow the whole host; then defaultPolicy.
//   AIProviderRoute match: provider equal to RequestInfo::provider ("custom" matches any provider,
//   including none), models globs (an unknown model never matches a rule that lists models),
//   endpoints exact paths or globs. MCPRoute: spec.hostnames vs Host, methods exact, tools globs
//   or toolsRegex (ECMAScript), servers globs over "host" or "host/path"; resources are not
//   matched (RequestInfo has no resource URI). A tools/call whose tool the rule's ToolPolicy does
//   not allow is denied here; max_calls_per_execution is left to the data plane to count;
//   requireConfirmation is not enforced (there is no confirmation channel yet).
//   Globs: `*` any run (including `/`), `?`, `[a-z]`, `[!a-z]`, backslash escapes.
// Deny policies. EgressDenyPolicy targets whole routes (AIProviderRoute, MCPRoute, EgressL4Route;
//   sectionName is refused): a match on such a route is denied with denyResponse.statusCode
//   (400-599, default 403) and message; rule names the route rule, reason the policy.
// Backends and fallback. backendRefs must be clrk.apoxy.dev Backends in the route's namespace;
//   weight defaults to 1 (0 = never picked by weight). A FallbackRoutingPolicy on the route
//   turns each rule's list into a chain: num_retries defaults to backends-1 capped at 5, codes to
//   429 and 503, maxEjectionTime to 300s. InferencePool Backends are refused (Unsupported).
// Credentials. CredentialInjectionPolicy targets: AIProviderRoute (whole route), AIProviderRoute +
//   sectionName = a backendRef name (Backend::credential when that backend is used), MCPRoute,
//   EgressGateway (+ optional sectionName = listener) as a catch-all. Precedence: the chosen
//   Backend's own > route > listener > gateway. The gateway/listener catch-all applies to requests
//   that matched a route on it, never to traffic passed only by defaultPolicy allow-all (that
//   would hand the key to any host). The Secret must be in the policy's namespace; `data` is
//   base64-decoded, `stringData` wins; the value is trimmed of surrounding whitespace; an
//   Authorization header value without a scheme becomes "Bearer <value>". QueryParam values are
//   raw (the data plane percent-encodes). ProviderAuth is refused (Unsupported). A policy whose
//   Secret or key is missing is not accepted (InvalidSecretRef); the requests it covers are still
//   sent without that credential and carry RequestDecision::credential_warning. Two policies on
//   the same slot: the first by namespace/name wins, the other is Conflicted.
// Filters. ExtensionRef to clrk.apoxy.dev RateLimitPolicy -> rate_limits, LoggingPolicy ->
//   capture (OR-ed, redactions lower-cased, max_bytes from the gateway's otlp.captureBody);
//   other kinds are refused. LoggingPolicy sinkRef is ignored (records go to the gateway's sinks).
//   TokenBudget -> budget (key budgetRef or "ns/route#rule"); one per rule. RequestHeaderModifier /
//   ResponseHeaderModifier -> request_headers / response_headers. ToolPolicy rateLimits apply to
//   the tools they name, key "ns/route#rule/toolN".
// Statuses. compile() never throws. Each egress-kind object gets an ObjectStatus; a bad object
//   (dangling ref, missing Secret, bad glob/CIDR/regex, conflict, duplicate) is left out entirely
//   with accepted=false and a message naming the field path; a policy or route referring to an
//   object that is not accepted is itself not accepted (RefNotAccepted). Secrets and Namespaces
//   get no status; other kinds are ignored.

using Duration = std::chrono::milliseconds;

// Header edits applied in order remove, set, add (Gateway API HTTPHeaderFilter semantics).
struct HeaderMutation {
  std::vector<std::pair<std::string, std::string>> set;  // replace (or add) the header
  std::vector<std::pair<std::string, std::string>> add;  // append another value
  std::vector<std::string> remove;                       // header names, case-insensitive
  bool empty() const { return set.empty() && add.empty() && remove.empty(); }
};

// A credential to inject. `value` is secret: it must never be logged, recorded or echoed.
struct Credential {
  enum class Target { kHeader, kQueryParam };
  Target target = Target::kHeader;
  std::string name;    // header name (canonical case as written) or query parameter name
  std::string value;   // the full header value as sent, e.g. "Bearer sk-..." for Authorization
  std::string policy;  // "namespace/name" of the CredentialInjectionPolicy (safe to record)
};

struct ModelRewrite {
  std::string from_glob;
  std::string to;
};

// One upstream a request may be sent to instead of its original destination.
struct Backend {
  std::string name;  // "namespace/name" of the Backend object
  llm::Provider schema = llm::Provider::kNone;
  std::string host;
  uint16_t port = 443;
  bool tls = true;  // true unless the Backend names port 80 (plain HTTP) explicitly
  uint32_t weight = 1;
  std::vector<ModelRewrite> model_rewrites;
  bool ensure_stream_usage = false;
  std::optional<Credential> credential;  // a CredentialInjectionPolicy scoped to this backend
};

struct FallbackPolicy {
  int num_retries = 0;
  std::vector<int> retriable_status_codes{429, 503};  // plus connect failures, always retried
  std::optional<Duration> per_try_timeout;
  Duration max_ejection_time{300000};
  std::string policy;  // "namespace/name"
};

enum class RateLimitScope { kPerAgent, kPerExecution, kPerRoute };

struct RateLimit {
  std::string policy;  // "namespace/name" of the RateLimitPolicy; also the counter's key prefix
  int32_t requests = 0;
  Duration window{60000};
  RateLimitScope scope = RateLimitScope::kPerAgent;
};

struct TokenBudget {
  std::string key;  // counter key: budgetRef when set, else the route "namespace/name#rule"
  int64_t max_tokens_per_execution = 0;       // 0 = unlimited
  int64_t max_tokens_per_day = 0;             // 0 = unlimited
  int64_t max_output_tokens_per_request = 0;  // 0 = unlimited
};

struct CapturePolicy {
  bool request_body = false;
  bool response_body = false;
  int32_t max_bytes = 65536;
  std::vector<std::string> redact_headers;  // lower-case
};

// MCP tool policy from an MCPRoute ToolPolicy filter.
struct ToolPolicy {
  std::vector<std::string> allowed_tools;  // globs; empty = all allowed
  std::vector<std::string> denied_tools;   // globs
  int32_t max_calls_per_execution = 0;     // 0 = unlimited
};

// Where and how a connection is handled once it is accepted.
struct ConnectionInfo {
  std::string gateway;                 // Identity::gateway; "" = the snapshot's default gateway
  const Identity* identity = nullptr;  // may be null (unknown client)
  std::string dst_ip;  // original destination IP as text ("" for explicit-proxy CONNECT
                       // to a name)
  uint16_t dst_port = 0;
  std::string hostname;  // SNI, DNS-remembered name or CONNECT host; lower case; may be ""
  bool is_tls = false;   // a TLS ClientHello was sniffed
  bool is_http = false;  // plaintext HTTP/1.x request line sniffed
};

struct ConnectionDecision {
  enum class Action {
    kDeny,         // close the connection (after recording it)
    kPassthrough,  // splice bytes to the original destination (L4 record only)
    kTerminate,    // TLS MITM, then HTTP inspection (decideRequest per request)
    kInspectHttp,  // plaintext HTTP inspection (decideRequest per request)
  };
  Action action = Action::kDeny;
  std::string rule;      // what decided, human-readable: `EgressL4Route default/db rule 0`,
                         // `EgressGateway default/gw defaultPolicy deny-all`, ...
  std::string reason;    // why, for records and errors, e.g. "no listener for TLS on port 443"
  std::string listener;  // gateway listener name that matched ("" if none)
};

// What the data plane knows about an HTTP request when it asks for a decision.
struct RequestInfo {
  std::string gateway;
  const Identity* identity = nullptr;
  std::string_view host;  // Host/:authority without port, lower case
  uint16_t port = 0;
  bool tls = false;
  std::string_view method;
  std::string_view path;                          // path without query string
  llm::Provider provider = llm::Provider::kNone;  // detected from host and path
  std::string_view model;                         // request model ("" if none/unknown)
  std::string_view mcp_method;                    // JSON-RPC method for MCP requests
  std::string_view mcp_tool;                      // tools/call tool name
};

struct RequestDecision {
  enum class Action { kAllow, kDeny };
  Action action = Action::kDeny;
  std::string rule;    // e.g. `AIProviderRoute default/openai rule 0`
  std::string route;   // "Kind namespace/name" of the matched route, "" if none
  std::string reason;  // for deny: human-readable cause
  int deny_status = 403;
  std::string deny_message;  // EgressDenyPolicy denyResponse.message, if set

  // Empty: send to the original destination. Otherwise candidates in order; with `fallback` set
  // the order is the fallback chain, else one backend is picked by weight.
  std::vector<Backend> backends;
  std::optional<FallbackPolicy> fallback;

  std::optional<Credential> credential;  // route- or gateway-wide; a Backend's own wins
  // Set when a CredentialInjectionPolicy covering this request is not accepted (missing Secret or
  // key, ...): the request is still sent, without that credential, and the data plane records
  // this text with it so the failure is visible per call (it never contains the secret).
  std::string credential_warning;
  HeaderMutation request_headers;
  HeaderMutation response_headers;
  std::vector<RateLimit> rate_limits;
  std::optional<TokenBudget> budget;
  std::optional<ToolPolicy> tool_policy;
  CapturePolicy capture;
};

struct OtlpSettings {
  std::string endpoint;  // OTLP/HTTP base URL; "" = none
  std::vector<std::pair<std::string, std::string>> headers;
};

// Per-gateway settings the data plane needs outside of decisions.
struct GatewaySettings {
  std::string name;             // "namespace/name"
  std::string ca_cert_pem;      // MITM CA (from listener tls.caCertRef Secret keys tls.crt/ca.crt)
  std::string ca_key_pem;       // its private key (tls.key); never leaves the data plane
  std::string extra_trust_pem;  // upstreamTLS.additionalTrustBundleSecretRef, concatenated PEMs
  std::vector<std::pair<std::string, std::vector<std::string>>> host_aliases;  // ip -> names
  Duration request_timeout{300000};
  OtlpSettings otlp;
};

class Snapshot {
 public:
  virtual ~Snapshot() = default;
  // Monotonic per compile; for logs and tests.
  virtual uint64_t generation() const = 0;
  // Gateways compiled into this snapshot. nullptr when `gateway` is unknown; "" picks the default
  // gateway (the only one, or the one named "default" in the "default" namespace).
  virtual const GatewaySettings* gateway(std::string_view gateway) const = 0;
  virtual ConnectionDecision decideConnection(const ConnectionInfo& info) const = 0;
  virtual RequestDecision decideRequest(const RequestInfo& info) const = 0;
};

// Outcome of compiling one API object, for its status conditions.
struct ObjectStatus {
  std::string kind;
  std::string namespace_name;
  std::string name;
  bool accepted = true;
  std::string reason;   // CamelCase, e.g. "Accepted", "InvalidSecretRef", "BackendNotFound"
  std::string message;  // human-readable, names the field, e.g. "spec.secretRef: Secret
                        // default/openai not found"
  // EgressGateway only (accepted): each listener in spec order with the number of accepted
  // routes attached to it, for status.listeners[].attachedRoutes.
  struct Listener {
    std::string name;
    int32_t attached_routes = 0;
  };
  std::vector<Listener> listeners;
};

struct CompileResult {
  std::shared_ptr<const Snapshot> snapshot;  // always set; objects not accepted are left out
  std::vector<ObjectStatus> statuses;        // one per clrk object given
};

// Compiles every object given (any mix of the egress kinds, core/v1 Secrets; other kinds are
// ignored). Objects must already be schema-valid and defaulted (api::validateObject). A bad object
// is left out entirely and reported with accepted=false; everything else still compiles.
// Never throws; should compiling fail as a whole (memory exhaustion), the result is an empty
// snapshot (everything denied) with one ObjectStatus of reason "Internal" and empty kind.
CompileResult compile(const std::vector<nlohmann::json>& objects, uint64_t generation);

// Holds the current snapshot; readers get a shared_ptr they keep for the request's lifetime.
class SnapshotHolder {
 public:
  std::shared_ptr<const Snapshot> current() const { return current_.load(); }
  void swap(std::shared_ptr<const Snapshot> next) { current_.store(std::move(next)); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> current_;
};

}  // namespace clrk::egress::config
