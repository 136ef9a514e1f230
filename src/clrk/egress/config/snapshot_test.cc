#include "clrk/egress/config/snapshot.h"

#include "clrk/api/codec.h"
#include "clrk/api/registry.h"
#include "clrk/base/files.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace clrk::egress::config {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
using Action = ConnectionDecision::Action;
using Verdict = RequestDecision::Action;

// Decodes, defaults and validates manifests exactly as the API server would.
std::vector<Json> parse(std::string_view yaml, std::string_view source = "test.yaml") {
  std::vector<Json> out;
  auto docs = api::decodeManifests(yaml, source);
  EXPECT_TRUE(docs.ok()) << docs.status().toString();
  if (!docs.ok()) return out;
  for (auto& doc : docs.value()) {
    Status s = api::checkDocument(api::Registry::builtin(), doc);
    EXPECT_TRUE(s.ok()) << s.toString();
    out.push_back(doc.object);
  }
  return out;
}

std::vector<Json> fixture(const std::string& name) {
  auto text = readFile(std::string(CLRK_CONFIG_TESTDATA) + "/" + name);
  EXPECT_TRUE(text.ok()) << name;
  return text.ok() ? parse(text.value(), name) : std::vector<Json>{};
}

const ObjectStatus* statusOf(const CompileResult& r, std::string_view kind, std::string_view name) {
  for (const ObjectStatus& s : r.statuses) {
    if (s.kind == kind && s.name == name) return &s;
  }
  return nullptr;
}

void expectAllAccepted(const CompileResult& r) {
  for (const ObjectStatus& s : r.statuses) {
    EXPECT_TRUE(s.accepted) << s.kind << " " << s.namespace_name << "/" << s.name << ": "
                            << s.reason << ": " << s.message;
  }
}

Identity agent(std::string ns = "default", std::map<std::string, std::string> labels = {}) {
  Identity id;
  id.namespace_name = std::move(ns);
  id.agent = "bot";
  id.agent_kind = "TaskAgent";
  id.agent_labels = std::move(labels);
  id.execution_id = "exec-1";
  return id;
}

ConnectionInfo tls(std::string host, uint16_t port = 443, std::string ip = "203.0.113.7") {
  ConnectionInfo c;
  c.hostname = std::move(host);
  c.dst_port = port;
  c.dst_ip = std::move(ip);
  c.is_tls = true;
  return c;
}

ConnectionInfo tcp(std::string ip, uint16_t port, std::string host = "") {
  ConnectionInfo c;
  c.dst_ip = std::move(ip);
  c.dst_port = port;
  c.hostname = std::move(host);
  return c;
}

struct Req {
  RequestInfo info;
  explicit Req(std::string_view host, std::string_view path = "/",
               std::string_view method = "POST") {
    info.host = host;
    info.path = path;
    info.method = method;
    info.port = 443;
    info.tls = true;
  }
  Req& provider(llm::Provider p) {
    info.provider = p;
    return *this;
  }
  Req& model(std::string_view m) {
    info.model = m;
    return *this;
  }
  Req& mcp(std::string_view method, std::string_view tool = "") {
    info.mcp_method = method;
    info.mcp_tool = tool;
    return *this;
  }
  Req& as(const Identity* id) {
    info.identity = id;
    return *this;
  }
  Req& plain(uint16_t port = 80) {
    info.tls = false;
    info.port = port;
    return *this;
  }
};

class GatewayFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    result_ = compile(fixture("gateway.yaml"), 7);
    snap_ = result_.snapshot;
    ASSERT_NE(snap_, nullptr);
  }
  CompileResult result_;
  std::shared_ptr<const Snapshot> snap_;
  Identity me_ = agent();
};

TEST_F(GatewayFixture, EveryObjectIsAcceptedAndSettingsAreCompiled) {
  expectAllAccepted(result_);
  EXPECT_EQ(result_.statuses.size(), 17u);  // Secrets get no status
  EXPECT_EQ(snap_->generation(), 7u);
  const GatewaySettings* gw = snap_->gateway("default/gw");
  ASSERT_NE(gw, nullptr);
  EXPECT_EQ(snap_->gateway(""), gw);  // the only gateway is the default
  EXPECT_EQ(snap_->gateway("default/nope"), nullptr);
  EXPECT_EQ(gw->name, "default/gw");
  EXPECT_THAT(gw->ca_cert_pem, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_THAT(gw->ca_key_pem, HasSubstr("EC PRIVATE KEY"));
  EXPECT_THAT(gw->extra_trust_pem, HasSubstr("first"));
  EXPECT_THAT(gw->extra_trust_pem, HasSubstr("second\n-----END CERTIFICATE-----\n"));
  ASSERT_EQ(gw->host_aliases.size(), 1u);
  EXPECT_EQ(gw->host_aliases[0].first, "127.0.0.1");
  EXPECT_THAT(gw->host_aliases[0].second, ::testing::ElementsAre("api.openai.com"));
  EXPECT_EQ(gw->request_timeout, Duration(90000));
  EXPECT_EQ(gw->otlp.endpoint, "http://collector:4318");
  ASSERT_EQ(gw->otlp.headers.size(), 1u);
  EXPECT_EQ(gw->otlp.headers[0].second, "abc");
  const ObjectStatus* gw_status = statusOf(result_, "EgressGateway", "gw");
  ASSERT_NE(gw_status, nullptr);
  ASSERT_EQ(gw_status->listeners.size(), 4u);  // spec order
  EXPECT_EQ(gw_status->listeners[0].name, "tcp-db");
  EXPECT_EQ(gw_status->listeners[0].attached_routes, 1);  // db
  EXPECT_EQ(gw_status->listeners[1].attached_routes, 1);  // pinned
  EXPECT_EQ(gw_status->listeners[2].name, "mitm");
  EXPECT_EQ(gw_status->listeners[2].attached_routes, 5);  // docs-site, openai, anthropic, ...
  EXPECT_EQ(gw_status->listeners[3].attached_routes, 1);  // openai
  EXPECT_THAT(statusOf(result_, "AIProviderRoute", "openai")->message,
              HasSubstr("EgressGateway default/gw listener mitm"));
}

TEST_F(GatewayFixture, ListenerSelection) {
  ConnectionInfo c = tls("api.openai.com");
  c.identity = &me_;
  auto d = snap_->decideConnection(c);
  EXPECT_EQ(d.action, Action::kTerminate) << d.reason;
  EXPECT_EQ(d.listener, "mitm");
  EXPECT_EQ(d.rule, "EgressGateway default/gw listener mitm");

  // Unknown hosts are terminated too, so the request can be refused with a readable 403.
  d = snap_->decideConnection(tls("evil.example.com"));
  EXPECT_EQ(d.action, Action::kTerminate);

  // A passthrough listener whose L4 route matches beats termination.
  d = snap_->decideConnection(tls("bank.pinned.example.com"));
  EXPECT_EQ(d.action, Action::kPassthrough) << d.reason;
  EXPECT_EQ(d.listener, "pass");
  EXPECT_EQ(d.rule, "EgressL4Route default/pinned rule 0");
  // ... but only on the ports and the single label the route names.
  EXPECT_EQ(snap_->decideConnection(tls("bank.pinned.example.com", 9443)).action,
            Action::kTerminate);
  EXPECT_EQ(snap_->decideConnection(tls("a.b.pinned.example.com")).action, Action::kTerminate);

  // Port-specific TCP listener wins over the port-less TLS ones, even for TLS bytes.
  d = snap_->decideConnection(tls("db.internal", 5432, "10.1.2.3"));
  EXPECT_EQ(d.listener, "tcp-db");
  EXPECT_EQ(d.action, Action::kPassthrough);

  // Plain HTTP: only port 80 has a listener.
  ConnectionInfo http = tcp("198.51.100.1", 80, "example.org");
  http.is_http = true;
  d = snap_->decideConnection(http);
  EXPECT_EQ(d.action, Action::kInspectHttp);
  EXPECT_EQ(d.listener, "http");
  http.dst_port = 8080;
  d = snap_->decideConnection(http);
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_THAT(d.reason, HasSubstr("no listener for HTTP on port 8080"));

  // Plain HTTP requests: the openai route attaches to every L7 listener, anthropic only to mitm.
  auto r = snap_->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).plain(80).info);
  EXPECT_EQ(r.rule, "AIProviderRoute default/openai rule 1");
  r = snap_->decideRequest(
      Req("api.anthropic.com", "/v1/messages").provider(llm::Provider::kAnthropic).plain(80).info);
  EXPECT_EQ(r.action, Verdict::kDeny);
  r = snap_->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).plain(8080).info);
  EXPECT_EQ(r.action, Verdict::kDeny);
  EXPECT_THAT(r.reason, HasSubstr("no listener for HTTP on port 8080"));

  // Opaque TCP elsewhere: no listener.
  d = snap_->decideConnection(tcp("198.51.100.1", 22));
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_THAT(d.reason, HasSubstr("no listener for TCP on port 22"));

  // TLS without any name or address cannot be terminated.
  d = snap_->decideConnection(tls("", 443, ""));
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_THAT(d.reason, HasSubstr("SNI"));
}

TEST_F(GatewayFixture, L4CidrPortHostnameAndSourceAgents) {
  Identity data_team = agent("default", {{"team", "data"}});
  ConnectionInfo c = tcp("10.9.8.7", 5432);
  c.identity = &me_;
  auto d = snap_->decideConnection(c);
  EXPECT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.rule, "EgressL4Route default/db rule 0");

  c.dst_ip = "192.0.2.10";  // outside 10/8
  d = snap_->decideConnection(c);
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_EQ(d.rule, "EgressGateway default/gw defaultPolicy deny-all");
  EXPECT_THAT(d.reason, HasSubstr("no EgressL4Route matches TCP to 192.0.2.10:5432"));

  // Rule 1: the hostname, only for agents labelled team=data.
  c.hostname = "db.example.com";
  EXPECT_EQ(snap_->decideConnection(c).action, Action::kDeny);
  c.identity = &data_team;
  d = snap_->decideConnection(c);
  EXPECT_EQ(d.action, Action::kPassthrough);
  EXPECT_EQ(d.rule, "EgressL4Route default/db rule 1");

  // IPv4-mapped IPv6 destination still matches the v4 CIDR.
  c = tcp("::ffff:10.0.0.1", 5432);
  EXPECT_EQ(snap_->decideConnection(c).action, Action::kPassthrough);
}

TEST_F(GatewayFixture, RoutesApplyOnlyToTheirNamespace) {
  Identity other = agent("team-b");
  ConnectionInfo c = tcp("10.9.8.7", 5432);
  c.identity = &other;
  EXPECT_EQ(snap_->decideConnection(c).action, Action::kDeny);
  auto d = snap_->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).as(&other).info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  // An unknown client (explicit proxy user) counts as the gateway's namespace.
  d = snap_->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_EQ(d.rule, "AIProviderRoute default/openai rule 1");
}

TEST_F(GatewayFixture, DefaultDenyNamesTheGatewayAndRequest) {
  auto d = snap_->decideRequest(Req("evil.example.com", "/", "POST").as(&me_).info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  EXPECT_EQ(d.rule, "EgressGateway default/gw defaultPolicy deny-all");
  EXPECT_EQ(d.reason,
            "EgressGateway default/gw defaultPolicy deny-all: no route matches POST "
            "evil.example.com/");
  EXPECT_EQ(d.deny_status, 403);
  EXPECT_FALSE(d.credential);
}

TEST_F(GatewayFixture, AiRulesMatchProviderModelAndEndpointInOrder) {
  auto d = snap_->decideRequest(Req("api.openai.com", "/v1/chat/completions")
                                    .provider(llm::Provider::kOpenAI)
                                    .model("gpt-4o-mini")
                                    .as(&me_)
                                    .info);
  ASSERT_EQ(d.action, Verdict::kAllow) << d.reason;
  EXPECT_EQ(d.rule, "AIProviderRoute default/openai rule 0");
  EXPECT_EQ(d.route, "AIProviderRoute default/openai");
  ASSERT_EQ(d.rate_limits.size(), 1u);
  EXPECT_EQ(d.rate_limits[0].policy, "default/per-agent");
  EXPECT_EQ(d.rate_limits[0].requests, 60);
  EXPECT_EQ(d.rate_limits[0].window, Duration(60000));
  EXPECT_EQ(d.rate_limits[0].scope, RateLimitScope::kPerAgent);
  ASSERT_TRUE(d.budget);
  EXPECT_EQ(d.budget->key, "default/openai#0");
  EXPECT_EQ(d.budget->max_tokens_per_execution, 10000);
  EXPECT_EQ(d.budget->max_output_tokens_per_request, 500);
  EXPECT_FALSE(d.capture.request_body);

  // Another model, or an unknown one, falls to rule 1.
  for (std::string_view model : {"gpt-3.5-turbo", ""}) {
    d = snap_->decideRequest(Req("api.openai.com", "/v1/chat/completions")
                                 .provider(llm::Provider::kOpenAI)
                                 .model(model)
                                 .as(&me_)
                                 .info);
    EXPECT_EQ(d.rule, "AIProviderRoute default/openai rule 1") << model;
    ASSERT_TRUE(d.budget);
    EXPECT_EQ(d.budget->key, "team-openai");
    EXPECT_EQ(d.budget->max_tokens_per_day, 1000000);
    EXPECT_TRUE(d.capture.request_body);
    EXPECT_TRUE(d.capture.response_body);
    EXPECT_EQ(d.capture.max_bytes, 1024);  // from the gateway's otlp.captureBody
    EXPECT_THAT(d.capture.redact_headers, ::testing::ElementsAre("x-secret"));
  }
  // Same model on another endpoint: rule 0 requires /v1/chat/completions.
  d = snap_->decideRequest(Req("api.openai.com", "/v1/embeddings")
                               .provider(llm::Provider::kOpenAI)
                               .model("gpt-4o")
                               .as(&me_)
                               .info);
  EXPECT_EQ(d.rule, "AIProviderRoute default/openai rule 1");

  // Anthropic only on /v1/messages.
  d = snap_->decideRequest(
      Req("api.anthropic.com", "/v1/messages").provider(llm::Provider::kAnthropic).as(&me_).info);
  EXPECT_EQ(d.rule, "AIProviderRoute default/anthropic rule 0");
  d = snap_->decideRequest(
      Req("api.anthropic.com", "/v1/models", "GET").provider(llm::Provider::kAnthropic).info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  EXPECT_EQ(d.rule, "EgressGateway default/gw defaultPolicy deny-all");
}

TEST_F(GatewayFixture, HeaderModifiers) {
  auto d = snap_->decideRequest(Req("api.openai.com", "/v1/chat/completions")
                                    .provider(llm::Provider::kOpenAI)
                                    .model("gpt-4o")
                                    .info);
  ASSERT_EQ(d.action, Verdict::kAllow);
  ASSERT_EQ(d.request_headers.set.size(), 1u);
  EXPECT_EQ(d.request_headers.set[0],
            std::make_pair(std::string("X-Team"), std::string("research")));
  ASSERT_EQ(d.request_headers.add.size(), 1u);
  EXPECT_EQ(d.request_headers.add[0].first, "X-Trace");
  EXPECT_THAT(d.request_headers.remove, ::testing::ElementsAre("openai-organization"));
  EXPECT_TRUE(d.response_headers.set.empty());
  EXPECT_THAT(d.response_headers.remove, ::testing::ElementsAre("set-cookie"));
}

TEST_F(GatewayFixture, CredentialFromBase64SecretGetsBearerPrefix) {
  auto d = snap_->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).info);
  ASSERT_TRUE(d.credential);
  EXPECT_EQ(d.credential->target, Credential::Target::kHeader);
  EXPECT_EQ(d.credential->name, "Authorization");
  EXPECT_EQ(d.credential->value, "Bearer sk-openai-test");  // decoded, trimmed, prefixed
  EXPECT_EQ(d.credential->policy, "default/openai-key");
  EXPECT_TRUE(d.credential_warning.empty());
  // The secret never shows up in the status messages.
  for (const ObjectStatus& s : result_.statuses) {
    EXPECT_THAT(s.message, ::testing::Not(HasSubstr("sk-openai-test")));
  }
}

TEST_F(GatewayFixture, BackendsFallbackAndPerBackendCredential) {
  auto d = snap_->decideRequest(Req("api.anthropic.com", "/v1/messages")
                                    .provider(llm::Provider::kAnthropic)
                                    .model("claude-opus-4")
                                    .info);
  ASSERT_EQ(d.action, Verdict::kAllow);
  ASSERT_EQ(d.backends.size(), 2u);
  const Backend& primary = d.backends[0];
  EXPECT_EQ(primary.name, "default/primary");
  EXPECT_EQ(primary.schema, llm::Provider::kAnthropic);
  EXPECT_EQ(primary.host, "dead.internal");
  EXPECT_EQ(primary.port, 443);
  EXPECT_TRUE(primary.tls);
  EXPECT_EQ(primary.weight, 1u);
  EXPECT_FALSE(primary.credential);  // uses the route-wide one
  const Backend& budget = d.backends[1];
  EXPECT_EQ(budget.weight, 3u);
  ASSERT_EQ(budget.model_rewrites.size(), 1u);
  EXPECT_EQ(budget.model_rewrites[0].from_glob, "claude-opus-*");
  EXPECT_EQ(budget.model_rewrites[0].to, "claude-haiku-4-5");
  EXPECT_TRUE(budget.ensure_stream_usage);
  ASSERT_TRUE(budget.credential);
  EXPECT_EQ(budget.credential->name, "x-api-key");
  EXPECT_EQ(budget.credential->value, "sk-ant-b2");  // x-api-key: no Bearer prefix
  EXPECT_EQ(budget.credential->policy, "default/anthropic-budget-key");
  ASSERT_TRUE(d.credential);
  EXPECT_EQ(d.credential->value, "sk-ant-test");

  ASSERT_TRUE(d.fallback);
  EXPECT_EQ(d.fallback->policy, "default/anthropic-chain");
  EXPECT_EQ(d.fallback->num_retries, 1);  // backends - 1
  EXPECT_THAT(d.fallback->retriable_status_codes, ::testing::ElementsAre(429, 503));
  ASSERT_TRUE(d.fallback->per_try_timeout);
  EXPECT_EQ(*d.fallback->per_try_timeout, Duration(20000));
  EXPECT_EQ(d.fallback->max_ejection_time, Duration(300000));
}

TEST_F(GatewayFixture, DenyPolicyWithCustomStatusAndMessage) {
  auto d = snap_->decideRequest(
      Req("generativelanguage.googleapis.com", "/v1beta/models/gemini-pro:generateContent")
          .provider(llm::Provider::kGemini)
          .info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  EXPECT_EQ(d.rule, "AIProviderRoute default/gemini rule 0");
  EXPECT_EQ(d.deny_status, 451);
  EXPECT_EQ(d.deny_message, "Gemini is not approved for this team");
  EXPECT_THAT(d.reason, HasSubstr("EgressDenyPolicy default/no-gemini"));
}

TEST_F(GatewayFixture, L4RouteOnTerminatingListenerAllowsTheHost) {
  auto d = snap_->decideRequest(Req("docs.example.com", "/guide", "GET").info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_EQ(d.rule, "EgressL4Route default/docs-site rule 0");
  auto c = snap_->decideConnection(tls("docs.example.com"));
  EXPECT_EQ(c.action, Action::kTerminate);
  EXPECT_EQ(c.rule, "EgressL4Route default/docs-site rule 0");
}

TEST_F(GatewayFixture, McpRoutesAndToolPolicy) {
  auto d =
      snap_->decideRequest(Req("mcp.example.com", "/mcp").mcp("tools/call", "search_web").info);
  ASSERT_EQ(d.action, Verdict::kAllow) << d.reason;
  EXPECT_EQ(d.rule, "MCPRoute default/tools rule 0");
  ASSERT_TRUE(d.tool_policy);
  EXPECT_EQ(d.tool_policy->max_calls_per_execution, 20);
  ASSERT_EQ(d.rate_limits.size(), 1u);  // the per-tool limit for search_web
  EXPECT_EQ(d.rate_limits[0].requests, 5);
  EXPECT_EQ(d.rate_limits[0].window, Duration(10000));
  ASSERT_EQ(d.request_headers.set.size(), 1u);

  d = snap_->decideRequest(Req("mcp.example.com", "/mcp").mcp("tools/call", "search_docs").info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_TRUE(d.rate_limits.empty());

  d = snap_->decideRequest(Req("mcp.example.com", "/mcp").mcp("tools/call", "search_secrets").info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  EXPECT_THAT(d.reason, HasSubstr("deniedTools of MCPRoute default/tools rule 0"));

  d = snap_->decideRequest(Req("mcp.example.com", "/mcp").mcp("tools/call", "delete_repo").info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  EXPECT_THAT(d.reason, HasSubstr("tool \"delete_repo\" is not in the allowedTools"));

  d = snap_->decideRequest(Req("mcp.example.com", "/mcp").mcp("tools/list").info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_EQ(d.rule, "MCPRoute default/tools rule 1");

  // Another host, or a non-MCP request, is not covered.
  d = snap_->decideRequest(Req("mcp.other.com", "/mcp").mcp("tools/list").info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  d = snap_->decideRequest(Req("mcp.example.com", "/", "GET").info);
  EXPECT_EQ(d.action, Verdict::kDeny);
}

TEST_F(GatewayFixture, UnknownGatewayIsDenied) {
  ConnectionInfo c = tls("api.openai.com");
  c.gateway = "default/other";
  auto d = snap_->decideConnection(c);
  EXPECT_EQ(d.action, Action::kDeny);
  EXPECT_THAT(d.reason, HasSubstr("default/other"));
  Identity id = agent();
  id.gateway = "gw";  // bare name: the agent's namespace
  c.gateway.clear();
  c.identity = &id;
  EXPECT_EQ(snap_->decideConnection(c).action, Action::kTerminate);
}

TEST(SnapshotTest, DefaultAllowPassesUnmatchedTraffic) {
  auto r = compile(parse(R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: open}
spec:
  defaultPolicy: allow-all
  listeners:
    - {name: mitm, protocol: TLS, tls: {mode: Terminate}}
    - {name: tcp, protocol: TCP}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {name: blocked-db}
spec:
  parentRefs: [{name: open, sectionName: tcp}]
  rules:
    - matches: [{destinationCIDRs: ["192.0.2.0/24"]}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressDenyPolicy
metadata: {name: no-db}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: EgressL4Route, name: blocked-db}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: everywhere}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: EgressGateway, name: open}]
  secretRef: {name: key}
  target: QueryParam
  queryParamName: key
---
apiVersion: v1
kind: Secret
metadata: {name: key}
stringData: {token: AIza-test}
)"),
                   1);
  expectAllAccepted(r);
  auto d = r.snapshot->decideRequest(Req("example.org", "/anything", "GET").info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_EQ(d.rule, "EgressGateway default/open defaultPolicy allow-all");
  EXPECT_FALSE(d.credential);  // a gateway-wide key never goes to unmatched hosts
  auto c = r.snapshot->decideConnection(tcp("198.51.100.3", 5432));
  EXPECT_EQ(c.action, Action::kPassthrough);
  EXPECT_EQ(c.rule, "EgressGateway default/open defaultPolicy allow-all");
  c = r.snapshot->decideConnection(tcp("192.0.2.9", 5432));
  EXPECT_EQ(c.action, Action::kDeny);
  EXPECT_EQ(c.rule, "EgressL4Route default/blocked-db rule 0");
  EXPECT_THAT(c.reason, HasSubstr("EgressDenyPolicy default/no-db"));
}

TEST(SnapshotTest, GatewayCatchAllCredentialAppliesToMatchedRoutes) {
  auto r = compile(parse(R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: gw}
spec:
  listeners: [{name: mitm, protocol: HTTPS}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: gemini}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{provider: gemini}]}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: gw-key}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: EgressGateway, name: gw}]
  secretRef: {name: gemini}
  target: Header
  headerName: x-goog-api-key
---
apiVersion: v1
kind: Secret
metadata: {name: gemini}
data: {token: QUl6YS1nZW1pbmk=}
)"),
                   1);
  expectAllAccepted(r);
  auto d = r.snapshot->decideRequest(Req("generativelanguage.googleapis.com", "/v1beta/models")
                                         .provider(llm::Provider::kGemini)
                                         .info);
  ASSERT_EQ(d.action, Verdict::kAllow);
  ASSERT_TRUE(d.credential);
  EXPECT_EQ(d.credential->name, "x-goog-api-key");
  EXPECT_EQ(d.credential->value, "AIza-gemini");
  // HTTPS listeners also inspect plaintext HTTP.
  d = r.snapshot->decideRequest(Req("generativelanguage.googleapis.com", "/v1beta/models")
                                    .provider(llm::Provider::kGemini)
                                    .plain(8080)
                                    .info);
  EXPECT_EQ(d.action, Verdict::kAllow);
}

TEST(SnapshotTest, AuthorizationWithSchemeIsKeptAsIs) {
  auto r = compile(parse(R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: gw}
spec:
  listeners: [{name: mitm, protocol: TLS, tls: {mode: Terminate}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: custom}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{provider: custom, endpoints: ["/api/*"]}]}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: basic}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: AIProviderRoute, name: custom}]
  secretRef: {name: basic}
  secretKey: auth
  target: Header
  headerName: authorization
---
apiVersion: v1
kind: Secret
metadata: {name: basic}
data: {auth: QmFzaWMgZFhObGNqcHdZWE56}
)"),
                   1);
  expectAllAccepted(r);
  auto d = r.snapshot->decideRequest(Req("internal.example.com", "/api/v2/run").info);
  ASSERT_EQ(d.action, Verdict::kAllow) << d.reason;
  ASSERT_TRUE(d.credential);
  EXPECT_EQ(d.credential->value, "Basic dXNlcjpwYXNz");
  d = r.snapshot->decideRequest(Req("internal.example.com", "/other").info);
  EXPECT_EQ(d.action, Verdict::kDeny);
}

TEST(SnapshotTest, BadObjectsAreRejectedWhileOthersCompile) {
  auto r = compile(fixture("bad_objects.yaml"), 3);
  auto check = [&](std::string_view kind, std::string_view name, bool accepted,
                   std::string_view reason, std::string_view message) {
    const ObjectStatus* s = statusOf(r, kind, name);
    ASSERT_NE(s, nullptr) << name;
    EXPECT_EQ(s->accepted, accepted) << name << ": " << s->message;
    EXPECT_EQ(s->reason, reason) << name << ": " << s->message;
    EXPECT_THAT(s->message, HasSubstr(std::string(message))) << name;
  };
  check("EgressGateway", "gw", true, "Accepted", "default CA");
  check("EgressGateway", "no-ca", false, "InvalidSecretRef",
        "spec.listeners[0].tls.caCertRef: Secret default/missing-ca not found");
  check("AIProviderRoute", "good", true, "Accepted", "EgressGateway default/gw listener mitm");
  check("AIProviderRoute", "dangling-backend", false, "BackendNotFound",
        "spec.rules[1].backendRefs[0]: Backend default/nowhere not found");
  check("AIProviderRoute", "bad-glob", false, "Invalid", "spec.rules[0].matches[0].models[0]");
  check("AIProviderRoute", "bad-provider", false, "Invalid",
        "spec.rules[0].matches[0].provider: unknown provider \"openia\"");
  check("AIProviderRoute", "orphan", false, "NoMatchingParent",
        "spec.parentRefs[0]: EgressGateway default/no-such-gateway not found");
  check("AIProviderRoute", "on-rejected-gateway", false, "RefNotAccepted",
        "EgressGateway default/no-ca is not accepted");
  check("EgressL4Route", "bad-cidr", false, "Invalid",
        "spec.rules[0].matches[0].destinationCIDRs[1]: \"10.300.0.0/16\"");
  check("CredentialInjectionPolicy", "missing-secret", false, "InvalidSecretRef",
        "spec.secretRef: Secret default/openai not found");
  check("CredentialInjectionPolicy", "signing", false, "Unsupported", "ProviderAuth");
  check("CredentialInjectionPolicy", "on-dangling", false, "RefNotAccepted",
        "AIProviderRoute default/dangling-backend is not accepted");
  check("FallbackRoutingPolicy", "no-target", false, "TargetNotFound",
        "spec.targetRefs[0]: AIProviderRoute default/ghost not found");
  check("AIProviderRoute", "header-smuggling", false, "Invalid",
        "spec.rules[0].filters[0].requestHeaderModifier.set[0].value: must not contain CR");
  check("AIProviderRoute", "classifier", false, "Unsupported",
        "spec.rules[0].filters[0].extensionRef: Classifier.clrk.apoxy.dev is not supported");
  check("MCPRoute", "bad-regex", false, "Invalid",
        "spec.rules[0].filters[0].toolPolicy.deniedToolsRegex[0]: bad regular expression");
  check("EgressDenyPolicy", "status-200", false, "Invalid",
        "spec.denyResponse.statusCode: 200 is not an HTTP error status");
  check("Backend", "pool", false, "Unsupported", "spec.type: InferencePool");

  // The good route works; the rejected one left nothing behind (its openai rule is gone too).
  auto d = r.snapshot->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_EQ(d.rule, "AIProviderRoute default/good rule 0");
  // Missing Secret: still sent, without a credential, and the decision says why.
  EXPECT_FALSE(d.credential);
  EXPECT_THAT(d.credential_warning,
              HasSubstr("CredentialInjectionPolicy default/missing-secret is not applied: "
                        "spec.secretRef: Secret default/openai not found"));
  d = r.snapshot->decideRequest(
      Req("api.anthropic.com", "/v1/messages").provider(llm::Provider::kAnthropic).info);
  EXPECT_EQ(d.action, Verdict::kDeny);
  EXPECT_EQ(r.snapshot->gateway("default/no-ca"), nullptr);
}

TEST(SnapshotTest, MissingSecretKeyAndConflicts) {
  auto r = compile(parse(R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: gw}
spec:
  listeners: [{name: mitm, protocol: TLS, tls: {mode: Terminate}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: r}
spec:
  parentRefs: [{name: gw}]
  rules: [{matches: [{provider: openai}]}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: a-first}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: AIProviderRoute, name: r}]
  secretRef: {name: s}
  secretKey: nope
  target: Header
  headerName: Authorization
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: b-second}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: AIProviderRoute, name: r}]
  secretRef: {name: s}
  target: Header
  headerName: Authorization
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: c-section}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: AIProviderRoute, name: r, sectionName: ghost}]
  secretRef: {name: s}
  target: Header
  headerName: Authorization
---
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData: {token: t}
)"),
                   1);
  const ObjectStatus* a = statusOf(r, "CredentialInjectionPolicy", "a-first");
  ASSERT_NE(a, nullptr);
  EXPECT_FALSE(a->accepted);
  EXPECT_EQ(a->reason, "InvalidSecretRef");
  EXPECT_THAT(a->message,
              HasSubstr("spec.secretKey: Secret default/s has no key \"nope\" (keys: token)"));
  const ObjectStatus* b = statusOf(r, "CredentialInjectionPolicy", "b-second");
  EXPECT_FALSE(b->accepted);
  EXPECT_EQ(b->reason, "Conflicted");
  const ObjectStatus* c = statusOf(r, "CredentialInjectionPolicy", "c-section");
  EXPECT_FALSE(c->accepted);
  EXPECT_THAT(c->message, HasSubstr("spec.targetRefs[0].sectionName: AIProviderRoute default/r "
                                    "has no backendRef named \"ghost\""));
}

TEST(SnapshotTest, AllowedRoutesAndListenerCompatibility) {
  auto r = compile(parse(R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: gw, namespace: infra}
spec:
  listeners:
    - name: tcp
      protocol: TCP
    - name: mitm
      protocol: TLS
      tls: {mode: Terminate}
      allowedRoutes:
        namespaces: {from: Selector, selector: {matchLabels: {egress: allowed}}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {egress: allowed}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: on-tcp, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{matches: [{provider: openai}]}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: team-a-route, namespace: team-a}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules: [{matches: [{provider: openai}]}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: team-b-route, namespace: team-b}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules: [{matches: [{provider: openai}]}]
)"),
                   1);
  const ObjectStatus* s = statusOf(r, "AIProviderRoute", "on-tcp");
  EXPECT_FALSE(s->accepted);
  EXPECT_EQ(s->reason, "NotAllowedByListeners");
  EXPECT_THAT(s->message, HasSubstr("listener tcp (TCP) cannot inspect AIProviderRoute traffic"));
  EXPECT_TRUE(statusOf(r, "AIProviderRoute", "team-a-route")->accepted);
  s = statusOf(r, "AIProviderRoute", "team-b-route");
  EXPECT_FALSE(s->accepted);
  EXPECT_THAT(s->message, HasSubstr("does not select namespace team-b"));

  Identity a = agent("team-a");
  auto d = r.snapshot->decideRequest(
      Req("api.openai.com", "/v1/models", "GET").provider(llm::Provider::kOpenAI).as(&a).info);
  EXPECT_EQ(d.action, Verdict::kAllow);
  EXPECT_EQ(d.rule, "AIProviderRoute team-a/team-a-route rule 0");
}

TEST(SnapshotTest, ReferenceExamplesCompileAccepted) {
  for (const char* name : {"example_echo_bot.yaml", "example_fallback_router.yaml",
                           "example_model_router.yaml", "example_multi_listener.yaml"}) {
    SCOPED_TRACE(name);
    auto r = compile(fixture(name), 1);
    EXPECT_FALSE(r.statuses.empty());
    expectAllAccepted(r);
    EXPECT_NE(r.snapshot->gateway(""), nullptr);
  }
  // fallback-router: the chain is ordered, two backends -> one retry.
  auto r = compile(fixture("example_fallback_router.yaml"), 1);
  auto d = r.snapshot->decideRequest(
      Req("api.anthropic.com", "/v1/messages").provider(llm::Provider::kAnthropic).info);
  ASSERT_EQ(d.backends.size(), 2u);
  EXPECT_EQ(d.backends[0].name, "default/anthropic-primary");
  ASSERT_TRUE(d.fallback);
  EXPECT_EQ(d.fallback->num_retries, 1);
  ASSERT_TRUE(d.credential);
  EXPECT_EQ(d.credential->value, "sk-ant-test");

  // model-router: opus goes to the budget backend, the rest is split 90/10.
  r = compile(fixture("example_model_router.yaml"), 1);
  d = r.snapshot->decideRequest(Req("api.anthropic.com", "/v1/messages")
                                    .provider(llm::Provider::kAnthropic)
                                    .model("claude-opus-4-1")
                                    .info);
  EXPECT_EQ(d.rule, "AIProviderRoute default/model-router rule 0");
  ASSERT_EQ(d.backends.size(), 1u);
  EXPECT_EQ(d.backends[0].name, "default/anthropic-budget");
  d = r.snapshot->decideRequest(Req("api.anthropic.com", "/v1/messages")
                                    .provider(llm::Provider::kAnthropic)
                                    .model("claude-sonnet-4")
                                    .info);
  EXPECT_EQ(d.rule, "AIProviderRoute default/model-router rule 1");
  ASSERT_EQ(d.backends.size(), 2u);
  EXPECT_EQ(d.backends[0].weight, 90u);
  EXPECT_FALSE(d.fallback);

  // multi-listener: port 30099 is raw TCP, everything else is MITM.
  r = compile(fixture("example_multi_listener.yaml"), 1);
  auto c = r.snapshot->decideConnection(tcp("172.18.0.2", 30099, "clrk-k3s"));
  EXPECT_EQ(c.action, Action::kPassthrough);
  EXPECT_EQ(c.listener, "egress-tcp");
  c = r.snapshot->decideConnection(tls("api.openai.com"));
  EXPECT_EQ(c.action, Action::kTerminate);
  EXPECT_EQ(c.listener, "egress-mitm");
  c = r.snapshot->decideConnection(tcp("172.18.0.2", 22));
  EXPECT_EQ(c.action, Action::kDeny);
}

TEST(SnapshotTest, NeverThrowsOnOddInput) {
  std::vector<Json> objects = {
      Json(42),
      Json::array(),
      Json{{"apiVersion", "clrk.apoxy.dev/v1alpha1"}, {"kind", "EgressGateway"}},
      Json{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
           {"kind", "AIProviderRoute"},
           {"metadata", {{"name", "x"}}},
           {"spec", {{"parentRefs", 7}, {"rules", "nope"}}}},
      Json{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
           {"kind", "Backend"},
           {"metadata", {{"name", "b"}}},
           {"spec", {{"upstream", {{"host", 12}}}}}},
      Json{{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", {{"name", "s"}}}, {"data", 5}},
      Json{{"apiVersion", "apps/v1"}, {"kind", "Deployment"}},
  };
  CompileResult r;
  EXPECT_NO_THROW(r = compile(objects, 9));
  ASSERT_NE(r.snapshot, nullptr);
  EXPECT_EQ(r.snapshot->generation(), 9u);
  for (const ObjectStatus& s : r.statuses) {
    if (s.kind == "Backend") {
      EXPECT_FALSE(s.accepted);
    }
  }
  EXPECT_EQ(r.snapshot->decideConnection(tls("x.example.com")).action, Action::kDeny);
}

// Every node of the big fixture replaced by values of the wrong type: compile() must neither throw
// nor crash (ASan/UBSan), and must still give every egress object a status.
TEST(SnapshotTest, SurvivesWrongTypesEverywhere) {
  const std::vector<Json> base = fixture("gateway.yaml");
  std::vector<std::pair<size_t, Json::json_pointer>> nodes;
  for (size_t i = 0; i < base.size(); ++i) {
    Json flat = base[i].flatten();
    for (const auto& [pointer, value] : flat.items()) {
      Json::json_pointer p(pointer);
      while (!p.empty()) {
        nodes.emplace_back(i, p);
        p = p.parent_pointer();
      }
    }
  }
  std::sort(nodes.begin(), nodes.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second.to_string() < b.second.to_string();
  });
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  ASSERT_GT(nodes.size(), 100u);
  // One wrong-typed value per node, rotating through the kinds of wrongness.
  const Json replacements[] = {Json(-7), Json("x"), Json::object(), Json()};
  size_t runs = 0;
  for (const auto& [index, pointer] : nodes) {
    const Json& replacement = replacements[runs % 4];
    std::vector<Json> objects = base;
    objects[index][pointer] = replacement;
    CompileResult r;
    ASSERT_NO_THROW(r = compile(objects, 1)) << pointer.to_string();
    ASSERT_NE(r.snapshot, nullptr);
    (void)r.snapshot->decideConnection(tls("api.openai.com"));
    ++runs;
  }
  EXPECT_GT(runs, 100u);
}

TEST(SnapshotTest, DuplicatesAreReported) {
  auto objects = parse(R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: rl}
spec: {requests: 1, window: 1s}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: rl}
spec: {requests: 2, window: 1s}
)");
  auto r = compile(objects, 1);
  ASSERT_EQ(r.statuses.size(), 2u);
  EXPECT_TRUE(r.statuses[0].accepted);
  EXPECT_FALSE(r.statuses[1].accepted);
  EXPECT_EQ(r.statuses[1].reason, "Duplicate");
}

TEST(SnapshotTest, HolderSwapsAtomically) {
  SnapshotHolder holder;
  EXPECT_EQ(holder.current(), nullptr);
  auto first = compile(fixture("example_echo_bot.yaml"), 1).snapshot;
  holder.swap(first);
  auto kept = holder.current();
  std::thread writer([&] {
    for (uint64_t g = 2; g < 50; ++g) holder.swap(compile({}, g).snapshot);
  });
  for (int i = 0; i < 1000; ++i) {
    auto s = holder.current();
    ASSERT_NE(s, nullptr);
  }
  writer.join();
  EXPECT_EQ(kept->generation(), 1u);  // a reader keeps the snapshot it started with
  EXPECT_EQ(holder.current()->generation(), 49u);
}

TEST(SnapshotTest, DecisionsAreFast) {
  auto r = compile(fixture("gateway.yaml"), 1);
  Identity me = agent();
  RequestInfo info = Req("api.openai.com", "/v1/chat/completions")
                         .provider(llm::Provider::kOpenAI)
                         .model("gpt-4o")
                         .as(&me)
                         .info;
  auto start = std::chrono::steady_clock::now();
  constexpr int kIterations = 5000;
  for (int i = 0; i < kIterations; ++i) {
    auto d = r.snapshot->decideRequest(info);
    ASSERT_EQ(d.action, Verdict::kAllow);
  }
  auto per_call = (std::chrono::steady_clock::now() - start) / kIterations;
  // Generous bound (sanitizers, shared CI cores); catches accidental per-call recompilation.
  EXPECT_LT(per_call, std::chrono::microseconds(2000));
}

}  // namespace
}  // namespace clrk::egress::config
