#include "clrk/sandbox/supervised_sandbox.h"

#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

namespace clrk::sandbox {

OutputLog::OutputLog(std::filesystem::path path, uint64_t max_bytes,
                     std::function<void(const LogLine&)> on_log)
    : path_(std::move(path)), max_bytes_(max_bytes), on_log_(std::move(on_log)) {
  file_ = std::fopen(path_.c_str(), "ae");
  // Line-buffered: readers (`clrk logs`, the worker's log endpoint) see each line as it ends.
  if (file_ != nullptr) std::setvbuf(file_, nullptr, _IOLBF, 0);
}

OutputLog::~OutputLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void OutputLog::append(bool is_stderr, const char* data, size_t size) {
  std::string& pending = pending_[is_stderr ? 1 : 0];
  for (size_t index = 0; index < size; ++index) {
    char c = data[index];
    if (c == '\n') {
      emit(is_stderr, std::move(pending));
      pending.clear();
      continue;
    }
    pending.push_back(c);
    if (pending.size() >= kMaxLineBytes) {
      emit(is_stderr, std::move(pending));
      pending.clear();
    }
  }
}

void OutputLog::flush() {
  for (int stream = 0; stream < 2; ++stream) {
    if (!pending_[stream].empty()) {
      emit(stream == 1, std::move(pending_[stream]));
      pending_[stream].clear();
    }
  }
  if (file_ != nullptr) std::fflush(file_);
}

void OutputLog::emit(bool is_stderr, std::string text) {
  LogLine line{std::chrono::system_clock::now(), is_stderr, std::move(text)};
  if (file_ != nullptr) {
    std::string record =
        formatRfc3339Micro(line.time) + (is_stderr ? " stderr " : " stdout ") + line.text + "\n";
    if (max_bytes_ > 0 && size_ + record.size() > max_bytes_ && size_ > 0) {
      std::fclose(file_);
      std::filesystem::path old = path_;
      old += ".1";
      std::error_code ec;
      std::filesystem::rename(path_, old, ec);
      file_ = std::fopen(path_.c_str(), "we");
      if (file_ != nullptr) std::setvbuf(file_, nullptr, _IOLBF, 0);
      size_ = 0;
    }
    if (file_ != nullptr) {
      std::fwrite(record.data(), 1, record.size(), file_);
      size_ += record.size();
    }
  }
  if (on_log_) on_log_(line);
}

SupervisedSandbox::SupervisedSandbox(SandboxSpec spec, std::filesystem::path state_dir)
    : spec_(std::move(spec)),
      state_dir_(std::move(state_dir)),
      detach_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      launch_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

SupervisedSandbox::~SupervisedSandbox() {
  if (thread_.joinable()) thread_.join();
}

void SupervisedSandbox::startSupervisor(UniqueFd stdin_w, UniqueFd stdout_r, UniqueFd stderr_r,
                                        int exit_fd) {
  std::lock_guard lock(mu_);
  supervising_ = true;
  exit_.started_at = std::chrono::system_clock::now();
  thread_ = std::thread(
      [this, in = std::move(stdin_w), out = std::move(stdout_r), err = std::move(stderr_r),
       exit_fd]() mutable { supervise(std::move(in), std::move(out), std::move(err), exit_fd); });
}

void SupervisedSandbox::joinSupervisor() {
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void SupervisedSandbox::detachSupervisorForTest() {
  uint64_t one = 1;
  (void)!::write(detach_fd_.get(), &one, sizeof one);
  joinSupervisor();
}

Status SupervisedSandbox::launch(Launch launch) {
  CLRK_RETURN_IF_ERROR(validateLaunch(spec_.id, launch));
  {
    std::lock_guard lock(mu_);
    if (!spec_.await_launch) {
      return Status(Code::InvalidArgument, "sandbox " + spec_.id + " was not booted to launch");
    }
    if (!supervising_) {
      return Status(Code::InvalidArgument, "sandbox " + spec_.id + " was not started");
    }
    if (launched_) {
      return Status(Code::InvalidArgument, "sandbox " + spec_.id + " was launched already");
    }
    if (finished_) {
      return Status(
          Code::InvalidArgument,
          "sandbox " + spec_.id + ": its launcher ended before the launch (" + exit_.message + ")");
    }
    launched_ = true;
    exit_.started_at = std::chrono::system_clock::now();
    pending_launch_ = std::move(launch);
  }
  uint64_t one = 1;
  (void)!::write(launch_fd_.get(), &one, sizeof one);
  return {};
}

bool SupervisedSandbox::finished() const {
  std::lock_guard lock(mu_);
  return finished_;
}

bool SupervisedSandbox::supervising() const {
  std::lock_guard lock(mu_);
  return supervising_;
}

Result<ExitStatus> SupervisedSandbox::wait(std::optional<std::chrono::milliseconds> timeout) {
  std::unique_lock lock(mu_);
  if (!supervising_) {
    return Status(Code::InvalidArgument, "sandbox " + spec_.id + " was not started");
  }
  auto done = [this] { return finished_; };
  if (timeout) {
    if (!cv_.wait_for(lock, *timeout, done)) {
      return Status(Code::Timeout, "sandbox " + spec_.id + " still running after " +
                                       std::to_string(timeout->count()) + " ms");
    }
  } else {
    cv_.wait(lock, done);
  }
  return exit_;
}

void SupervisedSandbox::supervise(UniqueFd stdin_w, UniqueFd stdout_r, UniqueFd stderr_r,
                                  int exit_fd) {
  OutputLog log(logPath(), spec_.log_max_bytes, spec_.on_log);
  // A booted sandbox's launcher waits for its launch message on stdin: keep the pipe open and
  // the clock stopped until launch().
  bool awaiting_launch = spec_.await_launch;
  std::string input = spec_.stdin_data.value_or("");
  size_t input_offset = 0;
  std::chrono::milliseconds timeout = spec_.timeout;
  // A booted gVisor sandbox's stdin is a socket: its launcher reports the exit on it
  // (launch_protocol.h). `report_r` reads it; the agent's stdin ends with shutdown(SHUT_WR).
  UniqueFd report_r;
  struct stat input_stat = {};
  bool input_is_socket =
      stdin_w.valid() && ::fstat(stdin_w.get(), &input_stat) == 0 && S_ISSOCK(input_stat.st_mode);
  if (input_is_socket) report_r.reset(::fcntl(stdin_w.get(), F_DUPFD_CLOEXEC, 0));
  ExitReportReader report;
  auto closeInput = [&] {
    if (!stdin_w.valid()) return;
    if (input_is_socket) ::shutdown(stdin_w.get(), SHUT_WR);
    stdin_w.reset();
  };
  if (stdin_w.valid()) ::fcntl(stdin_w.get(), F_SETFL, O_NONBLOCK);
  if (stdin_w.valid() && input.empty() && !awaiting_launch) closeInput();

  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> deadline;
  if (timeout.count() > 0 && !awaiting_launch) deadline = Clock::now() + timeout;
  bool timed_out = false;
  bool exited = false;
  bool reported = false;  // the exit came from the launcher's report: drain what is there, stop
  std::optional<int> wait_status;
  std::optional<Clock::time_point> drain_deadline;
  char buffer[65536];

  while (true) {
    pollfd fds[7];
    int count = 0;
    fds[count++] = {detach_fd_.get(), POLLIN, 0};
    int out_index = -1, err_index = -1, in_index = -1, exit_index = -1, launch_index = -1;
    int report_index = -1;
    if (awaiting_launch) {
      launch_index = count;
      fds[count++] = {launch_fd_.get(), POLLIN, 0};
    }
    if (stdout_r.valid()) {
      out_index = count;
      fds[count++] = {stdout_r.get(), POLLIN, 0};
    }
    if (stderr_r.valid()) {
      err_index = count;
      fds[count++] = {stderr_r.get(), POLLIN, 0};
    }
    if (stdin_w.valid() && !exited && input_offset < input.size()) {
      in_index = count;
      fds[count++] = {stdin_w.get(), POLLOUT, 0};
    }
    if (!exited) {
      exit_index = count;
      fds[count++] = {exit_fd, POLLIN, 0};
      if (report_r.valid() && !awaiting_launch) {
        report_index = count;
        fds[count++] = {report_r.get(), POLLIN, 0};
      }
    }
    if (exited && count == 1) break;
    int wait_ms = -1;
    auto now = Clock::now();
    if (exited) {
      if (now >= *drain_deadline) break;
      // After a report only what the pipes hold already is read.
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*drain_deadline - now);
      wait_ms = reported ? 0 : static_cast<int>(left.count() + 1);
    } else if (deadline && !timed_out) {
      if (now >= *deadline) {
        timed_out = true;
        killTree();
        continue;
      }
      wait_ms = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - now).count() + 1);
    }
    int rc = ::poll(fds, static_cast<nfds_t>(count), wait_ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      break;
    }
    // The agent's process ended before the report; its output is in the pipes by now.
    if (rc == 0 && reported) break;
    if (fds[0].revents != 0) return;  // detached: leave everything as it is
    if (launch_index >= 0 && fds[launch_index].revents != 0) {
      std::optional<Launch> launch;
      {
        std::lock_guard lock(mu_);
        launch.swap(pending_launch_);
      }
      if (launch) {
        awaiting_launch = false;
        input = encodeLaunch(*launch, spec_);
        input_offset = 0;
        timeout = launch->timeout;
        if (timeout.count() > 0) deadline = Clock::now() + timeout;
        log.setOnLog(std::move(launch->on_log));
      }
      continue;
    }
    auto readStream = [&](int index, UniqueFd& fd, bool is_stderr) {
      if (index < 0 || fds[index].revents == 0) return;
      ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
      if (n > 0) {
        log.append(is_stderr, buffer, static_cast<size_t>(n));
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        fd.reset();
      }
    };
    readStream(out_index, stdout_r, false);
    readStream(err_index, stderr_r, true);
    if (in_index >= 0 && fds[in_index].revents != 0) {
      if (fds[in_index].revents & (POLLERR | POLLHUP)) {
        closeInput();
      } else {
        const char* data = input.data() + input_offset;
        size_t size = input.size() - input_offset;
        ssize_t n = input_is_socket ? ::send(stdin_w.get(), data, size, MSG_NOSIGNAL)
                                    : ::write(stdin_w.get(), data, size);
        if (n > 0) input_offset += static_cast<size_t>(n);
        if ((n < 0 && errno != EAGAIN && errno != EINTR) || input_offset >= input.size()) {
          closeInput();
        }
      }
    }
    if (report_index >= 0 && fds[report_index].revents != 0) {
      if (!report.readFrom(report_r.get())) report_r.reset();  // not a report: wait for the exit
      if (report.complete()) {
        exited = true;
        reported = true;
        closeInput();
        report_r.reset();
        wait_status = report.waitStatus();
        drain_deadline = Clock::now() + std::chrono::seconds(2);  // orphans may keep writing
        continue;
      }
    }
    if (exit_index >= 0 && fds[exit_index].revents != 0) {
      exited = true;
      awaiting_launch = false;  // ended unlaunched: nothing more to wait for
      closeInput();
      report_r.reset();
      wait_status = readExit();
      // Every writer is gone once the sandbox ended; bound the drain anyway.
      drain_deadline = Clock::now() + std::chrono::seconds(2);
    }
  }
  log.flush();

  ExitStatus status;
  if (wait_status) {
    describeWaitStatus(*wait_status, status);
  } else {
    describeWaitStatus(SIGKILL, status);
  }
  status.timed_out = timed_out;
  status.oom_killed = oomKilled();
  status.finished_at = std::chrono::system_clock::now();
  if (timed_out) {
    status.message = "killed after " + std::to_string(timeout.count()) + " ms timeout";
  } else if (status.oom_killed) {
    status.message += " (out of memory)";
  }
  std::lock_guard lock(mu_);
  status.started_at = exit_.started_at;
  exit_ = status;
  finished_ = true;
  cv_.notify_all();
}

}  // namespace clrk::sandbox
