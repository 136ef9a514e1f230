// The controllers against the real embedded API server (in memory) and a real worker API
// (ExecutionManager + ApiServer + Lease) whose sandboxes are plain processes: HTTP trigger round
// trips, Invocation records, TaskAgent and WorkerPool status, failures, timeouts, concurrency
// limits, CLI-created invocations, agent deletion and a lost worker.
#include "clrk/api/builtin_types.h"
#include "clrk/apiserver/server.h"
#include "clrk/base/base64.h"
#include "clrk/base/time.h"
#include "clrk/controller/egress_status.h"
#include "clrk/controller/invocation_gc.h"
#include "clrk/controller/manager.h"
#include "clrk/controller/trigger_server.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/proxy.h"
#include "clrk/worker/certs.h"
#include "clrk/worker/executions.h"
#include "clrk/worker/fake_runtime_for_test.h"
#include "clrk/worker/registration.h"
#include "clrk/worker/server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <sys/socket.h>

namespace clrk::controller {
namespace {

namespace fs = std::filesystem;
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using Json = kube::Json;

struct HttpResult {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
};

HttpResult post(uint16_t port, const std::string& target, const std::string& body,
                std::map<std::string, std::string> headers = {}) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> request{http::verb::post, target, 11};
  request.set(http::field::host, "127.0.0.1");
  request.set(http::field::content_type, "application/json");
  for (const auto& [key, value] : headers) request.set(key, value);
  request.body() = body;
  request.prepare_payload();
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  HttpResult result;
  result.status = response.result_int();
  result.body = response.body();
  for (const auto& field : response) {
    result.headers[std::string(field.name_string())] = std::string(field.value());
  }
  return result;
}

// A streamed HTTP/1.1 response read as it arrives: the head first, then the chunks one read at a
// time (reads give up after 30 s, so a broken stream fails the test instead of hanging it).
class StreamingPost {
 public:
  StreamingPost(uint16_t port, const std::string& target, const std::string& body,
                const std::map<std::string, std::string>& headers)
      : stream_(ioc_) {
    stream_.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    timeval timeout{30, 0};
    setsockopt(stream_.socket().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    http::request<http::string_body> request{http::verb::post, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.set(http::field::content_type, "application/json");
    for (const auto& [key, value] : headers) request.set(key, value);
    request.body() = body;
    request.prepare_payload();
    http::write(stream_, request);
    parser_.body_limit(16 << 20);
    on_chunk_ = [this](uint64_t, beast::string_view data, beast::error_code&) {
      chunks_.append(data.data(), data.size());
      return data.size();
    };
    parser_.on_chunk_body(on_chunk_);
    http::read_header(stream_, buffer_, parser_);
  }

  int status() const { return static_cast<int>(parser_.get().result_int()); }
  // A header (or, once the response ended, a trailer) field; "" when absent.
  std::string field(const std::string& name) const {
    auto it = parser_.get().find(name);
    return it == parser_.get().end() ? "" : std::string(it->value());
  }
  // Reads until the body holds `text` (true) or the response ends or fails (false).
  bool readUntil(const std::string& text) {
    while (chunks_.find(text) == std::string::npos) {
      if (parser_.is_done() || !readSome()) return false;
    }
    return true;
  }
  bool readToEnd() {
    while (!parser_.is_done()) {
      if (!readSome()) return false;
    }
    return true;
  }
  // The streamed body (chunked), or the whole body of a buffered reply once read.
  std::string body() const { return chunks_.empty() ? parser_.get().body() : chunks_; }

 private:
  bool readSome() {
    beast::error_code ec;
    http::read_some(stream_, buffer_, parser_, ec);
    return !ec;
  }

  net::io_context ioc_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::string_body> parser_;
  std::function<size_t(uint64_t, beast::string_view, beast::error_code&)> on_chunk_;
  std::string chunks_;
};

// The events of an SSE body: {"event": name, "data": parsed JSON}, comments skipped.
std::vector<Json> sseEvents(const std::string& body) {
  std::vector<Json> events;
  size_t start = 0;
  size_t end = 0;
  while ((end = body.find("\n\n", start)) != std::string::npos) {
    std::string block = body.substr(start, end - start);
    start = end + 2;
    Json event = Json::object();
    size_t line_start = 0;
    while (line_start <= block.size()) {
      size_t line_end = block.find('\n', line_start);
      if (line_end == std::string::npos) line_end = block.size();
      std::string line = block.substr(line_start, line_end - line_start);
      if (line.rfind("event: ", 0) == 0) event["event"] = line.substr(7);
      if (line.rfind("data: ", 0) == 0) event["data"] = Json::parse(line.substr(6));
      line_start = line_end + 1;
    }
    if (event.contains("event")) events.push_back(event);
  }
  return events;
}

// An unsigned JWT-shaped token (header.payload.signature, base64url): clrk reads its claims and
// checks nothing.
std::string unsignedJwt(const Json& payload) {
  auto encode = [](const std::string& data) {
    std::string text = base64Encode(data);
    std::replace(text.begin(), text.end(), '+', '-');
    std::replace(text.begin(), text.end(), '/', '_');
    while (!text.empty() && text.back() == '=') text.pop_back();
    return text;
  };
  return encode(R"({"alg":"RS256","typ":"JWT"})") + "." + encode(payload.dump()) + ".c2ln";
}

const api::ResourceType& kind(std::string_view name) {
  const auto* type = api::Registry::builtin().byKind("clrk.apoxy.dev/v1alpha1", name);
  if (type == nullptr) std::abort();
  return *type;
}

Json taskAgent(const std::string& name, const std::string& script, Json extra_spec = {}) {
  Json agent = {
      {"apiVersion", "clrk.apoxy.dev/v1alpha1"},
      {"kind", "TaskAgent"},
      {"metadata", {{"name", name}, {"namespace", "default"}, {"labels", {{"app", name}}}}},
      {"spec",
       {{"workerPoolRef", "pool-a"},
        {"timeout", "30s"},
        {"template",
         {{"spec",
           {{"image", "host"},
            {"command", {"/bin/sh", "-c", script}},
            {"env", {{{"name", "GREETING"}, {"value", "hi"}}}}}}}}}}};
  if (extra_spec.is_object()) agent["spec"].update(extra_spec);
  return agent;
}

Json workerPool(const std::string& name) {
  return {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
          {"kind", "WorkerPool"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec", {{"replicas", 1}, {"template", {{"image", "clrk/worker:dev"}}}}}};
}

Json daemonAgent(const std::string& name, const std::string& script, Json extra_spec = {}) {
  Json agent = taskAgent(name, script, std::move(extra_spec));
  agent["kind"] = "DaemonAgent";
  agent["spec"].erase("timeout");
  return agent;
}

// A namespaced clrk egress object (EgressGateway, route, policy) in "default".
Json egressObject(const std::string& kind_name, const std::string& name, Json spec) {
  return Json{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
              {"kind", kind_name},
              {"metadata", {{"name", name}, {"namespace", "default"}}},
              {"spec", std::move(spec)}};
}

// An EgressGateway with one listener terminating TLS on 443.
Json terminatingGateway(const std::string& name) {
  return egressObject("EgressGateway", name,
                      {{"listeners",
                        {{{"name", "https"},
                          {"protocol", "TLS"},
                          {"port", 443},
                          {"tls", {{"mode", "Terminate"}}}}}}});
}

// One worker: the real ExecutionManager and worker API with process sandboxes, registered
// through a real Lease, and a real egress whose explicit listener on loopback serves the metadata
// endpoint (every sandbox has the address 127.0.0.1, so a plain-process agent that calls it
// through `curl -x $CLRK_TEST_EGRESS` is attributed to its execution; one at a time).
struct TestWorker {
  worker::testing::FakeRuntime runtime;
  worker::testing::FakeNetwork network;
  egress::config::SnapshotHolder snapshots;
  egress::IdentityMap identities;
  egress::MetadataStore metadata;
  std::unique_ptr<egress::Proxy> egress;
  std::unique_ptr<worker::ExecutionManager> executions;
  std::unique_ptr<worker::ApiServer> server;
  std::unique_ptr<worker::LeaseKeeper> lease;

  void start(kube::ClientPtr client, const std::string& name, const std::string& pool,
             int max_executions, int lease_seconds = 15) {
    auto token = worker::ensureWorkerToken(*client, "clrk-system");
    ASSERT_TRUE(token.ok()) << token.status().toString();
    worker::ExecutionManagerOptions options;
    options.max_executions = max_executions;
    options.ca_cert_pem = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";
    options.identity_linger = 100ms;
    options.stop_grace = 500ms;
    snapshots.swap(egress::config::compile({}, 1).snapshot);
    egress::ProxyOptions proxy_options;
    proxy_options.threads = 1;
    proxy_options.explicit_listen = "127.0.0.1:0";
    auto proxy = egress::Proxy::start(proxy_options, snapshots, identities, nullptr, &metadata);
    ASSERT_TRUE(proxy.ok()) << proxy.status().toString();
    egress = std::move(proxy).value();
    network.address_for_all = "127.0.0.1";
    executions = std::make_unique<worker::ExecutionManager>(options, runtime, &network, nullptr,
                                                            &identities, &metadata);
    auto cert = worker::generateSelfSigned(name, {"127.0.0.1"});
    ASSERT_TRUE(cert.ok());
    worker::ServerOptions server_options;
    server_options.cert_pem = cert->cert_pem;
    server_options.key_pem = cert->key_pem;
    server_options.token = *token;
    auto started = worker::ApiServer::start(server_options, *executions,
                                            [this] { return toJson(executions->capacity()); });
    ASSERT_TRUE(started.ok()) << started.status().toString();
    server = std::move(started).value();
    worker::LeaseOptions lease_options;
    lease_options.worker_name = name;
    lease_options.pool = pool;
    lease_options.pool_namespace = "default";
    lease_options.endpoint = "https://127.0.0.1:" + std::to_string(server->port());
    lease_options.fingerprint = cert->fingerprint;
    lease_options.lease_duration_seconds = lease_seconds;
    lease_options.renew_interval = std::chrono::milliseconds(lease_seconds * 1000 / 3);
    lease = std::make_unique<worker::LeaseKeeper>(client, lease_options,
                                                  [this] { return executions->capacity(); });
    ASSERT_TRUE(lease->start().ok());
  }
  void stop() {
    lease.reset();
    if (server) server->stop();
    server.reset();
    executions.reset();
    if (egress) egress->stop();
    egress.reset();
  }
  std::string egressUrl() const {
    return "http://127.0.0.1:" + std::to_string(egress->explicitPort());
  }
  ~TestWorker() { stop(); }
};

class ControllerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("clrk-controller-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    apiserver::ServerOptions options;
    options.state_dir = dir_;
    options.in_memory = true;
    api_ = apiserver::makeServer(options);
    ASSERT_TRUE(api_->start().ok());
    kube::RestConfig config;
    config.server = api_->url();
    config.ca_pem = api_->caCertificatePem();
    config.token = api_->token();
    auto client = kube::Client::create(config);
    ASSERT_TRUE(client.ok());
    client_ = *client;
    ASSERT_TRUE(worker::ensureNamespace(*client_, "clrk-system").ok());
    ASSERT_TRUE(client_->create(kind("WorkerPool"), "default", workerPool("pool-a")).ok());
    worker_.start(client_, "w1", "pool-a", 3);
    manager_ = Manager::create(client_, ManagerOptions{});
    Status started = manager_->start();
    ASSERT_TRUE(started.ok()) << started.toString();
    std::string url = manager_->triggerUrl();
    trigger_port_ = static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
  }
  void TearDown() override {
    if (manager_) manager_->stop();
    worker_.stop();
    if (api_) api_->stop();
    fs::remove_all(dir_);
  }

  void apply(const Json& object) {
    auto created = client_->create(kind(object["kind"].get<std::string>()), "default", object);
    ASSERT_TRUE(created.ok()) << created.status().toString();
  }

  // Polls `read` until `done` holds (bounded); returns the last object read.
  Json waitFor(const std::string& kind_name, const std::string& name,
               const std::function<bool(const Json&)>& done, std::chrono::seconds limit = 30s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    Json last;
    while (std::chrono::steady_clock::now() < deadline) {
      auto object = client_->get(kind(kind_name), "default", name);
      if (object.ok()) {
        last = *object;
        if (done(last)) return last;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << kind_name << " " << name
                  << " never reached the condition; last: " << last.dump();
    return last;
  }

  // Polls (bounded, 20 s) until `name` is gone, e.g. after its finalizer ran.
  void waitGone(const std::string& kind_name, const std::string& name) {
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline &&
           client_->get(kind(kind_name), "default", name).ok()) {
      std::this_thread::sleep_for(50ms);
    }
  }

  static std::string conditionReason(const Json& object, const std::string& type) {
    for (const auto& cond :
         object.value("status", Json::object()).value("conditions", Json::array())) {
      if (cond.value("type", "") == type)
        return cond.value("status", "") + "/" + cond.value("reason", "");
    }
    return "";
  }

  HttpResult invoke(const std::string& agent, const std::string& body,
                    std::map<std::string, std::string> headers = {}) {
    return post(trigger_port_, "/v1/namespaces/default/taskagents/" + agent + "/invoke", body,
                std::move(headers));
  }

  void waitReady(const std::string& agent) {
    waitFor("TaskAgent", agent,
            [](const Json& a) { return conditionReason(a, "Ready") == "True/Ready"; });
  }

  // Replaces the manager with one using `options` (e.g. a short crash-loop backoff).
  void restartManager(ManagerOptions options) {
    manager_->stop();
    manager_ = Manager::create(client_, std::move(options));
    ASSERT_TRUE(manager_->start().ok());
    std::string url = manager_->triggerUrl();
    trigger_port_ = static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
  }
  static ManagerOptions fastBackoff() {
    ManagerOptions options;
    options.daemons.backoff_base = 200ms;
    options.daemons.backoff_max = 800ms;
    return options;
  }
  static std::string daemonField(const Json& agent, const std::string& field) {
    const Json status = agent.value("status", Json::object());
    if (!status.contains(field)) return "";
    return status[field].is_string() ? status[field].get<std::string>() : status[field].dump();
  }

  fs::path dir_;
  apiserver::ServerPtr api_;
  kube::ClientPtr client_;
  TestWorker worker_;
  std::unique_ptr<Manager> manager_;
  uint16_t trigger_port_ = 0;
};

TEST_F(ControllerTest, HttpTriggerRunsTheAgentAndRecordsTheInvocation) {
  apply(taskAgent("echo", "cat; echo; echo \"$GREETING $CLRK_REQUEST_ID $CLRK_TRIGGER\" >&2"));
  waitReady("echo");
  HttpResult reply = invoke("echo", R"({"question":"ping"})", {{"X-Request-Id", "req-42"}});
  ASSERT_EQ(reply.status, 200) << reply.body;
  // stdout is the CloudEvents envelope the agent read on stdin (a JSON object), so the reply is
  // typed application/json.
  EXPECT_EQ(reply.headers["Content-Type"], "application/json");
  Json event = Json::parse(reply.body);
  EXPECT_EQ(event["specversion"], "1.0");
  EXPECT_EQ(event["data"]["question"], "ping");
  EXPECT_EQ(event["clrkrequestid"], "req-42");
  EXPECT_EQ(event["clrktrigger"], "HTTP");
  EXPECT_EQ(event["source"], "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents/echo");
  std::string invocation = reply.headers["X-Clrk-Invocation"];
  ASSERT_FALSE(invocation.empty());
  EXPECT_EQ(event["id"], invocation);
  EXPECT_EQ(reply.headers["X-Clrk-Request-Id"], "req-42");
  EXPECT_EQ(reply.headers["X-Clrk-Worker"], "w1");
  EXPECT_EQ(reply.headers["X-Clrk-Exit-Code"], "0");

  Json record = waitFor("Invocation", invocation, [](const Json& inv) {
    return inv["status"].value("phase", "") == "Succeeded";
  });
  EXPECT_EQ(record["spec"]["parentRef"]["name"], "echo");
  EXPECT_EQ(record["spec"]["trigger"]["type"], "HTTP");
  EXPECT_EQ(record["spec"]["requestId"], "req-42");
  EXPECT_EQ(record["metadata"]["labels"]["clrk.apoxy.dev/agent"], "echo");
  EXPECT_EQ(record["metadata"]["ownerReferences"][0]["kind"], "TaskAgent");
  EXPECT_EQ(record["status"]["worker"], "w1");
  EXPECT_EQ(record["status"]["exitCode"], 0);
  EXPECT_EQ(Json::parse(record["status"]["output"].get<std::string>())["data"]["question"], "ping");
  EXPECT_THAT(record["status"]["stderrTail"].get<std::string>(), HasSubstr("hi req-42 HTTP"));
  EXPECT_EQ(conditionReason(record, "Completed"), "True/Completed");

  // The worker ran exactly what the template says, with the agent's identity.
  ASSERT_EQ(worker_.runtime.specs.size(), 1u);
  EXPECT_EQ(worker_.runtime.specs[0].argv.back(),
            "cat; echo; echo \"$GREETING $CLRK_REQUEST_ID $CLRK_TRIGGER\" >&2");

  // The header form of the reference's ingress reaches the same agent.
  HttpResult by_header = post(trigger_port_, "/", "{}", {{"X-Clrk-TaskAgent", "default/echo"}});
  EXPECT_EQ(by_header.status, 200) << by_header.body;
}

// A poke renews the Lease only when the capacity then differs from what the Lease says.
TEST_F(ControllerTest, LeasePokesWriteOnlyCapacityChanges) {
  std::atomic<int> running{0};
  worker::LeaseOptions options;
  options.worker_name = "poked";
  options.pool = "pool-a";
  options.endpoint = "https://127.0.0.1:1";
  options.fingerprint = std::string(64, 'a');
  options.renew_interval = 1h;  // no periodic renewal during the test
  options.poke_delay = 0ms;
  worker::LeaseKeeper lease(client_, options, [&running] {
    worker::WorkerCapacity capacity;
    capacity.max_executions = 4;
    capacity.running = running.load();
    capacity.free = 4 - capacity.running;
    return capacity;
  });
  ASSERT_TRUE(lease.start().ok());
  EXPECT_EQ(lease.renewals(), 1);
  auto runningInLease = [&]() -> int {
    auto object = client_->get(api::builtinType("coordination.k8s.io/v1", "Lease"), "clrk-system",
                               "worker-poked");
    if (!object.ok()) return -1;
    std::string text = (*object)["metadata"]["annotations"].value(
        std::string(worker::kAnnotationCapacity), std::string("{}"));
    return Json::parse(text, nullptr, false).value("running", -1);
  };
  auto waitRunningInLease = [&](int want) {
    for (int i = 0; i < 600 && runningInLease() != want; ++i) std::this_thread::sleep_for(50ms);
    return runningInLease();
  };
  // The keeper counts a renewal once the server answered its write, a moment after the write is
  // visible to a reader: wait for the count too.
  auto waitRenewals = [&](int want) {
    for (int i = 0; i < 600 && lease.renewals() < want; ++i) std::this_thread::sleep_for(10ms);
    return lease.renewals();
  };
  running = 1;
  lease.poke();
  EXPECT_EQ(waitRunningInLease(1), 1);
  EXPECT_EQ(waitRenewals(2), 2);
  lease.poke();  // nothing changed: no write
  running = 0;
  lease.poke();
  EXPECT_EQ(waitRunningInLease(0), 0);
  EXPECT_EQ(waitRenewals(3), 3);
  lease.poke();  // nothing changed again
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(lease.renewals(), 3);
}

TEST_F(ControllerTest, WarmPoolSandboxesAreKeptOnTheWorkerAndClaimedByInvocations) {
  ManagerOptions options;
  options.warm_pools.interval = 200ms;
  restartManager(options);
  apply(taskAgent("warm", "cat >/dev/null; echo warm-ok", {{"warmPoolSize", 1}}));
  // The controller tells the worker; the worker boots one; the controller reports it.
  waitFor("TaskAgent", "warm", [](const Json& a) {
    return a.value("status", Json::object()).value("warmSandboxes", 0) == 1;
  });
  auto pools = worker_.executions->warmPools();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0].key, "default/warm");
  EXPECT_EQ(pools[0].ready, 1);

  HttpResult reply = invoke("warm", "{}");
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.body, "warm-ok\n");
  Json record = waitFor("Invocation", reply.headers["X-Clrk-Invocation"], [](const Json& inv) {
    return inv["status"].value("phase", "") == "Succeeded";
  });
  EXPECT_THAT(record["status"].value("sandboxId", ""), ::testing::StartsWith("wp-"));
  pools = worker_.executions->warmPools();
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0].claims, 1u);  // the invocation ran in the warm sandbox
  EXPECT_EQ(pools[0].misses, 0u);
  {
    std::lock_guard lock(worker_.runtime.mutex_);
    for (const auto& spec : worker_.runtime.specs) EXPECT_TRUE(spec.await_launch);
  }

  // warmPoolSize 0: the worker lets its pool go and the status follows.
  auto patched = client_->patch(kind("TaskAgent"), "default", "warm", kube::PatchType::MergePatch,
                                R"({"spec": {"warmPoolSize": 0}})");
  ASSERT_TRUE(patched.ok()) << patched.status().toString();
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!worker_.executions->warmPools().empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(worker_.executions->warmPools().empty());
  waitFor("TaskAgent", "warm", [](const Json& a) {
    return a.value("status", Json::object()).value("warmSandboxes", -1) == 0;
  });
}

TEST(PickWorkerTest, PrefersAWarmSandboxThenFreeSlots) {
  auto now = std::chrono::system_clock::now();
  auto worker = [&](const std::string& name, int free) {
    WorkerInfo info;
    info.name = name;
    info.pool = "p";
    info.pool_namespace = "ns";
    info.state = "Ready";
    info.capacity.max_executions = 8;
    info.capacity.free = free;
    info.renew_time = now;
    return info;
  };
  std::vector<WorkerInfo> workers = {worker("a", 6), worker("b", 2), worker("c", 0)};
  PickOptions options;
  options.pool_namespace = "ns";
  options.pool = "p";
  options.now = now;
  EXPECT_EQ(pickWorker(workers, options)->name, "a");  // most free slots
  options.warm = {{"b", 1}, {"a", 0}};
  EXPECT_EQ(pickWorker(workers, options)->name, "b");  // a warm sandbox beats free slots
  options.warm = {{"c", 3}};
  EXPECT_EQ(pickWorker(workers, options)->name, "a");  // but never a full worker
  options.in_flight = {{"b", 8}};                      // b is full by our own count
  options.warm = {{"b", 1}};
  EXPECT_EQ(pickWorker(workers, options)->name, "a");
}

// spec.delivery.mode Metadata: stdin is closed, the agent GETs the event from
// $CLRK_METADATA_URL/event and POSTs its answer to /response, which becomes the trigger's body
// with the POST's Content-Type; stdout stays a log.
TEST_F(ControllerTest, MetadataDeliveryAnswersWithWhatTheAgentPosted) {
  Json agent = taskAgent("meta", R"sh(echo "stdin bytes: $(wc -c)"
ev=$(curl -sS --fail -x "$CLRK_TEST_EGRESS" "$CLRK_METADATA_URL/event") || exit 7
q=$(printf '%s' "$ev" | jq -r .data.question)
id=$(printf '%s' "$ev" | jq -r .id)
jq -nc --arg q "$q" --arg id "$id" '{answer: ("pong to " + $q), event: $id}' |
  curl -sS --fail -x "$CLRK_TEST_EGRESS" -H 'content-type: application/vnd.answer+json' \
    --data-binary @- "$CLRK_METADATA_URL/response" || exit 8
echo "posted")sh",
                         {{"delivery", {{"mode", "Metadata"}}}});
  agent["spec"]["template"]["spec"]["env"].push_back(
      {{"name", "CLRK_TEST_EGRESS"}, {"value", worker_.egressUrl()}});
  apply(agent);
  waitReady("meta");
  HttpResult reply = invoke("meta", R"({"question":"ping"})", {{"X-Request-Id", "req-meta"}});
  ASSERT_EQ(reply.status, 200) << reply.body;
  EXPECT_EQ(reply.headers["Content-Type"], "application/vnd.answer+json");
  EXPECT_EQ(reply.headers["X-Clrk-Output-Source"], "Response");
  Json answer = Json::parse(reply.body, nullptr, false);
  ASSERT_FALSE(answer.is_discarded()) << reply.body;
  EXPECT_EQ(answer["answer"], "pong to ping");
  std::string invocation = reply.headers["X-Clrk-Invocation"];
  EXPECT_EQ(answer["event"], invocation);  // the envelope's id is the Invocation's name

  Json record = waitFor("Invocation", invocation, [](const Json& inv) {
    return inv["status"].value("phase", "") == "Succeeded";
  });
  EXPECT_EQ(record["status"]["outputSource"], "Response");
  EXPECT_EQ(Json::parse(record["status"]["output"].get<std::string>())["answer"], "pong to ping");
  ASSERT_EQ(worker_.runtime.specs.size(), 1u);
  EXPECT_FALSE(worker_.runtime.specs[0].stdin_data) << "stdin is closed in Metadata mode";
  std::string env_lines;
  for (const auto& env : worker_.runtime.specs[0].env) env_lines += env + "\n";
  EXPECT_THAT(env_lines, HasSubstr("CLRK_METADATA_URL=http://metadata.clrk.internal\n"));

  // An agent that posts nothing answers with its stdout, as in Stdin mode.
  apply(taskAgent("meta-quiet", "echo '{\"from\":\"stdout\"}'",
                  {{"delivery", {{"mode", "Metadata"}}}}));
  waitReady("meta-quiet");
  HttpResult quiet = invoke("meta-quiet", "{}");
  ASSERT_EQ(quiet.status, 200) << quiet.body;
  EXPECT_EQ(quiet.headers["X-Clrk-Output-Source"], "Stdout");
  EXPECT_EQ(quiet.headers["Content-Type"], "application/json");
  EXPECT_EQ(Json::parse(quiet.body)["from"], "stdout");

  // Stdin mode is unchanged and says where its answer came from.
  apply(taskAgent("plain", "cat"));
  waitReady("plain");
  HttpResult plain = invoke("plain", R"({"x":1})");
  ASSERT_EQ(plain.status, 200) << plain.body;
  EXPECT_EQ(plain.headers["X-Clrk-Output-Source"], "Stdout");
  EXPECT_EQ(Json::parse(plain.body)["data"]["x"], 1);
}

TEST_F(ControllerTest, TaskAgentStatusRevisionAndPoolStatus) {
  apply(taskAgent("stat", "true"));
  Json agent = waitFor("TaskAgent", "stat", [](const Json& a) {
    return conditionReason(a, "Ready") == "True/Ready" &&
           a["status"].value("latestReadyRevisionName", "") == "stat-1";
  });
  EXPECT_EQ(agent["status"]["observedGeneration"], 1);
  EXPECT_EQ(agent["metadata"]["finalizers"][0], "clrk.apoxy.dev/executions");
  auto revision = client_->get(kind("AgentSandboxRevision"), "default", "stat-1");
  ASSERT_TRUE(revision.ok()) << revision.status().toString();
  EXPECT_EQ((*revision)["spec"]["image"], "host");
  EXPECT_EQ((*revision)["metadata"]["ownerReferences"][0]["name"], "stat");

  // A template change makes a new revision; a change elsewhere does not.
  Json changed = agent;
  changed["spec"]["template"]["spec"]["command"] = {"/bin/sh", "-c", "exit 0"};
  ASSERT_TRUE(client_->update(kind("TaskAgent"), changed).ok());
  agent = waitFor("TaskAgent", "stat", [](const Json& a) {
    return a["status"].value("latestCreatedRevisionName", "") == "stat-2" &&
           a["status"].value("observedGeneration", 0) == 2;
  });

  Json pool = waitFor("WorkerPool", "pool-a", [](const Json& p) {
    return p.value("status", Json::object()).value("readyReplicas", 0) == 1;
  });
  EXPECT_EQ(pool["status"]["capacity"]["maxExecutions"], 3);
  EXPECT_EQ(conditionReason(pool, "Ready"), "True/WorkersReady");
}

TEST_F(ControllerTest, FailuresTimeoutsAndMissingThings) {
  apply(taskAgent("fails", "echo partial; echo boom >&2; exit 3"));
  apply(taskAgent("slow", "sleep 30", {{"timeout", "1s"}}));
  waitReady("fails");
  waitReady("slow");

  HttpResult failed = invoke("fails", "{}");
  EXPECT_EQ(failed.status, 502) << failed.body;
  Json error = Json::parse(failed.body)["error"];
  EXPECT_EQ(error["reason"], "Error");
  EXPECT_THAT(error["message"].get<std::string>(), HasSubstr("exit code 3"));
  EXPECT_THAT(error["stderrTail"].get<std::string>(), HasSubstr("boom"));
  waitFor("Invocation", failed.headers["X-Clrk-Invocation"],
          [](const Json& inv) { return inv["status"].value("phase", "") == "Failed"; });

  HttpResult timed_out = invoke("slow", "{}");
  EXPECT_EQ(timed_out.status, 504) << timed_out.body;
  waitFor("Invocation", timed_out.headers["X-Clrk-Invocation"],
          [](const Json& inv) { return inv["status"].value("phase", "") == "Timeout"; });

  HttpResult missing = invoke("nobody", "{}");
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_EQ(Json::parse(missing.body)["error"]["reason"], "AgentNotFound");

  HttpResult no_route = post(trigger_port_, "/elsewhere", "{}");
  EXPECT_EQ(no_route.status, 404);

  // A pool no worker serves: the agent is not Ready and an invocation is Rejected with 503.
  apply(workerPool("pool-empty"));
  apply(taskAgent("orphan", "true", {{"workerPoolRef", "pool-empty"}}));
  waitFor("TaskAgent", "orphan",
          [](const Json& a) { return conditionReason(a, "Ready") == "False/NoReadyWorkers"; });
  HttpResult rejected = invoke("orphan", "{}");
  EXPECT_EQ(rejected.status, 503) << rejected.body;
  EXPECT_EQ(Json::parse(rejected.body)["error"]["reason"], "NoCapacity");
  waitFor("Invocation", rejected.headers["X-Clrk-Invocation"],
          [](const Json& inv) { return inv["status"].value("phase", "") == "Rejected"; });

  // A template that cannot run: secrets in the agent's environment are refused.
  Json leaky = taskAgent("leaky", "true");
  leaky["spec"]["template"]["spec"]["env"] = Json::array(
      {{{"name", "KEY"}, {"valueFrom", {{"secretKeyRef", {{"name", "s"}, {"key", "k"}}}}}}});
  apply(leaky);
  Json not_ready = waitFor("TaskAgent", "leaky", [](const Json& a) {
    return conditionReason(a, "Ready") == "False/InvalidTemplate";
  });
  EXPECT_EQ(invoke("leaky", "{}").status, 409);
}

TEST_F(ControllerTest, MaxConcurrentRejectsTheExtraInvocation) {
  apply(taskAgent("single", "sleep 2; echo done", {{"maxConcurrent", 1}}));
  waitReady("single");
  auto first = std::async(std::launch::async, [&] { return invoke("single", "{}"); });
  waitFor("TaskAgent", "single",
          [](const Json& a) { return a["status"].value("activeExecutions", 0) == 1; });
  HttpResult second = invoke("single", "{}");
  EXPECT_EQ(second.status, 429) << second.body;
  EXPECT_EQ(second.headers["Retry-After"], "1");
  EXPECT_EQ(Json::parse(second.body)["error"]["reason"], "ConcurrencyLimit");
  HttpResult done = first.get();
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(done.body, "done\n");
  EXPECT_EQ(done.headers["Content-Type"], "text/plain; charset=utf-8");
  waitFor("TaskAgent", "single",
          [](const Json& a) { return a["status"].value("activeExecutions", -1) == 0; });
}

TEST_F(ControllerTest, CliCreatedInvocationIsDispatched) {
  apply(taskAgent("cli", "cat"));
  waitReady("cli");
  Json invocation = {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                     {"kind", "Invocation"},
                     {"metadata", {{"name", "cli-run-1"}, {"namespace", "default"}}},
                     {"spec",
                      {{"parentRef", {{"kind", "TaskAgent"}, {"name", "cli"}}},
                       {"trigger", {{"type", "CLI"}, {"source", "tester"}}},
                       {"requestId", "cli-req"},
                       {"input", {{"contentType", "text/plain"}, {"data", "plain words"}}}}}};
  apply(invocation);
  Json done = waitFor("Invocation", "cli-run-1", [](const Json& inv) {
    return inv.value("status", Json::object()).value("phase", "") == "Succeeded";
  });
  Json event = Json::parse(done["status"]["output"].get<std::string>());
  EXPECT_EQ(event["data"], "plain words");
  EXPECT_EQ(event["datacontenttype"], "text/plain");
  EXPECT_EQ(event["clrkrequestid"], "cli-req");
  EXPECT_EQ(event["clrktrigger"], "CLI");
}

TEST_F(ControllerTest, CallerIdentityReachesTheInvocationTheEnvelopeAndTheEnvironment) {
  Json identity = {
      {"extractors",
       {{{"type", "JWT"}, {"jwt", {{"claim", "sub"}, {"field", "user"}}}},
        {{"type", "Header"}, {"header", {{"name", "X-User"}, {"field", "user"}}}},
        {{"type", "Header"}, {"header", {{"name", "X-Tenant"}, {"field", "tenant"}}}},
        {{"type", "Body"}, {"body", {{"jsonPath", "$.org.ids[0]"}, {"field", "org"}}}}}}};
  apply(taskAgent("whoami", "cat; echo; echo \"id=$CLRK_IDENTITY_USER/$CLRK_IDENTITY_TENANT\" >&2",
                  {{"identity", identity}}));
  waitReady("whoami");

  HttpResult reply = invoke("whoami", R"({"org":{"ids":["o-7"]}})",
                            {{"Authorization", "Bearer " + unsignedJwt({{"sub", "alice"}})},
                             {"X-User", "mallory"},
                             {"X-Tenant", "acme"}});
  ASSERT_EQ(reply.status, 200) << reply.body;
  Json event = Json::parse(reply.body);
  // CloudEvents extension values are scalars: the fields travel as one JSON text.
  EXPECT_EQ(Json::parse(event["clrkidentity"].get<std::string>()),
            Json({{"user", "alice"}, {"tenant", "acme"}, {"org", "o-7"}}));
  EXPECT_EQ(event["clrkidentityverified"], false);
  Json record = waitFor("Invocation", reply.headers["X-Clrk-Invocation"], [](const Json& inv) {
    return inv["status"].value("phase", "") == "Succeeded";
  });
  Json recorded = record["spec"]["identity"];
  EXPECT_EQ(recorded["fields"], Json({{"user", "alice"}, {"tenant", "acme"}, {"org", "o-7"}}));
  EXPECT_EQ(recorded["sources"]["user"], "extractors[0] (JWT claim sub)");
  EXPECT_EQ(recorded["sources"]["org"], "extractors[3] (Body $.org.ids[0])");
  EXPECT_EQ(recorded["verified"], false);
  EXPECT_FALSE(recorded.contains("notes")) << recorded.dump();
  EXPECT_THAT(record["status"]["stderrTail"].get<std::string>(), HasSubstr("id=alice/acme"));

  // A malformed token: the next extractor fills the field, the Invocation says why; a body that
  // is not JSON leaves org out.
  HttpResult fallback =
      invoke("whoami", "not json", {{"Authorization", "Bearer not-a-jwt"}, {"X-User", "bob"}});
  ASSERT_EQ(fallback.status, 200) << fallback.body;
  record = waitFor("Invocation", fallback.headers["X-Clrk-Invocation"],
                   [](const Json& inv) { return inv["status"].value("phase", "") == "Succeeded"; });
  recorded = record["spec"]["identity"];
  EXPECT_EQ(recorded["fields"], Json({{"user", "bob"}}));
  EXPECT_EQ(recorded["sources"]["user"], "extractors[1] (Header X-User)");
  EXPECT_EQ(recorded["notes"],
            Json({"extractors[0] (JWT claim sub): the bearer token is not a JWT (want "
                  "header.payload.signature)",
                  "extractors[2] (Header X-Tenant): no X-Tenant header",
                  "extractors[3] (Body $.org.ids[0]): the request body is not JSON"}));
  EXPECT_THAT(record["status"]["stderrTail"].get<std::string>(), HasSubstr("id=bob/"));

  // A CLI-created Invocation carries what its spec.identity.fields says (not verified either).
  Json cli = {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
              {"kind", "Invocation"},
              {"metadata", {{"name", "whoami-cli"}, {"namespace", "default"}}},
              {"spec",
               {{"parentRef", {{"kind", "TaskAgent"}, {"name", "whoami"}}},
                {"trigger", {{"type", "CLI"}}},
                {"identity", {{"fields", {{"user", "carol"}}}, {"verified", true}}}}}};
  apply(cli);
  record = waitFor("Invocation", "whoami-cli", [](const Json& inv) {
    return inv.value("status", Json::object()).value("phase", "") == "Succeeded";
  });
  event = Json::parse(record["status"]["output"].get<std::string>());
  EXPECT_EQ(event["clrkidentity"], R"({"user":"carol"})");
  EXPECT_EQ(event["clrkidentityverified"], false);
}

TEST_F(ControllerTest, InvalidIdentityRulesAreRefused) {
  // The schema refuses a path outside the subset when the object is applied...
  Json bad_path = taskAgent("badpath", "true");
  bad_path["spec"]["identity"]["extractors"] =
      Json::array({{{"type", "Body"}, {"body", {{"jsonPath", "$..x"}, {"field", "user"}}}}});
  auto created = client_->create(kind("TaskAgent"), "default", bad_path);
  ASSERT_FALSE(created.ok());
  EXPECT_THAT(created.status().message(), HasSubstr("spec.identity.extractors[0].body.jsonPath"));
  // ...and the controller what the schema cannot say: the agent is not Ready, invocations 409.
  Json mismatched = taskAgent("mismatched", "true");
  mismatched["spec"]["identity"]["extractors"] = Json::array({Json::object({{"type", "Header"}})});
  apply(mismatched);
  Json agent = waitFor("TaskAgent", "mismatched", [](const Json& a) {
    return conditionReason(a, "Ready") == "False/InvalidTemplate";
  });
  EXPECT_THAT(agent.dump(),
              HasSubstr("spec.identity.extractors[0]: type Header needs header {name, field}"));
  EXPECT_EQ(invoke("mismatched", "{}").status, 409);
}

TEST_F(ControllerTest, StreamingSendsLinesBeforeTheExecutionEnds) {
  fs::create_directories(dir_);
  std::string gate = (dir_ / "gate-chunked").string();
  apply(taskAgent("streamer",
                  "echo first; echo to-stderr >&2; while [ ! -e " + gate +
                      " ]; do sleep 0.05; done; echo second",
                  {{"streaming", {{"enabled", true}}}}));
  waitReady("streamer");

  StreamingPost stream(trigger_port_, "/v1/namespaces/default/taskagents/streamer/invoke", "{}",
                       {});
  ASSERT_EQ(stream.status(), 200);
  EXPECT_EQ(stream.field("X-Clrk-Stream"), "chunked");
  EXPECT_EQ(stream.field("Transfer-Encoding"), "chunked");
  EXPECT_EQ(stream.field("Trailer"),
            "X-Clrk-Phase, X-Clrk-Reason, X-Clrk-Exit-Code, X-Clrk-Output-Source");
  EXPECT_EQ(stream.field("X-Clrk-Worker"), "w1");
  std::string invocation = stream.field("X-Clrk-Invocation");
  ASSERT_FALSE(invocation.empty());
  // The first line arrives while the agent waits for the gate: the execution has not ended.
  ASSERT_TRUE(stream.readUntil("first\n")) << stream.body();
  auto running = client_->get(kind("Invocation"), "default", invocation);
  ASSERT_TRUE(running.ok());
  EXPECT_THAT((std::vector<std::string>{"Dispatched", "Running"}),
              ::testing::Contains((*running)["status"].value("phase", "")));
  EXPECT_EQ(stream.body(), "first\n");  // nothing of stderr in the body
  { std::ofstream(gate) << "go"; }
  ASSERT_TRUE(stream.readToEnd()) << stream.body();
  EXPECT_EQ(stream.body(), "first\nsecond\n");
  EXPECT_EQ(stream.field("X-Clrk-Phase"), "Succeeded");
  EXPECT_EQ(stream.field("X-Clrk-Reason"), "Completed");
  EXPECT_EQ(stream.field("X-Clrk-Exit-Code"), "0");
  EXPECT_EQ(stream.field("X-Clrk-Output-Source"), "Stdout");

  // An agent without streaming gets the buffered reply.
  apply(taskAgent("buffered", "echo whole"));
  waitReady("buffered");
  StreamingPost buffered(trigger_port_, "/v1/namespaces/default/taskagents/buffered/invoke", "{}",
                         {});
  ASSERT_TRUE(buffered.readToEnd());
  EXPECT_EQ(buffered.field("X-Clrk-Stream"), "");
  EXPECT_EQ(buffered.field("Content-Length"), "6");
  EXPECT_EQ(buffered.body(), "whole\n");
}

TEST_F(ControllerTest, StreamingAsServerSentEventsEndsWithTheResult) {
  fs::create_directories(dir_);
  std::string gate = (dir_ / "gate-sse").string();
  apply(taskAgent(
      "sse",
      "echo one; echo oops >&2; while [ ! -e " + gate + " ]; do sleep 0.05; done; echo two; exit 3",
      {{"streaming", {{"enabled", true}}}}));
  waitReady("sse");

  StreamingPost stream(trigger_port_, "/v1/namespaces/default/taskagents/sse/invoke", "{}",
                       {{"Accept", "text/event-stream"}, {"X-Request-Id", "sse-1"}});
  ASSERT_EQ(stream.status(), 200);  // committed before the agent's outcome is known
  EXPECT_EQ(stream.field("Content-Type"), "text/event-stream");
  EXPECT_EQ(stream.field("X-Clrk-Stream"), "sse");
  EXPECT_EQ(stream.field("X-Clrk-Request-Id"), "sse-1");
  ASSERT_TRUE(stream.readUntil("\"text\":\"one\"")) << stream.body();
  ASSERT_TRUE(stream.readUntil("\"text\":\"oops\"")) << stream.body();
  EXPECT_EQ(stream.body().find("result"), std::string::npos);  // the agent still waits
  { std::ofstream(gate) << "go"; }
  ASSERT_TRUE(stream.readToEnd()) << stream.body();

  std::vector<Json> events = sseEvents(stream.body());
  ASSERT_EQ(events.size(), 4u) << stream.body();
  std::vector<std::string> stdout_lines;
  for (size_t event_idx = 0; event_idx + 1 < events.size(); ++event_idx) {
    if (events[event_idx]["event"] == "stdout") {
      stdout_lines.push_back(events[event_idx]["data"]["text"]);
    } else {
      EXPECT_EQ(events[event_idx]["event"], "stderr");
      EXPECT_EQ(events[event_idx]["data"]["text"], "oops");
    }
  }
  EXPECT_EQ(stdout_lines, (std::vector<std::string>{"one", "two"}));
  const Json& result = events.back();
  EXPECT_EQ(result["event"], "result");
  EXPECT_EQ(result["data"]["phase"], "Failed");
  EXPECT_EQ(result["data"]["reason"], "Error");
  EXPECT_EQ(result["data"]["exitCode"], 3);
  EXPECT_EQ(result["data"]["requestId"], "sse-1");
  EXPECT_EQ(result["data"]["outputSource"], "Stdout");
  EXPECT_EQ(result["data"]["invocation"], stream.field("X-Clrk-Invocation"));

  // Refused before placement: the buffered error, not a stream.
  StreamingPost missing(trigger_port_, "/v1/namespaces/default/taskagents/nobody/invoke", "{}",
                        {{"Accept", "text/event-stream"}});
  EXPECT_EQ(missing.status(), 404);
}

TEST_F(ControllerTest, DeletingAnAgentStopsItsExecutions) {
  apply(taskAgent("doomed", "sleep 60"));
  waitReady("doomed");
  auto pending = std::async(std::launch::async, [&] { return invoke("doomed", "{}"); });
  waitFor("TaskAgent", "doomed",
          [](const Json& a) { return a["status"].value("activeExecutions", 0) == 1; });
  ASSERT_TRUE(client_->remove(kind("TaskAgent"), "default", "doomed").ok());
  HttpResult stopped = pending.get();  // long before the 60 s sleep ends
  EXPECT_EQ(stopped.status, 502) << stopped.body;
  EXPECT_EQ(Json::parse(stopped.body)["error"]["reason"], "Stopped");
  waitGone("TaskAgent", "doomed");
  EXPECT_EQ(client_->get(kind("TaskAgent"), "default", "doomed").status().code(), Code::NotFound);
}

TEST_F(ControllerTest, LostWorkerFailsTheInvocation) {
  apply(taskAgent("stranded", "sleep 60"));
  waitReady("stranded");
  auto pending = std::async(std::launch::async, [&] { return invoke("stranded", "{}"); });
  waitFor("TaskAgent", "stranded",
          [](const Json& a) { return a["status"].value("activeExecutions", 0) == 1; });
  // The worker dies: its API goes away and its Lease is deleted.
  worker_.lease->stopAndDelete().ok();
  worker_.server->stop();
  HttpResult lost = pending.get();
  EXPECT_EQ(lost.status, 502) << lost.body;
  EXPECT_EQ(Json::parse(lost.body)["error"]["reason"], "WorkerLost");
  worker_.stop();
}

TEST_F(ControllerTest, CronScheduleRunsTheAgentWithScheduleInput) {
  apply(taskAgent("ticker", "cat", {{"schedule", "@every 1s"}, {"scheduleInput", {{"tick", 7}}}}));
  Json agent = waitFor("TaskAgent", "ticker", [](const Json& a) {
    return a.value("status", Json::object()).contains("lastScheduleTime") &&
           conditionReason(a, "Scheduled") == "True/Scheduled";
  });
  EXPECT_TRUE(agent["status"].contains("nextScheduleTime"));
  // A cron-triggered Invocation ran with the schedule's input.
  auto deadline = std::chrono::steady_clock::now() + 30s;
  Json found;
  while (std::chrono::steady_clock::now() < deadline && found.is_null()) {
    auto list = client_->list(kind("Invocation"), "default");
    ASSERT_TRUE(list.ok());
    for (const auto& item : (*list)["items"]) {
      if (item["spec"]["trigger"].value("type", "") == "Cron" &&
          item.value("status", Json::object()).value("phase", "") == "Succeeded") {
        found = item;
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(found.is_null()) << "no Cron invocation succeeded";
  EXPECT_EQ(found["spec"]["trigger"]["source"], "@every 1s");
  Json event = Json::parse(found["status"]["output"].get<std::string>());
  EXPECT_EQ(event["data"]["tick"], 7);
  EXPECT_EQ(event["clrktrigger"], "Cron");

  apply(taskAgent("badcron", "true", {{"schedule", "61 * * * *"}}));
  Json bad = waitFor("TaskAgent", "badcron", [](const Json& a) {
    return conditionReason(a, "Scheduled") == "False/InvalidSchedule";
  });
  EXPECT_FALSE(bad["status"].contains("nextScheduleTime"));
}

TEST_F(ControllerTest, RestartedControllerResumesARunningInvocation) {
  apply(taskAgent("survivor", "sleep 3; echo resumed"));
  waitReady("survivor");
  auto pending = std::async(std::launch::async, [&] { return invoke("survivor", "{}"); });
  Json agent = waitFor("TaskAgent", "survivor",
                       [](const Json& a) { return a["status"].value("activeExecutions", 0) == 1; });
  // The controller-manager goes away mid-run: the caller gets 503, the Invocation stays Running.
  manager_->stop();
  HttpResult cut = pending.get();
  EXPECT_EQ(cut.status, 503) << cut.body;
  std::string name = cut.headers["X-Clrk-Invocation"];
  ASSERT_FALSE(name.empty());
  auto during = client_->get(kind("Invocation"), "default", name);
  ASSERT_TRUE(during.ok());
  std::string phase = (*during)["status"].value("phase", "");
  EXPECT_TRUE(phase == "Running" || phase == "Dispatched") << phase;
  // A new one finds it, waits for the execution on its worker and records the outcome.
  manager_ = Manager::create(client_, ManagerOptions{});
  ASSERT_TRUE(manager_->start().ok());
  Json done = waitFor("Invocation", name, [](const Json& inv) {
    return inv["status"].value("phase", "") == "Succeeded";
  });
  EXPECT_EQ(done["status"]["output"], "resumed\n");
  EXPECT_EQ(done["status"]["exitCode"], 0);
}

TEST(DaemonRestartTest, PolicyAndBackoff) {
  DaemonExit clean{0, false, false, ""};
  DaemonExit crashed{1, true, false, ""};
  DaemonExit lost{std::nullopt, true, true, ""};
  EXPECT_TRUE(shouldRestart("Always", clean));
  EXPECT_TRUE(shouldRestart("Always", crashed));
  EXPECT_FALSE(shouldRestart("OnFailure", clean));
  EXPECT_TRUE(shouldRestart("OnFailure", crashed));
  EXPECT_TRUE(shouldRestart("OnFailure", lost));
  EXPECT_FALSE(shouldRestart("Never", crashed));
  EXPECT_FALSE(shouldRestart("Never", lost));
  DaemonOptions options;  // kubelet-like: 10 s doubling, capped at 5 min
  EXPECT_EQ(crashLoopDelay(options, 1), 10s);
  EXPECT_EQ(crashLoopDelay(options, 2), 20s);
  EXPECT_EQ(crashLoopDelay(options, 5), 160s);
  EXPECT_EQ(crashLoopDelay(options, 6), 300s);
  EXPECT_EQ(crashLoopDelay(options, 1000), 300s);
}

TEST_F(ControllerTest, DaemonAgentCrashLoopsUpToMaxRestarts) {
  restartManager(fastBackoff());
  apply(daemonAgent("flaky", "echo up; sleep 0.3; exit 3", {{"maxRestarts", 3}}));
  Json looping = waitFor("DaemonAgent", "flaky", [](const Json& a) {
    return daemonField(a, "phase") == "CrashLoopBackOff";
  });
  EXPECT_EQ(conditionReason(looping, "Ready"), "False/CrashLoopBackOff");
  EXPECT_FALSE(daemonField(looping, "nextRestartTime").empty());
  EXPECT_EQ(daemonField(looping, "lastExitCode"), "3");
  Json stopped = waitFor("DaemonAgent", "flaky",
                         [](const Json& a) { return daemonField(a, "phase") == "Stopped"; });
  EXPECT_EQ(conditionReason(stopped, "Ready"), "False/RestartLimitReached");
  EXPECT_EQ(daemonField(stopped, "restartCount"), "3");
  EXPECT_EQ(daemonField(stopped, "lastExitCode"), "3");
  EXPECT_FALSE(daemonField(stopped, "latestReadyRevisionName").empty());
  // Four instances ran (the first and three restarts), each a real process on the worker.
  int runs = 0;
  for (const auto& exec : worker_.executions->list()) runs += exec.agent == "flaky" ? 1 : 0;
  EXPECT_EQ(runs, 4);
}

TEST_F(ControllerTest, DaemonAgentRestartPolicies) {
  restartManager(fastBackoff());
  apply(daemonAgent("done-ok", "exit 0", {{"restartPolicy", "OnFailure"}}));
  apply(daemonAgent("done-bad", "exit 1", {{"restartPolicy", "Never"}}));
  apply(daemonAgent("again", "sleep 0.2", {{"restartPolicy", "Always"}}));
  Json ok = waitFor("DaemonAgent", "done-ok",
                    [](const Json& a) { return daemonField(a, "phase") == "Stopped"; });
  EXPECT_EQ(conditionReason(ok, "Ready"), "False/Completed");
  EXPECT_EQ(daemonField(ok, "restartCount"), "0");
  Json bad = waitFor("DaemonAgent", "done-bad",
                     [](const Json& a) { return daemonField(a, "phase") == "Stopped"; });
  EXPECT_EQ(conditionReason(bad, "Ready"), "False/Failed");
  EXPECT_EQ(daemonField(bad, "lastExitCode"), "1");
  EXPECT_EQ(daemonField(bad, "restartCount"), "0");
  // Always restarts even a clean exit.
  waitFor("DaemonAgent", "again", [](const Json& a) {
    std::string count = daemonField(a, "restartCount");
    return !count.empty() && std::stoi(count) >= 2;
  });
}

TEST_F(ControllerTest, DaemonAgentAdoptedAfterRestartReplacedOnUpdateStoppedOnDelete) {
  apply(daemonAgent("keeper", "exec sleep 60"));
  auto running = [](const Json& a) {
    return daemonField(a, "phase") == "Running" && !daemonField(a, "executionId").empty();
  };
  Json first = waitFor("DaemonAgent", "keeper", running);
  EXPECT_EQ(conditionReason(first, "Ready"), "True/Running");
  EXPECT_EQ(daemonField(first, "worker"), "w1");
  EXPECT_FALSE(daemonField(first, "upSince").empty());
  std::string id1 = daemonField(first, "executionId");
  std::string revision1 = daemonField(first, "latestReadyRevisionName");
  ASSERT_TRUE(worker_.executions->get(id1).has_value());
  EXPECT_EQ(worker_.executions->get(id1)->phase, worker::Phase::Running);

  // A restarted controller adopts the running instance instead of starting a second one.
  restartManager(ManagerOptions{});
  std::this_thread::sleep_for(1s);
  auto again = client_->get(kind("DaemonAgent"), "default", "keeper");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(daemonField(*again, "executionId"), id1);
  int live = 0;
  for (const auto& exec : worker_.executions->list()) {
    live += exec.agent == "keeper" && !worker::isTerminal(exec.phase) ? 1 : 0;
  }
  EXPECT_EQ(live, 1);

  // A template change replaces the instance (not a restart).
  Json updated = *again;
  updated["spec"]["template"]["spec"]["env"][0]["value"] = "bye";
  ASSERT_TRUE(client_->update(kind("DaemonAgent"), updated).ok());
  Json second = waitFor("DaemonAgent", "keeper", [&](const Json& a) {
    return daemonField(a, "phase") == "Running" && daemonField(a, "executionId") != id1 &&
           !daemonField(a, "executionId").empty();
  });
  EXPECT_NE(daemonField(second, "latestReadyRevisionName"), revision1);
  EXPECT_EQ(daemonField(second, "restartCount"), "0");
  EXPECT_EQ(worker_.executions->get(id1)->phase, worker::Phase::Stopped);
  std::string id2 = daemonField(second, "executionId");

  // Deletion stops the instance before the object goes.
  ASSERT_TRUE(client_->remove(kind("DaemonAgent"), "default", "keeper").ok());
  waitGone("DaemonAgent", "keeper");
  EXPECT_EQ(client_->get(kind("DaemonAgent"), "default", "keeper").status().code(), Code::NotFound);
  EXPECT_TRUE(worker::isTerminal(worker_.executions->get(id2)->phase));
}

TEST_F(ControllerTest, DaemonAgentMovesOffALostWorker) {
  TestWorker spare;
  spare.start(client_, "w2", "pool-a", 3);
  apply(daemonAgent("mover", "exec sleep 60"));
  Json first = waitFor("DaemonAgent", "mover", [](const Json& a) {
    return daemonField(a, "phase") == "Running" && !daemonField(a, "worker").empty();
  });
  std::string lost_worker = daemonField(first, "worker");
  TestWorker& doomed = lost_worker == "w1" ? worker_ : spare;
  doomed.lease->stopAndDelete().ok();
  doomed.server->stop();
  Json moved = waitFor("DaemonAgent", "mover", [&](const Json& a) {
    return daemonField(a, "phase") == "Running" && daemonField(a, "worker") != lost_worker &&
           !daemonField(a, "worker").empty();
  });
  EXPECT_EQ(daemonField(moved, "restartCount"), "1");
  EXPECT_NE(daemonField(moved, "executionId"), daemonField(first, "executionId"));
  ASSERT_TRUE(client_->remove(kind("DaemonAgent"), "default", "mover").ok());
  waitGone("DaemonAgent", "mover");
  doomed.stop();
}

TEST_F(ControllerTest, EgressObjectsGetStatusFromTheCompiler) {
  apply(terminatingGateway("gw"));
  apply(egressObject("AIProviderRoute", "openai",
                     {{"parentRefs", {{{"name", "gw"}}}},
                      {"rules", {{{"matches", {{{"provider", "openai"}}}}}}}}));
  apply(egressObject("AIProviderRoute", "orphan",
                     {{"parentRefs", {{{"name", "no-such-gateway"}}}},
                      {"rules", {{{"matches", {{{"provider", "anthropic"}}}}}}}}));
  apply(egressObject(
      "CredentialInjectionPolicy", "creds",
      {{"targetRefs",
        {{{"group", "clrk.apoxy.dev"}, {"kind", "AIProviderRoute"}, {"name", "openai"}}}},
       {"secretRef", {{"name", "late-secret"}}},
       {"target", "Header"},
       {"headerName", "Authorization"}}));

  auto accepted = [](const Json& entry) {
    for (const auto& cond : entry.value("conditions", Json::array())) {
      if (cond.value("type", "") == "Accepted") return cond.value("status", "");
    }
    return std::string();
  };
  Json gateway = waitFor("EgressGateway", "gw", [&](const Json& g) {
    return accepted(g.value("status", Json::object())) == "True" &&
           g["status"].value("listeners", Json::array()).size() == 1 &&
           g["status"]["listeners"][0].value("attachedRoutes", -1) == 1;
  });
  EXPECT_EQ(conditionReason(gateway, "Ready"), "True/Ready");
  EXPECT_EQ(gateway["status"]["listenerCount"], 1);
  EXPECT_EQ(gateway["status"]["listeners"][0]["port"], 443);

  Json route = waitFor("AIProviderRoute", "openai", [&](const Json& r) {
    auto parents = r.value("status", Json::object()).value("parents", Json::array());
    return parents.size() == 1 && accepted(parents[0]) == "True";
  });
  EXPECT_EQ(route["status"]["parents"][0]["controllerName"], kEgressControllerName);
  EXPECT_EQ(route["status"]["parents"][0]["parentRef"]["name"], "gw");
  EXPECT_EQ(route["status"]["parents"][0]["conditions"][0]["observedGeneration"], 1);

  Json orphan = waitFor("AIProviderRoute", "orphan", [&](const Json& r) {
    auto parents = r.value("status", Json::object()).value("parents", Json::array());
    return parents.size() == 1 && accepted(parents[0]) == "False";
  });
  EXPECT_THAT(orphan["status"]["parents"][0]["conditions"][0]["message"].get<std::string>(),
              HasSubstr("no-such-gateway"));

  // The policy names a Secret that does not exist yet: not accepted, then accepted once it does.
  Json waiting = waitFor("CredentialInjectionPolicy", "creds", [&](const Json& p) {
    auto ancestors = p.value("status", Json::object()).value("ancestors", Json::array());
    return ancestors.size() == 1 && accepted(ancestors[0]) == "False";
  });
  EXPECT_THAT(waiting["status"]["ancestors"][0]["conditions"][0]["message"].get<std::string>(),
              HasSubstr("late-secret"));
  Json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", {{"name", "late-secret"}, {"namespace", "default"}}},
                 {"stringData", {{"token", "sk-test"}}}};
  ASSERT_TRUE(client_->create(api::builtinType("v1", "Secret"), "default", secret).ok());
  Json ready = waitFor("CredentialInjectionPolicy", "creds", [&](const Json& p) {
    auto ancestors = p.value("status", Json::object()).value("ancestors", Json::array());
    return ancestors.size() == 1 && accepted(ancestors[0]) == "True";
  });
  EXPECT_EQ(ready["status"]["ancestors"][0]["ancestorRef"]["name"], "openai");
  EXPECT_EQ(ready["status"]["ancestors"][0]["ancestorRef"]["namespace"], "default");
  // Settled: writing a status (itself a change the compiler sees) does not write it again.
  auto version = [&](const std::string& kind_name, const std::string& name) {
    auto got = client_->get(kind(kind_name), "default", name);
    return got.ok() ? (*got)["metadata"].value("resourceVersion", "") : std::string();
  };
  std::string gateway_version = version("EgressGateway", "gw");
  std::string policy_version = version("CredentialInjectionPolicy", "creds");
  std::this_thread::sleep_for(700ms);
  EXPECT_EQ(version("EgressGateway", "gw"), gateway_version);
  EXPECT_EQ(version("CredentialInjectionPolicy", "creds"), policy_version);
}

TEST(InvocationGcTest, TtlAndHistoryLimitPerAgent) {
  auto at = [](int minute) {
    return formatRfc3339(std::chrono::sys_days{std::chrono::year{2026} / 12 / 6} +
                         std::chrono::minutes(minute));
  };
  auto invocation = [&](const std::string& name, const std::string& agent, const std::string& phase,
                        int minute) {
    return Json{{"metadata", {{"name", name}, {"namespace", "default"}}},
                {"spec", {{"parentRef", {{"name", agent}}}}},
                {"status", {{"phase", phase}, {"completionTime", at(minute)}}}};
  };
  std::vector<Json> all = {
      invocation("a1", "a", "Succeeded", 1), invocation("a2", "a", "Failed", 2),
      invocation("a3", "a", "Rejected", 3),  invocation("a4", "a", "Running", 0),
      invocation("b1", "b", "Succeeded", 1), invocation("b2", "b", "Timeout", 50),
  };
  InvocationGcOptions options;
  options.history_limit = 2;
  options.ttl = std::chrono::seconds(43 * 60 + 30);  // b1 (44 min) expired, a2 (43) not
  auto now = *parseRfc3339(at(45));
  auto doomed = invocationsToCollect(all, options, now);
  std::set<std::string> names;
  for (const auto& [ns, name] : doomed) names.insert(name);
  // a1: beyond a's two newest finished (a3, a2); b1: past the TTL; a4 runs.
  EXPECT_EQ(names, (std::set<std::string>{"a1", "b1"}));
  options.ttl = std::chrono::seconds(0);
  options.history_limit = 0;
  EXPECT_TRUE(invocationsToCollect(all, options, now).empty());
}

TEST_F(ControllerTest, FinishedInvocationsBeyondTheHistoryLimitAreDeleted) {
  ManagerOptions options;
  options.invocation_gc.history_limit = 2;
  options.invocation_gc.interval = 200ms;
  restartManager(options);
  apply(taskAgent("chatty", "echo ok"));
  waitReady("chatty");
  std::vector<std::string> names;
  for (int i = 0; i < 4; ++i) {
    HttpResult reply = invoke("chatty", "{}");
    ASSERT_EQ(reply.status, 200) << reply.body;
    names.push_back(reply.headers["X-Clrk-Invocation"]);
  }
  auto count = [&] {
    kube::ListOptions list_options;
    list_options.label_selector = "clrk.apoxy.dev/agent=chatty";
    auto list = client_->list(kind("Invocation"), "default", list_options);
    return list.ok() ? (*list)["items"].size() : size_t{0};
  };
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline && count() != 2) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(count(), 2u);
  // The two newest are kept.
  EXPECT_TRUE(client_->get(kind("Invocation"), "default", names[3]).ok());
  EXPECT_TRUE(client_->get(kind("Invocation"), "default", names[2]).ok());
  EXPECT_EQ(client_->get(kind("Invocation"), "default", names[0]).status().code(), Code::NotFound);
}

// Objects that exist before the controller starts reach it through the initial list, not watch
// events: every one of them must be compiled (a regression: the feed once keyed all listed
// objects of a kind alike, keeping only the last).
TEST_F(ControllerTest, EgressObjectsListedAtStartupAllGetStatus) {
  manager_->stop();
  apply(terminatingGateway("gw"));
  for (const char* name : {"route-a", "route-b", "route-c"}) {
    apply(egressObject("AIProviderRoute", name,
                       {{"parentRefs", {{{"name", "gw"}}}},
                        {"rules", {{{"matches", {{{"provider", "openai"}}}}}}}}));
  }
  manager_ = Manager::create(client_, ManagerOptions{});
  ASSERT_TRUE(manager_->start().ok());
  Json gateway = waitFor("EgressGateway", "gw", [](const Json& g) {
    auto listeners = g.value("status", Json::object()).value("listeners", Json::array());
    return listeners.size() == 1 && listeners[0].value("attachedRoutes", -1) == 3;
  });
  EXPECT_EQ(conditionReason(gateway, "Accepted"), "True/Accepted");
  for (const char* name : {"route-a", "route-b", "route-c"}) {
    waitFor("AIProviderRoute", name, [](const Json& r) {
      auto parents = r.value("status", Json::object()).value("parents", Json::array());
      return parents.size() == 1 && parents[0]["conditions"][0].value("reason", "") == "Accepted";
    });
  }
}

}  // namespace
}  // namespace clrk::controller
