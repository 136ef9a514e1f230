#include "clrk/sandbox/gvisor/gvisor_runtime.h"

#include "clrk/base/files.h"
#include "clrk/base/log.h"
#include "clrk/sandbox/cgroups.h"
#include "clrk/sandbox/sandbox_util.h"
#include "clrk/sandbox/state_dir.h"
#include "clrk/sandbox/supervised_sandbox.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sstream>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace clrk::sandbox::gvisor {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

struct Report {
  int32_t kind = 0;
  int32_t value = 0;  // wait status
};
constexpr int32_t kCreated = 1;
constexpr int32_t kStarted = 2;
constexpr int32_t kExit = 3;

constexpr auto kRunscTimeout = std::chrono::seconds(30);

struct ShimPlan {
  int ctl_r = -1, report_w = -1, stdin_r = -1, stdout_w = -1, stderr_w = -1;
  std::string realsys, realsys_kernel, realsys_vm, realsys_fs;
  std::string runsc, pid_file;
  std::vector<std::string> create_argv, start_argv, env;
  bool create_starts = false;  // create_argv is `runsc run --detach`: start() has nothing to run
  std::vector<char*> create_ptrs, start_ptrs, env_ptrs;
  const ChildStack* exec_stack = nullptr;
};

struct ExecRequest {
  const ShimPlan* plan;
  char* const* argv;
  int in, out, err;
};

CLRK_CHILD_SIDE int execRunsc(void* arg) {
  const auto* request = static_cast<const ExecRequest*>(arg);
  if (::dup2(request->in, 0) < 0 || ::dup2(request->out, 1) < 0 || ::dup2(request->err, 2) < 0) {
    ::_exit(127);
  }
  ::syscall(SYS_close_range, 3U, ~0U, 0);
  ::execve(request->plan->runsc.c_str(), request->argv, request->plan->env_ptrs.data());
  ::_exit(127);
}

// ---- shim (async-signal-safe only) -------------------------------------------------------------

CLRK_CHILD_SIDE void report(const ShimPlan& plan, int32_t kind, int32_t value) {
  Report message{kind, value};
  writeAll(plan.report_w, &message, sizeof message);
}

// Runs runsc with the given stdio and returns its wait status (-1 when it could not run).
CLRK_CHILD_SIDE int runRunsc(const ShimPlan& plan, char* const* argv, int in, int out, int err) {
  ExecRequest request{&plan, argv, in, out, err};
  pid_t child = cloneSharedVm(execRunsc, &request, *plan.exec_stack, CLONE_VFORK, nullptr);
  if (child < 0) return -1;
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

CLRK_CHILD_SIDE int readPidFile(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buffer[32] = {};
  ssize_t n = ::read(fd, buffer, sizeof buffer - 1);
  ::close(fd);
  if (n <= 0) return 0;
  int pid = 0;
  for (ssize_t index = 0; index < n && buffer[index] >= '0' && buffer[index] <= '9'; ++index) {
    pid = pid * 10 + (buffer[index] - '0');
  }
  return pid;
}

[[noreturn]] CLRK_CHILD_SIDE void shimMain(const ShimPlan& plan);
CLRK_CHILD_SIDE int shimEntry(void* arg) { shimMain(*static_cast<const ShimPlan*>(arg)); }

[[noreturn]] CLRK_CHILD_SIDE void shimMain(const ShimPlan& plan) {
  int keep[] = {plan.ctl_r, plan.report_w, plan.stdin_r, plan.stdout_w, plan.stderr_w};
  closeAllExcept(keep, 5);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  // The /proc/sys wrapper (see the header): runsc must not see /proc/sys/net.
  bool ok =
      ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) == 0 &&
      ::mount("/proc/sys", plan.realsys.c_str(), nullptr, MS_BIND | MS_REC, nullptr) == 0 &&
      ::mount("tmpfs", "/proc/sys", "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,mode=0555") == 0 &&
      ::mkdir("/proc/sys/kernel", 0555) == 0 && ::mkdir("/proc/sys/vm", 0555) == 0 &&
      ::mkdir("/proc/sys/fs", 0555) == 0 &&
      ::mount(plan.realsys_kernel.c_str(), "/proc/sys/kernel", nullptr, MS_BIND | MS_REC,
              nullptr) == 0 &&
      ::mount(plan.realsys_vm.c_str(), "/proc/sys/vm", nullptr, MS_BIND | MS_REC, nullptr) == 0 &&
      ::mount(plan.realsys_fs.c_str(), "/proc/sys/fs", nullptr, MS_BIND | MS_REC, nullptr) == 0 &&
      ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
  if (!ok) {
    report(plan, kCreated, -2);
    ::_exit(1);
  }
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  int in = plan.stdin_r >= 0 ? plan.stdin_r : devnull;
  int created = runRunsc(plan, plan.create_ptrs.data(), in, plan.stdout_w, plan.stderr_w);
  if (plan.stdin_r >= 0) ::close(plan.stdin_r);
  ::close(plan.stdout_w);
  ::close(plan.stderr_w);
  report(plan, kCreated, created);
  int sandbox_pid = created == 0 ? readPidFile(plan.pid_file.c_str()) : 0;
  char byte = 0;
  if (created == 0 && readAll(plan.ctl_r, &byte, 1) && byte == 's') {
    report(
        plan, kStarted,
        plan.create_starts ? 0 : runRunsc(plan, plan.start_ptrs.data(), devnull, devnull, devnull));
  }
  // Reap the reparented runsc processes; the sandbox process's status is the container's.
  while (true) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pid == sandbox_pid) report(plan, kExit, status);
  }
  ::_exit(0);
}

// ---- worker side -------------------------------------------------------------------------------

// The last error runsc wrote to its --log file (JSON lines).
std::string lastRunscError(const fs::path& log) {
  auto text = readFile(log);
  if (!text.ok()) return "no runsc log";
  std::istringstream in(*text);
  std::string line, last;
  while (std::getline(in, line)) {
    try {
      auto json = Json::parse(line);
      if (json.value("level", "") == "error" || json.value("level", "") == "warning") {
        last = json.value("msg", line);
      }
    } catch (const std::exception&) {
      if (!line.empty()) last = line;
    }
  }
  return last.empty() ? "see " + log.string() : last;
}

class GvisorSandbox final : public SupervisedSandbox {
 public:
  GvisorSandbox(SandboxSpec spec, fs::path dir, std::shared_ptr<SandboxRegistry> registry)
      : SupervisedSandbox(std::move(spec), std::move(dir)), registry_(std::move(registry)) {}
  ~GvisorSandbox() override {
    if (!abandoned_) (void)destroy();
  }

  Status start() override;
  Status signal(int signal) override;
  Status destroy() override;
  int hostPid() const override { return sandbox_pid_; }
  void abandonForTest() override;

  // Filled in by GvisorRuntime::prepare(). The shim shares the worker's memory: it reads plan_
  // and runs on shim_stack_ (runsc execs start on exec_stack_) until it is reaped.
  std::unique_ptr<ShimPlan> plan_;
  ChildStack shim_stack_{256 * 1024};
  ChildStack exec_stack_{64 * 1024};
  std::vector<std::string> runsc_flags_;  // runsc binary + global flags
  std::string cgroup_;
  UniqueFd ctl_w_, report_r_, shim_pidfd_;
  UniqueFd stdin_w_, stdout_r_, stderr_r_;
  int shim_pid_ = 0;
  int sandbox_pid_ = 0;
  uint64_t sandbox_start_ = 0;

 protected:
  void killTree() override { signalIfSame(sandbox_pid_, sandbox_start_, SIGKILL); }
  std::optional<int> readExit() override;
  bool oomKilled() override {
    return !cgroup_.empty() && SandboxCgroup::attach(cgroup_).oomKilled();
  }

 private:
  std::shared_ptr<SandboxRegistry> registry_;
  std::mutex lifecycle_mu_;
  bool started_ = false;
  bool destroyed_ = false;
  bool abandoned_ = false;
};

Status GvisorSandbox::start() {
  std::lock_guard lock(lifecycle_mu_);
  if (destroyed_) return Status(Code::InvalidArgument, "sandbox " + id() + " was destroyed");
  if (started_) return Status(Code::InvalidArgument, "sandbox " + id() + " already started");
  started_ = true;
  char byte = 's';
  Report message;
  if (!writeAll(ctl_w_.get(), &byte, 1) || !waitReadable(report_r_.get(), kRunscTimeout) ||
      !readAll(report_r_.get(), &message, sizeof message) || message.kind != kStarted) {
    return internalError("sandbox " + id() + ": the runsc shim is gone");
  }
  if (message.value != 0) {
    return internalError("sandbox " + id() +
                         ": runsc start failed: " + lastRunscError(state_dir_ / "runsc.log"));
  }
  startSupervisor(std::move(stdin_w_), std::move(stdout_r_), std::move(stderr_r_), report_r_.get());
  return {};
}

Status GvisorSandbox::signal(int sig) {
  std::lock_guard lock(lifecycle_mu_);
  if (!started_ || destroyed_) {
    return Status(Code::InvalidArgument, "sandbox " + id() + " is not running");
  }
  if (finished()) return {};
  if (sig == SIGKILL) {
    killTree();
    return {};
  }
  std::vector<std::string> argv = runsc_flags_;
  argv.insert(argv.end(), {"kill", id(), std::to_string(sig)});
  auto result = runCommand(argv, kRunscTimeout);
  if (!result.ok()) return result.status();
  if (result->wait_status != 0 && !finished()) {
    return internalError("runsc kill " + std::to_string(sig) + ": " + result->output);
  }
  return {};
}

std::optional<int> GvisorSandbox::readExit() {
  Report message;
  if (readAll(report_r_.get(), &message, sizeof message) && message.kind == kExit) {
    // The runsc sandbox process exits 128+N when the container's init died of signal N.
    int code = WIFEXITED(message.value) ? WEXITSTATUS(message.value) : 0;
    if (code > 128 && code <= 128 + 64) return code - 128;
    return message.value;
  }
  return std::nullopt;
}

Status GvisorSandbox::destroy() {
  std::lock_guard lock(lifecycle_mu_);
  if (destroyed_) return {};
  destroyed_ = true;
  Status status;
  killTree();
  ctl_w_.reset();
  if (supervising()) joinSupervisor();
  if (shim_pid_ > 0) {
    // The shim exits once the sandbox, the gofer and runsc's helpers are all reaped.
    if (!waitReadable(shim_pidfd_.get(), std::chrono::seconds(5))) {
      if (!cgroup_.empty()) (void)SandboxCgroup::attach(cgroup_).killAll();
      ::syscall(SYS_pidfd_send_signal, shim_pidfd_.get(), SIGKILL, nullptr, 0);
      status = internalError("sandbox " + id() + ": runsc processes outlived the sandbox");
    }
    int wait_status = 0;
    while (::waitpid(shim_pid_, &wait_status, 0) < 0 && errno == EINTR) {
    }
    shim_pid_ = 0;
  }
  if (!cgroup_.empty()) {
    Status cg = removeCgroupEverywhere(cgroup_);
    if (status.ok()) status = cg;
  }
  Status rm = removeTree(state_dir_);
  if (status.ok()) status = rm;
  registry_->release(id());
  return status;
}

void GvisorSandbox::abandonForTest() {
  std::lock_guard lock(lifecycle_mu_);
  abandoned_ = true;
  destroyed_ = true;
  (void)ctl_w_.release();
  (void)report_r_.release();
  (void)shim_pidfd_.release();
  shim_stack_.leak();
  exec_stack_.leak();
  keepForChild(plan_.release());
  detachSupervisorForTest();
  registry_->release(id());
}

class GvisorRuntime final : public Runtime {
 public:
  GvisorRuntime(RuntimeOptions options, fs::path runsc)
      : options_(std::move(options)),
        runsc_(std::move(runsc)),
        registry_(std::make_shared<SandboxRegistry>()) {}

  std::string name() const override { return "gvisor"; }
  Result<std::unique_ptr<Sandbox>> prepare(const SandboxSpec& spec) override;
  Result<int> cleanupLeftovers() override {
    return cleanupStateDir(options_.state_dir, *registry_);
  }
  std::string limitsSupport() const override {
    const CgroupSupport& support = cgroupSupport();
    if (support.mode == CgroupMode::None) return "gvisor: no host cgroups, limits not enforced";
    return "gvisor via runsc linux.resources, " + support.describe();
  }

 private:
  Json bundleConfig(const SandboxSpec& spec, const CaFiles& ca, const std::string& cgroup) const;

  RuntimeOptions options_;
  fs::path runsc_;
  std::shared_ptr<SandboxRegistry> registry_;
};

Json GvisorRuntime::bundleConfig(const SandboxSpec& spec, const CaFiles& ca,
                                 const std::string& cgroup) const {
  Json mounts = Json::array();
  mounts.push_back({{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}});
  if (spec.rootfs_kind == RootfsKind::Host) {
    for (const std::string& dir : hostMaskedDirs(options_)) {
      mounts.push_back(
          {{"destination", dir},
           {"type", "tmpfs"},
           {"source", "tmpfs"},
           {"options",
            {"nosuid", "nodev", std::string("mode=") + (dir == "/tmp" ? "1777" : "0755")}}});
    }
  }
  mounts.push_back({{"destination", kSandboxBundlePath},
                    {"type", "bind"},
                    {"source", ca.bundle.string()},
                    {"options", {"bind", "ro"}}});
  if (!ca.ca_cert.empty()) {
    mounts.push_back({{"destination", kSandboxCaPath},
                      {"type", "bind"},
                      {"source", ca.ca_cert.string()},
                      {"options", {"bind", "ro"}}});
  }
  for (const auto& mount : spec.mounts) {
    mounts.push_back({{"destination", mount.destination},
                      {"type", "bind"},
                      {"source", mount.source.string()},
                      {"options", {"rbind", mount.read_only ? "ro" : "rw"}}});
  }
  Json namespaces =
      Json::array({{{"type", "pid"}}, {{"type", "ipc"}}, {{"type", "uts"}}, {{"type", "mount"}}});
  if (spec.netns_path.empty()) {
    namespaces.push_back({{"type", "network"}});
  } else {
    namespaces.push_back({{"type", "network"}, {"path", spec.netns_path}});
  }
  Json linux = {{"namespaces", namespaces}};
  if (!cgroup.empty()) {
    Json resources = Json::object();
    if (spec.limits.cpu_millis > 0) {
      resources["cpu"] = {{"quota", spec.limits.cpu_millis * 100}, {"period", 100000}};
    }
    if (spec.limits.memory_bytes > 0) {
      resources["memory"] = {{"limit", spec.limits.memory_bytes}};
    }
    if (spec.limits.pids > 0) resources["pids"] = {{"limit", spec.limits.pids}};
    linux["cgroupsPath"] = "/" + cgroup;
    linux["resources"] = resources;
  }
  Json empty = Json::array();
  return {{"ociVersion", "1.0.2"},
          {"process",
           {{"terminal", false},
            {"user", {{"uid", spec.uid}, {"gid", spec.gid}}},
            {"args", spec.argv},
            {"env", sandboxEnv(spec)},
            {"cwd", spec.working_dir},
            {"capabilities",
             {{"bounding", empty},
              {"effective", empty},
              {"inheritable", empty},
              {"permitted", empty},
              {"ambient", empty}}},
            {"noNewPrivileges", true}}},
          {"root",
           {{"path",
             spec.rootfs_kind == RootfsKind::Host ? std::string("/") : spec.rootfs_dir.string()},
            {"readonly", false}}},
          {"hostname", spec.hostname},
          {"mounts", mounts},
          {"linux", linux}};
}

Result<std::unique_ptr<Sandbox>> GvisorRuntime::prepare(const SandboxSpec& requested) {
  auto effective = effectiveSpec(requested, options_);
  if (!effective.ok()) return effective.status();
  const SandboxSpec& spec = effective.value();
  CLRK_RETURN_IF_ERROR(validateSpec(spec));
  fs::path dir = options_.state_dir / spec.id;
  CLRK_RETURN_IF_ERROR(registry_->reserve(spec.id, dir));
  auto sandbox = std::make_unique<GvisorSandbox>(spec, dir, registry_);
  auto fail_with = [&](Status status) -> Status {
    (void)sandbox->destroy();
    return status.withContext("sandbox " + spec.id);
  };
  std::error_code ec;
  for (const char* sub : {"", "bundle", "runsc", "realsys"}) {
    fs::create_directories(dir / sub, ec);
    if (ec) return fail_with(internalError("mkdir " + (dir / sub).string() + ": " + ec.message()));
  }
  fs::permissions(dir, fs::perms::owner_all, ec);

  bool limited = spec.limits.cpu_millis > 0 || spec.limits.memory_bytes > 0 || spec.limits.pids > 0;
  const CgroupSupport& support = cgroupSupport();
  if (limited && support.mode == CgroupMode::None) {
    return fail_with(Status(Code::Unavailable, "limits requested but this host has no cgroups"));
  }
  std::string cgroup = limited ? options_.cgroup_parent + "/" + spec.id : "";
  sandbox->cgroup_ = cgroup;

  SandboxRecord record;
  record.id = spec.id;
  record.backend = "gvisor";
  record.cgroup = cgroup;
  record.runsc_root = (dir / "runsc").string();
  record.runsc_binary = runsc_.string();
  Status status = writeRecord(dir / "record.json", record);
  if (!status.ok()) return fail_with(status);

  fs::path lower = spec.rootfs_kind == RootfsKind::Host ? fs::path("/") : spec.rootfs_dir;
  auto ca = writeCaFiles(spec, lower, dir);
  if (!ca.ok()) return fail_with(ca.status());
  status =
      writeStateFile(dir / "bundle" / "config.json", bundleConfig(spec, *ca, cgroup).dump(2), 0600);
  if (!status.ok()) return fail_with(status);

  std::vector<std::string> flags = {
      runsc_.string(),
      "--root",
      record.runsc_root,
      "--log",
      (dir / "runsc.log").string(),
      "--log-format",
      "json",
      spec.netns_path.empty() ? "--network=none" : "--network=sandbox",
      "--overlay2=root:memory"};
  if (!limited) flags.emplace_back("--ignore-cgroups");
  if (options_.debug) {
    flags.emplace_back("--debug");
    flags.emplace_back("--debug-log=" + (dir / "debug").string() + "/");
  }
  sandbox->runsc_flags_ = flags;

  sandbox->plan_ = std::make_unique<ShimPlan>();
  ShimPlan& plan = *sandbox->plan_;
  plan.exec_stack = &sandbox->exec_stack_;
  UniqueFd ctl_r, report_w, stdin_r, stdout_w, stderr_w;
  if (!(status = makePipe(ctl_r, sandbox->ctl_w_)).ok() ||
      !(status = makePipe(sandbox->report_r_, report_w)).ok() ||
      !(status = makePipe(sandbox->stdout_r_, stdout_w)).ok() ||
      !(status = makePipe(sandbox->stderr_r_, stderr_w)).ok()) {
    return fail_with(status);
  }
  if (spec.await_launch) {
    // The launcher answers with the exit on its stdin socket (launch_protocol.h).
    status = makeSocketPair(stdin_r, sandbox->stdin_w_);
    if (!status.ok()) return fail_with(status);
  } else if (spec.stdin_data) {
    status = makePipe(stdin_r, sandbox->stdin_w_);
    if (!status.ok()) return fail_with(status);
  }
  plan.ctl_r = ctl_r.get();
  plan.report_w = report_w.get();
  plan.stdin_r = stdin_r.get();
  plan.stdout_w = stdout_w.get();
  plan.stderr_w = stderr_w.get();
  plan.realsys = (dir / "realsys").string();
  plan.realsys_kernel = plan.realsys + "/kernel";
  plan.realsys_vm = plan.realsys + "/vm";
  plan.realsys_fs = plan.realsys + "/fs";
  plan.runsc = runsc_.string();
  plan.pid_file = (dir / "sandbox.pid").string();
  plan.create_argv = flags;
  // A booted sandbox's process only waits for its launch message, so it may start at once: one
  // `runsc run --detach` instead of `runsc create` and `runsc start` spares a runsc process
  // (boot p50 ~185 ms instead of ~210: bench/sandbox).
  plan.create_starts = spec.await_launch;
  if (plan.create_starts) {
    plan.create_argv.insert(plan.create_argv.end(), {"run", "--detach"});
  } else {
    plan.create_argv.emplace_back("create");
  }
  plan.create_argv.insert(plan.create_argv.end(), {"--bundle", (dir / "bundle").string(),
                                                   "--pid-file", plan.pid_file, spec.id});
  if (!plan.create_starts) {  // else the shim never runs `runsc start`
    plan.start_argv = flags;
    plan.start_argv.insert(plan.start_argv.end(), {"start", spec.id});
  }
  plan.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  for (auto& arg : plan.create_argv) plan.create_ptrs.push_back(arg.data());
  plan.create_ptrs.push_back(nullptr);
  for (auto& arg : plan.start_argv) plan.start_ptrs.push_back(arg.data());
  plan.start_ptrs.push_back(nullptr);  // an empty argv when create_starts: never used
  for (auto& entry : plan.env) plan.env_ptrs.push_back(entry.data());
  plan.env_ptrs.push_back(nullptr);

  int pidfd = -1;
  pid_t pid = cloneSharedVm(shimEntry, &plan, sandbox->shim_stack_, CLONE_NEWNS, &pidfd);
  if (pid < 0) return fail_with(internalError(std::string("clone: ") + std::strerror(errno)));
  sandbox->shim_pid_ = pid;
  sandbox->shim_pidfd_.reset(pidfd);
  ctl_r.reset();
  report_w.reset();
  stdin_r.reset();
  stdout_w.reset();
  stderr_w.reset();
  record.shim_pid = pid;
  record.shim_start = processStartTime(pid);
  status = writeRecord(dir / "record.json", record);
  if (!status.ok()) return fail_with(status);

  Report message;
  if (!waitReadable(sandbox->report_r_.get(), kRunscTimeout) ||
      !readAll(sandbox->report_r_.get(), &message, sizeof message) || message.kind != kCreated) {
    return fail_with(internalError("runsc create did not finish"));
  }
  if (message.value == -2) {
    return fail_with(internalError("the /proc/sys wrapper could not set up its mounts"));
  }
  if (message.value != 0) {
    return fail_with(internalError("runsc create failed: " + lastRunscError(dir / "runsc.log")));
  }
  auto pid_text = readFile(dir / "sandbox.pid");
  if (pid_text.ok()) sandbox->sandbox_pid_ = std::atoi(pid_text->c_str());
  sandbox->sandbox_start_ = processStartTime(sandbox->sandbox_pid_);
  record.pid = sandbox->sandbox_pid_;
  record.pid_start = sandbox->sandbox_start_;
  status = writeRecord(dir / "record.json", record);
  if (!status.ok()) return fail_with(status);
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

}  // namespace

Result<std::unique_ptr<Runtime>> makeGvisorRuntime(RuntimeOptions options) {
  fs::path runsc = findInPath("runsc");
  if (runsc.empty()) {
    return Status(Code::Unavailable,
                  "runtime gvisor: runsc not found in PATH; install the Debian package runsc");
  }
  if (::geteuid() != 0) {
    return Status(Code::Unavailable, "runtime gvisor: needs root (runsc, network namespaces)");
  }
  std::error_code ec;
  fs::create_directories(options.state_dir, ec);
  if (ec) {
    return internalError("runtime gvisor: cannot create state dir " + options.state_dir.string() +
                         ": " + ec.message());
  }
  return std::unique_ptr<Runtime>(std::make_unique<GvisorRuntime>(std::move(options), runsc));
}

}  // namespace clrk::sandbox::gvisor
