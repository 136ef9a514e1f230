// Kills the real clrk-controller-manager with SIGKILL while clients are creating objects through
// HTTPS, restarts it on the same state directory, and checks that every write the server
// acknowledged (201) survived.
#include "harness.h"

#include "clrk/api/registry.h"
#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/kube/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <signal.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace clrk::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Starts clrk-controller-manager on `state_dir`; returns its PID.
pid_t startControllerManager(const fs::path& state_dir) {
  fs::remove(state_dir / "apiserver.url");
  std::string binary = binaryPath("clrk-controller-manager");
  std::string state_arg = state_dir.string();
  std::string log = (state_dir / "controller-manager.log").string();
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen(log.c_str(), "a", stdout);
    FILE* err = std::freopen(log.c_str(), "a", stderr);
    (void)out;
    (void)err;
    ::execl(binary.c_str(), binary.c_str(), "--state-dir", state_arg.c_str(), "--port", "0",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits until the server wrote its URL and answers /readyz; returns a client for it.
Result<kube::ClientPtr> connect(const fs::path& state_dir) {
  for (int attempt = 0; attempt < 300; ++attempt) {
    auto url = readFile(state_dir / "apiserver.url");
    auto ca = readFile(state_dir / "pki" / "ca.crt");
    auto token = readFile(state_dir / "token");
    if (url.ok() && ca.ok() && token.ok() && !url->empty()) {
      kube::RestConfig config;
      config.server = url.value();
      while (!config.server.empty() &&
             std::isspace(static_cast<unsigned char>(config.server.back()))) {
        config.server.pop_back();
      }
      config.ca_pem = ca.value();
      config.token = token.value();
      while (!config.token.empty() &&
             std::isspace(static_cast<unsigned char>(config.token.back()))) {
        config.token.pop_back();
      }
      auto client = kube::Client::create(config);
      if (!client.ok()) return client.status();
      auto ready = client.value()->request("GET", "/readyz");
      if (ready.ok() && ready->status == 200) return client.value();
    }
    std::this_thread::sleep_for(50ms);
  }
  return Status(Code::Unavailable, "controller-manager did not become ready: see " +
                                       (state_dir / "controller-manager.log").string());
}

api::Json taskAgent(const std::string& name) {
  return api::Json::parse(
      R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"TaskAgent","metadata":{"name":")" + name +
      R"("},"spec":{"workerPoolRef":"default-workers","template":{"spec":{"image":"busybox"}}}})");
}

TEST(ControllerManagerCrashTest, KillMidLoadLosesNoAcknowledgedWrite) {
  fs::path state_dir = fs::temp_directory_path() / ("clrk-crash-" + randomHex(6));
  fs::create_directories(state_dir);
  const api::ResourceType* task_agents = api::Registry::builtin().resolve("taskagents");
  ASSERT_NE(task_agents, nullptr);
  std::set<std::string> acknowledged;
  std::mutex acknowledged_mutex;

  for (int round = 0; round < 3; ++round) {
    pid_t pid = startControllerManager(state_dir);
    ASSERT_GT(pid, 0);
    auto client = connect(state_dir);
    ASSERT_TRUE(client.ok()) << client.status().toString();

    // Everything acknowledged in earlier rounds is still there after the restart.
    auto listed = client.value()->list(*task_agents, "default");
    ASSERT_TRUE(listed.ok()) << listed.status().toString();
    std::set<std::string> present;
    for (const auto& item : listed.value()["items"]) {
      present.insert(item["metadata"]["name"].get<std::string>());
    }
    {
      std::lock_guard lock(acknowledged_mutex);
      for (const auto& name : acknowledged) {
        EXPECT_TRUE(present.count(name)) << "acknowledged create of " << name << " was lost";
      }
    }

    std::atomic<bool> killed{false};
    std::atomic<int> acked_this_round{0};
    std::vector<std::thread> writers;
    for (int writer_idx = 0; writer_idx < 3; ++writer_idx) {
      writers.emplace_back([&, writer_idx] {
        auto writer = connect(state_dir);
        if (!writer.ok()) return;
        writer.value()->setTimeout(2s);
        for (int obj_idx = 0; !killed.load(); ++obj_idx) {
          std::string name = "r" + std::to_string(round) + "-w" + std::to_string(writer_idx) + "-" +
                             std::to_string(obj_idx);
          auto created = writer.value()->create(*task_agents, "default", taskAgent(name));
          if (!created.ok()) {
            if (killed.load()) return;
            continue;
          }
          std::lock_guard lock(acknowledged_mutex);
          acknowledged.insert(name);
          acked_this_round++;
        }
      });
    }
    // Kill mid-load: once enough creates were acknowledged (not after a fixed time, which a
    // loaded CI machine may spend mostly elsewhere), a little later each round.
    auto load_deadline = std::chrono::steady_clock::now() + 20s;
    while (acked_this_round.load() <= 20 + 20 * round &&
           std::chrono::steady_clock::now() < load_deadline) {
      std::this_thread::sleep_for(10ms);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50 * round));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    killed = true;
    int wait_status = 0;
    ::waitpid(pid, &wait_status, 0);
    for (auto& writer : writers) writer.join();
    EXPECT_GT(acked_this_round.load(), 20)
        << "too little load reached the server in round " << round;
  }

  pid_t pid = startControllerManager(state_dir);
  auto client = connect(state_dir);
  ASSERT_TRUE(client.ok()) << client.status().toString();
  auto listed = client.value()->list(*task_agents, "default");
  ASSERT_TRUE(listed.ok()) << listed.status().toString();
  std::set<std::string> present;
  for (const auto& item : listed.value()["items"]) {
    present.insert(item["metadata"]["name"].get<std::string>());
  }
  for (const auto& name : acknowledged) {
    EXPECT_TRUE(present.count(name)) << "acknowledged create of " << name << " was lost";
  }
  ::kill(pid, SIGTERM);
  int wait_status = 0;
  ::waitpid(pid, &wait_status, 0);
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)
      << "controller-manager did not exit cleanly on SIGTERM";
  fs::remove_all(state_dir);
}

}  // namespace
}  // namespace clrk::testing
