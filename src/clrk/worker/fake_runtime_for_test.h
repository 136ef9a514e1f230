// Test doubles for the worker: ProcessSandbox runs argv as a plain child process with pipes (no
// isolation), FakeRuntime hands them out, FakeNetwork allocates fake addresses. Enough to drive
// ExecutionManager and the worker API without root, gVisor or network namespaces.
#pragma once

#include "clrk/sandbox/net/network.h"
#include "clrk/sandbox/runtime.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <functional>
#include <mutex>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace clrk::worker::testing {

using namespace std::chrono_literals;

class ProcessSandbox : public sandbox::Sandbox {
 public:
  explicit ProcessSandbox(sandbox::SandboxSpec spec, std::function<void()> before_destroy = {})
      : spec_(std::move(spec)), before_destroy_(std::move(before_destroy)) {}
  ~ProcessSandbox() override { (void)destroy(); }
  const std::string& id() const override { return spec_.id; }

  // A booted (await_launch) sandbox runs nothing until launch(), which starts the process.
  Status start() override {
    if (spec_.await_launch) {
      booted = true;
      return {};
    }
    return run();
  }
  Status launch(sandbox::Launch launch) override {
    if (!booted || pid_ > 0) return Status(Code::InvalidArgument, "not waiting for a launch");
    spec_.argv = std::move(launch.argv);
    spec_.env = std::move(launch.env);
    spec_.working_dir = std::move(launch.working_dir);
    spec_.stdin_data = std::move(launch.stdin_data);
    spec_.timeout = launch.timeout;
    spec_.on_log = std::move(launch.on_log);
    ++launches;
    return run();
  }

  std::atomic<bool> booted{false};
  std::atomic<int> launches{0};

 private:
  Status run() {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      return internalError("pipe");
    }
    // Built before fork(): the child of a multithreaded process must not allocate (another
    // thread may hold the allocator's lock at fork time, and the child would hang forever).
    std::vector<char*> argv;
    for (auto& arg : spec_.argv) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& e : spec_.env) envp.push_back(e.data());
    envp.push_back(nullptr);
    started_at_ = std::chrono::system_clock::now();
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      dup2(in[0], 0);
      dup2(out[1], 1);
      dup2(err[1], 2);
      // Like the real runtimes: the child keeps none of the worker's sockets (an inherited
      // listener would keep accepting into a backlog nobody serves after the worker stops).
      syscall(SYS_close_range, 3U, ~0U, 0);
      execvpe(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (spec_.stdin_data) {
      std::string data = *spec_.stdin_data;
      (void)!write(in[1], data.data(), data.size());
    }
    close(in[1]);
    readers_.emplace_back([this, fd = out[0]] { pump(fd, false); });
    readers_.emplace_back([this, fd = err[0]] { pump(fd, true); });
    return {};
  }

 public:
  Result<sandbox::ExitStatus> wait(std::optional<std::chrono::milliseconds> timeout) override {
    auto deadline = std::chrono::steady_clock::now() + timeout.value_or(24h);
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (exited_) return exit_;
        if (pid_ <= 0) return Status(Code::Timeout, "not launched");
        int status = 0;
        pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
          for (auto& t : readers_) t.join();
          readers_.clear();
          exit_.started_at = started_at_;
          exit_.finished_at = std::chrono::system_clock::now();
          if (WIFEXITED(status)) {
            exit_.exit_code = WEXITSTATUS(status);
          } else {
            exit_.signal = WTERMSIG(status);
            exit_.exit_code = 128 + exit_.signal;
          }
          exit_.timed_out = timed_out_;
          exit_.message =
              timed_out_ ? "killed after timeout" : "exited " + std::to_string(exit_.exit_code);
          exited_ = true;
          return exit_;
        }
        if (spec_.timeout.count() > 0 && !timed_out_ &&
            std::chrono::system_clock::now() - started_at_ > spec_.timeout) {
          timed_out_ = true;
          kill(-pid_, SIGKILL);
        }
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status(Code::Timeout, "still running");
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  Status signal(int signal) override {
    if (pid_ > 0) kill(-pid_, signal);
    return {};
  }
  Status destroy() override {
    if (auto hook = std::exchange(before_destroy_, nullptr)) hook();
    std::lock_guard lock(mutex_);
    if (pid_ > 0 && !exited_) {
      kill(-pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      exited_ = true;
    }
    for (auto& t : readers_) t.join();
    readers_.clear();
    destroyed = true;
    return {};
  }
  int hostPid() const override { return pid_; }
  std::filesystem::path logPath() const override { return {}; }

  std::atomic<bool> destroyed{false};

 private:
  void pump(int fd, bool is_stderr) {
    std::string pending;
    char buffer[4096];
    for (;;) {
      ssize_t n = read(fd, buffer, sizeof buffer);
      if (n <= 0) break;
      pending.append(buffer, static_cast<size_t>(n));
      size_t nl = 0;
      while ((nl = pending.find('\n')) != std::string::npos) {
        emit(pending.substr(0, nl), is_stderr);
        pending.erase(0, nl + 1);
      }
    }
    if (!pending.empty()) emit(pending, is_stderr);
    close(fd);
  }
  void emit(std::string text, bool is_stderr) {
    if (spec_.on_log) spec_.on_log({std::chrono::system_clock::now(), is_stderr, std::move(text)});
  }

  sandbox::SandboxSpec spec_;
  std::function<void()> before_destroy_;  // run by the first destroy()
  std::mutex mutex_;
  pid_t pid_ = -1;
  std::chrono::system_clock::time_point started_at_;
  bool exited_ = false;
  bool timed_out_ = false;
  sandbox::ExitStatus exit_;
  std::vector<std::thread> readers_;
};

class FakeRuntime : public sandbox::Runtime {
 public:
  std::string name() const override { return "fake"; }
  Result<std::unique_ptr<sandbox::Sandbox>> prepare(const sandbox::SandboxSpec& spec) override {
    std::lock_guard lock(mutex_);
    specs.push_back(spec);
    return std::unique_ptr<sandbox::Sandbox>(new ProcessSandbox(spec, before_destroy));
  }
  Result<int> cleanupLeftovers() override { return 0; }
  std::string limitsSupport() const override { return "none (fake)"; }

  std::mutex mutex_;
  std::vector<sandbox::SandboxSpec> specs;
  // Handed to the sandboxes prepared from now on: runs when one is first destroyed (a slow
  // teardown can block in it).
  std::function<void()> before_destroy;
};

class FakeNetwork : public sandbox::net::NetworkManager {
 public:
  Result<sandbox::net::SandboxNetwork> allocate(const std::string&) override {
    std::lock_guard lock(mutex_);
    sandbox::net::SandboxNetwork n;
    n.slot = next_++;
    n.netns_path = "/run/netns/fake-" + std::to_string(n.slot);
    n.sandbox_address =
        !address_for_all.empty() ? address_for_all : "10.99.0." + std::to_string(2 + 4 * n.slot);
    ++in_use_;
    return n;
  }
  Status release(const sandbox::net::SandboxNetwork&) override {
    std::lock_guard lock(mutex_);
    --in_use_;
    ++released;
    return {};
  }
  Status releaseAll() override { return {}; }
  Status destroyTables() override { return {}; }
  const sandbox::net::NetworkOptions& options() const override { return options_; }
  size_t inUse() const override {
    std::lock_guard lock(mutex_);
    return static_cast<size_t>(in_use_);
  }
  int released = 0;
  // When set, every sandbox gets this address, e.g. "127.0.0.1" so that an egress explicit
  // listener on loopback attributes a plain-process agent's calls to its execution.
  std::string address_for_all;

 private:
  mutable std::mutex mutex_;
  sandbox::net::NetworkOptions options_;
  int next_ = 0;
  int in_use_ = 0;
};

}  // namespace clrk::worker::testing
