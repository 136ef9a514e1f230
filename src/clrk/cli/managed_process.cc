#include "clrk/cli/managed_process.h"

#include "clrk/base/files.h"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

}  // namespace

Result<fs::path> siblingBinary(std::string_view name) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return internalError("cannot read /proc/self/exe: " + ec.message());
  fs::path binary = self.parent_path() / std::string(name);
  if (!fs::exists(binary, ec)) {
    return notFound(std::string(name) + " not found next to clrk (looked at " + binary.string() +
                    ")");
  }
  return binary;
}

Result<pid_t> startDetached(const ManagedProcess& process, const fs::path& binary,
                            const std::vector<std::string>& args) {
  std::error_code ec;
  fs::create_directories(process.log.parent_path(), ec);
  int log_fd = ::open(process.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    return internalError("cannot open " + process.log.string() + ": " + std::strerror(errno));
  }
  // Everything the child needs is built before fork(): the child of a multithreaded process may
  // not allocate.
  std::string binary_path = binary.string();
  std::vector<char*> argv;
  argv.push_back(binary_path.data());
  std::vector<std::string> owned_args = args;
  for (std::string& arg : owned_args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    int error = errno;
    ::close(log_fd);
    return internalError(std::string("fork: ") + std::strerror(error));
  }
  if (pid == 0) {
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::syscall(SYS_close_range, 3U, ~0U, 0);  // no inherited listeners or connections
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log_fd);
  Status written = writeFileAtomic(process.pid_file, std::to_string(pid) + "\n", 0600);
  if (!written.ok()) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return written;
  }
  return pid;
}

bool isRunning(pid_t pid, std::string_view exe_name) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  // A zombie has no /proc/PID/exe any more.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  if (ec) return false;
  std::string name = exe.filename().string();
  return name == exe_name || name == std::string(exe_name) + " (deleted)";
}

pid_t recordedPid(const ManagedProcess& process) {
  auto text = readFile(process.pid_file);
  if (!text.ok()) return 0;
  try {
    return static_cast<pid_t>(std::stol(trim(*text)));
  } catch (const std::exception&) {
    return 0;
  }
}

pid_t runningPid(const ManagedProcess& process) {
  pid_t pid = recordedPid(process);
  return isRunning(pid, process.exe_name) ? pid : 0;
}

std::optional<std::string> reapIfEnded(pid_t pid) {
  int wstatus = 0;
  if (pid <= 0 || ::waitpid(pid, &wstatus, WNOHANG) != pid) return std::nullopt;
  if (WIFEXITED(wstatus)) return "exited with status " + std::to_string(WEXITSTATUS(wstatus));
  return "was killed by signal " + std::to_string(WTERMSIG(wstatus));
}

std::vector<StopOutcome> stopAll(const std::vector<ManagedProcess>& processes,
                                 std::chrono::milliseconds grace) {
  std::vector<StopOutcome> outcomes(processes.size());
  for (size_t process_idx = 0; process_idx < processes.size(); ++process_idx) {
    pid_t pid = runningPid(processes[process_idx]);
    outcomes[process_idx].pid = pid;
    if (pid != 0) ::kill(pid, SIGTERM);
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  // A process stuck in the kernel may outlive SIGKILL for a while; do not wait for it forever.
  auto give_up = deadline + 10s;
  bool killed = false;
  while (std::chrono::steady_clock::now() < give_up) {
    bool any_left = false;
    for (size_t process_idx = 0; process_idx < processes.size(); ++process_idx) {
      pid_t pid = outcomes[process_idx].pid;
      if (pid == 0) continue;
      reapIfEnded(pid);  // when it is our own child
      if (!isRunning(pid, processes[process_idx].exe_name)) continue;
      any_left = true;
      if (killed) continue;
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGKILL);
        outcomes[process_idx].killed = true;
      }
    }
    if (!any_left) break;
    if (!killed && std::chrono::steady_clock::now() >= deadline) killed = true;
    std::this_thread::sleep_for(50ms);
  }
  std::error_code ec;
  for (const ManagedProcess& process : processes) fs::remove(process.pid_file, ec);
  return outcomes;
}

std::string logTail(const fs::path& log, size_t lines) {
  auto text = readFile(log);
  if (!text.ok()) return "(no log at " + log.string() + ")";
  std::vector<std::string> all;
  std::string line;
  for (char c : *text) {
    if (c == '\n') {
      all.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) all.push_back(line);
  std::string out;
  for (size_t line_idx = all.size() > lines ? all.size() - lines : 0; line_idx < all.size();
       ++line_idx) {
    out += "  " + all[line_idx] + "\n";
  }
  return out;
}

}  // namespace clrk::cli
