// The sandbox runtime contract: run one agent process tree isolated from the host, with its
// network (a prepared netns from sandbox::net) fully intercepted by the egress, a private
// writable root, limits, a timeout, captured output and complete clean-up.
//
// Backends:
//   "gvisor"     Debian's runsc (ptrace platform, --network=sandbox in the sandbox's netns, the
//                /proc/sys wrapper of docs/architecture/sandbox.md); the default.
//   "namespaces" clone() into new mount/pid/ipc/uts/net(joined)/cgroup namespaces, pivot_root
//                into an overlay root, all capabilities dropped, no_new_privs, a seccomp filter;
//                the fallback where runsc is missing and the fast path for tests.
// Root filesystems: RootfsKind::Host (host / read-only, private tmpfs /tmp, /root, /home, /work),
// RootfsKind::Directory (a local rootfs dir, e.g. an unpacked image): both get a private writable
// layer; nothing the sandbox writes reaches the lower directory or the host.
//
// Lifecycle: prepare() does everything that does not depend on the moment of the run (state
// dirs, overlay, CA bundle, cgroups, runsc sandbox created, process not started), so a warm pool
// can keep prepared sandboxes and start() them in a few ms. start() runs the process; wait()
// returns its exit; destroy() kills everything left and removes every trace.
//
// Booted sandboxes (warm pools): a spec with await_launch runs clrk-sandbox-launcher as its
// process. After prepare() + start() the sandbox is fully up (runsc sandbox booted, its first
// process waiting), and launch() hands it the real argv/env/working dir/stdin, which the launcher
// exec()s: a claim costs one pipe write and an execve instead of `runsc start`. A Runtime
// remembers its sandboxes under its state dir so cleanupLeftovers() can remove those of a
// crashed worker (processes, mounts, cgroups, runsc containers, state dirs).
//
// Thread model: Runtime and Sandbox methods are thread-safe.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clrk::sandbox {

enum class RootfsKind { Host, Directory };

struct BindMount {
  std::filesystem::path source;  // host path
  std::string destination;       // absolute path in the sandbox
  bool read_only = true;
};

struct Limits {
  int64_t cpu_millis = 0;    // 1000 = one core; 0 = unlimited
  int64_t memory_bytes = 0;  // 0 = unlimited
  int64_t pids = 0;          // 0 = unlimited
};

// One captured output line (stdout or stderr), timestamped when the worker read it.
struct LogLine {
  std::chrono::system_clock::time_point time;
  bool is_stderr = false;
  std::string text;  // without the trailing newline; over-long lines are split
};

struct SandboxSpec {
  std::string id;  // [a-z0-9-]{1,48}, unique on the worker
  RootfsKind rootfs_kind = RootfsKind::Host;
  std::filesystem::path rootfs_dir;  // RootfsKind::Directory: lower layer (read-only)

  std::vector<std::string> argv;  // argv[0] resolved through PATH inside the sandbox
  std::vector<std::string> env;   // "K=V"; the runtime adds the CA variables and PATH if unset
  std::string working_dir = "/";
  uint32_t uid = 0;  // inside the sandbox (gvisor: the sentry's user; namespaces: mapped)
  uint32_t gid = 0;
  std::string hostname = "sandbox";
  std::vector<BindMount> mounts;

  // Network: path of the netns prepared by sandbox::net ("" = no network at all, loopback only).
  std::string netns_path;

  // PEM of the CA the egress signs leaves with (never its key). Written into the root's trust
  // store (/etc/ssl/certs/ca-certificates.crt appended, /etc/clrk/ca.crt) and exported through
  // SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE.
  std::string ca_cert_pem;

  Limits limits;
  std::chrono::milliseconds timeout{0};   // wall clock from start(); 0 = none
  std::optional<std::string> stdin_data;  // written to stdin then closed; nullopt = /dev/null

  // Output capture: lines go to <state>/stdout.log (bounded, rotated) and to on_log if set.
  uint64_t log_max_bytes = 8 << 20;            // per file before rotation (one .1 generation kept)
  std::function<void(const LogLine&)> on_log;  // called from a runtime thread

  // Boot the sandbox for a later Sandbox::launch(): argv, env, working_dir, stdin_data, timeout
  // and on_log above are ignored (launch() gives them); everything else applies.
  bool await_launch = false;
};

// What a booted sandbox runs (Sandbox::launch()); the fields mean what they mean in SandboxSpec.
struct Launch {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // the runtime adds the CA variables and PATH if unset
  std::string working_dir = "/";
  std::optional<std::string> stdin_data;
  std::chrono::milliseconds timeout{0};
  std::function<void(const LogLine&)> on_log;
};

struct ExitStatus {
  int exit_code = -1;  // process exit code; 128+N when killed by signal N
  int signal = 0;      // terminating signal, 0 if it exited
  bool timed_out = false;
  bool oom_killed = false;  // when the backend can tell
  std::chrono::system_clock::time_point started_at;
  std::chrono::system_clock::time_point finished_at;
  std::string message;  // human-readable summary ("exited 0", "killed after 30s timeout")
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;
  virtual const std::string& id() const = 0;
  // Starts the process of a prepared sandbox; once only.
  virtual Status start() = 0;
  // A started await_launch sandbox: its launcher execs `launch`. Once only; the timeout and
  // ExitStatus::started_at count from here. InvalidArgument when the sandbox is not waiting
  // for a launch (not booted, not started, launched already, or its launcher ended).
  virtual Status launch(Launch launch) = 0;
  // Blocks until the process tree ended (or `timeout` elapsed: returns DeadlineExceeded-like error
  // and leaves the sandbox running).
  virtual Result<ExitStatus> wait(std::optional<std::chrono::milliseconds> timeout = {}) = 0;
  // Sends `signal` to the sandbox's init process (SIGTERM for a graceful stop).
  virtual Status signal(int signal) = 0;
  // Kills every process of the sandbox, unmounts, removes cgroups, runsc state and the state
  // dir. Idempotent; does not release the network (the caller owns it).
  virtual Status destroy() = 0;
  // Host pid of the sandbox's init (runsc: the sandbox/gofer-owning pid), 0 before start.
  virtual int hostPid() const = 0;
  virtual std::filesystem::path logPath() const = 0;
};

struct RuntimeOptions {
  std::filesystem::path state_dir;     // e.g. ~/.clrk/worker-<name>/sandboxes; created if missing
  std::string cgroup_parent = "clrk";  // cgroup v1/v2 sub-tree for limits
  bool debug = false;                  // gvisor: keep runsc debug logs in the state dir
  // RootfsKind::Host: host directories replaced by an empty tmpfs in every sandbox, besides the
  // fixed ones (/tmp, /root, /home, /work, /run, /var/tmp) and state_dir with its parent, which
  // are always hidden. The worker lists its own files here (CA, spool, Secrets cache).
  std::vector<std::filesystem::path> hidden_paths;
  // clrk-sandbox-launcher, for await_launch specs; empty: $CLRK_SANDBOX_LAUNCHER, else the file
  // of that name next to the running executable.
  std::filesystem::path launcher_path;
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  virtual std::string name() const = 0;  // "gvisor" | "namespaces"
  // Creates the sandbox without starting its process.
  virtual Result<std::unique_ptr<Sandbox>> prepare(const SandboxSpec& spec) = 0;
  // Removes every sandbox left under state_dir by a previous (crashed) run. Returns how many.
  virtual Result<int> cleanupLeftovers() = 0;
  // What the host allows, for status reporting: e.g. "cgroup v1: cpu, memory, pids enforced".
  virtual std::string limitsSupport() const = 0;
};

// Creates the named backend. A backend whose binaries or kernel features are missing fails with a
// clear error naming the package to install (e.g. "runtime gvisor: runsc not found in PATH;
// install the Debian package runsc").
Result<std::unique_ptr<Runtime>> makeRuntime(const std::string& name, RuntimeOptions options);

}  // namespace clrk::sandbox
