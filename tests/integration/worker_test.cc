// clrk-worker end to end with the real binaries: clrk-controller-manager (embedded API server),
// clrk-worker (namespaces runtime; one gVisor case), clrk-mock-providers as api.openai.com.
// Registration (Lease), runs through WorkerClient (stdin, output, exit code, timeout, stop, logs
// follow), auth and pinning, an agent whose OpenAI key is injected by the egress from a Secret
// with the record attributed to the execution, SIGKILL clean-up on restart, SIGTERM drain.
// Needs root (netns, veth, nftables). Everything host-global is named with a random tag and
// removed by the test.
#include "harness.h"

#include "clrk/api/registry.h"
#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/kube/client.h"
#include "clrk/telemetry/local_store.h"
#include "clrk/worker/certs.h"
#include "clrk/worker/client.h"
#include "clrk/worker/registration.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using worker::DeliveryMode;
using worker::ExecutionRequest;
using worker::ExecutionStatus;
using worker::Phase;

std::string buildDir() {
  const char* dir = std::getenv("CLRK_BUILD_DIR");
  return dir != nullptr ? dir : "build/dev";
}

std::string readAll(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A child process with output in a file; killed (by PID) on destruction.
class Process {
 public:
  Process(std::vector<std::string> argv, fs::path log) : log_(std::move(log)) {
    // Built before fork(): the child of a multithreaded process must not allocate.
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      FILE* out = std::freopen(log_.c_str(), "a", stdout);
      FILE* err = std::freopen(log_.c_str(), "a", stderr);
      (void)out;
      (void)err;
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0) stop(SIGKILL);
  }
  pid_t pid() const { return pid_; }
  void signal(int signal) const {
    if (pid_ > 0) kill(pid_, signal);
  }
  // Sends `signal`, reaps; the exit code (128+N when killed by N), -1 on timeout.
  int stop(int signal, std::chrono::seconds timeout = 60s) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        pid_ = -1;
        return -1;
      }
      std::this_thread::sleep_for(20ms);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }
  // Waits until the log matches `pattern`; the captures (empty on timeout or exit).
  std::vector<std::string> waitFor(const std::string& pattern, std::chrono::seconds timeout) {
    std::regex re(pattern);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::string text = readAll(log_);
      std::smatch match;
      if (std::regex_search(text, match, re)) {
        std::vector<std::string> out;
        for (size_t i = 0; i < match.size(); ++i) out.push_back(match[i].str());
        return out;
      }
      if (exited()) return {};
      std::this_thread::sleep_for(50ms);
    }
    return {};
  }
  std::string log() const { return readAll(log_); }

 private:
  fs::path log_;
  pid_t pid_ = -1;
};

const api::ResourceType& typeOf(std::string_view api_version, std::string_view kind) {
  return *api::Registry::builtin().byKind(api_version, kind);
}

std::string randomTag() {
  std::random_device rd;
  const char* digits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string tag = "t";
  tag.push_back(digits[rd() % 36]);
  tag.push_back(digits[rd() % 36]);
  return tag;
}

std::vector<std::string> leftoverNetns(const std::string& tag) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/run/netns", ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("clrk-" + tag + "-", 0) == 0) out.push_back(name);
  }
  return out;
}

std::string leftoverLinks(const std::string& tag) {
  auto links = runCommand("ip -o link show | grep -o 'ck" + tag + "[hs][0-9]*' || true");
  return links.output;
}

// One API server, one mock provider, shared by the tests (started once).
class WorkerEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("clrk-worker-it-" + randomHex(4));
    fs::create_directories(dir);
    // The API server.
    fs::path state = dir / "cm";
    fs::create_directories(state);
    controller = std::make_unique<Process>(
        std::vector<std::string>{buildDir() + "/src/exe/clrk-controller-manager", "--state-dir",
                                 state.string(), "--port", "0", "--in-memory"},
        dir / "cm.log");
    for (int i = 0; i < 400; ++i) {
      auto url = readFile(state / "apiserver.url");
      if (url.ok() && !url->empty()) break;
      std::this_thread::sleep_for(50ms);
    }
    auto url = readFile(state / "apiserver.url");
    auto ca = readFile(state / "pki" / "ca.crt");
    auto token = readFile(state / "token");
    if (!url.ok() || !ca.ok() || !token.ok()) {
      error = "controller-manager did not start: " + controller->log();
      return;
    }
    auto trim = [](std::string s) {
      while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
      return s;
    };
    kube::RestConfig config;
    config.server = trim(url.value());
    config.ca_pem = ca.value();
    config.token = trim(token.value());
    kubeconfig = dir / "kubeconfig";
    std::ofstream(kubeconfig) << "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
                              << "    server: " << config.server << "\n"
                              << "    certificate-authority-data: " << base64Encode(config.ca_pem)
                              << "\n"
                              << "users:\n- name: u\n  user:\n    token: " << config.token << "\n"
                              << "contexts:\n- name: x\n  context: {cluster: c, user: u}\n"
                              << "current-context: x\n";
    auto created = kube::Client::create(config);
    if (!created.ok()) {
      error = created.status().toString();
      return;
    }
    client = created.value();
    for (int i = 0; i < 200; ++i) {
      auto ready = client->request("GET", "/readyz");
      if (ready.ok() && ready->status == 200) break;
      std::this_thread::sleep_for(50ms);
    }

    // An upstream CA + api.openai.com certificate for the mock provider.
    auto made = runCommand(
        "cd '" + dir.string() +
        "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=upstream-ca -keyout upca.key -out upstream-ca.pem "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=api.openai.com "
        "-keyout leaf.key -out leaf.csr && printf 'subjectAltName=DNS:api.openai.com\\n' > ext && "
        "openssl x509 -req -in leaf.csr -CA upstream-ca.pem -CAkey upca.key -CAcreateserial "
        "-days 1 -extfile ext -out leaf.pem");
    if (made.exit_code != 0) {
      error = "openssl: " + made.output;
      return;
    }
    mock = std::make_unique<Process>(
        std::vector<std::string>{buildDir() + "/src/exe/clrk-mock-providers", "--listen",
                                 "127.0.0.1:0", "--tls-cert", (dir / "leaf.pem").string(),
                                 "--tls-key", (dir / "leaf.key").string()},
        dir / "mock.log");
    auto port = mock->waitFor(R"(listening on https://127\.0\.0\.1:(\d+))", 20s);
    if (port.empty()) {
      error = "mock providers did not start: " + mock->log();
      return;
    }
    mock_port = port[1];
  }
  void TearDown() override {
    if (mock) mock->stop(SIGTERM, 10s);
    if (controller) controller->stop(SIGTERM, 10s);
    std::error_code ec;
    if (!::testing::Test::HasFailure()) fs::remove_all(dir, ec);
  }

  fs::path dir;
  fs::path kubeconfig;
  std::unique_ptr<Process> controller;
  std::unique_ptr<Process> mock;
  std::string mock_port;
  kube::ClientPtr client;
  std::string error;
};

WorkerEnv* g_env = nullptr;

// A clrk-worker process with its own name, tag, CIDR and state dir.
struct Worker {
  Worker() = default;
  Worker(Worker&&) = default;
  // Kills the process (if still running) and removes whatever a killed worker of this tag left
  // (netns, veths, nft tables), so a failing test leaves nothing on the host.
  ~Worker() {
    if (tag.empty()) return;
    process.reset();
    for (const auto& netns : leftoverNetns(tag)) runCommand("ip netns delete " + netns);
    runCommand("for l in $(ip -o link show | grep -o 'ck" + tag +
               "h[0-9]*' | sort -u); do ip link delete $l; done; nft delete table ip clrk_" + tag +
               "; nft delete table ip6 clrk6_" + tag);
  }

  std::string name;
  std::string tag;
  fs::path state;
  std::unique_ptr<Process> process;
  std::string endpoint;
  std::string fingerprint;

  static std::string randomCidr() {
    std::random_device rd;
    return "10." + std::to_string(201 + rd() % 50) + "." + std::to_string(rd() % 250) + ".0/24";
  }

  void start(const std::string& runtime, const std::string& cidr,
             std::vector<std::string> extra = {}) {
    std::vector<std::string> argv = {
        buildDir() + "/src/exe/clrk-worker",
        "--kubeconfig",
        g_env->kubeconfig.string(),
        "--name",
        name,
        "--pool",
        "default",
        "--namespace",
        "default",
        "--listen",
        "127.0.0.1:0",
        "--runtime",
        runtime,
        "--state-dir",
        state.string(),
        "--net-tag",
        tag,
        "--pool-cidr",
        cidr,
        "--egress-port",
        "0",
        "--dns-port",
        "0",
        "--max-executions",
        "4",
        "--upstream-ca",
        (g_env->dir / "upstream-ca.pem").string(),
        "--upstream-override",
        "api.openai.com:443=127.0.0.1:" + g_env->mock_port,
    };
    argv.insert(argv.end(), extra.begin(), extra.end());
    // A fresh log per start: a restart must not match the previous run's "listening" line.
    process = std::make_unique<Process>(argv, state.string() + "-" + randomHex(3) + ".log");
    auto ready =
        process->waitFor(R"(listening on (https://\S+) \(tls-sha256 ([0-9a-f]{64})\))", 60s);
    if (ready.size() == 3) {
      endpoint = ready[1];
      fingerprint = ready[2];
    }
  }
  std::string log() const { return process ? process->log() : ""; }

  std::unique_ptr<worker::WorkerClient> client(const std::string& token,
                                               const std::string& pin = "") const {
    worker::WorkerEndpoint e;
    e.url = endpoint;
    e.fingerprint = pin.empty() ? fingerprint : pin;
    e.token = token;
    e.timeout = 20s;
    auto c = worker::WorkerClient::create(e);
    return c.ok() ? std::move(c).value() : nullptr;
  }
};

Worker makeWorker(const std::string& prefix) {
  Worker w;
  w.name = prefix + "-" + randomHex(3);
  w.tag = randomTag();
  w.state = g_env->dir / w.name;
  return w;
}

std::string workerToken() {
  auto secret = g_env->client->get(typeOf("v1", "Secret"), "clrk-system", "clrk-worker-token");
  if (!secret.ok()) return "";
  auto token = worker::secretValue(secret.value(), "token");
  return token.ok() ? token.value() : "";
}

ExecutionRequest shell(const std::string& id, const std::string& script) {
  ExecutionRequest r;
  r.execution_id = id;
  r.namespace_name = "default";
  r.agent = "it-agent";
  r.agent_kind = "TaskAgent";
  r.image = "host";
  r.command = {"/bin/sh", "-c", script};
  return r;
}

// A Metadata-delivery agent: reads its event from $CLRK_METADATA_URL/event, probes what must not
// work (an unknown path, TLS to the metadata name, a body over 8 MiB), then POSTs
// {"me": <event id>, "stdin": <bytes on stdin>} to /response. `sleep` keeps two of them
// running at once.
ExecutionRequest metadataAgent(const std::string& id) {
  ExecutionRequest r = shell(id, R"sh(set -u
ev=$(curl -sS --fail --max-time 10 "$CLRK_METADATA_URL/event") || exit 7
me=$(printf '%s' "$ev" | jq -r .id)
sleep 1
echo "nope=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$CLRK_METADATA_URL/nope")"
curl -s -o /dev/null --max-time 5 https://metadata.clrk.internal/; echo "tls=$?"
echo "big=$(head -c 9000000 /dev/zero | curl -s -o /dev/null -w '%{http_code}' --max-time 20   --data-binary @- "$CLRK_METADATA_URL/response")"
printf '{"me":"%s","stdin":%s}' "$me" "$(wc -c)" | curl -sS --fail --max-time 10   -H 'content-type: application/json' --data-binary @- "$CLRK_METADATA_URL/response" || exit 8)sh");
  r.delivery_mode = DeliveryMode::Metadata;
  r.event = R"({"specversion":"1.0","id":")" + id + R"(","data":{"n":1}})";
  return r;
}

// Checks what metadataAgent(id) reported.
void expectMetadataAgentRan(const Result<ExecutionStatus>& done, const std::string& id,
                            const std::string& log) {
  ASSERT_TRUE(done.ok()) << done.status().toString();
  EXPECT_EQ(done->phase, Phase::Succeeded)
      << done->message << "\n"
      << done->output.stdout_text << done->output.stderr_tail << log;
  EXPECT_THAT(done->output.stdout_text, ::testing::HasSubstr("nope=404"));
  EXPECT_THAT(done->output.stdout_text, ::testing::HasSubstr("big=413"));
  EXPECT_THAT(done->output.stdout_text, ::testing::Not(::testing::HasSubstr("tls=0")));
  ASSERT_TRUE(done->response) << done->output.stdout_text << done->output.stderr_tail;
  EXPECT_EQ(done->response->content_type, "application/json");
  auto body = api::Json::parse(done->response->body, nullptr, false);
  EXPECT_EQ(body, api::Json({{"me", id}, {"stdin", 0}})) << done->response->body;
}

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (netns, veth, nftables)";
    ASSERT_TRUE(g_env->error.empty()) << g_env->error;
  }
};

TEST_F(WorkerTest, RegistersRunsStopsFollowsAndDrains) {
  Worker w = makeWorker("ns");
  std::string cidr = Worker::randomCidr();
  w.start("namespaces", cidr, {"--drain-timeout", "20"});
  ASSERT_FALSE(w.endpoint.empty()) << w.log();

  // The Lease.
  auto lease = g_env->client->get(typeOf("coordination.k8s.io/v1", "Lease"), "clrk-system",
                                  "worker-" + w.name);
  ASSERT_TRUE(lease.ok()) << lease.status().toString();
  const auto& metadata = (*lease)["metadata"];
  EXPECT_EQ(metadata["labels"]["clrk.apoxy.dev/worker-pool"], "default");
  EXPECT_EQ(metadata["labels"]["clrk.apoxy.dev/pool-namespace"], "default");
  EXPECT_EQ(metadata["labels"]["app.kubernetes.io/component"], "worker");
  EXPECT_EQ(metadata["annotations"]["clrk.apoxy.dev/endpoint"], w.endpoint);
  EXPECT_EQ(metadata["annotations"]["clrk.apoxy.dev/tls-sha256"], w.fingerprint);
  EXPECT_EQ(metadata["annotations"]["clrk.apoxy.dev/state"], "Ready");
  auto capacity = api::Json::parse(
      metadata["annotations"]["clrk.apoxy.dev/capacity"].get<std::string>(), nullptr, false);
  ASSERT_TRUE(capacity.is_object());
  EXPECT_EQ(capacity["maxExecutions"], 4);
  EXPECT_EQ(capacity["runtime"], "namespaces");
  EXPECT_GT(capacity["memoryBytes"].get<int64_t>(), 0);
  EXPECT_EQ((*lease)["spec"]["holderIdentity"], w.name);
  EXPECT_EQ((*lease)["spec"]["leaseDurationSeconds"], 15);
  std::string first_renew = (*lease)["spec"]["renewTime"];

  std::string token = workerToken();
  ASSERT_GE(token.size(), 16u);
  auto client = w.client(token);
  ASSERT_TRUE(client);

  // stdin in, stdout out, exit code.
  auto request = shell("hello-1", "echo hi; read x; echo got $x");
  request.stdin_data = "there\n";
  ASSERT_TRUE(client->run(request).ok());
  auto done = client->get("hello-1", 30s);
  ASSERT_TRUE(done.ok()) << done.status().toString();
  EXPECT_EQ(done->phase, Phase::Succeeded) << done->message << "\n" << w.log();
  EXPECT_EQ(done->exit_code, 0);
  EXPECT_EQ(done->output.stdout_text, "hi\ngot there\n");
  EXPECT_FALSE(done->sandbox_address.empty());

  // Timeout.
  // The host rootfs runs as nobody: root-only host files stay closed.
  auto whoami = client->run(shell("whoami-1", "id -u; echo $HOME; cat /etc/shadow || echo denied"));
  ASSERT_TRUE(whoami.ok()) << whoami.status().toString();
  auto who = client->get("whoami-1", 30s);
  ASSERT_TRUE(who.ok()) << who.status().toString();
  EXPECT_EQ(who->output.stdout_text, "65534\n/tmp\ndenied\n");

  auto slow = shell("slow-1", "sleep 30");
  slow.timeout_seconds = 1;
  ASSERT_TRUE(client->run(slow).ok());
  auto timed = client->get("slow-1", 30s);
  ASSERT_TRUE(timed.ok());
  EXPECT_EQ(timed->phase, Phase::TimedOut) << timed->message;

  // Logs follow, then stop.
  ASSERT_TRUE(client
                  ->run(shell("follow-1",
                              "for i in 1 2 3; do echo line$i; sleep 0.2; done; "
                              "echo err >&2; sleep 30"))
                  .ok());
  std::vector<worker::LogEntry> lines;
  std::thread follower([&] {
    Status followed = client->logs("follow-1", true, [&](const worker::LogEntry& e) {
      lines.push_back(e);
      return true;
    });
    EXPECT_TRUE(followed.ok()) << followed.toString();
  });
  for (int i = 0; i < 100; ++i) {
    auto s = client->get("follow-1");
    if (s.ok() && s->output.stderr_tail == "err\n") break;
    std::this_thread::sleep_for(50ms);
  }
  auto stopping = client->stop("follow-1");
  ASSERT_TRUE(stopping.ok()) << stopping.status().toString();
  auto stopped = client->get("follow-1", 30s);
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->phase, Phase::Stopped) << stopped->message;
  follower.join();
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].text, "line1");
  EXPECT_EQ(lines[2].text, "line3");
  EXPECT_EQ(lines[3].stream, "stderr");

  // Authentication and pinning.
  auto no_token = w.client("");
  auto unauthorized = no_token->request("GET", "/v1/executions");
  ASSERT_TRUE(unauthorized.ok());
  EXPECT_EQ(unauthorized->status, 401);
  auto wrong_token = w.client(std::string(token.size(), 'x'));
  EXPECT_EQ(wrong_token->list().status().code(), Code::Unauthenticated);
  auto wrong_pin = w.client(token, std::string(64, 'a'));
  auto pinned = wrong_pin->list();
  ASSERT_FALSE(pinned.ok());
  EXPECT_THAT(pinned.status().message(), HasSubstr("fingerprint"));
  auto bad = client->request("POST", "/v1/executions",
                             R"({"executionId":"bad","image":"host","resources":{"cpu":"lots"}})");
  EXPECT_EQ(bad->status, 400);
  EXPECT_THAT(bad->body, HasSubstr("resources.cpu"));

  // The Lease is renewed.
  std::this_thread::sleep_for(5500ms);
  lease = g_env->client->get(typeOf("coordination.k8s.io/v1", "Lease"), "clrk-system",
                             "worker-" + w.name);
  ASSERT_TRUE(lease.ok());
  EXPECT_NE((*lease)["spec"]["renewTime"], first_renew);

  // SIGTERM drains: a running execution finishes, new ones are refused, then clean exit.
  ASSERT_TRUE(client->run(shell("drain-1", "sleep 2; echo finished")).ok());
  for (int i = 0; i < 100 && client->get("drain-1")->phase != Phase::Running; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  std::optional<Result<worker::ExecutionStatus>> drained;
  std::thread waiter([&] { drained.emplace(client->get("drain-1", 30s)); });
  std::this_thread::sleep_for(200ms);
  w.process->signal(SIGTERM);
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    auto r = client->request("POST", "/v1/executions",
                             worker::toJson(shell("late-" + std::to_string(i), "true")).dump());
    refused = r.ok() && r->status == 503;
    if (!refused) std::this_thread::sleep_for(25ms);
  }
  EXPECT_TRUE(refused);
  waiter.join();
  ASSERT_TRUE(drained && drained->ok()) << (drained ? drained->status().toString() : "");
  EXPECT_EQ((*drained)->phase, Phase::Succeeded);
  EXPECT_EQ((*drained)->output.stdout_text, "finished\n");
  EXPECT_EQ(w.process->stop(0, 60s), 0) << w.log();
  lease = g_env->client->get(typeOf("coordination.k8s.io/v1", "Lease"), "clrk-system",
                             "worker-" + w.name);
  EXPECT_EQ(lease.status().code(), Code::NotFound);
  EXPECT_TRUE(leftoverNetns(w.tag).empty());
  EXPECT_EQ(leftoverLinks(w.tag), "");
}

TEST_F(WorkerTest, AgentCallsOpenAiWithInjectedKeyAndRecordIsAttributed) {
  // Egress configuration in the API: the key lives in a Secret the agent never sees.
  auto apply = [](std::string_view api_version, std::string_view kind, api::Json object) {
    auto created = g_env->client->create(typeOf(api_version, kind), "default", object);
    ASSERT_TRUE(created.ok() || created.status().code() == Code::AlreadyExists)
        << created.status().toString();
  };
  apply("v1", "Secret",
        {{"apiVersion", "v1"},
         {"kind", "Secret"},
         {"metadata", {{"name", "openai-key"}, {"namespace", "default"}}},
         {"stringData", {{"token", "sk-from-secret-7731"}}}});
  apply("clrk.apoxy.dev/v1alpha1", "EgressGateway",
        api::Json::parse(R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"EgressGateway",
          "metadata":{"name":"default","namespace":"default"},
          "spec":{"listeners":[{"name":"https","protocol":"TLS","port":443,
                                "tls":{"mode":"Terminate"}}]}})"));
  apply("clrk.apoxy.dev/v1alpha1", "AIProviderRoute",
        api::Json::parse(R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"AIProviderRoute",
          "metadata":{"name":"openai","namespace":"default"},
          "spec":{"parentRefs":[{"name":"default"}],"rules":[{"matches":[{"provider":"openai"}]}]}})"));
  apply("clrk.apoxy.dev/v1alpha1", "CredentialInjectionPolicy",
        api::Json::parse(R"({"apiVersion":"clrk.apoxy.dev/v1alpha1",
          "kind":"CredentialInjectionPolicy","metadata":{"name":"openai","namespace":"default"},
          "spec":{"targetRefs":[{"group":"clrk.apoxy.dev","kind":"AIProviderRoute","name":"openai"}],
                  "secretRef":{"name":"openai-key"},"target":"Header",
                  "headerName":"Authorization"}})"));

  // The test clients, copied where the host rootfs shows them (/work, /tmp and /var/tmp are
  // masked in sandboxes).
  fs::path clients = fs::path("/srv") / ("clrk-worker-it-" + randomHex(4));
  struct Cleanup {
    fs::path path;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(path, ec);
    }
  } cleanup{clients};
  fs::create_directories(clients / "node_modules");
  std::string src = sourcePath("tests/clients");
  auto copied = runCommand("cp '" + src + "/openai_chat.mjs' '" + src + "/common.mjs' '" + src +
                           "/package.json' '" + clients.string() + "/' && cp -r '" + src +
                           "/node_modules/openai' '" + clients.string() + "/node_modules/'");
  ASSERT_EQ(copied.exit_code, 0) << copied.output;

  Worker w = makeWorker("agent");
  w.start("namespaces", Worker::randomCidr());
  ASSERT_FALSE(w.endpoint.empty()) << w.log();
  auto client = w.client(workerToken());
  // The worker's egress compiled the four objects.
  bool synced = false;
  for (int i = 0; i < 100 && !synced; ++i) {
    auto status = client->status();
    synced = status.ok() && (*status)["egress"]["configGeneration"].get<int>() > 0 &&
             (*status)["egress"]["notAccepted"].empty();
    if (!synced) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(synced) << client->status()->dump();

  std::string id = "chat-" + randomHex(4);
  ExecutionRequest request;
  request.execution_id = id;
  request.namespace_name = "default";
  request.agent = "chatter";
  request.agent_kind = "TaskAgent";
  request.request_id = "req-42";
  request.image = "host";
  request.command = {"node", (clients / "openai_chat.mjs").string()};
  request.env = {{"OPENAI_API_KEY", "sk-agent-does-not-know"},
                 {"OPENAI_BASE_URL", "https://api.openai.com/v1"},
                 {"TIMEOUT_MS", "20000"}};
  request.timeout_seconds = 60;
  ASSERT_TRUE(client->run(request).ok());
  auto done = client->get(id, 60s);
  ASSERT_TRUE(done.ok()) << done.status().toString();
  EXPECT_EQ(done->phase, Phase::Succeeded)
      << done->message << "\nstdout: " << done->output.stdout_text
      << "\nstderr: " << done->output.stderr_tail << "\n"
      << w.log();
  EXPECT_THAT(done->output.stdout_text, HasSubstr("\"ok\":true"));

  // The mock saw the Secret's key, not the agent's.
  auto seen =
      runCommand("curl -sS --cacert '" + (g_env->dir / "upstream-ca.pem").string() +
                 "' --resolve api.openai.com:" + g_env->mock_port +
                 ":127.0.0.1 https://api.openai.com:" + g_env->mock_port + "/__mock/requests");
  EXPECT_THAT(seen.output, HasSubstr("sk-from-secret-7731"));
  EXPECT_THAT(seen.output, ::testing::Not(HasSubstr("sk-agent-does-not-know")));

  // The egress record carries the execution's identity.
  auto store = telemetry::LocalStore::open(w.state / "records.db");
  ASSERT_TRUE(store.ok()) << store.status().toString();
  std::vector<telemetry::Record> records;
  for (int i = 0; i < 100 && records.empty(); ++i) {
    telemetry::Query query;
    query.execution_id = id;
    auto found = store.value()->query(query);
    if (found.ok()) records = found.value();
    if (records.empty()) std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(records.empty()) << w.log();
  std::string json = telemetry::toJson(records.front());
  EXPECT_THAT(json, HasSubstr("req-42"));
  EXPECT_THAT(json, HasSubstr("chatter"));
  EXPECT_THAT(json, HasSubstr("gpt-4o-mini"));
  EXPECT_THAT(json, ::testing::Not(HasSubstr("sk-from-secret-7731")));
  EXPECT_EQ(w.process->stop(SIGTERM), 0) << w.log();
}

// The HTTP trigger of the real controller-manager with a real worker: the TaskAgent's
// spec.identity extracts the caller identity (a JWT claim, a header), which lands on the
// Invocation and on the egress record of the agent's call; with spec.streaming.enabled the
// agent's first line reaches the client (curl) while the agent still waits on a gate file, and
// the outcome arrives in the trailers.
TEST_F(WorkerTest, TriggerCarriesCallerIdentityToEgressRecordsAndStreamsOutput) {
  auto apply = [](std::string_view kind, api::Json object) {
    auto created =
        g_env->client->create(typeOf("clrk.apoxy.dev/v1alpha1", kind), "default", object);
    ASSERT_TRUE(created.ok() || created.status().code() == Code::AlreadyExists)
        << created.status().toString();
  };
  apply("WorkerPool", {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                       {"kind", "WorkerPool"},
                       {"metadata", {{"name", "default"}, {"namespace", "default"}}},
                       {"spec", {{"replicas", 1}, {"template", {{"image", "clrk/worker:dev"}}}}}});
  fs::path gate = g_env->dir / ("gate-" + randomHex(3));
  fs::create_directories(gate);
  Worker w = makeWorker("trigger");
  w.start("namespaces", Worker::randomCidr(), {"--share", gate.string() + ":/opt/clrk-gate"});
  ASSERT_FALSE(w.endpoint.empty()) << w.log();

  // Calls out (any call is recorded, allowed or denied), prints a line, waits for the gate.
  std::string script =
      "curl -sS --max-time 10 -o /dev/null http://example.com/ 2>/dev/null; echo first; "
      "while [ ! -e /opt/clrk-gate/go ]; do sleep 0.1; done; echo second";
  apply("TaskAgent", api::Json::parse(R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"TaskAgent",
          "metadata":{"name":"who-streams","namespace":"default"},
          "spec":{"workerPoolRef":"default","timeout":"60s",
                  "streaming":{"enabled":true},
                  "identity":{"extractors":[
                    {"type":"JWT","jwt":{"claim":"sub","field":"user"}},
                    {"type":"Header","header":{"name":"X-Tenant","field":"tenant"}}]},
                  "template":{"spec":{"image":"host","command":["/bin/sh","-c",")" +
                                      script + R"("]}}}})"));
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    auto agent = g_env->client->get(typeOf("clrk.apoxy.dev/v1alpha1", "TaskAgent"), "default",
                                    "who-streams");
    if (agent.ok()) {
      api::Json status = agent->value("status", api::Json::object());
      for (const auto& cond : status.value("conditions", api::Json::array())) {
        ready = ready || (cond.value("type", "") == "Ready" && cond.value("status", "") == "True");
      }
    }
    if (!ready) std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(ready) << "TaskAgent who-streams never became Ready\n" << w.log();

  auto url = readFile(g_env->dir / "cm" / "trigger.url");
  ASSERT_TRUE(url.ok());
  std::string trigger = *url;
  while (!trigger.empty() && std::isspace(static_cast<unsigned char>(trigger.back()))) {
    trigger.pop_back();
  }
  auto base64Url = [](const std::string& data) {
    std::string text = base64Encode(data);
    std::replace(text.begin(), text.end(), '+', '-');
    std::replace(text.begin(), text.end(), '/', '_');
    while (!text.empty() && text.back() == '=') text.pop_back();
    return text;
  };
  std::string token =
      base64Url(R"({"alg":"RS256"})") + "." + base64Url(R"({"sub":"alice"})") + ".c2ln";
  fs::path head = g_env->dir / ("head-" + randomHex(3));
  Process curl({"/usr/bin/curl", "-sS", "-N", "-D", head.string(), "-X", "POST", "-H",
                "Authorization: Bearer " + token, "-H", "X-Tenant: acme", "-d", "{}",
                trigger + "/v1/namespaces/default/taskagents/who-streams/invoke"},
               g_env->dir / ("curl-" + randomHex(3) + ".log"));
  // The first line arrives while the agent waits for the gate: the Invocation is not terminal.
  ASSERT_FALSE(curl.waitFor("first\n", 90s).empty()) << curl.log() << "\n" << w.log();
  std::smatch found;
  std::string head_text = readAll(head);
  ASSERT_TRUE(std::regex_search(head_text, found, std::regex(R"(X-Clrk-Invocation: (\S+))")))
      << head_text;
  std::string invocation = found[1].str();
  auto during =
      g_env->client->get(typeOf("clrk.apoxy.dev/v1alpha1", "Invocation"), "default", invocation);
  ASSERT_TRUE(during.ok()) << during.status().toString();
  std::string phase = (*during)["status"].value("phase", "");
  EXPECT_TRUE(phase == "Dispatched" || phase == "Running") << phase;
  EXPECT_THAT(curl.log(), ::testing::Not(HasSubstr("second")));
  { std::ofstream(gate / "go") << "go"; }
  ASSERT_FALSE(curl.waitFor("second\n", 30s).empty()) << curl.log();
  for (int i = 0; i < 200 && !curl.exited(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(curl.log(), "first\nsecond\n");
  head_text = readAll(head);
  EXPECT_THAT(head_text, HasSubstr("X-Clrk-Stream: chunked"));
  EXPECT_THAT(head_text, HasSubstr("X-Clrk-Phase: Succeeded"));  // the trailers
  EXPECT_THAT(head_text, HasSubstr("X-Clrk-Exit-Code: 0"));

  // The Invocation records who asked, and that nobody checked it.
  auto record =
      g_env->client->get(typeOf("clrk.apoxy.dev/v1alpha1", "Invocation"), "default", invocation);
  ASSERT_TRUE(record.ok());
  api::Json identity = (*record)["spec"]["identity"];
  EXPECT_EQ(identity["fields"], api::Json({{"user", "alice"}, {"tenant", "acme"}}))
      << identity.dump();
  EXPECT_EQ(identity["verified"], false);

  // The egress record of the agent's call carries the same identity.
  auto store = telemetry::LocalStore::open(w.state / "records.db");
  ASSERT_TRUE(store.ok()) << store.status().toString();
  std::vector<telemetry::Record> records;
  for (int i = 0; i < 100 && records.empty(); ++i) {
    telemetry::Query query;
    query.execution_id = invocation;
    auto got = store.value()->query(query);
    if (got.ok()) records = got.value();
    if (records.empty()) std::this_thread::sleep_for(100ms);
  }
  ASSERT_FALSE(records.empty()) << w.log();
  const telemetry::Record& call = records.front();
  ASSERT_NE(telemetry::findString(call, "clrk.identity.user"), nullptr) << telemetry::toJson(call);
  EXPECT_EQ(*telemetry::findString(call, "clrk.identity.user"), "alice");
  EXPECT_EQ(*telemetry::findString(call, "clrk.identity.tenant"), "acme");
  const telemetry::AttributeValue* verified = telemetry::find(call, "clrk.identity_verified");
  ASSERT_NE(verified, nullptr);
  EXPECT_FALSE(std::get<bool>(*verified));
  EXPECT_THAT(telemetry::toJson(call), ::testing::Not(HasSubstr(token)));  // never the token

  ASSERT_TRUE(g_env->client
                  ->remove(typeOf("clrk.apoxy.dev/v1alpha1", "TaskAgent"), "default", "who-streams")
                  .ok());
  EXPECT_EQ(w.process->stop(SIGTERM), 0) << w.log();
}

TEST_F(WorkerTest, SigkillLeavesNothingAfterRestart) {
  Worker w = makeWorker("kill");
  std::string cidr = Worker::randomCidr();
  w.start("namespaces", cidr);
  ASSERT_FALSE(w.endpoint.empty()) << w.log();
  auto client = w.client(workerToken());
  std::string marker = "clrk-worker-it-marker-" + randomHex(4);
  ASSERT_TRUE(client->run(shell("victim", "sleep 60; echo " + marker)).ok());
  for (int i = 0; i < 200 && client->get("victim")->phase != Phase::Running; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_EQ(client->get("victim")->phase, Phase::Running);
  EXPECT_EQ(w.process->stop(SIGKILL), 128 + SIGKILL);
  // Something was left behind (otherwise this test proves nothing).
  EXPECT_FALSE(leftoverNetns(w.tag).empty());
  // "[c]" keeps pgrep from matching its own shell's command line.
  std::string pgrep = "pgrep -f '[c]" + marker.substr(1) + "' || true";

  // The same state dir and tag: start-up removes everything before registering.
  Worker again;
  again.name = w.name;
  again.tag = w.tag;
  again.state = w.state;
  again.start("namespaces", cidr);
  ASSERT_FALSE(again.endpoint.empty()) << again.log();
  EXPECT_TRUE(leftoverNetns(w.tag).empty());
  EXPECT_EQ(leftoverLinks(w.tag), "");
  EXPECT_EQ(runCommand(pgrep).output, "");
  EXPECT_EQ(again.process->stop(SIGTERM), 0) << again.log();
  EXPECT_EQ(runCommand(pgrep).output, "");
}

// spec.delivery.mode Metadata through the real data plane: the sandbox resolves
// metadata.clrk.internal with the worker's DNS, its connection is redirected to the egress, which
// answers from the execution's own entry: two sandboxes at once each see only their own event.
TEST_F(WorkerTest, MetadataDeliveryServesEachSandboxItsOwnEvent) {
  Worker w = makeWorker("md");
  w.start("namespaces", Worker::randomCidr());
  ASSERT_FALSE(w.endpoint.empty()) << w.log();
  auto client = w.client(workerToken());
  ASSERT_TRUE(client);
  // Submitted together, so md-c asks while md-a and md-b (which sleep) hold their entries: a
  // Stdin-mode sandbox gets 404, not another execution's event.
  ASSERT_TRUE(client->run(metadataAgent("md-a")).ok());
  ASSERT_TRUE(client->run(metadataAgent("md-b")).ok());
  auto stdin_mode = client->run(shell(
      "md-c", "curl -s -w ' %{http_code}' --max-time 10 http://metadata.clrk.internal/event"));
  ASSERT_TRUE(stdin_mode.ok()) << stdin_mode.status().toString();
  expectMetadataAgentRan(client->get("md-a", 60s), "md-a", w.log());
  expectMetadataAgentRan(client->get("md-b", 60s), "md-b", w.log());
  auto plain = client->get("md-c", 60s);
  ASSERT_TRUE(plain.ok()) << plain.status().toString();
  EXPECT_THAT(plain->output.stdout_text, ::testing::HasSubstr(" 404"));
  EXPECT_THAT(plain->output.stdout_text, ::testing::HasSubstr("does not use"));
  EXPECT_FALSE(plain->response);
  EXPECT_EQ(w.process->stop(SIGTERM), 0) << w.log();
}

TEST_F(WorkerTest, GvisorRuns) {
  if (runCommand("command -v runsc").exit_code != 0) GTEST_SKIP() << "runsc is not installed";
  Worker w = makeWorker("gv");
  w.start("gvisor", Worker::randomCidr());
  ASSERT_FALSE(w.endpoint.empty()) << w.log();
  auto client = w.client(workerToken());
  auto request = shell("gv-1", "echo hi-from-gvisor; read x; echo got $x");
  request.stdin_data = "it\n";
  ASSERT_TRUE(client->run(request).ok());
  auto done = client->get("gv-1", 60s);
  ASSERT_TRUE(done.ok()) << done.status().toString();
  EXPECT_EQ(done->phase, Phase::Succeeded) << done->message << "\n" << w.log();
  EXPECT_EQ(done->output.stdout_text, "hi-from-gvisor\ngot it\n");
  // Metadata delivery under gVisor's netstack: the same netns path to the egress.
  ASSERT_TRUE(client->run(metadataAgent("gv-md")).ok());
  expectMetadataAgentRan(client->get("gv-md", 60s), "gv-md", w.log());
  auto status = client->status();
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["runtime"], "gvisor");
  EXPECT_EQ(w.process->stop(SIGTERM), 0) << w.log();
  EXPECT_TRUE(leftoverNetns(w.tag).empty());
}

}  // namespace
}  // namespace clrk::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  clrk::testing::g_env = new clrk::testing::WorkerEnv();
  ::testing::AddGlobalTestEnvironment(clrk::testing::g_env);
  return RUN_ALL_TESTS();
}
