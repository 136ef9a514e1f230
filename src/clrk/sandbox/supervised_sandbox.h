// The backend-independent half of a Sandbox: once the process runs, one supervisor thread per
// sandbox writes stdin_data, reads stdout/stderr into timestamped lines (the bounded, rotated
// log file and spec.on_log), enforces the wall-clock timeout and notices the exit. Backends
// implement how to kill, how exit is signalled and how clean-up happens.
//
// Log file format (<state>/stdout.log, rotated to stdout.log.1 at spec.log_max_bytes), one line
// per captured line: "<RFC 3339 UTC with microseconds> <stdout|stderr> <text>".
// Thread model: public methods are thread-safe; hooks run on the supervisor thread unless noted.
#pragma once

#include "clrk/sandbox/runtime.h"
#include "clrk/sandbox/sandbox_util.h"

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

namespace clrk::sandbox {

// Line splitting and the rotated log file; used by the supervisor thread only.
class OutputLog {
 public:
  static constexpr size_t kMaxLineBytes = 16 * 1024;

  OutputLog(std::filesystem::path path, uint64_t max_bytes,
            std::function<void(const LogLine&)> on_log);
  ~OutputLog();
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  // Appends raw bytes of one stream; complete lines are emitted.
  void append(bool is_stderr, const char* data, size_t size);
  // Emits a trailing partial line of each stream.
  void flush();
  void setOnLog(std::function<void(const LogLine&)> on_log) { on_log_ = std::move(on_log); }

 private:
  void emit(bool is_stderr, std::string text);

  std::filesystem::path path_;
  uint64_t max_bytes_;
  std::function<void(const LogLine&)> on_log_;
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0;
  std::string pending_[2];
};

class SupervisedSandbox : public Sandbox {
 public:
  ~SupervisedSandbox() override;

  // Sandbox
  const std::string& id() const override { return spec_.id; }
  Result<ExitStatus> wait(std::optional<std::chrono::milliseconds> timeout) override;
  std::filesystem::path logPath() const override { return state_dir_ / "stdout.log"; }
  Status launch(Launch launch) override;

  // Forgets the sandbox without ending it or removing anything, as a crash of the worker would
  // leave it (for clean-up tests). The object may then be deleted.
  virtual void abandonForTest() = 0;

 protected:
  SupervisedSandbox(SandboxSpec spec, std::filesystem::path state_dir);

  // Starts the supervisor. stdout_r/stderr_r: the read ends; stdin_w: write end or invalid;
  // exit_fd: becomes readable when the sandbox ended (then readExit() is called once).
  void startSupervisor(UniqueFd stdin_w, UniqueFd stdout_r, UniqueFd stderr_r, int exit_fd);
  // Joins the supervisor (after the backend killed everything).
  void joinSupervisor();
  // Stops the supervisor thread without touching the sandbox (abandonForTest()).
  void detachSupervisorForTest();
  bool finished() const;
  bool supervising() const;

  // Kills the whole process tree (timeout); supervisor thread.
  virtual void killTree() = 0;
  // Collects the end: returns the wait status of the main process, or nullopt when unknown
  // (then SIGKILL is assumed); supervisor thread.
  virtual std::optional<int> readExit() = 0;
  // OOM reported by the backend's cgroup; supervisor thread, after readExit().
  virtual bool oomKilled() { return false; }

  SandboxSpec spec_;
  std::filesystem::path state_dir_;
  mutable std::mutex mu_;

 private:
  void supervise(UniqueFd stdin_w, UniqueFd stdout_r, UniqueFd stderr_r, int exit_fd);

  UniqueFd detach_fd_;  // eventfd: wakes the supervisor to stop
  UniqueFd launch_fd_;  // eventfd: wakes the supervisor of a booted sandbox to launch
  std::optional<Launch> pending_launch_;  // set by launch(), taken by the supervisor
  bool launched_ = false;
  std::condition_variable cv_;
  std::thread thread_;
  bool supervising_ = false;
  bool finished_ = false;
  ExitStatus exit_;
};

}  // namespace clrk::sandbox
