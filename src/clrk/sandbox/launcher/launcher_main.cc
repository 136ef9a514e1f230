// clrk-sandbox-launcher: the first process of a booted (warm) sandbox. It waits on stdin for one
// launch message from the worker, then runs the agent's process with execve(). The rest of
// stdin, after the message, is the agent's own stdin.
//
// When stdin is a pipe the launcher becomes the agent's process. When it is a socket (gVisor),
// the launcher stays as the sandbox's init: it forks the agent's process, forwards the signals
// the sandbox gets to it, reaps orphans, and when the agent's process ends writes the exit report
// of launch_protocol.h back on the socket before it exits with the same code (128+N for signal
// N). The report spares the worker the wait for the runsc sandbox process to exit (about 10 ms
// with a network: bench/sandbox). The agent can write to the socket as well: it can only end its
// own run early that way.
//
// Bind-mounted read-only at kSandboxLauncherPath into every booted sandbox, whatever its root
// filesystem, so it is linked statically and uses nothing but a few system calls.
//
// Message (see encodeLaunch() in sandbox_util.h): the 8 bytes "CLRKLNC1", a 4-byte little-endian
// payload size (at most kMaxLaunchBytes), then the payload: NUL-terminated strings
//   <argc> <argv...> <envc> <env...> <working dir>
// A short or malformed message ends the launcher with exit code 125 and a line on stderr; a
// working dir or program that cannot be used ends it with 126 (not executable) or 127 (not found),
// as a shell would.
#include "clrk/sandbox/launch_protocol.h"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

using clrk::sandbox::kExitMagic;
using clrk::sandbox::kExitReportBytes;
using clrk::sandbox::kLaunchMagic;
using clrk::sandbox::kMaxLaunchBytes;
using clrk::sandbox::kMaxLaunchStrings;

void say(const char* a, const char* b = "", const char* c = "") {
  for (const char* text : {"clrk-sandbox-launcher: ", a, b, c, "\n"}) {
    size_t left = std::strlen(text);
    while (left > 0) {
      ssize_t n = ::write(2, text, left);
      if (n <= 0 && errno != EINTR) return;
      if (n > 0) {
        text += n;
        left -= static_cast<size_t>(n);
      }
    }
  }
}

[[noreturn]] void die(int code, const char* a, const char* b = "", const char* c = "") {
  say(a, b, c);
  ::_exit(code);
}

// Reads exactly `size` bytes from stdin: never more, so what follows stays for the agent.
bool readExactly(void* data, size_t size) {
  auto* out = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(0, out, size);
    if (n == 0) return false;
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Cursor over the payload's NUL-terminated strings.
struct Fields {
  char* next;
  char* end;
  char* take() {
    if (next >= end) return nullptr;
    char* field = next;
    void* nul = std::memchr(next, '\0', static_cast<size_t>(end - next));
    if (nul == nullptr) return nullptr;
    next = static_cast<char*>(nul) + 1;
    return field;
  }
  bool count(size_t& value) {
    char* text = take();
    if (text == nullptr || *text == '\0') return false;
    value = 0;
    for (; *text != '\0'; ++text) {
      if (*text < '0' || *text > '9' || value > kMaxLaunchStrings) return false;
      value = value * 10 + static_cast<size_t>(*text - '0');
    }
    return value <= kMaxLaunchStrings;
  }
};

// Fills `list` with `n` strings and a terminating null; false when the payload is short.
bool takeList(Fields& fields, size_t n, char** list) {
  for (size_t index = 0; index < n; ++index) {
    list[index] = fields.take();
    if (list[index] == nullptr) return false;
  }
  list[n] = nullptr;
  return true;
}

[[noreturn]] void execAgent(char** argv, char** envp, const char* cwd) {
  if (::chdir(cwd) != 0) die(126, "cannot enter the working dir ", cwd);
  // execvp() searches the PATH of the environment it runs in: make that the agent's.
  environ = envp;
  ::execvp(argv[0], argv);
  int error = errno;
  die(error == ENOENT ? 127 : 126, argv[0], ": ", std::strerror(error));
}

volatile sig_atomic_t agent_pid = 0;

void forwardSignal(int signal) {
  if (agent_pid > 0) ::kill(agent_pid, signal);
}

constexpr int kForwardedSignals[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGTERM,
                                     SIGUSR1, SIGUSR2, SIGCONT, SIGWINCH};

// Init of the sandbox: runs the agent as a child and reports its end on the socket `report_fd`.
[[noreturn]] void superviseAgent(char** argv, char** envp, const char* cwd, int report_fd) {
  // The agent runs as the same user: it must not ptrace its init to forge the report.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  sigset_t all, previous;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, &previous);
  for (int signal : kForwardedSignals) {
    struct sigaction action = {};
    action.sa_handler = forwardSignal;
    action.sa_flags = SA_RESTART;
    sigfillset(&action.sa_mask);
    ::sigaction(signal, &action, nullptr);
  }
  // vfork: fork() copies the address space, which costs gVisor several ms more; the child only
  // resets its signals and execs (or writes a line and _exits).
  pid_t child = ::vfork();
  if (child < 0) die(126, "vfork: ", std::strerror(errno));
  if (child == 0) {
    for (int signal : kForwardedSignals) ::signal(signal, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    execAgent(argv, envp, cwd);
  }
  agent_pid = child;
  ::sigprocmask(SIG_SETMASK, &previous, nullptr);
  int status = 0;
  while (true) {
    int reaped_status = 0;
    pid_t pid = ::waitpid(-1, &reaped_status, 0);
    if (pid == child) {
      status = reaped_status;
      break;
    }
    if (pid < 0 && errno != EINTR) die(125, "wait: ", std::strerror(errno));
  }
  unsigned char report[kExitReportBytes];
  std::memcpy(report, kExitMagic, sizeof kExitMagic - 1);
  auto value = static_cast<uint32_t>(status);
  for (int index = 0; index < 4; ++index) {
    report[sizeof kExitMagic - 1 + index] = static_cast<unsigned char>(value >> (8 * index));
  }
  (void)!::send(report_fd, report, sizeof report, MSG_NOSIGNAL);
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
}

}  // namespace

int main() {
  unsigned char header[sizeof kLaunchMagic - 1 + 4];
  if (!readExactly(header, sizeof header)) ::_exit(125);  // closed before a launch: discarded
  if (std::memcmp(header, kLaunchMagic, sizeof kLaunchMagic - 1) != 0) {
    die(125, "bad launch message (wrong magic)");
  }
  const unsigned char* size_bytes = header + sizeof kLaunchMagic - 1;
  uint32_t size = static_cast<uint32_t>(size_bytes[0]) | static_cast<uint32_t>(size_bytes[1]) << 8 |
                  static_cast<uint32_t>(size_bytes[2]) << 16 |
                  static_cast<uint32_t>(size_bytes[3]) << 24;
  if (size == 0 || size > kMaxLaunchBytes) die(125, "bad launch message (size out of bounds)");
  auto* payload = static_cast<char*>(std::malloc(size));
  if (payload == nullptr) die(125, "out of memory");
  if (!readExactly(payload, size)) die(125, "bad launch message (truncated)");

  Fields fields{payload, payload + size};
  size_t argc = 0, envc = 0;
  if (!fields.count(argc) || argc == 0) die(125, "bad launch message (argc)");
  auto** argv = static_cast<char**>(std::calloc(argc + 1, sizeof(char*)));
  if (argv == nullptr || !takeList(fields, argc, argv)) die(125, "bad launch message (argv)");
  if (!fields.count(envc)) die(125, "bad launch message (envc)");
  auto** envp = static_cast<char**>(std::calloc(envc + 1, sizeof(char*)));
  if (envp == nullptr || !takeList(fields, envc, envp)) die(125, "bad launch message (env)");
  const char* cwd = fields.take();
  if (cwd == nullptr || *cwd != '/') die(125, "bad launch message (working dir)");

  struct stat input = {};
  if (::fstat(0, &input) == 0 && S_ISSOCK(input.st_mode)) superviseAgent(argv, envp, cwd, 0);
  execAgent(argv, envp, cwd);
}
