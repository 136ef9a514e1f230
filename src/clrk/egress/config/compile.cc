// compile(): API objects -> CompiledSnapshot. Order: Secrets and Namespaces are indexed; then the
// standalone kinds (Backend, RateLimitPolicy, LoggingPolicy), EgressGateways, the routes (which
// resolve parents, Backends and filter refs), and last the policies that target routes and
// gateways. Each object is compiled inside its own try block: a Reject (or any exception from a
// malformed JSON value) marks that object not accepted and leaves it out; nothing escapes.
#include "clrk/base/ascii.h"
#include "clrk/base/time.h"
#include "clrk/egress/config/compiled.h"

#include <algorithm>
#include <set>

namespace clrk::egress::config {
namespace {

using Json = nlohmann::json;
using Action = ConnectionDecision::Action;

constexpr std::string_view kGroup = "clrk.apoxy.dev";

struct Reject {
  std::string reason;
  std::string message;
};

[[noreturn]] void reject(std::string reason, std::string message) {
  throw Reject{std::move(reason), std::move(message)};
}

// ---- JSON access (objects are schema-valid, but nothing here assumes it) -------------------

const Json* get(const Json& j, const char* key) {
  if (!j.is_object()) return nullptr;
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::string getString(const Json& j, const char* key, std::string fallback = "") {
  const Json* v = get(j, key);
  return v && v->is_string() ? v->get<std::string>() : fallback;
}

std::optional<int64_t> getInt(const Json& j, const char* key) {
  const Json* v = get(j, key);
  if (v && v->is_number_integer()) return v->get<int64_t>();
  return std::nullopt;
}

bool getBool(const Json& j, const char* key) {
  const Json* v = get(j, key);
  return v && v->is_boolean() && v->get<bool>();
}

const Json& getArray(const Json& j, const char* key) {
  static const Json kEmpty = Json::array();
  const Json* v = get(j, key);
  return v && v->is_array() ? *v : kEmpty;
}

std::vector<std::string> getStrings(const Json& j, const char* key) {
  std::vector<std::string> out;
  for (const Json& v : getArray(j, key)) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::string at(const std::string& path, size_t i) { return path + "[" + std::to_string(i) + "]"; }

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// ---- names -----------------------------------------------------------------------------------

llm::Provider providerByName(std::string_view name) {
  static const std::pair<std::string_view, llm::Provider> kNames[] = {
      {"openai", llm::Provider::kOpenAI},
      {"anthropic", llm::Provider::kAnthropic},
      {"google", llm::Provider::kGemini},
      {"gemini", llm::Provider::kGemini},
      {"azure-openai", llm::Provider::kAzureOpenAI},
      {"bedrock", llm::Provider::kBedrock},
      {"custom", llm::Provider::kCustom},
  };
  for (const auto& [n, p] : kNames) {
    if (n == name) return p;
  }
  return llm::Provider::kNone;
}

constexpr const char* kProviderNames = "openai, anthropic, google, azure-openai, bedrock, custom";

struct Meta {
  size_t index = 0;  // in the input
  std::string kind;
  std::string ns;
  std::string name;
  const Json* json = nullptr;
  std::string key() const { return ns + "/" + name; }
  std::string label() const { return kind + " " + ns + "/" + name; }
  const Json& spec() const {
    static const Json kEmpty = Json::object();
    const Json* s = get(*json, "spec");
    return s ? *s : kEmpty;
  }
};

// ---- builds ------------------------------------------------------------------------------------

struct CredSlot {
  std::optional<Credential> credential;
  std::string warning;
  std::string owner;  // "namespace/name" of the policy that claimed it
};

struct ListenerRules {
  std::string from = "Same";  // allowedRoutes.namespaces.from
  std::optional<LabelSelector> selector;
  std::vector<std::string> kinds;  // allowedRoutes.kinds; empty = by protocol
};

struct GatewayBuild {
  Meta meta;
  Gateway gw;
  std::vector<ListenerRules> allowed;  // parallel to gw.listeners (spec order)
  CredSlot credential;
  std::vector<CredSlot> listener_credentials;
};

struct FallbackSpec {
  std::string policy;
  std::optional<int> num_retries;
  std::vector<int> codes;
  std::optional<Duration> per_try_timeout;
  std::optional<Duration> max_ejection;
};

struct RouteBuild {
  Meta meta;
  std::vector<std::pair<std::string, size_t>> attachments;  // gateway key, listener index
  std::vector<std::shared_ptr<L4Rule>> l4;
  std::vector<std::shared_ptr<L7Rule>> l7;
  std::vector<std::vector<std::string>> backend_ref_names;  // per l7 rule
  CredSlot credential;
  std::map<std::string, CredSlot> backend_credentials;  // by backendRef name
  std::optional<DenyAction> deny;
  std::optional<FallbackSpec> fallback;
};

struct SecretData {
  std::map<std::string, std::string> values;
  std::set<std::string> bad_keys;  // not valid base64
};

struct Ctx {
  std::vector<ObjectStatus> statuses;
  std::vector<std::optional<size_t>> status_of;  // input index -> statuses index
  std::map<std::string, SecretData> secrets;
  std::map<std::string, std::map<std::string, std::string>> namespace_labels;
  std::map<std::string, Backend> backends;
  std::map<std::string, RateLimit> rate_limits;
  std::map<std::string, CapturePolicy> logging;
  std::map<std::string, GatewayBuild> gateways;
  std::map<std::string, RouteBuild> routes;  // "Kind ns/name"
  std::set<std::string> rejected;            // "Kind ns/name" of objects not accepted

  ObjectStatus& status(const Meta& m) { return statuses[*status_of[m.index]]; }
};

void accept(Ctx& ctx, const Meta& m, std::string message) {
  ObjectStatus& s = ctx.status(m);
  s.accepted = true;
  s.reason = "Accepted";
  s.message = std::move(message);
}

void fail(Ctx& ctx, const Meta& m, std::string reason, std::string message) {
  ObjectStatus& s = ctx.status(m);
  s.accepted = false;
  s.reason = std::move(reason);
  s.message = std::move(message);
  ctx.rejected.insert(m.label());
}

// Runs `body` for one object, turning any failure into its status.
template <typename Body>
void guarded(Ctx& ctx, const Meta& m, Body body) {
  try {
    body();
  } catch (const Reject& r) {
    fail(ctx, m, r.reason, r.message);
  } catch (const std::exception& e) {
    fail(ctx, m, "Invalid", std::string("malformed object: ") + e.what());
  }
}

// Message for a reference to `label` that is not usable.
[[noreturn]] void missing(const Ctx& ctx, const std::string& path, const std::string& label,
                          const std::string& not_found_reason) {
  if (ctx.rejected.count(label)) {
    reject("RefNotAccepted", path + ": " + label + " is not accepted (see its status)");
  }
  reject(not_found_reason, path + ": " + label + " not found");
}

// ---- Secrets
// -------------------------------------------------------------------------------------

// Validates a SecretObjectReference and returns "ns/name". Cross-namespace references are refused
// unless `cross_namespace_ok` (gateway-owned CA and trust bundles).
std::string secretRef(const Json& ref, const std::string& owner_ns, const std::string& path,
                      bool cross_namespace_ok) {
  std::string group = getString(ref, "group");
  std::string kind = getString(ref, "kind", "Secret");
  if (!group.empty() || kind != "Secret") {
    reject("InvalidSecretRef", path + ": only core Secrets are supported, got " +
                                   (group.empty() ? kind : kind + "." + group));
  }
  std::string ns = getString(ref, "namespace", owner_ns);
  if (ns != owner_ns && !cross_namespace_ok) {
    reject("RefNotPermitted", path + ".namespace: the Secret must be in the policy's namespace " +
                                  quote(owner_ns) + ", not " + quote(ns));
  }
  return ns + "/" + getString(ref, "name");
}

const SecretData& secretData(const Ctx& ctx, const std::string& key, const std::string& path) {
  auto it = ctx.secrets.find(key);
  if (it == ctx.secrets.end()) reject("InvalidSecretRef", path + ": Secret " + key + " not found");
  return it->second;
}

std::string secretValue(const Ctx& ctx, const std::string& key, const std::string& data_key,
                        const std::string& ref_path, const std::string& key_path) {
  const SecretData& data = secretData(ctx, key, ref_path);
  if (data.bad_keys.count(data_key)) {
    reject("InvalidSecretRef",
           key_path + ": Secret " + key + " key " + quote(data_key) + " is not valid base64");
  }
  auto it = data.values.find(data_key);
  if (it == data.values.end()) {
    std::string keys;
    for (const auto& [k, v] : data.values) keys += (keys.empty() ? "" : ", ") + k;
    reject("InvalidSecretRef", key_path + ": Secret " + key + " has no key " + quote(data_key) +
                                   " (keys: " + (keys.empty() ? "none" : keys) + ")");
  }
  return it->second;
}

void indexSecret(Ctx& ctx, const Meta& m) {
  SecretData data;
  if (const Json* d = get(*m.json, "data"); d && d->is_object()) {
    for (const auto& [k, v] : d->items()) {
      if (!v.is_string()) continue;
      auto decoded = base64Decode(v.get<std::string>());
      if (decoded) {
        data.values[k] = std::move(*decoded);
      } else {
        data.bad_keys.insert(k);
      }
    }
  }
  if (const Json* d = get(*m.json, "stringData"); d && d->is_object()) {
    for (const auto& [k, v] : d->items()) {
      if (!v.is_string()) continue;
      data.values[k] = v.get<std::string>();
      data.bad_keys.erase(k);
    }
  }
  ctx.secrets[m.key()] = std::move(data);
}

// ---- standalone kinds --------------------------------------------------------------------------

void compileBackend(Ctx& ctx, const Meta& m) {
  const Json& spec = m.spec();
  std::string type = getString(spec, "type", "Upstream");
  if (type != "Upstream") {
    reject("Unsupported", "spec.type: " + type +
                              " backends are not served by the clrk data plane yet; use Upstream");
  }
  Backend b;
  b.name = m.key();
  std::string schema = getString(get(spec, "schema") ? *get(spec, "schema") : Json(), "name");
  b.schema = providerByName(schema);
  if (b.schema == llm::Provider::kNone) {
    reject("Invalid",
           "spec.schema.name: unknown schema " + quote(schema) + " (" + kProviderNames + ")");
  }
  const Json* up = get(spec, "upstream");
  if (!up) reject("Invalid", "spec.upstream: required when spec.type is Upstream");
  b.host = asciiLowerCopy(getString(*up, "host"));
  if (b.host.empty() || b.host.find_first_of("/ :@") != std::string::npos) {
    if (!parseIp(b.host)) {
      reject("Invalid", "spec.upstream.host: " + quote(b.host) +
                            " is not a host name or IP address (no scheme, port or path)");
    }
  }
  int64_t port = getInt(*up, "port").value_or(443);
  if (port < 1 || port > 65535) reject("Invalid", "spec.upstream.port: out of range");
  b.port = static_cast<uint16_t>(port);
  b.tls = b.port != 80;
  const Json& rewrites = getArray(spec, "modelRewrites");
  for (size_t i = 0; i < rewrites.size(); ++i) {
    ModelRewrite r{getString(rewrites[i], "from"), getString(rewrites[i], "to")};
    if (auto err = globError(r.from_glob)) {
      reject("Invalid",
             at("spec.modelRewrites", i) + ".from: bad glob " + quote(r.from_glob) + ": " + *err);
    }
    b.model_rewrites.push_back(std::move(r));
  }
  if (const Json* mut = get(spec, "bodyMutation")) {
    b.ensure_stream_usage = getBool(*mut, "ensureStreamUsage");
  }
  ctx.backends[m.key()] = std::move(b);
  accept(ctx, m, "");
}

RateLimitScope scopeByName(const std::string& scope, const std::string& path) {
  if (scope.empty() || scope == "PerAgent") return RateLimitScope::kPerAgent;
  if (scope == "PerExecution") return RateLimitScope::kPerExecution;
  if (scope == "PerRoute") return RateLimitScope::kPerRoute;
  reject("Invalid", path + ": unknown scope " + quote(scope));
}

RateLimit rateLimitFrom(const Json& j, std::string policy, const std::string& path) {
  RateLimit r;
  r.policy = std::move(policy);
  int64_t requests = getInt(j, "requests").value_or(-1);
  if (requests < 0 || requests > INT32_MAX) {
    reject("Invalid", path + ".requests: must be a non-negative 32-bit integer");
  }
  r.requests = static_cast<int32_t>(requests);
  std::string window = getString(j, "window");
  auto parsed = parseDuration(window);
  if (!parsed || parsed->count() <= 0) {
    reject("Invalid", path + ".window: " + quote(window) + " is not a positive duration");
  }
  r.window = *parsed;
  r.scope = scopeByName(getString(j, "scope"), path + ".scope");
  return r;
}

void compileRateLimit(Ctx& ctx, const Meta& m) {
  ctx.rate_limits[m.key()] = rateLimitFrom(m.spec(), m.key(), "spec");
  accept(ctx, m, "");
}

void compileLogging(Ctx& ctx, const Meta& m) {
  const Json& spec = m.spec();
  CapturePolicy c;
  c.request_body = getBool(spec, "captureRequest");
  c.response_body = getBool(spec, "captureResponse");
  for (const std::string& h : getStrings(spec, "redactHeaders")) {
    if (!isHeaderName(h)) {
      reject("Invalid", "spec.redactHeaders: " + quote(h) + " is not a header name");
    }
    c.redact_headers.push_back(asciiLowerCopy(h));
  }
  ctx.logging[m.key()] = std::move(c);
  accept(ctx, m, "");
}

LabelSelector selectorFrom(const Json& j, const std::string& path) {
  LabelSelector s;
  if (const Json* ml = get(j, "matchLabels"); ml && ml->is_object()) {
    for (const auto& [k, v] : ml->items())
      s.add(k, "In", {v.is_string() ? v.get<std::string>() : ""});
  }
  const Json& exprs = getArray(j, "matchExpressions");
  for (size_t e = 0; e < exprs.size(); ++e) {
    if (!s.add(getString(exprs[e], "key"), getString(exprs[e], "operator"),
               getStrings(exprs[e], "values"))) {
      reject("Invalid", at(path + ".matchExpressions", e) + ": unknown operator " +
                            quote(getString(exprs[e], "operator")) +
                            " or values that do not fit it");
    }
  }
  return s;
}

// ---- EgressGateway -----------------------------------------------------------------------------

void compileGateway(Ctx& ctx, const Meta& m) {
  const Json& spec = m.spec();
  GatewayBuild b;
  b.meta = m;
  Gateway& gw = b.gw;
  gw.ns = m.ns;
  gw.key = m.key();
  gw.object = m.label();
  gw.settings.name = m.key();
  gw.allow_all = getString(spec, "defaultPolicy", "deny-all") == "allow-all";

  std::string ca_ref;
  std::string ca_path;
  const Json& listeners = getArray(spec, "listeners");
  for (size_t i = 0; i < listeners.size(); ++i) {
    const Json& lj = listeners[i];
    std::string path = at("spec.listeners", i);
    Listener l;
    l.name = getString(lj, "name");
    l.protocol = getString(lj, "protocol");
    for (const Listener& other : gw.listeners) {
      if (other.name == l.name) reject("Invalid", path + ".name: duplicate listener " + l.name);
    }
    if (auto port = getInt(lj, "port")) l.port = static_cast<uint16_t>(*port);
    const Json* tls = get(lj, "tls");
    std::string mode = tls ? getString(*tls, "mode", "Passthrough") : "Passthrough";
    if (l.protocol == "TLS") {
      bool terminate = mode == "Terminate";
      l.on_tls = terminate ? Action::kTerminate : Action::kPassthrough;
      l.priority = terminate ? 5 : 2;
    } else if (l.protocol == "HTTPS") {
      l.on_tls = Action::kTerminate;
      l.on_http = Action::kInspectHttp;
      l.priority = 4;
    } else if (l.protocol == "HTTP") {
      l.on_http = Action::kInspectHttp;
      if (tls) l.on_tls = mode == "Terminate" ? Action::kTerminate : Action::kPassthrough;
      l.priority = 3;
    } else if (l.protocol == "TCP" || l.protocol == "UDP") {
      if (tls) reject("Invalid", path + ".tls: not valid for protocol " + l.protocol);
      if (l.protocol == "TCP") {
        l.on_tls = l.on_http = l.on_tcp = Action::kPassthrough;
        l.priority = 1;
      }  // UDP: accepted, routes may attach, but this data plane intercepts TCP only
    } else {
      reject("Invalid", path + ".protocol: unknown protocol " + quote(l.protocol));
    }
    if (const Json* ref = tls ? get(*tls, "caCertRef") : nullptr) {
      std::string ref_path = path + ".tls.caCertRef";
      if (l.on_tls != Action::kTerminate) {
        reject("Invalid", ref_path + ": only valid on a listener that terminates TLS");
      }
      std::string key = secretRef(*ref, m.ns, ref_path, true);
      if (!ca_ref.empty() && key != ca_ref) {
        reject("Invalid", ref_path + ": Secret " + key + " differs from " + ca_path + " (" +
                              ca_ref + "); a gateway mints with one CA");
      }
      if (ca_ref.empty()) {
        const SecretData& data = secretData(ctx, key, ref_path);
        auto pick = [&](std::initializer_list<const char*> names) -> std::string {
          for (const char* n : names) {
            if (auto it = data.values.find(n); it != data.values.end()) return it->second;
          }
          return "";
        };
        gw.settings.ca_cert_pem = pick({"tls.crt", "ca.crt"});
        gw.settings.ca_key_pem = pick({"tls.key", "ca.key"});
        if (gw.settings.ca_cert_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
          reject("InvalidCACertRef",
                 ref_path + ": Secret " + key + " has no PEM certificate under tls.crt or ca.crt");
        }
        if (gw.settings.ca_key_pem.find("PRIVATE KEY-----") == std::string::npos) {
          reject("InvalidCACertRef",
                 ref_path + ": Secret " + key + " has no PEM private key under tls.key or ca.key");
        }
        ca_ref = key;
        ca_path = ref_path;
      }
    }
    ListenerRules rules;
    if (const Json* ar = get(lj, "allowedRoutes")) {
      if (const Json* ns = get(*ar, "namespaces")) {
        rules.from = getString(*ns, "from", "Same");
        if (rules.from == "Selector") {
          const Json* sel = get(*ns, "selector");
          rules.selector = selectorFrom(sel ? *sel : Json::object(),
                                        path + ".allowedRoutes.namespaces.selector");
        }
      }
      for (const Json& k : getArray(*ar, "kinds")) rules.kinds.push_back(getString(k, "kind"));
    }
    gw.listeners.push_back(std::move(l));
    b.allowed.push_back(std::move(rules));
  }
  b.listener_credentials.resize(gw.listeners.size());

  if (const Json* up = get(spec, "upstreamTLS")) {
    if (const Json* ref = get(*up, "additionalTrustBundleSecretRef")) {
      std::string ref_path = "spec.upstreamTLS.additionalTrustBundleSecretRef";
      std::string key = secretRef(*ref, m.ns, ref_path, true);
      const SecretData& data = secretData(ctx, key, ref_path);
      for (const auto& [k, v] : data.values) {
        if (v.empty()) continue;
        gw.settings.extra_trust_pem += v;
        if (v.back() != '\n') gw.settings.extra_trust_pem += '\n';
      }
      if (gw.settings.extra_trust_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        reject("InvalidSecretRef", ref_path + ": Secret " + key + " holds no PEM certificate");
      }
    }
    const Json& aliases = getArray(*up, "hostAliases");
    for (size_t i = 0; i < aliases.size(); ++i) {
      std::string ip = getString(aliases[i], "ip");
      if (!parseIp(ip)) {
        reject("Invalid", at("spec.upstreamTLS.hostAliases", i) + ".ip: " + quote(ip) +
                              " is not an IP address");
      }
      std::vector<std::string> names;
      for (const std::string& n : getStrings(aliases[i], "hostnames"))
        names.push_back(asciiLowerCopy(n));
      gw.settings.host_aliases.emplace_back(ip, std::move(names));
    }
  }
  std::string timeout = getString(spec, "requestTimeout");
  if (!timeout.empty()) {
    auto parsed = parseDuration(timeout);
    if (!parsed) reject("Invalid", "spec.requestTimeout: " + quote(timeout) + " is not a duration");
    if (parsed->count() > 0) gw.settings.request_timeout = *parsed;
  }
  if (const Json* otlp = get(spec, "otlp")) {
    gw.settings.otlp.endpoint = getString(*otlp, "endpoint");
    if (const Json* h = get(*otlp, "headers"); h && h->is_object()) {
      for (const auto& [k, v] : h->items()) {
        if (v.is_string()) gw.settings.otlp.headers.emplace_back(k, v.get<std::string>());
      }
    }
    if (const Json* cb = get(*otlp, "captureBody")) {
      int64_t max = getInt(*cb, "maxBytes").value_or(65536);
      if (max > 0 && max <= INT32_MAX) gw.capture.max_bytes = static_cast<int32_t>(max);
    }
  }
  std::string summary = std::to_string(gw.listeners.size()) + " listener(s), defaultPolicy " +
                        (gw.allow_all ? "allow-all" : "deny-all");
  if (ca_ref.empty() && std::any_of(gw.listeners.begin(), gw.listeners.end(),
                                    [](const auto& l) { return l.on_tls == Action::kTerminate; })) {
    summary += "; TLS is terminated with the data plane's default CA (no tls.caCertRef)";
  }
  ctx.gateways[m.key()] = std::move(b);
  accept(ctx, m, summary);
}

// ---- routes ------------------------------------------------------------------------------------

bool listenerAcceptsKind(const Listener& l, const std::string& kind) {
  if (kind == "EgressL4Route") return true;
  return l.on_tls == Action::kTerminate || l.on_http == Action::kInspectHttp;
}

// Why `route` may not attach to listener `i` of `b`; "" when it may.
std::string attachProblem(const Ctx& ctx, const GatewayBuild& b, size_t i, const Meta& route) {
  const Listener& l = b.gw.listeners[i];
  const ListenerRules& rules = b.allowed[i];
  if (!rules.kinds.empty()) {
    if (std::find(rules.kinds.begin(), rules.kinds.end(), route.kind) == rules.kinds.end()) {
      return "listener " + l.name + " does not list " + route.kind + " in allowedRoutes.kinds";
    }
  } else if (!listenerAcceptsKind(l, route.kind)) {
    return "listener " + l.name + " (" + l.protocol +
           (l.protocol == "TLS" && l.on_tls == Action::kPassthrough ? " Passthrough" : "") +
           ") cannot inspect " + route.kind + " traffic";
  }
  if (rules.from == "All") return "";
  if (rules.from == "Selector") {
    static const std::map<std::string, std::string> kNoLabels;
    auto it = ctx.namespace_labels.find(route.ns);
    if (rules.selector &&
        rules.selector->matches(it == ctx.namespace_labels.end() ? kNoLabels : it->second)) {
      return "";
    }
    return "listener " + l.name + " does not select namespace " + route.ns;
  }
  if (route.ns != b.gw.ns) {
    return "listener " + l.name + " only accepts routes from namespace " + b.gw.ns;
  }
  return "";
}

void attachParents(Ctx& ctx, RouteBuild& r) {
  const Json& refs = getArray(r.meta.spec(), "parentRefs");
  for (size_t i = 0; i < refs.size(); ++i) {
    std::string path = at("spec.parentRefs", i);
    std::string group = getString(refs[i], "group", std::string(kGroup));
    std::string kind = getString(refs[i], "kind", "EgressGateway");
    if ((!group.empty() && group != kGroup) || kind != "EgressGateway") {
      reject("InvalidKind", path +
                                ": only clrk.apoxy.dev EgressGateway parents are supported, got " +
                                kind + (group.empty() ? "" : "." + group));
    }
    std::string key = getString(refs[i], "namespace", r.meta.ns) + "/" + getString(refs[i], "name");
    auto it = ctx.gateways.find(key);
    if (it == ctx.gateways.end()) missing(ctx, path, "EgressGateway " + key, "NoMatchingParent");
    const GatewayBuild& b = it->second;
    std::string section = getString(refs[i], "sectionName");
    auto port = getInt(refs[i], "port");
    bool attached = false;
    std::string problems;
    for (size_t l = 0; l < b.gw.listeners.size(); ++l) {
      const Listener& listener = b.gw.listeners[l];
      if (!section.empty() && listener.name != section) continue;
      if (port && (!listener.port || *listener.port != *port)) continue;
      std::string problem = attachProblem(ctx, b, l, r.meta);
      if (problem.empty()) {
        attached = true;
        std::pair<std::string, size_t> attachment(key, l);
        if (std::find(r.attachments.begin(), r.attachments.end(), attachment) ==
            r.attachments.end()) {
          r.attachments.push_back(std::move(attachment));
        }
      } else {
        problems += (problems.empty() ? "" : "; ") + problem;
      }
    }
    if (!attached) {
      if (problems.empty()) {
        reject("NoMatchingParent", path + ": EgressGateway " + key + " has no listener" +
                                       (section.empty() ? "" : " named " + quote(section)) +
                                       (port ? " on port " + std::to_string(*port) : ""));
      }
      reject("NotAllowedByListeners", path + ": " + problems);
    }
  }
}

// An ExtensionRef filter: RateLimitPolicy or LoggingPolicy in the route's namespace.
void extensionRef(const Ctx& ctx, const Json& filter, const std::string& ns,
                  const std::string& path, std::vector<RateLimit>& limits,
                  std::optional<CapturePolicy>& capture) {
  const Json* ref = get(filter, "extensionRef");
  if (!ref) reject("Invalid", path + ".extensionRef: required when type is ExtensionRef");
  std::string group = getString(*ref, "group");
  std::string kind = getString(*ref, "kind");
  std::string key = ns + "/" + getString(*ref, "name");
  if (group != kGroup || (kind != "RateLimitPolicy" && kind != "LoggingPolicy")) {
    reject("Unsupported", path + ".extensionRef: " + kind + (group.empty() ? "" : "." + group) +
                              " is not supported (clrk.apoxy.dev RateLimitPolicy or "
                              "LoggingPolicy)");
  }
  if (kind == "RateLimitPolicy") {
    auto it = ctx.rate_limits.find(key);
    if (it == ctx.rate_limits.end()) {
      missing(ctx, path + ".extensionRef", kind + " " + key, "ExtensionRefNotFound");
    }
    limits.push_back(it->second);
    return;
  }
  auto it = ctx.logging.find(key);
  if (it == ctx.logging.end()) {
    missing(ctx, path + ".extensionRef", kind + " " + key, "ExtensionRefNotFound");
  }
  if (!capture) {
    capture = it->second;
  } else {
    capture->request_body = capture->request_body || it->second.request_body;
    capture->response_body = capture->response_body || it->second.response_body;
    capture->redact_headers.insert(capture->redact_headers.end(), it->second.redact_headers.begin(),
                                   it->second.redact_headers.end());
  }
}

void headerModifier(const Json& filter, const char* field, const std::string& path,
                    HeaderMutation& into) {
  const Json* mod = get(filter, field);
  if (!mod)
    reject("Invalid", path + "." + field + ": required when type is " + getString(filter, "type"));
  std::string base = path + "." + field;
  for (const char* list : {"set", "add"}) {
    const Json& entries = getArray(*mod, list);
    for (size_t i = 0; i < entries.size(); ++i) {
      std::string name = getString(entries[i], "name");
      std::string value = getString(entries[i], "value");
      std::string p = at(base + "." + list, i);
      if (!isHeaderName(name))
        reject("Invalid", p + ".name: " + quote(name) + " is not a header name");
      if (!isHeaderValue(value)) reject("Invalid", p + ".value: must not contain CR, LF or NUL");
      (std::string_view(list) == "set" ? into.set : into.add).emplace_back(name, value);
    }
  }
  for (const std::string& name : getStrings(*mod, "remove")) {
    if (!isHeaderName(name)) {
      reject("Invalid", base + ".remove: " + quote(name) + " is not a header name");
    }
    into.remove.push_back(asciiLowerCopy(name));
  }
}

std::vector<std::regex> regexes(const std::vector<std::string>& patterns, const std::string& path) {
  std::vector<std::regex> out;
  for (size_t i = 0; i < patterns.size(); ++i) {
    try {
      out.emplace_back(patterns[i], std::regex::ECMAScript | std::regex::optimize);
    } catch (const std::regex_error& e) {
      reject("Invalid",
             at(path, i) + ": bad regular expression " + quote(patterns[i]) + ": " + e.what());
    }
  }
  return out;
}

std::vector<std::string> globs(const Json& j, const char* key, const std::string& path) {
  std::vector<std::string> out = getStrings(j, key);
  for (size_t i = 0; i < out.size(); ++i) {
    if (auto err = globError(out[i])) {
      reject("Invalid", at(path + "." + key, i) + ": bad glob " + quote(out[i]) + ": " + *err);
    }
  }
  return out;
}

void compileL4Route(Ctx& ctx, RouteBuild& r) {
  const Json& rules = getArray(r.meta.spec(), "rules");
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string path = at("spec.rules", i);
    auto rule = std::make_shared<L4Rule>();
    rule->ns = r.meta.ns;
    rule->route = r.meta.label();
    rule->rule = rule->route + " rule " + std::to_string(i);
    const Json& matches = getArray(rules[i], "matches");
    for (size_t j = 0; j < matches.size(); ++j) {
      std::string mp = at(path + ".matches", j);
      const Json& mj = matches[j];
      L4Match m;
      auto cidrs = getStrings(mj, "destinationCIDRs");
      for (size_t k = 0; k < cidrs.size(); ++k) {
        auto c = Cidr::parse(cidrs[k]);
        if (!c) {
          reject("Invalid", at(mp + ".destinationCIDRs", k) + ": " + quote(cidrs[k]) +
                                " is not an IPv4/IPv6 CIDR");
        }
        m.cidrs.push_back(*c);
      }
      auto hosts = getStrings(mj, "destinationHostnames");
      for (size_t k = 0; k < hosts.size(); ++k) {
        auto h = HostPattern::parse(hosts[k]);
        if (!h) {
          reject("Invalid", at(mp + ".destinationHostnames", k) + ": " + quote(hosts[k]) +
                                " is not a hostname or \"*.\" wildcard");
        }
        m.hostnames.push_back(std::move(*h));
      }
      const Json& ports = getArray(mj, "ports");
      for (size_t k = 0; k < ports.size(); ++k) {
        std::string pp = at(mp + ".ports", k);
        auto port = getInt(ports[k], "port");
        auto start = getInt(ports[k], "startPort");
        auto end = getInt(ports[k], "endPort");
        if (port && (start || end)) {
          reject("Invalid", pp + ": set either port or startPort/endPort, not both");
        }
        if (port) {
          m.ports.emplace_back(static_cast<uint16_t>(*port), static_cast<uint16_t>(*port));
        } else if (start && end && *start <= *end) {
          m.ports.emplace_back(static_cast<uint16_t>(*start), static_cast<uint16_t>(*end));
        } else {
          reject("Invalid",
                 pp + ": needs port, or startPort and endPort with startPort <= endPort");
        }
      }
      m.udp_only = getString(mj, "protocol") == "UDP";
      if (const Json* sel = get(mj, "sourceAgents")) {
        m.source_agents = selectorFrom(*sel, mp + ".sourceAgents");
      }
      rule->matches.push_back(std::move(m));
    }
    const Json& filters = getArray(rules[i], "filters");
    for (size_t k = 0; k < filters.size(); ++k) {
      extensionRef(ctx, filters[k], r.meta.ns, at(path + ".filters", k), rule->rate_limits,
                   rule->capture);
    }
    if (!getArray(rules[i], "backendRefs").empty()) {
      reject("Unsupported", path +
                                ".backendRefs: routing L4 traffic through another proxy is not "
                                "supported yet; leave it empty to pass through");
    }
    r.l4.push_back(std::move(rule));
  }
}

std::vector<Backend> backendRefs(const Ctx& ctx, const Json& rule, const Meta& route,
                                 const std::string& path, std::vector<std::string>& names) {
  std::vector<Backend> out;
  const Json& refs = getArray(rule, "backendRefs");
  for (size_t i = 0; i < refs.size(); ++i) {
    std::string p = at(path + ".backendRefs", i);
    std::string group = getString(refs[i], "group", std::string(kGroup));
    std::string kind = getString(refs[i], "kind", "Backend");
    if ((!group.empty() && group != kGroup) || kind != "Backend") {
      reject("InvalidKind", p + ": only clrk.apoxy.dev Backend is supported, got " + kind +
                                (group.empty() ? "" : "." + group));
    }
    std::string ns = getString(refs[i], "namespace", route.ns);
    if (ns != route.ns) {
      reject("RefNotPermitted",
             p + ".namespace: Backends must be in the route's namespace " + quote(route.ns));
    }
    std::string name = getString(refs[i], "name");
    auto it = ctx.backends.find(ns + "/" + name);
    if (it == ctx.backends.end()) missing(ctx, p, "Backend " + ns + "/" + name, "BackendNotFound");
    Backend b = it->second;
    int64_t weight = getInt(refs[i], "weight").value_or(1);
    b.weight = static_cast<uint32_t>(std::max<int64_t>(0, weight));
    out.push_back(std::move(b));
    names.push_back(name);
  }
  return out;
}

void compileAiRoute(Ctx& ctx, RouteBuild& r) {
  const Json& rules = getArray(r.meta.spec(), "rules");
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string path = at("spec.rules", i);
    auto rule = std::make_shared<L7Rule>();
    rule->ns = r.meta.ns;
    rule->route = r.meta.label();
    rule->rule = rule->route + " rule " + std::to_string(i);
    const Json& matches = getArray(rules[i], "matches");
    for (size_t j = 0; j < matches.size(); ++j) {
      std::string mp = at(path + ".matches", j);
      AiMatch m;
      std::string provider = getString(matches[j], "provider");
      m.provider = providerByName(provider);
      if (m.provider == llm::Provider::kNone) {
        reject("Invalid",
               mp + ".provider: unknown provider " + quote(provider) + " (" + kProviderNames + ")");
      }
      m.any_provider = m.provider == llm::Provider::kCustom;
      m.models = globs(matches[j], "models", mp);
      m.endpoints = globs(matches[j], "endpoints", mp);
      for (size_t k = 0; k < m.endpoints.size(); ++k) {
        if (m.endpoints[k].empty() || (m.endpoints[k][0] != '/' && m.endpoints[k][0] != '*')) {
          reject("Invalid", at(mp + ".endpoints", k) + ": " + quote(m.endpoints[k]) +
                                " must be a path starting with \"/\"");
        }
      }
      rule->ai_matches.push_back(std::move(m));
    }
    const Json& filters = getArray(rules[i], "filters");
    for (size_t k = 0; k < filters.size(); ++k) {
      std::string fp = at(path + ".filters", k);
      std::string type = getString(filters[k], "type");
      if (type == "TokenBudget") {
        const Json* tb = get(filters[k], "tokenBudget");
        if (!tb) reject("Invalid", fp + ".tokenBudget: required when type is TokenBudget");
        if (rule->budget) reject("Invalid", fp + ": only one TokenBudget filter per rule");
        TokenBudget budget;
        budget.key = getString(*tb, "budgetRef", r.meta.key() + "#" + std::to_string(i));
        budget.max_tokens_per_execution = getInt(*tb, "maxTokensPerExecution").value_or(0);
        budget.max_tokens_per_day = getInt(*tb, "maxTokensPerDay").value_or(0);
        budget.max_output_tokens_per_request = getInt(*tb, "maxOutputTokensPerRequest").value_or(0);
        if (budget.max_tokens_per_execution < 0 || budget.max_tokens_per_day < 0 ||
            budget.max_output_tokens_per_request < 0) {
          reject("Invalid", fp + ".tokenBudget: limits must not be negative");
        }
        rule->budget = std::move(budget);
      } else if (type == "ExtensionRef") {
        extensionRef(ctx, filters[k], r.meta.ns, fp, rule->rate_limits, rule->capture);
      } else if (type == "RequestHeaderModifier") {
        headerModifier(filters[k], "requestHeaderModifier", fp, rule->request_headers);
      } else if (type == "ResponseHeaderModifier") {
        headerModifier(filters[k], "responseHeaderModifier", fp, rule->response_headers);
      } else {
        reject("Invalid", fp + ".type: unknown filter type " + quote(type));
      }
    }
    std::vector<std::string> names;
    rule->backends = backendRefs(ctx, rules[i], r.meta, path, names);
    for (const std::string& n : names) r.backend_credentials.try_emplace(n);
    r.backend_ref_names.push_back(std::move(names));
    r.l7.push_back(std::move(rule));
  }
}

void compileMcpRoute(Ctx& ctx, RouteBuild& r) {
  const Json& spec = r.meta.spec();
  std::vector<HostPattern> hostnames;
  auto hosts = getStrings(spec, "hostnames");
  for (size_t k = 0; k < hosts.size(); ++k) {
    auto h = HostPattern::parse(hosts[k]);
    if (!h)
      reject("Invalid", at("spec.hostnames", k) + ": " + quote(hosts[k]) + " is not a hostname");
    hostnames.push_back(std::move(*h));
  }
  const Json& rules = getArray(spec, "rules");
  for (size_t i = 0; i < rules.size(); ++i) {
    std::string path = at("spec.rules", i);
    auto rule = std::make_shared<L7Rule>();
    rule->mcp = true;
    rule->ns = r.meta.ns;
    rule->route = r.meta.label();
    rule->rule = rule->route + " rule " + std::to_string(i);
    rule->hostnames = hostnames;
    const Json& matches = getArray(rules[i], "matches");
    for (size_t j = 0; j < matches.size(); ++j) {
      std::string mp = at(path + ".matches", j);
      McpMatch m;
      for (std::string s : globs(matches[j], "servers", mp)) {
        for (std::string_view scheme : {"https://", "http://"}) {
          if (s.rfind(scheme, 0) == 0) s.erase(0, scheme.size());
        }
        m.servers.push_back(asciiLowerCopy(s));
      }
      m.tools = globs(matches[j], "tools", mp);
      m.tools_regex = regexes(getStrings(matches[j], "toolsRegex"), mp + ".toolsRegex");
      m.methods = getStrings(matches[j], "methods");
      rule->mcp_matches.push_back(std::move(m));
    }
    const Json& filters = getArray(rules[i], "filters");
    for (size_t k = 0; k < filters.size(); ++k) {
      std::string fp = at(path + ".filters", k);
      std::string type = getString(filters[k], "type");
      if (type == "ToolPolicy") {
        const Json* tp = get(filters[k], "toolPolicy");
        if (!tp) reject("Invalid", fp + ".toolPolicy: required when type is ToolPolicy");
        if (rule->tool_policy) reject("Invalid", fp + ": only one ToolPolicy filter per rule");
        std::string tpp = fp + ".toolPolicy";
        ToolPolicy policy;
        policy.allowed_tools = globs(*tp, "allowedTools", tpp);
        policy.denied_tools = globs(*tp, "deniedTools", tpp);
        policy.max_calls_per_execution = static_cast<int32_t>(
            std::max<int64_t>(0, getInt(*tp, "maxCallsPerExecution").value_or(0)));
        rule->allowed_tools_regex =
            regexes(getStrings(*tp, "allowedToolsRegex"), tpp + ".allowedToolsRegex");
        rule->denied_tools_regex =
            regexes(getStrings(*tp, "deniedToolsRegex"), tpp + ".deniedToolsRegex");
        const Json& limits = getArray(*tp, "rateLimits");
        for (size_t l = 0; l < limits.size(); ++l) {
          std::string lp = at(tpp + ".rateLimits", l);
          ToolRateLimit t;
          t.tools = globs(limits[l], "tools", lp);
          t.tools_regex = regexes(getStrings(limits[l], "toolsRegex"), lp + ".toolsRegex");
          t.limit = rateLimitFrom(
              limits[l], r.meta.key() + "#" + std::to_string(i) + "/tool" + std::to_string(l), lp);
          rule->tool_rate_limits.push_back(std::move(t));
        }
        rule->tool_policy = std::move(policy);
      } else if (type == "ExtensionRef") {
        extensionRef(ctx, filters[k], r.meta.ns, fp, rule->rate_limits, rule->capture);
      } else if (type == "RequestHeaderModifier") {
        headerModifier(filters[k], "requestHeaderModifier", fp, rule->request_headers);
      } else if (type == "ResponseHeaderModifier") {
        headerModifier(filters[k], "responseHeaderModifier", fp, rule->response_headers);
      } else {
        reject("Invalid", fp + ".type: unknown filter type " + quote(type));
      }
    }
    if (!getArray(rules[i], "backendRefs").empty()) {
      reject("Unsupported", path +
                                ".backendRefs: re-pointing MCP traffic is not supported yet; "
                                "leave it empty to pass through");
    }
    r.backend_ref_names.emplace_back();
    r.l7.push_back(std::move(rule));
  }
}

void compileRoute(Ctx& ctx, const Meta& m) {
  RouteBuild r;
  r.meta = m;
  attachParents(ctx, r);
  if (m.kind == "EgressL4Route") {
    compileL4Route(ctx, r);
  } else if (m.kind == "AIProviderRoute") {
    compileAiRoute(ctx, r);
  } else {
    compileMcpRoute(ctx, r);
  }
  std::string summary = "attached to";
  std::string last_gw;
  for (const auto& [gw, l] : r.attachments) {
    if (gw != last_gw)
      summary += (last_gw.empty() ? " EgressGateway " : "; EgressGateway ") + gw + " listener";
    summary += " " + ctx.gateways.at(gw).gw.listeners[l].name;
    last_gw = gw;
  }
  ctx.routes[m.label()] = std::move(r);
  accept(ctx, m, summary);
}

// ---- policies ----------------------------------------------------------------------------------

struct Target {
  std::string kind;
  std::string name;
  std::string section;
  std::string path;
};

std::vector<Target> targets(const Meta& m, std::initializer_list<std::string_view> kinds) {
  std::vector<Target> out;
  const Json& refs = getArray(m.spec(), "targetRefs");
  for (size_t i = 0; i < refs.size(); ++i) {
    Target t{getString(refs[i], "kind"), getString(refs[i], "name"),
             getString(refs[i], "sectionName"), at("spec.targetRefs", i)};
    std::string group = getString(refs[i], "group");
    if (group != kGroup || std::find(kinds.begin(), kinds.end(), t.kind) == kinds.end()) {
      std::string allowed;
      for (std::string_view k : kinds) allowed += (allowed.empty() ? "" : ", ") + std::string(k);
      reject("InvalidKind", t.path + ": " + m.kind + " cannot target " + t.kind +
                                (group.empty() ? "" : "." + group) + " (clrk.apoxy.dev " + allowed +
                                ")");
    }
    out.push_back(std::move(t));
  }
  if (out.empty()) reject("Invalid", "spec.targetRefs: at least one target is required");
  return out;
}

RouteBuild& targetRoute(Ctx& ctx, const Meta& m, const Target& t) {
  std::string label = t.kind + " " + m.ns + "/" + t.name;
  auto it = ctx.routes.find(label);
  if (it == ctx.routes.end()) missing(ctx, t.path, label, "TargetNotFound");
  return it->second;
}

void noSection(const Meta& m, const Target& t) {
  if (!t.section.empty()) {
    reject("Unsupported", t.path + ".sectionName: " + m.kind + " applies to whole " + t.kind +
                              "s; remove sectionName " + quote(t.section));
  }
}

void compileDenyPolicy(Ctx& ctx, const Meta& m) {
  const Json& spec = m.spec();
  DenyAction deny;
  deny.policy = m.key();
  if (const Json* resp = get(spec, "denyResponse")) {
    deny.status = static_cast<int>(getInt(*resp, "statusCode").value_or(403));
    deny.message = getString(*resp, "message");
    if (deny.status < 400 || deny.status > 599) {
      reject("Invalid", "spec.denyResponse.statusCode: " + std::to_string(deny.status) +
                            " is not an HTTP error status (400-599)");
    }
  }
  std::vector<RouteBuild*> routes;
  for (const Target& t : targets(m, {"AIProviderRoute", "MCPRoute", "EgressL4Route"})) {
    noSection(m, t);
    RouteBuild& r = targetRoute(ctx, m, t);
    if (r.deny) {
      reject("Conflicted", t.path + ": " + r.meta.label() +
                               " is already denied by EgressDenyPolicy " + r.deny->policy);
    }
    routes.push_back(&r);
  }
  std::string summary = "denies";
  for (RouteBuild* r : routes) {
    r->deny = deny;
    summary += " " + r->meta.label();
  }
  accept(ctx, m, summary);
}

void compileFallbackPolicy(Ctx& ctx, const Meta& m) {
  const Json& spec = m.spec();
  FallbackSpec f;
  f.policy = m.key();
  if (const Json* retry = get(spec, "retry")) {
    if (auto n = getInt(*retry, "numRetries"))
      f.num_retries = static_cast<int>(std::max<int64_t>(0, *n));
    for (const Json& c : getArray(*retry, "retriableStatusCodes")) {
      if (c.is_number_integer()) f.codes.push_back(c.get<int>());
    }
    std::string per_try = getString(*retry, "perTryTimeout");
    if (!per_try.empty()) {
      auto d = parseDuration(per_try);
      if (!d || d->count() <= 0) {
        reject("Invalid",
               "spec.retry.perTryTimeout: " + quote(per_try) + " is not a positive duration");
      }
      f.per_try_timeout = *d;
    }
  }
  if (const Json* ej = get(spec, "ejection")) {
    std::string max = getString(*ej, "maxEjectionTime");
    if (!max.empty()) {
      auto d = parseDuration(max);
      if (!d)
        reject("Invalid", "spec.ejection.maxEjectionTime: " + quote(max) + " is not a duration");
      f.max_ejection = *d;
    }
  }
  std::vector<RouteBuild*> routes;
  for (const Target& t : targets(m, {"AIProviderRoute"})) {
    noSection(m, t);
    RouteBuild& r = targetRoute(ctx, m, t);
    if (r.fallback) {
      reject("Conflicted", t.path + ": " + r.meta.label() + " already has FallbackRoutingPolicy " +
                               r.fallback->policy);
    }
    routes.push_back(&r);
  }
  std::string summary = "fallback chain on";
  for (RouteBuild* r : routes) {
    r->fallback = f;
    summary += " " + r->meta.label();
  }
  accept(ctx, m, summary);
}

void compileCredentialPolicy(Ctx& ctx, const Meta& m) {
  const Json& spec = m.spec();
  std::string target = getString(spec, "target");
  if (target == "ProviderAuth") {
    reject("Unsupported",
           "spec.target: ProviderAuth (AWSv4 / GCP service-account request "
           "signing) is not supported yet; use target Header or QueryParam");
  }
  Credential cred;
  cred.policy = m.key();
  if (target == "Header") {
    cred.target = Credential::Target::kHeader;
    cred.name = getString(spec, "headerName");
    if (cred.name.empty()) reject("Invalid", "spec.headerName: required when target is Header");
    if (!isHeaderName(cred.name)) {
      reject("Invalid", "spec.headerName: " + quote(cred.name) + " is not a header name");
    }
  } else if (target == "QueryParam") {
    cred.target = Credential::Target::kQueryParam;
    cred.name = getString(spec, "queryParamName");
    if (cred.name.empty()) {
      reject("Invalid", "spec.queryParamName: required when target is QueryParam");
    }
  } else {
    reject("Invalid", "spec.target: unknown target " + quote(target));
  }

  // Resolve every target first, so a broken Secret can still be reported on what it covers.
  std::vector<CredSlot*> slots;
  std::vector<std::string> labels;
  for (const Target& t : targets(m, {"AIProviderRoute", "MCPRoute", "EgressGateway"})) {
    CredSlot* slot = nullptr;
    std::string label;
    if (t.kind == "EgressGateway") {
      std::string key = m.ns + "/" + t.name;
      auto it = ctx.gateways.find(key);
      if (it == ctx.gateways.end()) missing(ctx, t.path, "EgressGateway " + key, "TargetNotFound");
      GatewayBuild& b = it->second;
      label = "EgressGateway " + key;
      slot = &b.credential;
      if (!t.section.empty()) {
        auto& ls = b.gw.listeners;
        auto l = std::find_if(ls.begin(), ls.end(),
                              [&](const Listener& x) { return x.name == t.section; });
        if (l == ls.end()) {
          reject("TargetNotFound",
                 t.path + ".sectionName: " + label + " has no listener " + quote(t.section));
        }
        slot = &b.listener_credentials[static_cast<size_t>(l - ls.begin())];
        label += " listener " + t.section;
      }
    } else {
      RouteBuild& r = targetRoute(ctx, m, t);
      label = r.meta.label();
      slot = &r.credential;
      if (!t.section.empty()) {
        if (t.kind != "AIProviderRoute") noSection(m, t);
        auto it = r.backend_credentials.find(t.section);
        if (it == r.backend_credentials.end()) {
          reject("TargetNotFound", t.path + ".sectionName: " + label + " has no backendRef named " +
                                       quote(t.section));
        }
        slot = &it->second;
        label += " backend " + t.section;
      }
    }
    if (!slot->owner.empty()) {
      reject("Conflicted", t.path + ": " + label +
                               " already gets a credential from "
                               "CredentialInjectionPolicy " +
                               slot->owner);
    }
    slots.push_back(slot);
    labels.push_back(label);
  }

  std::string data_key = getString(spec, "secretKey", "token");
  try {
    const Json* ref = get(spec, "secretRef");
    std::string key = secretRef(ref ? *ref : Json::object(), m.ns, "spec.secretRef", false);
    std::string value = secretValue(ctx, key, data_key, "spec.secretRef", "spec.secretKey");
    auto first = value.find_first_not_of(" \t\r\n");
    auto last = value.find_last_not_of(" \t\r\n");
    value = first == std::string::npos ? "" : value.substr(first, last - first + 1);
    if (value.empty()) {
      reject("InvalidSecretRef",
             "spec.secretKey: Secret " + key + " key " + quote(data_key) + " is empty");
    }
    if (!isHeaderValue(value)) {
      reject("InvalidSecretRef", "spec.secretKey: Secret " + key + " key " + quote(data_key) +
                                     " contains a line break or NUL");
    }
    if (cred.target == Credential::Target::kHeader &&
        asciiEqualsIgnoreCase(cred.name, "authorization") && value.find(' ') == std::string::npos) {
      value = "Bearer " + value;
    }
    cred.value = std::move(value);
  } catch (const Reject& r) {
    for (CredSlot* slot : slots) {
      slot->owner = m.key();
      slot->warning = "CredentialInjectionPolicy " + m.key() + " is not applied: " + r.message;
    }
    throw;
  }
  std::string summary = "injects " +
                        std::string(target == "Header" ? "header " : "query parameter ") +
                        cred.name + " into";
  for (size_t i = 0; i < slots.size(); ++i) {
    slots[i]->owner = m.key();
    slots[i]->credential = cred;
    summary += (i ? ", " : " ") + labels[i];
  }
  accept(ctx, m, summary);
}

// ---- assembly
// ------------------------------------------------------------------------------------

void finishRoute(Ctx& ctx, RouteBuild& r) {
  for (size_t i = 0; i < r.l7.size(); ++i) {
    L7Rule& rule = *r.l7[i];
    rule.deny = r.deny;
    rule.credential = r.credential.credential;
    rule.credential_warning = r.credential.warning;
    const auto& names = r.backend_ref_names[i];
    for (size_t b = 0; b < rule.backends.size(); ++b) {
      const CredSlot& slot = r.backend_credentials[names[b]];
      rule.backends[b].credential = slot.credential;
      if (!slot.warning.empty()) {
        rule.credential_warning += (rule.credential_warning.empty() ? "" : "; ") + slot.warning;
      }
    }
    if (r.fallback && !rule.backends.empty()) {
      FallbackPolicy f;
      f.policy = r.fallback->policy;
      f.num_retries = r.fallback->num_retries.value_or(
          std::min<int>(static_cast<int>(rule.backends.size()) - 1, 5));
      if (!r.fallback->codes.empty()) f.retriable_status_codes = r.fallback->codes;
      f.per_try_timeout = r.fallback->per_try_timeout;
      if (r.fallback->max_ejection) f.max_ejection_time = *r.fallback->max_ejection;
      rule.fallback = std::move(f);
    }
  }
  for (auto& rule : r.l4) rule->deny = r.deny;
  for (const auto& [gw_key, l] : r.attachments) {
    Listener& listener = ctx.gateways.at(gw_key).gw.listeners[l];
    for (const auto& rule : r.l4) listener.l4_rules.push_back(rule);
    for (const auto& rule : r.l7) listener.l7_rules.push_back(rule);
  }
}

Meta metaOf(const Json& object, size_t index) {
  Meta m;
  m.index = index;
  m.json = &object;
  m.kind = getString(object, "kind");
  const Json* md = get(object, "metadata");
  m.name = md ? getString(*md, "name") : "";
  m.ns = md ? getString(*md, "namespace", "default") : "default";
  if (m.ns.empty()) m.ns = "default";
  return m;
}

const std::vector<std::string>& egressKinds() {
  static const std::vector<std::string> kKinds = {"Backend",
                                                  "RateLimitPolicy",
                                                  "LoggingPolicy",
                                                  "EgressGateway",
                                                  "EgressL4Route",
                                                  "AIProviderRoute",
                                                  "MCPRoute",
                                                  "EgressDenyPolicy",
                                                  "FallbackRoutingPolicy",
                                                  "CredentialInjectionPolicy"};
  return kKinds;
}

}  // namespace

namespace {

CompileResult compileAll(const std::vector<nlohmann::json>& objects, uint64_t generation) {
  Ctx ctx;
  ctx.status_of.resize(objects.size());
  std::map<std::string, std::vector<Meta>> by_kind;
  std::set<std::string> seen;
  for (size_t i = 0; i < objects.size(); ++i) {
    Meta m;
    try {
      m = metaOf(objects[i], i);
    } catch (const std::exception&) {
      continue;  // not an object at all: not a clrk object either
    }
    std::string api_version = getString(objects[i], "apiVersion");
    if (m.kind == "Secret" && api_version == "v1") {
      try {
        indexSecret(ctx, m);
      } catch (const std::exception&) {
      }
      continue;
    }
    if (m.kind == "Namespace" && api_version == "v1") {
      const Json* md = get(objects[i], "metadata");
      if (const Json* labels = md ? get(*md, "labels") : nullptr; labels && labels->is_object()) {
        for (const auto& [k, v] : labels->items()) {
          if (v.is_string()) ctx.namespace_labels[m.name][k] = v.get<std::string>();
        }
      }
      continue;
    }
    const auto& kinds = egressKinds();
    if (api_version.rfind(std::string(kGroup) + "/", 0) != 0 ||
        std::find(kinds.begin(), kinds.end(), m.kind) == kinds.end()) {
      continue;
    }
    ObjectStatus s;
    s.kind = m.kind;
    s.namespace_name = m.ns;
    s.name = m.name;
    ctx.status_of[i] = ctx.statuses.size();
    ctx.statuses.push_back(std::move(s));
    if (!seen.insert(m.label()).second) {
      ObjectStatus& dup = ctx.statuses.back();
      dup.accepted = false;
      dup.reason = "Duplicate";
      dup.message = m.label() + " appears more than once; the first one is used";
      continue;
    }
    by_kind[m.kind].push_back(std::move(m));
  }
  // Policies apply in name order so that conflicts resolve the same way every time.
  for (auto& [kind, list] : by_kind) {
    std::stable_sort(list.begin(), list.end(),
                     [](const Meta& a, const Meta& b) { return a.key() < b.key(); });
  }
  for (const std::string& kind : egressKinds()) {
    for (const Meta& m : by_kind[kind]) {
      guarded(ctx, m, [&] {
        if (kind == "Backend") {
          compileBackend(ctx, m);
        } else if (kind == "RateLimitPolicy") {
          compileRateLimit(ctx, m);
        } else if (kind == "LoggingPolicy") {
          compileLogging(ctx, m);
        } else if (kind == "EgressGateway") {
          compileGateway(ctx, m);
        } else if (kind == "EgressL4Route" || kind == "AIProviderRoute" || kind == "MCPRoute") {
          compileRoute(ctx, m);
        } else if (kind == "EgressDenyPolicy") {
          compileDenyPolicy(ctx, m);
        } else if (kind == "FallbackRoutingPolicy") {
          compileFallbackPolicy(ctx, m);
        } else {
          compileCredentialPolicy(ctx, m);
        }
      });
    }
  }
  // Routes in (namespace/name, kind) order; AIProviderRoutes before MCPRoutes on the same name.
  std::vector<RouteBuild*> routes;
  for (auto& [label, r] : ctx.routes) routes.push_back(&r);
  std::stable_sort(routes.begin(), routes.end(), [](const RouteBuild* a, const RouteBuild* b) {
    if (a->meta.key() != b->meta.key()) return a->meta.key() < b->meta.key();
    return a->meta.kind < b->meta.kind;
  });
  for (RouteBuild* r : routes) finishRoute(ctx, *r);

  std::vector<Gateway> gateways;
  for (auto& [key, b] : ctx.gateways) {
    ObjectStatus& status = ctx.status(b.meta);
    for (const Listener& l : b.gw.listeners) status.listeners.push_back({l.name, 0});
    for (const RouteBuild* r : routes) {
      std::set<size_t> seen_listeners;
      for (const auto& [gw_key, l] : r->attachments) {
        if (gw_key == key && seen_listeners.insert(l).second) ++status.listeners[l].attached_routes;
      }
    }
    Gateway gw = std::move(b.gw);
    gw.credential = b.credential.credential;
    gw.credential_warning = b.credential.warning;
    for (size_t l = 0; l < gw.listeners.size(); ++l) {
      gw.listeners[l].credential = b.listener_credentials[l].credential;
      gw.listeners[l].credential_warning = b.listener_credentials[l].warning;
    }
    std::stable_sort(gw.listeners.begin(), gw.listeners.end(),
                     [](const Listener& a, const Listener& c) { return a.priority > c.priority; });
    gateways.push_back(std::move(gw));
  }
  CompileResult result;
  result.snapshot = std::make_shared<CompiledSnapshot>(generation, std::move(gateways));
  result.statuses = std::move(ctx.statuses);
  return result;
}

}  // namespace

CompileResult compile(const std::vector<nlohmann::json>& objects, uint64_t generation) {
  try {
    return compileAll(objects, generation);
  } catch (const std::exception& e) {
    // Only resource exhaustion gets here (each object is guarded): apply nothing rather than a
    // half-built snapshot.
    CompileResult result;
    result.snapshot = std::make_shared<CompiledSnapshot>(generation, std::vector<Gateway>{});
    result.statuses.push_back(ObjectStatus{"",
                                           "",
                                           "",
                                           false,
                                           "Internal",
                                           std::string("egress config compile failed: ") + e.what(),
                                           {}});
    return result;
  }
}

}  // namespace clrk::egress::config
