// ExecutionManager + ApiServer + WorkerClient against a process-backed fake Runtime (plain
// fork/exec, no isolation) and a fake NetworkManager: the lifecycle, the HTTP surface, auth,
// pinning, bounds, long polls, log follows, stop, timeout, capacity, drain and identities.
#include "clrk/worker/executions.h"

#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/proxy.h"
#include "clrk/worker/certs.h"
#include "clrk/worker/client.h"
#include "clrk/worker/fake_runtime_for_test.h"
#include "clrk/worker/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <future>
#include <poll.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::worker {
namespace {

using namespace std::chrono_literals;
using testing::FakeNetwork;
using testing::FakeRuntime;
using ::testing::HasSubstr;
using testing::ProcessSandbox;

ExecutionRequest shell(const std::string& id, const std::string& script) {
  ExecutionRequest r;
  r.execution_id = id;
  r.namespace_name = "team";
  r.agent = "bot";
  r.agent_kind = "TaskAgent";
  r.image = "host";
  r.command = {"/bin/sh", "-c", script};
  return r;
}

class WorkerApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ExecutionManagerOptions options;
    options.max_executions = 3;
    options.ca_cert_pem = "-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n";
    options.identity_linger = 300ms;
    options.stop_grace = 500ms;
    options.shared_mounts = {{"/usr/share", "/opt/shared", true}};
    manager_ =
        std::make_unique<ExecutionManager>(options, runtime_, &network_, nullptr, &identities_);
    auto cert = generateSelfSigned("worker-test", {"127.0.0.1"});
    ASSERT_TRUE(cert.ok());
    cert_ = cert.value();
    ServerOptions server_options;
    server_options.cert_pem = cert_.cert_pem;
    server_options.key_pem = cert_.key_pem;
    server_options.token = token_;
    auto server = ApiServer::start(server_options, *manager_,
                                   [this] { return toJson(manager_->capacity()); });
    ASSERT_TRUE(server.ok()) << server.status().toString();
    server_ = std::move(server).value();
    client_ = makeClient(token_, cert_.fingerprint);
  }
  void TearDown() override {
    if (server_) server_->stop();
    manager_.reset();
  }
  std::unique_ptr<WorkerClient> makeClient(const std::string& token,
                                           const std::string& fingerprint) {
    WorkerEndpoint endpoint;
    endpoint.url = "https://127.0.0.1:" + std::to_string(server_->port());
    endpoint.fingerprint = fingerprint;
    endpoint.token = token;
    endpoint.timeout = 10s;
    auto client = WorkerClient::create(endpoint);
    EXPECT_TRUE(client.ok());
    return std::move(client).value();
  }

  FakeRuntime runtime_;
  FakeNetwork network_;
  egress::IdentityMap identities_;
  std::unique_ptr<ExecutionManager> manager_;
  SelfSignedCertificate cert_;
  std::string token_ = "0123456789abcdef0123456789abcdef";
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<WorkerClient> client_;
};

TEST_F(WorkerApiTest, RunsWithStdinAndReportsOutputAndExitCode) {
  auto request = shell("e1", "echo hi; read x; echo got $x; echo oops >&2; exit 3");
  request.stdin_data = "there\n";
  request.env = {{"FOO", "bar"}};
  request.resources = {"500m", "64Mi"};
  request.timeout_seconds = 20;
  auto created = client_->run(request);
  ASSERT_TRUE(created.ok()) << created.status().toString();
  auto done = client_->get("e1", 10s);
  ASSERT_TRUE(done.ok()) << done.status().toString();
  EXPECT_EQ(done->phase, Phase::Failed);
  EXPECT_EQ(done->exit_code, 3);
  EXPECT_EQ(done->output.stdout_text, "hi\ngot there\n");
  EXPECT_EQ(done->output.stderr_tail, "oops\n");
  EXPECT_FALSE(done->started_at.empty());
  EXPECT_FALSE(done->finished_at.empty());
  EXPECT_EQ(done->sandbox_address, "10.99.0.2");
  // What the runtime was asked for.
  ASSERT_EQ(runtime_.specs.size(), 1u);
  const auto& spec = runtime_.specs[0];
  EXPECT_EQ(spec.limits.cpu_millis, 500);
  EXPECT_EQ(spec.limits.memory_bytes, 64 << 20);
  EXPECT_EQ(spec.timeout, 20s);
  EXPECT_EQ(spec.netns_path, "/run/netns/fake-0");
  EXPECT_THAT(spec.ca_cert_pem, HasSubstr("BEGIN CERTIFICATE"));
  EXPECT_THAT(spec.env, ::testing::Contains("FOO=bar"));
  ASSERT_EQ(spec.mounts.size(), 1u);  // the worker's --share directories reach every sandbox
  EXPECT_EQ(spec.mounts[0].destination, "/opt/shared");
  EXPECT_TRUE(spec.mounts[0].read_only);
  // The result is reported first, the clean-up follows at once.
  for (int i = 0; i < 500 && network_.inUse() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(network_.released, 1);
  EXPECT_EQ(network_.inUse(), 0u);

  auto ok = client_->run(shell("e2", "true"));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(client_->get("e2", 10s)->phase, Phase::Succeeded);
  auto all = client_->list();
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 2u);
}

TEST_F(WorkerApiTest, IdentityPublishedWhileRunningAndRemovedAfterLinger) {
  auto request = shell("id1", "sleep 0.3");
  request.request_id = "req-7";
  request.agent_labels = {{"tier", "gold"}};
  request.caller_identity = {{"user", "alice"}};
  ASSERT_TRUE(client_->run(request).ok());
  std::shared_ptr<const egress::Identity> identity;
  for (int i = 0; i < 100 && !identity; ++i) {
    identity = identities_.lookup("10.99.0.2");
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->execution_id, "id1");
  EXPECT_EQ(identity->request_id, "req-7");
  EXPECT_EQ(identity->agent, "bot");
  EXPECT_EQ(identity->agent_labels.at("tier"), "gold");
  EXPECT_EQ(identity->caller, (std::map<std::string, std::string>{{"user", "alice"}}));
  EXPECT_FALSE(identity->caller_verified);
  EXPECT_EQ(client_->get("id1", 10s)->phase, Phase::Succeeded);
  // Still there right after the end (late records), gone after the linger.
  EXPECT_TRUE(identities_.lookup("10.99.0.2"));
  std::this_thread::sleep_for(800ms);
  EXPECT_FALSE(identities_.lookup("10.99.0.2"));
}

TEST_F(WorkerApiTest, TimeoutStopAndLogsFollow) {
  auto slow = shell("t1", "sleep 30");
  slow.timeout_seconds = 1;
  ASSERT_TRUE(client_->run(slow).ok());
  auto timed = client_->get("t1", 10s);
  ASSERT_TRUE(timed.ok());
  EXPECT_EQ(timed->phase, Phase::TimedOut);

  // Ignores SIGTERM: stop escalates to SIGKILL after the grace period.
  ASSERT_TRUE(client_->run(shell("s1", "trap '' TERM; echo ready; sleep 30")).ok());
  std::vector<LogEntry> lines;
  std::thread follower([&] {
    Status followed = client_->logs("s1", true, [&](const LogEntry& e) {
      lines.push_back(e);
      return true;
    });
    EXPECT_TRUE(followed.ok()) << followed.toString();
  });
  for (int i = 0; i < 100 && client_->get("s1")->phase != Phase::Running; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(200ms);
  auto stopping = client_->stop("s1");
  ASSERT_TRUE(stopping.ok()) << stopping.status().toString();
  auto stopped = client_->get("s1", 10s);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->phase, Phase::Stopped);
  EXPECT_EQ(stopped->exit_code, 128 + SIGKILL);
  follower.join();  // the follow ends with the execution
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0].text, "ready");
  EXPECT_EQ(lines[0].stream, "stdout");
  EXPECT_FALSE(lines[0].time.empty());
  // Non-follow read of a finished execution.
  int count = 0;
  ASSERT_TRUE(client_->logs("s1", false, [&](const LogEntry&) { return ++count, true; }).ok());
  EXPECT_EQ(count, 1);
}

// Regression: the follow read whole 8 KiB buffers, so short lines of a running execution only
// arrived at its end. Each line must arrive while the execution still runs.
TEST_F(WorkerApiTest, LogsFollowDeliversEachLineWhileRunningAndCanBeCancelled) {
  char gate_template[] = "/tmp/clrk-follow-gate-XXXXXX";
  ASSERT_NE(mkdtemp(gate_template), nullptr);
  std::string gate = std::string(gate_template) + "/go";
  ASSERT_TRUE(client_
                  ->run(shell("f1", "echo first; while [ ! -e " + gate +
                                        " ]; do sleep 0.05; done; echo second"))
                  .ok());
  std::promise<void> first_seen;
  std::vector<std::string> lines;
  std::thread follower([&] {
    Status followed = client_->logs("f1", true, [&](const LogEntry& e) {
      lines.push_back(e.text);
      if (lines.size() == 1) first_seen.set_value();
      return true;
    });
    EXPECT_TRUE(followed.ok()) << followed.toString();
  });
  bool arrived = first_seen.get_future().wait_for(20s) == std::future_status::ready;
  EXPECT_TRUE(arrived);
  EXPECT_EQ(client_->get("f1")->phase, Phase::Running);  // it waits for the gate
  { std::ofstream(gate) << "go"; }
  follower.join();
  EXPECT_EQ(lines, (std::vector<std::string>{"first", "second"}));
  std::filesystem::remove_all(gate_template);

  // A stop requested on the token ends a follow of a quiet execution at once.
  ASSERT_TRUE(client_->run(shell("f2", "sleep 30")).ok());
  std::stop_source cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(300ms);
    cancel.request_stop();
  });
  auto started = std::chrono::steady_clock::now();
  Status followed = client_->logs(
      "f2", true, [](const LogEntry&) { return true; }, cancel.get_token());
  canceller.join();
  EXPECT_EQ(followed.code(), Code::Unavailable) << followed.toString();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  ASSERT_TRUE(client_->stop("f2").ok());
}

TEST_F(WorkerApiTest, AuthPinningAndErrors) {
  auto wrong_token = makeClient("not-the-token-not-the-token-0000", cert_.fingerprint);
  auto denied = wrong_token->list();
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::Unauthenticated);
  auto no_token = makeClient("", cert_.fingerprint);
  EXPECT_EQ(no_token->request("GET", "/v1/executions")->status, 401);
  EXPECT_EQ(no_token->request("GET", "/healthz")->status, 200);

  auto other = generateSelfSigned("x", {"127.0.0.1"});
  auto wrong_pin = makeClient(token_, other->fingerprint);
  auto refused = wrong_pin->list();
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::Unauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("fingerprint"));

  auto bad = client_->request("POST", "/v1/executions",
                              R"({"executionId":"b","image":"host","env":[{"name":""}]})");
  ASSERT_TRUE(bad.ok());
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(bad->body, HasSubstr("env[0].name"));
  auto huge =
      client_->request("POST", "/v1/executions", std::string(kMaxRequestBodyBytes + 10, 'x'));
  ASSERT_TRUE(huge.ok());
  EXPECT_EQ(huge->status, 413);
  EXPECT_EQ(client_->request("GET", "/v1/executions/nope")->status, 404);
  EXPECT_EQ(client_->request("GET", "/v1/executions/x?waitSeconds=abc")->status, 400);
  EXPECT_EQ(client_->request("DELETE", "/v1/executions")->status, 405);
  EXPECT_EQ(client_->request("GET", "/v2/else")->status, 404);

  ASSERT_TRUE(client_->run(shell("dup", "sleep 5")).ok());
  auto again = client_->run(shell("dup", "true"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::AlreadyExists);
  ASSERT_TRUE(client_->run(shell("f2", "sleep 5")).ok());
  ASSERT_TRUE(client_->run(shell("f3", "sleep 5")).ok());
  auto full = client_->request("POST", "/v1/executions", toJson(shell("f4", "true")).dump());
  EXPECT_EQ(full->status, 429);
  auto status = client_->status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["running"], 3);
  EXPECT_EQ((*status)["free"], 0);
  EXPECT_EQ(manager_->drain(100ms), 3);
  auto draining = client_->request("POST", "/v1/executions", toJson(shell("f5", "true")).dump());
  EXPECT_EQ(draining->status, 503);
  auto listed = client_->list();
  ASSERT_TRUE(listed.ok());
  for (const auto& s : listed.value()) EXPECT_EQ(s.phase, Phase::Stopped) << s.execution_id;
  EXPECT_EQ(network_.inUse(), 0u);
}

TEST_F(WorkerApiTest, OutputIsBoundedAndBadRootsFail) {
  // ~1.5 MiB of stdout: output keeps the first MiB and says so.
  ASSERT_TRUE(
      client_->run(shell("big", "head -c 1572864 /dev/zero | tr '\\0' 'a' | fold -w 1000")).ok());
  auto big = client_->get("big", 20s);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->phase, Phase::Succeeded);
  EXPECT_TRUE(big->output.truncated);
  EXPECT_LE(big->output.stdout_text.size(), kMaxOutputBytes);
  EXPECT_GT(big->output.stdout_text.size(), kMaxOutputBytes - 2000);

  auto missing = shell("dir1", "true");
  missing.image = "dir:/nonexistent/rootfs";
  ASSERT_TRUE(client_->run(missing).ok());
  auto failed = client_->get("dir1", 10s);
  EXPECT_EQ(failed->phase, Phase::Failed);
  EXPECT_THAT(failed->message, HasSubstr("not a directory"));
  auto oci = shell("oci1", "true");
  oci.image = "busybox:latest";
  ASSERT_TRUE(client_->run(oci).ok());
  EXPECT_THAT(client_->get("oci1", 10s)->message, HasSubstr("no image store"));
}

TEST_F(WorkerApiTest, ResultIsAnsweredBeforeTheSandboxIsTornDown) {
  // Every destroy() blocks until released: the result must not wait for the clean-up, while the
  // execution's slot stays taken until the clean-up is done.
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> destroying{0};
  runtime_.before_destroy = [&destroying, released] {
    ++destroying;
    released.wait();
  };
  struct Release {
    std::promise<void>& promise;
    bool done = false;
    void now() {
      if (!std::exchange(done, true)) promise.set_value();
    }
    ~Release() { now(); }
  } release_guard{release};
  ASSERT_TRUE(client_->run(shell("slow-teardown", "sleep 0.3; echo done")).ok());
  auto terminal = std::async(std::launch::async,
                             [this] { return manager_->waitTerminal("slow-teardown", 60s); });
  ASSERT_EQ(terminal.wait_for(30s), std::future_status::ready)
      << "waitTerminal waited for the sandbox's clean-up";
  auto status = terminal.get();
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(status->phase, Phase::Succeeded);
  EXPECT_EQ(status->output.stdout_text, "done\n");
  auto polled = client_->get("slow-teardown", 10s);
  ASSERT_TRUE(polled.ok()) << polled.status().toString();
  EXPECT_EQ(polled->phase, Phase::Succeeded);
  for (int i = 0; i < 3000 && destroying.load() == 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(destroying.load(), 1);
  EXPECT_EQ(manager_->running(), 1);  // the slot is taken until the clean-up ends
  EXPECT_EQ(manager_->capacity().free, 2);
  release_guard.now();
  for (int i = 0; i < 3000 && manager_->running() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(manager_->running(), 0);
  EXPECT_EQ(network_.inUse(), 0u);
  runtime_.before_destroy = nullptr;
}

TEST_F(WorkerApiTest, CallsReuseKeptConnections) {
  WorkerEndpoint endpoint;
  endpoint.url = "https://127.0.0.1:" + std::to_string(server_->port());
  endpoint.fingerprint = cert_.fingerprint;
  endpoint.token = token_;
  auto pool = std::make_shared<WorkerConnectionPool>();
  auto first = WorkerClient::create(endpoint, pool);
  ASSERT_TRUE(first.ok());
  // An execution's submission and its long poll, then more calls: one handshake.
  ASSERT_TRUE((*first)->run(shell("kept-1", "echo one")).ok());
  auto done = (*first)->get("kept-1", 10s);
  ASSERT_TRUE(done.ok()) << done.status().toString();
  EXPECT_EQ(done->output.stdout_text, "one\n");
  EXPECT_TRUE((*first)->list().ok());
  EXPECT_TRUE((*first)->status().ok());
  EXPECT_EQ(pool->opened(), 1u);
  // Error replies keep the connection too; another client of the same pool reuses it.
  auto second = WorkerClient::create(endpoint, pool);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*second)->get("no-such-execution").status().code(), Code::NotFound);
  ASSERT_TRUE((*second)->run(shell("kept-2", "true")).ok());
  EXPECT_EQ((*second)->get("kept-2", 10s)->phase, Phase::Succeeded);
  EXPECT_EQ(pool->opened(), 1u);
  // Calls at the same time use a connection each (here at most two); all are kept afterwards.
  ASSERT_TRUE((*first)->run(shell("kept-3", "sleep 0.5")).ok());
  auto waiting = std::async(std::launch::async, [&] { return (*first)->get("kept-3", 10s); });
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE((*second)->list().ok());
  ASSERT_TRUE(waiting.get().ok());
  EXPECT_LE(pool->opened(), 2u);
  uint64_t opened = pool->opened();
  EXPECT_TRUE((*first)->status().ok());
  EXPECT_TRUE((*second)->status().ok());
  EXPECT_EQ(pool->opened(), opened);

  // The worker restarts on the same port (its old connections are closed): the kept connections
  // are stale, and calls go over new ones without an error.
  server_->stop();
  ServerOptions options;
  options.cert_pem = cert_.cert_pem;
  options.key_pem = cert_.key_pem;
  options.token = token_;
  options.listen = "127.0.0.1:" + std::to_string(server_->port());
  auto restarted =
      ApiServer::start(options, *manager_, [this] { return toJson(manager_->capacity()); });
  ASSERT_TRUE(restarted.ok()) << restarted.status().toString();
  server_ = std::move(restarted).value();
  auto after = (*first)->list();
  ASSERT_TRUE(after.ok()) << after.status().toString();
  EXPECT_EQ(after->size(), 3u);
  EXPECT_EQ(pool->opened(), opened + 1);
  // A long poll cancelled mid-way drops its connection; the next call opens another.
  ASSERT_TRUE((*first)->run(shell("kept-4", "sleep 30")).ok());
  std::stop_source cancel;
  std::thread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel.request_stop();
  });
  EXPECT_EQ((*first)->get("kept-4", 20s, cancel.get_token()).status().code(), Code::Unavailable);
  canceller.join();
  EXPECT_TRUE((*first)->stop("kept-4").ok());
  EXPECT_EQ(pool->opened(), opened + 2);
}

TEST_F(WorkerApiTest, CancelledLongPollAndStopReleaseEverything) {
  ASSERT_TRUE(client_->run(shell("long", "sleep 30")).ok());
  // A stop requested from another thread ends a long poll at once.
  std::stop_source cancel;
  auto started = std::chrono::steady_clock::now();
  std::thread canceller([&] {
    std::this_thread::sleep_for(200ms);
    cancel.request_stop();
  });
  auto polled = client_->get("long", 20s, cancel.get_token());
  canceller.join();
  EXPECT_EQ(polled.status().code(), Code::Unavailable);
  EXPECT_THAT(polled.status().message(), HasSubstr("cancelled"));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  // The running sandbox (a child process) must not keep the API's listener alive: once the
  // server stops, a new connection is refused rather than parked in a backlog nobody serves.
  server_->stop();
  auto after = client_->get("long", 0s);
  ASSERT_FALSE(after.ok());
  EXPECT_THAT(after.status().message(), HasSubstr("refused"));
  EXPECT_TRUE(manager_->stop("long").ok());
}

// Metadata delivery with the real egress: the agent is a plain process that reaches the egress
// explicit listener on loopback, where FakeNetwork's address 127.0.0.1 identifies its execution.
class MetadataDeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    snapshots_.swap(egress::config::compile({}, 1).snapshot);
    egress::ProxyOptions proxy_options;
    proxy_options.threads = 1;
    proxy_options.explicit_listen = "127.0.0.1:0";
    auto proxy = egress::Proxy::start(proxy_options, snapshots_, identities_, nullptr, &store_);
    ASSERT_TRUE(proxy.ok()) << proxy.status().toString();
    proxy_ = std::move(proxy).value();
    network_.address_for_all = "127.0.0.1";
  }
  void TearDown() override {
    manager_.reset();
    if (proxy_) proxy_->stop();
  }
  void startManager(ExecutionManagerOptions options, egress::MetadataStore* store) {
    options.identity_linger = 100ms;
    options.stop_grace = 500ms;
    manager_ = std::make_unique<ExecutionManager>(options, runtime_, &network_, nullptr,
                                                  &identities_, store);
  }
  // A Metadata-delivery agent script; $P is the egress proxy URL.
  ExecutionRequest agent(const std::string& id, const std::string& script) {
    ExecutionRequest request = shell(id, script);
    request.delivery_mode = DeliveryMode::Metadata;
    request.event = R"({"specversion":"1.0","id":")" + id + R"(","data":{"q":"ping"}})";
    request.env = {{"P", "http://127.0.0.1:" + std::to_string(proxy_->explicitPort())}};
    return request;
  }
  ExecutionStatus run(ExecutionRequest request) {
    std::string id = request.execution_id;
    auto submitted = manager_->submit(std::move(request));
    EXPECT_TRUE(submitted.ok()) << submitted.status().toString();
    auto done = manager_->waitTerminal(id, 20s);
    EXPECT_TRUE(done && isTerminal(done->phase));
    return done.value_or(ExecutionStatus{});
  }

  FakeRuntime runtime_;
  FakeNetwork network_;
  egress::IdentityMap identities_;
  egress::MetadataStore store_;
  egress::config::SnapshotHolder snapshots_;
  std::unique_ptr<egress::Proxy> proxy_;
  std::unique_ptr<ExecutionManager> manager_;
};

TEST_F(MetadataDeliveryTest, AgentReadsTheEventAndItsPostIsTheResponse) {
  startManager({}, &store_);
  ExecutionStatus done = run(agent("m1", R"sh(printf 'stdin=%s\n' "$(wc -c)"
ev=$(curl -sS --fail -x "$P" "$CLRK_METADATA_URL/event")
printf '{"echo":%s}' "$ev" | curl -sS --fail -x "$P" -H 'content-type: application/json' \
  --data-binary @- "$CLRK_METADATA_URL/response"
echo; echo log line)sh"));
  EXPECT_EQ(done.phase, Phase::Succeeded) << done.message << done.output.stderr_tail;
  // stdin was closed (nothing to read); stdout stays the agent's log.
  EXPECT_THAT(done.output.stdout_text, HasSubstr("stdin=0"));
  EXPECT_THAT(done.output.stdout_text, HasSubstr("\"replaced\":false"));
  ASSERT_TRUE(done.response) << done.output.stdout_text << done.output.stderr_tail;
  EXPECT_EQ(done.response->content_type, "application/json");
  Json body = Json::parse(done.response->body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << done.response->body;
  EXPECT_EQ(body["echo"]["id"], "m1");
  EXPECT_EQ(body["echo"]["data"]["q"], "ping");
  EXPECT_EQ(done.response->bytes, static_cast<int64_t>(done.response->body.size()));
  ASSERT_EQ(runtime_.specs.size(), 1u);
  EXPECT_FALSE(runtime_.specs[0].stdin_data);
  EXPECT_THAT(runtime_.specs[0].env,
              ::testing::Contains("CLRK_METADATA_URL=" + std::string(egress::kMetadataUrl)));
  EXPECT_EQ(store_.size(), 0u) << "the execution is unregistered once it ends";

  // Posting nothing leaves no response; the controller then falls back to stdout.
  ExecutionStatus silent = run(agent("m2", "echo only stdout"));
  EXPECT_EQ(silent.phase, Phase::Succeeded);
  EXPECT_FALSE(silent.response);
  EXPECT_EQ(silent.output.stdout_text, "only stdout\n");
}

TEST_F(MetadataDeliveryTest, OldResponseBodiesAreDiscardedBeyondTheRetentionBound) {
  ExecutionManagerOptions options;
  options.max_retained_response_bytes = 12;
  startManager(options, &store_);
  const std::string post =
      "printf %s \"$BODY\" | curl -sS --fail -x \"$P\" --data-binary @- "
      "\"$CLRK_METADATA_URL/response\"";
  ExecutionRequest first = agent("r1", post);
  first.env.push_back({"BODY", "aaaaaaaa"});
  EXPECT_EQ(run(first).response->body, "aaaaaaaa");
  ExecutionRequest second = agent("r2", post);
  second.env.push_back({"BODY", "bbbbbbbb"});
  EXPECT_EQ(run(second).response->body, "bbbbbbbb");
  // The next submission prunes: r1 (older) loses its body, r2 keeps it.
  run(shell("r3", "true"));
  auto old = manager_->get("r1");
  ASSERT_TRUE(old && old->response);
  EXPECT_TRUE(old->response->discarded);
  EXPECT_EQ(old->response->body, "");
  EXPECT_EQ(old->response->bytes, 8);
  EXPECT_EQ(manager_->get("r2")->response->body, "bbbbbbbb");
}

TEST_F(MetadataDeliveryTest, WorkerWithoutAMetadataStoreFailsClearly) {
  startManager({}, nullptr);
  ExecutionStatus done = run(agent("n1", "echo never"));
  EXPECT_EQ(done.phase, Phase::Failed);
  EXPECT_THAT(done.message, HasSubstr("no metadata endpoint"));
  EXPECT_TRUE(runtime_.specs.empty()) << "nothing was started";
  // A request that contradicts itself is refused at submit.
  ExecutionRequest both = agent("n2", "true");
  both.stdin_data = "x";
  EXPECT_EQ(manager_->submit(both).status().code(), Code::InvalidArgument);
}

TEST(ParseShareTest, AbsolutePathsReadOnlyByDefault) {
  auto share = parseShare("/usr/share:/opt/examples");
  ASSERT_TRUE(share.ok()) << share.status().toString();
  EXPECT_EQ(share->source, "/usr/share");
  EXPECT_EQ(share->destination, "/opt/examples");
  EXPECT_TRUE(share->read_only);
  auto writable = parseShare("/usr/share:/data:rw");
  ASSERT_TRUE(writable.ok());
  EXPECT_FALSE(writable->read_only);
  EXPECT_THAT(parseShare("relative:/x").status().message(), HasSubstr("absolute paths"));
  EXPECT_THAT(parseShare("/usr/share").status().message(), HasSubstr("absolute paths"));
  EXPECT_THAT(parseShare("/usr/share:/").status().message(), HasSubstr("not allowed"));
  EXPECT_THAT(parseShare("/no/such/dir:/x").status().message(), HasSubstr("not a directory"));
}

// ---- warm pools --------------------------------------------------------------------------------

WarmPoolSpec warmPool(const std::string& key, int size, ExecutionRequest request) {
  WarmPoolSpec spec;
  spec.key = key;
  spec.size = size;
  spec.request = std::move(request);
  return spec;
}

// Waits until the manager's pool `key` satisfies `done`; the last state seen.
WarmPoolState waitPool(ExecutionManager& manager, const std::string& key,
                       const std::function<bool(const WarmPoolState&)>& done) {
  WarmPoolState last;
  for (int i = 0; i < 500; ++i) {
    for (const auto& state : manager.warmPools()) {
      if (state.key == key) last = state;
    }
    if (done(last)) return last;
    std::this_thread::sleep_for(10ms);
  }
  return last;
}

int bootedSpecs(FakeRuntime& runtime) {
  std::lock_guard lock(runtime.mutex_);
  return static_cast<int>(std::count_if(runtime.specs.begin(), runtime.specs.end(),
                                        [](const auto& spec) { return spec.await_launch; }));
}

TEST_F(WorkerApiTest, WarmPoolSandboxRunsTheAgentsExecutionAndIsReplaced) {
  auto states = client_->setWarmPools({warmPool("team/bot", 1, shell("tmpl", "true"))});
  ASSERT_TRUE(states.ok()) << states.status().toString();
  auto ready = waitPool(*manager_, "team/bot", [](const auto& s) { return s.ready == 1; });
  ASSERT_EQ(ready.ready, 1) << ready.last_error;
  EXPECT_EQ(bootedSpecs(runtime_), 1);
  EXPECT_EQ(network_.inUse(), 1u);  // the warm sandbox holds its network already

  auto request = shell("w1", "echo hi; read x; echo got $x $FOO");
  request.stdin_data = "there\n";
  request.env = {{"FOO", "bar"}};
  request.request_id = "req-9";
  ASSERT_TRUE(client_->run(request).ok());
  auto done = client_->get("w1", 10s);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->phase, Phase::Succeeded) << done->message;
  EXPECT_EQ(done->output.stdout_text, "hi\ngot there bar\n");
  EXPECT_THAT(done->sandbox_id, ::testing::StartsWith("wp-"));
  EXPECT_EQ(done->sandbox_address, "10.99.0.2");  // the warm sandbox's network
  // The execution's identity was published for the warm sandbox's address (kept for linger).
  auto identity = identities_.lookup("10.99.0.2");
  ASSERT_TRUE(identity);
  EXPECT_EQ(identity->execution_id, "w1");
  EXPECT_EQ(identity->request_id, "req-9");
  // Claimed, so the pool boots a new one; no cold sandbox was prepared.
  auto refilled = waitPool(*manager_, "team/bot", [](const auto& s) { return s.ready == 1; });
  EXPECT_EQ(refilled.claims, 1u);
  EXPECT_EQ(refilled.misses, 0u);
  EXPECT_EQ(bootedSpecs(runtime_), 2);
  EXPECT_EQ(static_cast<int>(runtime_.specs.size()), 2);

  // Another agent has no pool: cold, and no miss is counted for team/bot.
  auto other = shell("o1", "true");
  other.agent = "other";
  ASSERT_TRUE(client_->run(other).ok());
  auto cold = client_->get("o1", 10s);
  ASSERT_TRUE(cold.ok());
  EXPECT_EQ(cold->phase, Phase::Succeeded);
  EXPECT_THAT(cold->sandbox_id, ::testing::StartsWith("ex-"));
  EXPECT_EQ(waitPool(*manager_, "team/bot", [](const auto&) { return true; }).misses, 0u);
}

TEST_F(WorkerApiTest, WarmPoolIsNotUsedForADifferentShapeAndFollowsTemplateChanges) {
  auto tmpl = shell("tmpl", "true");
  ASSERT_TRUE(client_->setWarmPools({warmPool("team/bot", 1, tmpl)}).ok());
  ASSERT_EQ(waitPool(*manager_, "team/bot", [](const auto& s) { return s.ready == 1; }).ready, 1);

  // Same agent, other limits: the booted sandbox does not fit; a miss, run cold.
  auto bigger = shell("b1", "true");
  bigger.resources = {"", "256Mi"};
  ASSERT_TRUE(client_->run(bigger).ok());
  auto done = client_->get("b1", 10s);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->phase, Phase::Succeeded);
  EXPECT_THAT(done->sandbox_id, ::testing::StartsWith("ex-"));
  auto state = waitPool(*manager_, "team/bot", [](const auto&) { return true; });
  EXPECT_EQ(state.misses, 1u);
  EXPECT_EQ(state.ready, 1);

  // The template changes to those limits: the old sandbox is destroyed, one of the new shape
  // booted, and the next execution claims it.
  for (int i = 0; i < 500 && network_.inUse() > 1; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(network_.inUse(), 1u);  // b1's network is released; the warm one remains
  int released = network_.released;
  tmpl.resources = {"", "256Mi"};
  ASSERT_TRUE(client_->setWarmPools({warmPool("team/bot", 1, tmpl)}).ok());
  state = waitPool(*manager_, "team/bot",
                   [&](const auto& s) { return s.ready == 1 && bootedSpecs(runtime_) == 2; });
  EXPECT_EQ(state.ready, 1);
  EXPECT_GT(network_.released, released);
  auto again = shell("b2", "true");
  again.resources = {"", "256Mi"};
  ASSERT_TRUE(client_->run(again).ok());
  done = client_->get("b2", 10s);
  ASSERT_TRUE(done.ok());
  EXPECT_THAT(done->sandbox_id, ::testing::StartsWith("wp-"));

  // Removing the pool destroys what it holds.
  ASSERT_TRUE(client_->setWarmPools({}).ok());
  EXPECT_TRUE(manager_->warmPools().empty());
  for (int i = 0; i < 200 && network_.inUse() > 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(network_.inUse(), 0u);
}

TEST_F(WorkerApiTest, WarmPoolSizesAreCappedAndErrorsReported) {
  // max_executions is 3: a pool gets at most 1 (half), all pools together at most 3.
  auto bad = shell("tmpl", "true");
  bad.image = "dir:/no/such/rootfs";
  auto states = client_->setWarmPools(
      {warmPool("team/a", 10, shell("tmpl", "true")), warmPool("team/b", 1, shell("tmpl", "true")),
       warmPool("team/c", 1, shell("tmpl", "true")), warmPool("team/d", 1, bad)});
  ASSERT_TRUE(states.ok());
  ASSERT_EQ(states->size(), 4u);
  EXPECT_EQ((*states)[0].size, 1);
  EXPECT_EQ((*states)[3].size, 0);  // nothing left for d
  for (const char* key : {"team/a", "team/b", "team/c"}) {
    EXPECT_EQ(waitPool(*manager_, key, [](const auto& s) { return s.ready == 1; }).ready, 1);
  }
  // A boot that cannot work says why, and is retried later.
  ASSERT_TRUE(client_->setWarmPools({warmPool("team/d", 1, bad)}).ok());
  auto failed = waitPool(*manager_, "team/d", [](const auto& s) { return !s.last_error.empty(); });
  EXPECT_THAT(failed.last_error, HasSubstr("/no/such/rootfs is not a directory"));
  EXPECT_EQ(failed.ready, 0);

  // Malformed bodies are refused naming the entry and field.
  auto reply = client_->request("PUT", "/v1/warm-pools", R"({"pools": [{"key": "x", "size": 1}]})");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 400);
  EXPECT_THAT(reply->body, HasSubstr("pools[0].key"));
  reply = client_->request("PUT", "/v1/warm-pools",
                           R"({"pools": [{"key": "a/b", "size": -1, "request": {}}]})");
  ASSERT_TRUE(reply.ok());
  EXPECT_THAT(reply->body, HasSubstr("pools[0].size"));
  reply = client_->request("PUT", "/v1/warm-pools",
                           R"({"pools": [{"key": "a/b", "size": 1, "request": {}}]})");
  ASSERT_TRUE(reply.ok());
  EXPECT_THAT(reply->body, HasSubstr("pools[0].request.executionId"));
  reply = client_->request("PUT", "/v1/warm-pools", "[]");
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(reply->status, 400);
}

TEST_F(WorkerApiTest, DrainingDestroysWarmSandboxesAndRefusesPools) {
  ASSERT_TRUE(client_->setWarmPools({warmPool("team/bot", 1, shell("tmpl", "true"))}).ok());
  ASSERT_EQ(waitPool(*manager_, "team/bot", [](const auto& s) { return s.ready == 1; }).ready, 1);
  manager_->setDraining();
  EXPECT_TRUE(manager_->warmPools().empty());
  EXPECT_EQ(network_.inUse(), 0u);
  auto refused = client_->setWarmPools({warmPool("team/bot", 1, shell("tmpl", "true"))});
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("draining"));
}

}  // namespace
}  // namespace clrk::worker
