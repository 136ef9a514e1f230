// The whole local stack with the real binaries: `clrk dev up --workers 2 --runtime namespaces
// --mock-providers` starts clrk-controller-manager, two `--any-pool` workers registered by their
// Leases and clrk-mock-providers serving the provider hosts with a certificate from the dev mock
// upstream CA; `dev status` lists them all; `dev down` leaves no process, no netns and no
// nftables table of the dev net tags. Needs root (the workers create netns, veths and nftables
// tables). The fixture kills by PID whatever is still running when a test fails midway, and removes
// the tags' leftovers.
#include "harness.h"

#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/kube/client.h"
#include "clrk/kube/config.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace clrk::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

// The dev workers' net tags (`--net-tag d<i>`).
const std::vector<std::string> kTags = {"d1", "d2"};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Basename of /proc/PID/exe; "" when the process is gone (or a zombie).
std::string exeName(pid_t pid) {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  if (ec) return "";
  std::string name = exe.filename().string();
  constexpr std::string_view kDeleted = " (deleted)";
  if (name.size() > kDeleted.size() && name.substr(name.size() - kDeleted.size()) == kDeleted) {
    name.resize(name.size() - kDeleted.size());
  }
  return name;
}

std::vector<std::string> netnsOfTag(const std::string& tag) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/run/netns", ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("clrk-" + tag + "-", 0) == 0) out.push_back(name);
  }
  return out;
}

// Waits (bounded) until `done` holds; returns its last value.
bool awaitCondition(const std::function<bool()>& done, std::chrono::seconds limit = 30s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(100ms);
  }
  return true;
}

class DevStackTest : public ::testing::Test {
 public:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (workers: netns, veth, nftables)";
    for (const std::string& tag : kTags) {
      if (!netnsOfTag(tag).empty()) {
        GTEST_SKIP() << "net tag " << tag << " is in use on this host (another `clrk dev`?)";
      }
    }
    home_ = fs::temp_directory_path() / ("clrk-devstack-" + randomHex(6));
    fs::create_directories(home_);
  }

  void TearDown() override {
    if (home_.empty()) return;
    // The normal way first; then by PID whatever is still running (dev down may not have run or
    // may have failed), then the host objects of the dev tags.
    clrk("dev down");
    bool killed = false;
    for (const auto& [pid, exe] : started_) {
      if (exeName(pid) != exe) continue;
      ::kill(pid, SIGKILL);
      killed = true;
      pid_t child = pid;
      awaitCondition([child] { return exeName(child).empty(); }, 10s);
    }
    if (killed) {
      for (const std::string& tag : kTags) {
        for (const auto& netns : netnsOfTag(tag)) runCommand("ip netns delete " + netns);
        runCommand("for l in $(ip -o link show | grep -o 'ck" + tag +
                   "h[0-9]*' | sort -u); do ip link delete $l; done; nft delete table ip clrk_" +
                   tag + "; nft delete table ip6 clrk6_" + tag);
      }
    }
    std::error_code ec;
    fs::remove_all(home_, ec);
  }

  CommandResult clrk(const std::string& args) const {
    return runCommand("CLRK_HOME='" + home_.string() + "' " + binaryPath("clrk") + " " + args);
  }

  // Remembers the PID in `pid_file` (for TearDown) and returns it; 0 when there is none.
  pid_t record(const std::string& pid_file, const std::string& exe) {
    auto text = readFile(home_ / pid_file);
    if (!text.ok()) return 0;
    pid_t pid = static_cast<pid_t>(std::atoi(text->c_str()));
    if (pid > 0) started_[pid] = exe;
    return pid;
  }

  // The Lease as JSON: through the real kubectl when installed, else the kube client.
  json lease(const std::string& name) const {
    fs::path kubeconfig = home_ / "kubeconfig.host";
    if (runCommand("command -v kubectl").exit_code == 0) {
      CommandResult got = runCommand("kubectl --kubeconfig='" + kubeconfig.string() +
                                     "' --cache-dir='" + (home_ / "kubectl-cache").string() +
                                     "' -n clrk-system get lease " + name + " -o json 2>/dev/null");
      if (got.exit_code != 0) return json();
      return json::parse(got.output, nullptr, /*allow_exceptions=*/false);
    }
    auto config = kube::loadKubeconfigFiles({kubeconfig});
    if (!config.ok()) return json();
    auto client = kube::Client::create(*config);
    if (!client.ok()) return json();
    auto response = (*client)->request(
        "GET", "/apis/coordination.k8s.io/v1/namespaces/clrk-system/leases/" + name);
    if (!response.ok() || response->status != 200) return json();
    return json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  }

  fs::path home_;
  std::map<pid_t, std::string> started_;  // pid -> expected exe basename
};

TEST_F(DevStackTest, UpStatusDown) {
  CommandResult up = clrk("dev up --workers 2 --runtime namespaces --mock-providers");
  // Record whatever started before asserting anything, so TearDown can stop it.
  std::map<std::string, pid_t> pids = {
      {"clrk-controller-manager", record("controller-manager.pid", "clrk-controller-manager")},
      {"clrk-worker dev-1", record("worker-dev-1.pid", "clrk-worker")},
      {"clrk-worker dev-2", record("worker-dev-2.pid", "clrk-worker")},
      {"clrk-mock-providers", record("mock-providers.pid", "clrk-mock-providers")}};
  ASSERT_EQ(up.exit_code, 0) << up.output;
  for (const auto& [label, pid] : pids) {
    ASSERT_GT(pid, 0) << label << "\n" << up.output;
    EXPECT_NE(exeName(pid), "") << label << " (pid " << pid << ") is not running";
  }

  // Both workers registered as any-pool dev workers of default-workers.
  for (const std::string name : {"worker-dev-1", "worker-dev-2"}) {
    json got = lease(name);
    ASSERT_TRUE(got.is_object()) << "Lease " << name << " not found";
    json annotations = got["metadata"].value("annotations", json::object());
    EXPECT_EQ(annotations.value("clrk.apoxy.dev/any-pool", ""), "true") << got.dump(2);
    EXPECT_EQ(annotations.value("clrk.apoxy.dev/state", ""), "Ready") << got.dump(2);
    json labels = got["metadata"].value("labels", json::object());
    EXPECT_EQ(labels.value("clrk.apoxy.dev/worker-pool", ""), "default-workers") << got.dump(2);
  }

  // The workers send the provider hosts to the mock and trust the dev mock upstream CA.
  auto config = readFile(home_ / "dev.json");
  ASSERT_TRUE(config.ok()) << config.status().toString();
  json dev = json::parse(*config, nullptr, /*allow_exceptions=*/false);
  ASSERT_TRUE(dev.is_object()) << *config;
  EXPECT_EQ(dev.value("workers", 0), 2);
  EXPECT_EQ(dev.value("runtime", ""), "namespaces");
  int mock_port = dev.value("mockProvidersPort", 0);
  ASSERT_GT(mock_port, 0) << *config;
  auto cmdline = readFile("/proc/" + std::to_string(pids["clrk-worker dev-1"]) + "/cmdline");
  ASSERT_TRUE(cmdline.ok());
  std::string args = *cmdline;
  for (char& c : args) c = c == '\0' ? ' ' : c;
  for (const char* host : {"api.openai.com", "api.anthropic.com",
                           "generativelanguage.googleapis.com", "mcp.mock.clrk.dev"}) {
    EXPECT_TRUE(contains(args, std::string(host) + ":443=127.0.0.1:" + std::to_string(mock_port)))
        << args;
  }
  EXPECT_TRUE(contains(args, "--upstream-ca " + (home_ / "mock-providers" / "ca.crt").string()))
      << args;
  EXPECT_TRUE(contains(args, "--any-pool")) << args;

  // The mock answers as api.openai.com with a certificate the dev CA verifies (curl checks the
  // name against the SANs), and not for a host it was not issued for.
  if (runCommand("command -v curl").exit_code == 0) {
    std::string port = std::to_string(mock_port);
    std::string ca = (home_ / "mock-providers" / "ca.crt").string();
    CommandResult models =
        runCommand("curl -sS --fail --cacert '" + ca + "' --resolve api.openai.com:" + port +
                   ":127.0.0.1 -H 'Authorization: Bearer sk-dev' https://api.openai.com:" + port +
                   "/v1/models");
    EXPECT_EQ(models.exit_code, 0) << models.output;
    EXPECT_TRUE(contains(models.output, "\"data\"")) << models.output;
    CommandResult wrong_host =
        runCommand("curl -sS --cacert '" + ca + "' --resolve example.com:" + port +
                   ":127.0.0.1 https://example.com:" + port + "/v1/models");
    EXPECT_NE(wrong_host.exit_code, 0) << wrong_host.output;
  }

  // Each worker holds the nftables table of its tag (sandbox netns only exist while executions
  // run: spares are anonymous).
  for (const std::string& tag : kTags) {
    CommandResult table = runCommand("nft list table ip clrk_" + tag);
    EXPECT_EQ(table.exit_code, 0) << "no nft table clrk_" << tag << ": " << table.output;
  }

  // dev up again reports the running stack.
  CommandResult again = clrk("dev up --workers 2 --runtime namespaces --mock-providers");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "already running")) << again.output;

  // dev status: every process, alive, with its endpoint.
  CommandResult status = clrk("dev status");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_FALSE(contains(status.output, "not running")) << status.output;
  for (const auto& [label, pid] : pids) {
    EXPECT_TRUE(contains(status.output, label)) << status.output;
    EXPECT_TRUE(contains(status.output, std::to_string(pid))) << status.output;
  }
  EXPECT_TRUE(contains(status.output, "readyz: ok")) << status.output;
  EXPECT_TRUE(contains(status.output, "https://127.0.0.1:" + std::to_string(mock_port)))
      << status.output;

  // dev down: nothing left, recorded PIDs gone, no netns of the dev tags, no pid files.
  CommandResult down = clrk("dev down");
  EXPECT_EQ(down.exit_code, 0) << down.output;
  for (const auto& [label, pid] : pids) {
    EXPECT_TRUE(contains(down.output, "stopped " + label + " (pid " + std::to_string(pid) + ")"))
        << down.output;
    EXPECT_EQ(exeName(pid), "") << label << " (pid " << pid << ") survived dev down";
  }
  for (const std::string& tag : kTags) {
    EXPECT_EQ(netnsOfTag(tag), std::vector<std::string>{}) << "netns left by tag " << tag;
  }
  for (const std::string& tag : kTags) {
    CommandResult table = runCommand("nft list table ip clrk_" + tag);
    EXPECT_NE(table.exit_code, 0) << "nft table clrk_" << tag << " left: " << table.output;
  }
  CommandResult netns = runCommand("ip netns list");
  EXPECT_FALSE(contains(netns.output, "clrk-d1-") || contains(netns.output, "clrk-d2-"))
      << netns.output;
  for (const char* file : {"controller-manager.pid", "worker-dev-1.pid", "worker-dev-2.pid",
                           "mock-providers.pid", "dev.json"}) {
    EXPECT_FALSE(fs::exists(home_ / file)) << file;
  }
  CommandResult after = clrk("dev status");
  EXPECT_NE(after.exit_code, 0) << after.output;
}

// Workers need root; the check comes before anything starts, so nothing is left behind.
// The product path (architecture.md §5): a real Node `openai` SDK agent in a sandbox calls
// https://api.openai.com, answered by the mock provider through the egress with the key injected
// from a Secret it never saw; a second agent is denied; both show in `clrk traces`. Triggered by
// `clrk run-task` and by the HTTP trigger (whose X-Request-Id reaches the egress record).
void agentsEndToEnd(DevStackTest& test, const std::string& runtime) {
  std::string examples = sourcePath("examples");
  if (!fs::exists(examples + "/openai-bot/node_modules/openai")) {
    GTEST_SKIP() << "examples/openai-bot/node_modules is missing (scripts/setup runs npm ci)";
  }
  CommandResult up = test.clrk("dev up --workers 1 --runtime " + runtime +
                               " --mock-providers --share " + examples + ":/opt/clrk/examples");
  test.record("controller-manager.pid", "clrk-controller-manager");
  test.record("worker-dev-1.pid", "clrk-worker");
  test.record("mock-providers.pid", "clrk-mock-providers");
  ASSERT_EQ(up.exit_code, 0) << up.output;

  const std::string secret = "sk-e2e-secret-" + randomHex(4);
  CommandResult created = runCommand(
      "OPENAI_API_KEY=" + secret + " CLRK_HOME='" + test.home_.string() + "' " +
      binaryPath("clrk") + " --local secret create openai --from-env OPENAI_API_KEY=token");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  CommandResult applied =
      test.clrk("--local apply -f " + examples + "/openai-bot/manifests.yaml -f " + examples +
                "/denied-egress/manifests.yaml");
  ASSERT_EQ(applied.exit_code, 0) << applied.output;
  // clrk status: exit 0 once the worker is alive and both agents are Ready.
  CommandResult status;
  EXPECT_TRUE(awaitCondition(
      [&] {
        status = test.clrk("--local status");
        return status.exit_code == 0;
      },
      60s))
      << status.output;
  EXPECT_TRUE(contains(status.output, "dev-1")) << status.output;
  EXPECT_TRUE(contains(status.output, "openai-bot")) << status.output;

  // clrk run-task: an Invocation created through the API, dispatched, its output printed.
  CommandResult ran = test.clrk(
      "--local run-task openai-bot --timeout 120s --input '{\"prompt\": \"name three rivers\"}'");
  ASSERT_EQ(ran.exit_code, 0) << ran.output << "\n" << test.clrk("--local logs openai-bot").output;
  json answer = json::parse(ran.output.substr(ran.output.find('{')), nullptr, false);
  ASSERT_FALSE(answer.is_discarded()) << ran.output;
  EXPECT_FALSE(answer.value("answer", "").empty()) << ran.output;
  EXPECT_GT(answer["usage"].value("total_tokens", 0), 0) << ran.output;

  // The HTTP trigger: the response is the agent's stdout; the request id is carried through.
  auto trigger = readFile(test.home_ / "state" / "trigger.url");
  ASSERT_TRUE(trigger.ok());
  std::string url = trigger->substr(0, trigger->find('\n'));
  CommandResult http = runCommand(
      "curl -sS --max-time 120 -w '\\nHTTP %{http_code}' -XPOST -H 'content-type: "
      "application/json' "
      "-H 'X-Request-Id: e2e-req-1' -d '{\"prompt\": \"hi\"}' " +
      url + "/v1/namespaces/default/taskagents/openai-bot/invoke");
  EXPECT_TRUE(contains(http.output, "HTTP 200")) << http.output;
  EXPECT_TRUE(contains(http.output, "\"answer\"")) << http.output;

  // The provider saw the Secret's key, never the agent's placeholder.
  auto dev_text = readFile(test.home_ / "dev.json");
  ASSERT_TRUE(dev_text.ok());
  json dev = json::parse(*dev_text, nullptr, false);
  std::string port = std::to_string(dev.value("mockProvidersPort", 0));
  CommandResult seen =
      runCommand("curl -sS --cacert '" + (test.home_ / "mock-providers" / "ca.crt").string() +
                 "' --resolve api.openai.com:" + port +
                 ":127.0.0.1 https://api.openai.com:" + port + "/__mock/requests");
  EXPECT_TRUE(contains(seen.output, secret)) << seen.output;
  EXPECT_FALSE(contains(seen.output, "placeholder-the-egress-replaces-this")) << seen.output;

  // The denied agent fails with a connection error.
  CommandResult denied = test.clrk("--local run-task denied-egress --timeout 60s");
  EXPECT_NE(denied.exit_code, 0) << denied.output;
  EXPECT_TRUE(contains(denied.output, "curl exit 22")) << denied.output;  // the egress's 403

  // clrk traces: the calls arrive from the worker over OTLP (asynchronously).
  std::string traces_json;
  bool found = awaitCondition(
      [&] {
        traces_json = test.clrk("--local traces openai-bot -o json").output;
        return contains(traces_json, "e2e-req-1") &&
               contains(traces_json, "gen_ai.usage.input_tokens");
      },
      60s);
  EXPECT_TRUE(found) << traces_json;
  EXPECT_FALSE(contains(traces_json, secret)) << "the Secret leaked into telemetry";
  CommandResult tree = test.clrk("--local traces openai-bot");
  EXPECT_TRUE(contains(tree.output, "POST https://api.openai.com/v1/chat/completions  200  openai"))
      << tree.output;
  std::string denied_tree;
  EXPECT_TRUE(awaitCondition(
      [&] {
        denied_tree = test.clrk("--local traces denied-egress").output;
        return contains(denied_tree, "denied");
      },
      60s))
      << denied_tree;

  // curl-bot: a shell agent through the same egress and key policy.
  CommandResult curl_bot = test.clrk("--local apply -f " + examples + "/curl-bot/manifests.yaml");
  ASSERT_EQ(curl_bot.exit_code, 0) << curl_bot.output;
  CommandResult curl_ran =
      test.clrk("--local run-task curl-bot --timeout 60s --input '{\"prompt\": \"a colour\"}'");
  EXPECT_EQ(curl_ran.exit_code, 0) << curl_ran.output;
  EXPECT_TRUE(contains(curl_ran.output, "\"answer\"")) << curl_ran.output;

  // cron-bot, with its schedule shortened to every 2 s: a Cron invocation with scheduleInput.
  CommandResult cron_bot =
      runCommand("sed 's/schedule: \"\\* \\* \\* \\* \\*\"/schedule: \"@every 2s\"/' " + examples +
                 "/cron-bot/manifests.yaml | CLRK_HOME='" + test.home_.string() + "' " +
                 binaryPath("clrk") + " --local apply -f -");
  ASSERT_EQ(cron_bot.exit_code, 0) << cron_bot.output;
  std::string cron_tree;
  EXPECT_TRUE(awaitCondition(
      [&] {
        cron_tree = test.clrk("--local traces cron-bot").output;
        return contains(cron_tree, "Succeeded  Cron");
      },
      60s))
      << cron_tree;
  CommandResult cron_json = test.clrk("--local traces cron-bot -o json");
  EXPECT_TRUE(contains(cron_json.output, "nightly-report")) << cron_json.output;

  CommandResult logs = test.clrk("--local logs denied-egress");
  EXPECT_TRUE(contains(logs.output, "curl exit")) << logs.output;
  CommandResult down = test.clrk("dev down");
  EXPECT_EQ(down.exit_code, 0) << down.output;
}

TEST_F(DevStackTest, AgentsEndToEndNamespaces) { agentsEndToEnd(*this, "namespaces"); }

TEST_F(DevStackTest, AgentsEndToEndGvisor) {
  if (runCommand("command -v runsc").exit_code != 0) GTEST_SKIP() << "runsc is not installed";
  agentsEndToEnd(*this, "gvisor");
}

TEST(DevStackChecks, BadOptionsStartNothing) {
  fs::path home = fs::temp_directory_path() / ("clrk-devstack-" + randomHex(6));
  fs::create_directories(home);
  std::string clrk = "CLRK_HOME='" + home.string() + "' " + binaryPath("clrk");
  CommandResult bad_runtime = runCommand(clrk + " dev up --runtime docker");
  EXPECT_NE(bad_runtime.exit_code, 0) << bad_runtime.output;
  CommandResult too_many = runCommand(clrk + " dev up --workers 1000 --runtime namespaces");
  EXPECT_NE(too_many.exit_code, 0) << too_many.output;
  EXPECT_FALSE(fs::exists(home / "controller-manager.pid"));
  std::error_code ec;
  fs::remove_all(home, ec);
}

}  // namespace
}  // namespace clrk::testing
