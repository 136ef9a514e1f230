// Helpers shared by the sandbox backends: spec validation, the CA bundle, the sandbox
// environment, the per-sandbox record file (for cleanupLeftovers), file descriptors, processes
// sharing the worker's memory, process identity checks and a tree removal that never crosses
// into a mount. Functions marked "async-signal-safe" may be called in a cloneSharedVm() child
// (no allocation, no locks).
// Thread model: free functions, no shared state.
#pragma once

#include "clrk/base/status.h"
#include "clrk/base/unique_fd.h"
#include "clrk/sandbox/launch_protocol.h"
#include "clrk/sandbox/runtime.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

// Code that runs in a cloneSharedVm() child runs on a stack AddressSanitizer does not know and
// ends in _exit without unwinding: keep it uninstrumented (no redzones left poisoned behind).
#define CLRK_CHILD_SIDE __attribute__((no_sanitize("address")))

namespace clrk::sandbox {

// A pipe with both ends O_CLOEXEC.
Status makePipe(UniqueFd& read_end, UniqueFd& write_end);
// A connected AF_UNIX stream pair, both ends O_CLOEXEC: the stdin of a booted gVisor sandbox,
// on which its launcher reports the agent's exit (launch_protocol.h).
Status makeSocketPair(UniqueFd& sandbox_end, UniqueFd& worker_end);

// Writes `content` to `path` through a temporary file and rename, without fsync: state files
// only need to survive a crash of the worker, not of the machine.
Status writeStateFile(const std::filesystem::path& path, std::string_view content,
                      unsigned mode = 0644);

// Checks id, argv, paths and the CA PEM (which must not hold a private key).
Status validateSpec(const SandboxSpec& spec);

// Writes <dir>/ca.crt (spec.ca_cert_pem) and <dir>/ca-bundle.crt (the lower root's
// /etc/ssl/certs/ca-certificates.crt, resolved inside `lower_root`, followed by the CA), mode
// 0644. Without a CA only the bundle copy is written (so the trust store stays as it was).
struct CaFiles {
  std::filesystem::path ca_cert;  // empty when the spec has no CA
  std::filesystem::path bundle;
};
Result<CaFiles> writeCaFiles(const SandboxSpec& spec, const std::filesystem::path& lower_root,
                             const std::filesystem::path& dir);

// Host-rootfs sandboxes: the host directories covered by an empty tmpfs, parents before
// children, only existing directories, none nested in another: the fixed set (/tmp, /root,
// /home, /work, /run, /var/tmp), options.state_dir and its parent (when that parent is at
// least two levels deep) and options.hidden_paths.
std::vector<std::string> hostMaskedDirs(const RuntimeOptions& options);

// Where the CA files appear inside the sandbox.
inline constexpr const char* kSandboxCaPath = "/etc/clrk/ca.crt";
inline constexpr const char* kSandboxBundlePath = "/etc/ssl/certs/ca-certificates.crt";

// spec.env plus PATH and the CA variables (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS,
// REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) where the spec does not set them.
std::vector<std::string> sandboxEnv(const SandboxSpec& spec);

// The spec a backend prepares: `spec` itself, or for await_launch the launcher's spec (argv =
// the launcher, bind-mounted read-only at kSandboxLauncherPath, a stdin pipe, no timeout).
// Unavailable when the launcher binary cannot be found.
Result<SandboxSpec> effectiveSpec(const SandboxSpec& spec, const RuntimeOptions& options);
// The launcher binary: options.launcher_path, $CLRK_SANDBOX_LAUNCHER, next to /proc/self/exe,
// or (binaries of the build tree) the one the build made.
std::filesystem::path findLauncher(const RuntimeOptions& options);
// Checks a Launch like validateSpec() checks the process fields of a spec.
Status validateLaunch(const std::string& sandbox_id, const Launch& launch);
// The bytes written to the launcher's stdin: the message (launch_protocol.h) with the env of
// sandboxEnv() (CA variables from `booted`), then launch.stdin_data.
std::string encodeLaunch(const Launch& launch, const SandboxSpec& booted);

// Collects the launcher's exit report (launch_protocol.h) from a non-blocking socket, which the
// agent can write to as well: anything that is not a report ends the reading.
class ExitReportReader {
 public:
  // Reads what is available, never past the report. False on end of stream, an error or bytes
  // that are not a report; true otherwise (complete() tells whether it is all there).
  bool readFrom(int fd);
  // Takes bytes as if read; same result as readFrom().
  bool take(const char* data, size_t size);
  bool complete() const { return size_ == sizeof bytes_; }
  int waitStatus() const;

 private:
  unsigned char bytes_[kExitReportBytes] = {};
  size_t size_ = 0;
};

// What cleanupLeftovers needs to remove a sandbox of a crashed worker. Stored as JSON at
// <state_dir>/<id>/record.json.
struct SandboxRecord {
  std::string id;
  std::string backend;
  int pid = 0;             // namespaces: init; gvisor: the runsc sandbox process
  uint64_t pid_start = 0;  // /proc/<pid>/stat start time, guards against pid reuse
  int shim_pid = 0;        // gvisor: the wrapper/shim process
  uint64_t shim_start = 0;
  std::string cgroup;        // relative cgroup path ("clrk/<id>"), "" when none
  std::string runsc_root;    // gvisor: --root of runsc
  std::string runsc_binary;  // gvisor: path of runsc
};
Status writeRecord(const std::filesystem::path& path, const SandboxRecord& record);
Result<SandboxRecord> readRecord(const std::filesystem::path& path);

// Start time (clock ticks since boot) of `pid`, 0 when it does not exist.
uint64_t processStartTime(int pid);
// True when `pid` exists and is not a zombie.
bool processRunning(int pid);
// Sends `sig` to pid iff it still is the process that started at `start_time`.
bool signalIfSame(int pid, uint64_t start_time, int sig);

// A stack for a process started with cloneSharedVm(); unmapped on destruction (REQUIRES: the
// process using it is gone).
class ChildStack {
 public:
  ChildStack() = default;
  explicit ChildStack(size_t size);
  ChildStack(ChildStack&& other) noexcept;
  ChildStack& operator=(ChildStack&& other) noexcept;
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  ~ChildStack();
  bool valid() const { return base_ != nullptr; }
  void* top() const { return static_cast<char*>(base_) + size_; }
  // Forgets the mapping without unmapping it (its process outlives this object).
  void leak() { base_ = nullptr; }

 private:
  void* base_ = nullptr;
  size_t size_ = 0;
};

// Runs fn(arg) in a new process that shares the caller's memory (CLONE_VM) but has its own fd
// table, credentials, signal handlers and the namespaces in `flags`, on `stack`. Nothing is
// copied, so a long-lived helper (sandbox init, runsc shim) costs no memory and does not pin
// copy-on-write snapshots of the worker. The function must not allocate, take libc locks or
// return to the worker's code paths: system calls and stack-only work, then _exit. SIGCHLD is
// the exit signal; *pidfd receives a pidfd when not null. Returns -1 with errno on failure.
pid_t cloneSharedVm(int (*fn)(void*), void* arg, const ChildStack& stack, int flags, int* pidfd);

// Marks memory deliberately left to a process that outlives its owner (abandonForTest()) so
// LeakSanitizer does not report it; no-op without sanitizers.
void keepForChild(const void* pointer);

// Closes every fd except those in keep[0..n) (async-signal-safe).
void closeAllExcept(const int* keep, int n);
// Writes the whole buffer, retrying on EINTR (async-signal-safe).
bool writeAll(int fd, const void* data, size_t size);
// Reads exactly size bytes; false on EOF or error (async-signal-safe).
bool readAll(int fd, void* data, size_t size);

// Waits until `fd` is readable or `timeout` elapsed; false on timeout.
bool waitReadable(int fd, std::chrono::milliseconds timeout);

// Removes `path` recursively without descending into other file systems: anything mounted
// below it is lazily unmounted first. Missing path is ok.
Status removeTree(const std::filesystem::path& path);

// Runs argv (argv[0] an absolute path) with stdin /dev/null, collecting stdout+stderr (bounded
// to 64 KiB); kills it after `timeout`. Returns the wait status.
struct CommandResult {
  int wait_status = 0;
  std::string output;
};
Result<CommandResult> runCommand(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout);

// Finds `name` in $PATH of the worker; empty when absent.
std::filesystem::path findInPath(const std::string& name);

// Fills exit_code/signal/message of `status` from a wait status.
void describeWaitStatus(int wait_status, ExitStatus& status);

}  // namespace clrk::sandbox
