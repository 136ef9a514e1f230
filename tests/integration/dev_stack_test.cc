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

#include <algorithm>
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

// The last line of `output` that parses as a JSON object (an agent's answer after run-task's
// stderr lines); discarded JSON when there is none.
json lastJsonObject(const std::string& output) {
  size_t end = output.size();
  while (end > 0) {
    size_t start = output.rfind('\n', end - 1);
    start = start == std::string::npos ? 0 : start + 1;
    std::string line = output.substr(start, end - start);
    if (!line.empty() && line.front() == '{') {
      json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (parsed.is_object()) return parsed;
    }
    end = start == 0 ? 0 : start - 1;
  }
  return json(json::value_t::discarded);
}

// The egress calls of `clrk traces AGENT -o json`, newest invocation's included, each flattened
// to {"name": span name, attribute key: value, ...}.
std::vector<json> tracedCalls(const std::string& traces_json) {
  std::vector<json> calls;
  json invocations = json::parse(traces_json, nullptr, /*allow_exceptions=*/false);
  if (!invocations.is_array()) return calls;
  for (const auto& invocation : invocations) {
    for (const auto& call : invocation.value("calls", json::array())) {
      json flat = {{"name", call.value("name", "")}};
      for (const auto& attribute : call.value("attributes", json::array())) {
        for (const char* kind : {"s", "i", "d", "b"}) {
          if (attribute.contains(kind)) flat[attribute.value("k", "")] = attribute[kind];
        }
      }
      calls.push_back(std::move(flat));
    }
  }
  return calls;
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

// Polls `clrk traces AGENT -o json` (records arrive over OTLP, asynchronously) until a call
// satisfies `match`; returns it, or null after 60 s with the last output in `*last`.
json awaitTracedCall(const DevStackTest& test, const std::string& agent,
                     const std::function<bool(const json&)>& match, std::string* last) {
  json found;
  awaitCondition(
      [&] {
        *last = test.clrk("--local traces " + agent + " -o json").output;
        for (const auto& call : tracedCalls(*last)) {
          if (match(call)) {
            found = call;
            return true;
          }
        }
        return false;
      },
      60s);
  return found;
}

// examples/anthropic-bot: the @anthropic-ai/sdk streams the answer (SSE) through the egress,
// which injects the Secret `anthropic` and records provider, model and the stream's usage.
void anthropicBotEndToEnd(DevStackTest& test) {
  CommandResult ran = test.clrk(
      "--local run-task anthropic-bot --timeout 120s --input '{\"prompt\": \"name three "
      "rivers\"}'");
  ASSERT_EQ(ran.exit_code, 0) << ran.output << "\n"
                              << test.clrk("--local logs anthropic-bot").output;
  json answer = lastJsonObject(ran.output);
  ASSERT_FALSE(answer.is_discarded()) << ran.output;
  // The mock's deterministic answer, assembled from one text delta per word.
  EXPECT_EQ(answer.value("answer", ""), "hello from clrk-dev: name three rivers") << ran.output;
  EXPECT_GT(answer.value("chunks", 0), 1) << ran.output;
  EXPECT_EQ(answer.value("model", ""), "claude-haiku-4-5") << ran.output;
  EXPECT_EQ(answer.value("stop_reason", ""), "end_turn") << ran.output;
  int input_tokens = answer["usage"].value("input_tokens", 0);
  int output_tokens = answer["usage"].value("output_tokens", 0);
  EXPECT_GT(input_tokens, 0) << ran.output;
  EXPECT_GT(output_tokens, 0) << ran.output;
  // The agent's stderr carried the deltas as they arrived.
  CommandResult logs = test.clrk("--local logs anthropic-bot");
  EXPECT_TRUE(contains(logs.output, "hello from clrk-dev: name three rivers")) << logs.output;

  std::string traces;
  json call = awaitTracedCall(
      test, "anthropic-bot",
      [](const json& c) {
        return contains(c.value("name", ""), "/v1/messages") &&
               c.contains("gen_ai.usage.output_tokens");
      },
      &traces);
  ASSERT_TRUE(call.is_object()) << traces;
  EXPECT_EQ(call.value("gen_ai.system", ""), "anthropic") << call.dump();
  EXPECT_EQ(call.value("gen_ai.request.model", ""), "claude-haiku-4-5") << call.dump();
  EXPECT_EQ(call.value("clrk.streaming", false), true) << call.dump();
  EXPECT_EQ(call.value("http.response.status_code", 0), 200) << call.dump();
  EXPECT_EQ(call.value("gen_ai.usage.input_tokens", 0), input_tokens) << call.dump();
  EXPECT_EQ(call.value("gen_ai.usage.output_tokens", 0), output_tokens) << call.dump();
  EXPECT_EQ(call.value("clrk.credential_policy", ""), "default/anthropic") << call.dump();
}

// examples/mcp-bot: the @modelcontextprotocol/sdk client (Streamable HTTP) lists the mock MCP
// server's tools and calls `add`; the egress records each JSON-RPC method and the tool, and its
// ToolPolicy refuses a tool it does not allow.
void mcpBotEndToEnd(DevStackTest& test) {
  CommandResult ran = test.clrk(
      "--local run-task mcp-bot --timeout 120s --input '{\"tool\": \"add\", \"arguments\": "
      "{\"a\": 2, \"b\": 40}}'");
  ASSERT_EQ(ran.exit_code, 0) << ran.output << "\n" << test.clrk("--local logs mcp-bot").output;
  json answer = lastJsonObject(ran.output);
  ASSERT_FALSE(answer.is_discarded()) << ran.output;
  EXPECT_EQ(answer.value("result", ""), "42") << ran.output;
  EXPECT_FALSE(answer.value("isError", true)) << ran.output;
  EXPECT_EQ(answer.value("tools", json::array()), json::array({"echo", "add"})) << ran.output;

  std::string traces;
  json tool_call = awaitTracedCall(
      test, "mcp-bot", [](const json& c) { return c.value("mcp.method.name", "") == "tools/call"; },
      &traces);
  ASSERT_TRUE(tool_call.is_object()) << traces;
  EXPECT_EQ(tool_call.value("gen_ai.tool.name", ""), "add") << tool_call.dump();
  EXPECT_EQ(tool_call.value("server.address", ""), "mcp.mock.clrk.dev") << tool_call.dump();
  EXPECT_EQ(tool_call.value("clrk.decision", ""), "allow") << tool_call.dump();
  std::vector<std::string> methods;
  for (const auto& call : tracedCalls(traces)) {
    if (call.contains("mcp.method.name")) methods.push_back(call.value("mcp.method.name", ""));
  }
  EXPECT_NE(std::find(methods.begin(), methods.end(), "initialize"), methods.end()) << traces;
  EXPECT_NE(std::find(methods.begin(), methods.end(), "tools/list"), methods.end()) << traces;

  // A tool outside the MCPRoute's allowedTools never reaches the server.
  CommandResult denied = test.clrk(
      "--local run-task mcp-bot --timeout 60s --input '{\"tool\": \"delete_everything\"}'");
  EXPECT_NE(denied.exit_code, 0) << denied.output;
  EXPECT_TRUE(contains(denied.output, "not in the allowedTools")) << denied.output;
}

// examples/fallback-routing: the primary Backend refuses every connection, the
// FallbackRoutingPolicy moves the call to the second Backend, whose model rewrite shows in the
// answer; the trace names the serving backend and counts the fallback.
void fallbackRoutingEndToEnd(DevStackTest& test) {
  CommandResult ran = test.clrk(
      "--local run-task fallback-routing --timeout 60s --input '{\"prompt\": \"one river\"}'");
  ASSERT_EQ(ran.exit_code, 0) << ran.output << "\n"
                              << test.clrk("--local logs fallback-routing").output;
  json answer = lastJsonObject(ran.output);
  ASSERT_FALSE(answer.is_discarded()) << ran.output;
  EXPECT_EQ(answer.value("answer", ""), "hello from clrk-dev: one river") << ran.output;
  EXPECT_EQ(answer.value("requested", ""), "claude-sonnet-4-5") << ran.output;
  EXPECT_EQ(answer.value("served", ""), "claude-haiku-4-5") << ran.output;

  std::string traces;
  json call = awaitTracedCall(
      test, "fallback-routing", [](const json& c) { return c.contains("clrk.backend"); }, &traces);
  ASSERT_TRUE(call.is_object()) << traces;
  EXPECT_EQ(call.value("clrk.backend", ""), "default/anthropic-fallback") << call.dump();
  EXPECT_EQ(call.value("clrk.fallback_count", 0), 1) << call.dump();
  EXPECT_EQ(call.value("http.response.status_code", 0), 200) << call.dump();
  EXPECT_EQ(call.value("gen_ai.system", ""), "anthropic") << call.dump();
  EXPECT_EQ(call.value("gen_ai.request.model", ""), "claude-sonnet-4-5") << call.dump();
  EXPECT_EQ(call.value("gen_ai.response.model", ""), "claude-haiku-4-5") << call.dump();
}

// examples/daemon-bot, made to call every second and exit 1 after two rounds: a DaemonAgent
// instance runs on a worker, its calls go through the egress with the injected key and show in
// `clrk logs` and `clrk traces`; the exit puts it in CrashLoopBackOff (restartPolicy Always);
// deleting the agent stops it.
void daemonBotEndToEnd(DevStackTest& test, const std::string& examples) {
  CommandResult applied = runCommand(
      "sed 's/value: \"5\"}]/value: \"1\"}, {name: CLRK_DAEMON_ROUNDS, value: \"2\"}]/' " +
      examples + "/daemon-bot/manifests.yaml | CLRK_HOME='" + test.home_.string() + "' " +
      binaryPath("clrk") + " --local apply -f -");
  ASSERT_EQ(applied.exit_code, 0) << applied.output;
  auto daemon = [&] {
    CommandResult got = test.clrk("--local get daemonagent daemon-bot -o json");
    return json::parse(got.output, nullptr, false);
  };
  json looping;
  EXPECT_TRUE(awaitCondition(
      [&] {
        looping = daemon();
        return !looping.is_discarded() &&
               looping.value("status", json::object()).value("phase", "") == "CrashLoopBackOff";
      },
      60s))
      << looping.dump();
  const json status = looping.value("status", json::object());
  EXPECT_EQ(status.value("lastExitCode", 0), 1) << looping.dump();
  EXPECT_FALSE(status.value("nextRestartTime", "").empty()) << looping.dump();
  EXPECT_FALSE(status.value("executionId", "").empty()) << looping.dump();
  CommandResult logs = test.clrk("--local logs daemon-bot");
  EXPECT_TRUE(contains(logs.output, "daemon-bot up (restart 0")) << logs.output;
  EXPECT_TRUE(contains(logs.output, "\"round\":2")) << logs.output;
  EXPECT_TRUE(contains(logs.output, "exiting 1 to be restarted")) << logs.output;
  std::string traces;
  json call = awaitTracedCall(
      test, "daemon-bot",
      [](const json& c) { return c.value("http.response.status_code", 0) == 200; }, &traces);
  ASSERT_TRUE(call.is_object()) << traces;
  EXPECT_EQ(call.value("gen_ai.request.model", ""), "gpt-4o-mini") << call.dump();
  EXPECT_TRUE(contains(test.clrk("--local traces daemon-bot").output, "daemonagent/daemon-bot"));
  CommandResult deleted = test.clrk("--local delete daemonagent daemon-bot");
  EXPECT_EQ(deleted.exit_code, 0) << deleted.output;
  EXPECT_TRUE(awaitCondition(
      [&] { return test.clrk("--local get daemonagent daemon-bot").exit_code != 0; }, 30s));
}

// Workers need root; the check comes before anything starts, so nothing is left behind.
// The product path (architecture.md §5): a real Node `openai` SDK agent in a sandbox calls
// https://api.openai.com, answered by the mock provider through the egress with the key injected
// from a Secret it never saw; a second agent is denied; both show in `clrk traces`. Triggered by
// `clrk run-task` and by the HTTP trigger (whose X-Request-Id reaches the egress record). Then
// the shell agents (curl-bot, metadata-bot, cron-bot) and the other examples: anthropic-bot
// (streaming), mcp-bot (MCP tools), fallback-routing (a dead primary Backend) and daemon-bot (a
// DaemonAgent).
void agentsEndToEnd(DevStackTest& test, const std::string& runtime) {
  std::string examples = sourcePath("examples");
  for (const char* module :
       {"openai-bot/node_modules/openai", "anthropic-bot/node_modules/@anthropic-ai/sdk",
        "mcp-bot/node_modules/@modelcontextprotocol/sdk"}) {
    if (!fs::exists(examples + "/" + module)) {
      GTEST_SKIP() << "examples/" << module << " is missing (scripts/setup runs npm ci)";
    }
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

  // hello: the README's first agent; stdin is the CloudEvents envelope, echoed back.
  CommandResult hello = test.clrk("--local apply -f " + examples + "/hello/manifests.yaml");
  ASSERT_EQ(hello.exit_code, 0) << hello.output;
  // hello keeps a warm pool (warmPoolSize: 1): once the worker reports a booted sandbox, the run
  // claims it (its sandbox id starts with wp-) instead of creating one.
  std::string hello_agent;
  EXPECT_TRUE(awaitCondition(
      [&] {
        hello_agent = test.clrk("--local get taskagent hello -o json").output;
        auto parsed = json::parse(hello_agent, nullptr, false);
        return !parsed.is_discarded() &&
               parsed.value("status", json::object()).value("warmSandboxes", 0) >= 1;
      },
      60s))
      << hello_agent;
  CommandResult hello_ran =
      test.clrk("--local run-task hello --timeout 60s --input '{\"who\": \"e2e\"}'");
  EXPECT_EQ(hello_ran.exit_code, 0) << hello_ran.output;
  EXPECT_TRUE(contains(hello_ran.output, "hello from hello (CLI)")) << hello_ran.output;
  EXPECT_TRUE(contains(hello_ran.output, "\"who\":\"e2e\"")) << hello_ran.output;
  json hello_invocations =
      json::parse(test.clrk("--local get invocations -o json").output, nullptr, false);
  int warm_runs = 0;
  if (!hello_invocations.is_discarded()) {
    for (const auto& item : hello_invocations.value("items", json::array())) {
      if (item["spec"]["parentRef"].value("name", "") != "hello") continue;
      std::string sandbox = item.value("status", json::object()).value("sandboxId", "");
      if (sandbox.rfind("wp-", 0) == 0) ++warm_runs;
    }
  }
  EXPECT_EQ(warm_runs, 1) << hello_invocations.dump();

  // curl-bot: a shell agent through the same egress and key policy.
  CommandResult curl_bot = test.clrk("--local apply -f " + examples + "/curl-bot/manifests.yaml");
  ASSERT_EQ(curl_bot.exit_code, 0) << curl_bot.output;
  CommandResult curl_ran =
      test.clrk("--local run-task curl-bot --timeout 60s --input '{\"prompt\": \"a colour\"}'");
  EXPECT_EQ(curl_ran.exit_code, 0) << curl_ran.output;
  EXPECT_TRUE(contains(curl_ran.output, "\"answer\"")) << curl_ran.output;

  // metadata-bot: spec.delivery.mode Metadata. It reads its event from the in-sandbox metadata
  // endpoint and POSTs its answer there; that body, not its stdout log, is the response.
  CommandResult metadata_bot =
      test.clrk("--local apply -f " + examples + "/metadata-bot/manifests.yaml");
  ASSERT_EQ(metadata_bot.exit_code, 0) << metadata_bot.output;
  CommandResult metadata_ran =
      test.clrk("--local run-task metadata-bot --timeout 60s --input '{\"prompt\": \"a river\"}'");
  EXPECT_EQ(metadata_ran.exit_code, 0) << metadata_ran.output << "\n"
                                       << test.clrk("--local logs metadata-bot").output;
  EXPECT_TRUE(contains(metadata_ran.output, "\"answer\"")) << metadata_ran.output;
  EXPECT_FALSE(contains(metadata_ran.output, "response posted")) << metadata_ran.output;
  CommandResult metadata_http = runCommand(
      "curl -sS --max-time 60 -D - -XPOST -H 'content-type: application/json' -d '{\"prompt\": "
      "\"hi\"}' " +
      url + "/v1/namespaces/default/taskagents/metadata-bot/invoke");
  EXPECT_TRUE(contains(metadata_http.output, "HTTP/1.1 200")) << metadata_http.output;
  EXPECT_TRUE(contains(metadata_http.output, "X-Clrk-Output-Source: Response"))
      << metadata_http.output;
  EXPECT_TRUE(contains(metadata_http.output, "\"invocation\":\"metadata-bot-"))
      << metadata_http.output;
  EXPECT_TRUE(contains(test.clrk("--local logs metadata-bot").output, "response posted"));
  std::string metadata_tree;
  EXPECT_TRUE(awaitCondition(
      [&] {
        metadata_tree = test.clrk("--local traces metadata-bot").output;
        return contains(metadata_tree, "GET http://metadata.clrk.internal/event") &&
               contains(metadata_tree, "POST http://metadata.clrk.internal/response");
      },
      60s))
      << metadata_tree;

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

  // anthropic-bot, mcp-bot and fallback-routing; the Secret `anthropic` serves the first and last.
  const std::string anthropic_secret = "sk-ant-e2e-" + randomHex(4);
  CommandResult anthropic_created = runCommand(
      "ANTHROPIC_API_KEY=" + anthropic_secret + " CLRK_HOME='" + test.home_.string() + "' " +
      binaryPath("clrk") + " --local secret create anthropic --from-env ANTHROPIC_API_KEY=token");
  ASSERT_EQ(anthropic_created.exit_code, 0) << anthropic_created.output;
  CommandResult more =
      test.clrk("--local apply -f " + examples + "/anthropic-bot/manifests.yaml -f " + examples +
                "/mcp-bot/manifests.yaml -f " + examples + "/fallback-routing/manifests.yaml");
  ASSERT_EQ(more.exit_code, 0) << more.output;
  anthropicBotEndToEnd(test);
  mcpBotEndToEnd(test);
  fallbackRoutingEndToEnd(test);
  daemonBotEndToEnd(test, examples);
  // Anthropic saw the Secret's key on both agents' calls, never their placeholders.
  CommandResult anthropic_seen =
      runCommand("curl -sS --cacert '" + (test.home_ / "mock-providers" / "ca.crt").string() +
                 "' --resolve api.anthropic.com:" + port +
                 ":127.0.0.1 https://api.anthropic.com:" + port + "/__mock/requests");
  EXPECT_TRUE(contains(anthropic_seen.output, anthropic_secret)) << anthropic_seen.output;
  EXPECT_FALSE(contains(anthropic_seen.output, "placeholder")) << anthropic_seen.output;

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
