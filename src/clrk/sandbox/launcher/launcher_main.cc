// clrk-sandbox-launcher: the first process of a booted (warm) sandbox. It waits on stdin for one
// launch message from the worker, then becomes the agent's process with execve(). The rest of
// stdin, after the message, is the agent's own stdin.
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
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <unistd.h>

namespace {

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

  if (::chdir(cwd) != 0) die(126, "cannot enter the working dir ", cwd);
  // execvp() searches the PATH of the environment it runs in: make that the agent's.
  environ = envp;
  ::execvp(argv[0], argv);
  int error = errno;
  die(error == ENOENT ? 127 : 126, argv[0], ": ", std::strerror(error));
}
