#include "clrk/sandbox/namespaces/namespaces_runtime.h"

#include "clrk/base/files.h"
#include "clrk/base/log.h"
#include "clrk/sandbox/cgroups.h"
#include "clrk/sandbox/sandbox_util.h"
#include "clrk/sandbox/state_dir.h"
#include "clrk/sandbox/supervised_sandbox.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sstream>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

namespace clrk::sandbox::namespaces {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kDefaultScratchBytes = 2ull << 30;  // private layer when no memory limit

// Messages the init writes on the report pipe.
struct Report {
  int32_t kind = 0;   // kReady, kError, kExit
  int32_t value = 0;  // errno (kError) or wait status (kExit)
  char text[232] = {};
};
constexpr int32_t kReady = 1;
constexpr int32_t kError = 2;
constexpr int32_t kExit = 3;

struct MountPlan {
  std::string source;
  std::string destination;
  bool read_only = true;
  bool is_dir = true;
};

// Everything the child needs, computed before clone so the child only makes system calls.
struct InitPlan {
  int ctl_r = -1;
  int report_w = -1;
  int stdin_r = -1;
  int stdout_w = -1;
  int stderr_w = -1;
  int netns_fd = -1;
  bool fresh_net = false;
  bool new_cgroup_ns = false;
  bool host_root = true;
  std::string scratch, upper, work, newroot, scratch_opts, overlay_opts, tmpfs_opts;
  std::string bundle_src, ca_src;
  std::vector<MountPlan> mounts;
  std::vector<std::string> masked_dirs;  // host root: covered by an empty tmpfs
  std::string hostname, cwd;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<std::string> argv, env, path_dirs;
  std::vector<char*> argv_ptrs, env_ptrs;
  std::vector<sock_filter> seccomp;
  int cap_last = 40;
  const ChildStack* workload_stack = nullptr;
};

CLRK_CHILD_SIDE int initEntry(void* arg);

// ---- child side (async-signal-safe only) -----------------------------------------------------

[[noreturn]] CLRK_CHILD_SIDE void fail(const InitPlan& plan, const char* what, int err) {
  Report report;
  report.kind = kError;
  report.value = err;
  size_t len = std::strlen(what);
  if (len >= sizeof report.text) len = sizeof report.text - 1;
  std::memcpy(report.text, what, len);
  writeAll(plan.report_w, &report, sizeof report);
  ::_exit(1);
}

CLRK_CHILD_SIDE void check(const InitPlan& plan, bool ok, const char* what) {
  if (!ok) fail(plan, what, errno);
}

// mkdir -p of an absolute path (in the current root).
CLRK_CHILD_SIDE bool makeDirs(const char* path, mode_t mode) {
  char buffer[4096];
  size_t len = std::strlen(path);
  if (len == 0 || len >= sizeof buffer) return false;
  std::memcpy(buffer, path, len + 1);
  for (size_t index = 1; index <= len; ++index) {
    if (buffer[index] == '/' || buffer[index] == '\0') {
      char saved = buffer[index];
      buffer[index] = '\0';
      if (::mkdir(buffer, mode) != 0 && errno != EEXIST) return false;
      buffer[index] = saved;
    }
  }
  return true;
}

CLRK_CHILD_SIDE bool makeFile(const char* path) {
  char buffer[4096];
  size_t len = std::strlen(path);
  if (len >= sizeof buffer) return false;
  std::memcpy(buffer, path, len + 1);
  char* slash = std::strrchr(buffer, '/');
  if (slash != nullptr && slash != buffer) {
    *slash = '\0';
    if (!makeDirs(buffer, 0755)) return false;
  }
  int fd = ::open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return errno == EEXIST || errno == EISDIR;
  ::close(fd);
  return true;
}

CLRK_CHILD_SIDE void bindReadOnly(const char* path) {
  if (::mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) != 0) return;
  ::mount(nullptr, path, nullptr,
          MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
}

// Clones `source` as a detached mount, read-only if asked; -1 on failure.
CLRK_CHILD_SIDE int cloneTree(const char* source, bool read_only) {
  int fd = static_cast<int>(
      ::open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE));
  if (fd < 0) return -1;
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (read_only ? MOUNT_ATTR_RDONLY : 0);
  if (::mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

CLRK_CHILD_SIDE void setupDev(const InitPlan& plan) {
  check(plan, makeDirs("/dev", 0755), "mkdir /dev");
  check(plan, ::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=65536") == 0,
        "mount tmpfs /dev");
  struct Node {
    const char* path;
    unsigned major_number;
    unsigned minor_number;
  };
  static const Node kNodes[] = {{"/dev/null", 1, 3},   {"/dev/zero", 1, 5},    {"/dev/full", 1, 7},
                                {"/dev/random", 1, 8}, {"/dev/urandom", 1, 9}, {"/dev/tty", 5, 0}};
  for (const Node& node : kNodes) {
    check(plan,
          ::mknod(node.path, S_IFCHR | 0666, makedev(node.major_number, node.minor_number)) == 0,
          "mknod");
    ::chmod(node.path, 0666);
  }
  check(plan, makeDirs("/dev/pts", 0755) && makeDirs("/dev/shm", 01777), "mkdir /dev/pts");
  check(plan,
        ::mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620") == 0,
        "mount devpts");
  check(plan, ::symlink("pts/ptmx", "/dev/ptmx") == 0, "symlink /dev/ptmx");
  check(plan,
        ::mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=67108864") == 0,
        "mount /dev/shm");
  ::chmod("/dev/shm", 01777);
  ::symlink("/proc/self/fd", "/dev/fd");
  ::symlink("/proc/self/fd/0", "/dev/stdin");
  ::symlink("/proc/self/fd/1", "/dev/stdout");
  ::symlink("/proc/self/fd/2", "/dev/stderr");
  // No new device nodes or files in /dev itself (pts and shm are mounts of their own).
  ::mount(nullptr, "/dev", nullptr, MS_REMOUNT | MS_NOSUID | MS_NOEXEC | MS_RDONLY,
          "mode=0755,size=65536");
}

CLRK_CHILD_SIDE void setupProc(const InitPlan& plan) {
  check(plan, makeDirs("/proc", 0555), "mkdir /proc");
  check(plan, ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0,
        "mount /proc");
  for (const char* path :
       {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"}) {
    bindReadOnly(path);
  }
}

CLRK_CHILD_SIDE void maskProc() {
  for (const char* path : {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                           "/proc/latency_stats"}) {
    ::mount("/dev/null", path, nullptr, MS_BIND, nullptr);
  }
  for (const char* path : {"/proc/acpi", "/proc/scsi"}) {
    ::mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
  }
}

CLRK_CHILD_SIDE void loopbackUp() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  ifreq request{};
  std::memcpy(request.ifr_name, "lo", 3);
  if (::ioctl(fd, SIOCGIFFLAGS, &request) == 0) {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    ::ioctl(fd, SIOCSIFFLAGS, &request);
  }
  ::close(fd);
}

CLRK_CHILD_SIDE void writeText(int fd, const char* text) { writeAll(fd, text, std::strlen(text)); }

[[noreturn]] CLRK_CHILD_SIDE void workload(const InitPlan& plan) {
  sigset_t none;
  sigemptyset(&none);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP) ::sigaction(sig, &dfl, nullptr);
  }
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();

  int in = plan.stdin_r >= 0 ? plan.stdin_r : ::open("/dev/null", O_RDONLY);
  if (in < 0 || ::dup2(in, 0) < 0 || ::dup2(plan.stdout_w, 1) < 0 || ::dup2(plan.stderr_w, 2) < 0) {
    ::_exit(126);
  }
  ::syscall(SYS_close_range, 3U, ~0U, 0);

  auto die = [](const char* what, const char* subject) {
    int err = errno;
    writeText(2, "clrk sandbox: ");
    writeText(2, what);
    writeText(2, subject);
    writeText(2, ": ");
    const char* name = strerrorname_np(err);
    writeText(2, name != nullptr ? name : "error");
    writeText(2, "\n");
    ::_exit(err == ENOENT ? 127 : 126);
  };
  // Raw system calls: glibc's wrappers would try to apply the change to every thread it believes
  // exists, and its thread list is the worker's.
  gid_t groups[1] = {plan.gid};
  if (::syscall(SYS_setgroups, plan.uid == 0 && plan.gid == 0 ? 0 : 1, groups) != 0) {
    die("setgroups", "");
  }
  if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) die("setresgid", "");
  if (::prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                                     SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                                     SECBIT_NO_CAP_AMBIENT_RAISE |
                                     SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED) != 0) {
    die("securebits", "");
  }
  for (int cap = 0; cap <= plan.cap_last; ++cap) {
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      die("drop bounding cap", "");
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    die("clear ambient caps", "");
  if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) die("setresuid", "");
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &header, data) != 0) die("capset", "");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("no_new_privs", "");
  if (::chdir(plan.cwd.c_str()) != 0) die("chdir to the working directory", "");
  sock_fprog prog{static_cast<unsigned short>(plan.seccomp.size()),
                  const_cast<sock_filter*>(plan.seccomp.data())};
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) die("seccomp", "");

  const char* file = plan.argv[0].c_str();
  int err = ENOENT;
  if (std::strchr(file, '/') != nullptr) {
    ::execve(file, plan.argv_ptrs.data(), plan.env_ptrs.data());
    err = errno;
  } else {
    char path[4096];
    for (const auto& dir : plan.path_dirs) {
      size_t dlen = dir.size(), flen = std::strlen(file);
      if (dlen + flen + 2 > sizeof path) continue;
      std::memcpy(path, dir.data(), dlen);
      path[dlen] = '/';
      std::memcpy(path + dlen + 1, file, flen + 1);
      ::execve(path, plan.argv_ptrs.data(), plan.env_ptrs.data());
      if (errno != ENOENT && errno != ENOTDIR) err = errno;
    }
  }
  errno = err;
  die("cannot execute ", file);
  ::_exit(127);
}

CLRK_CHILD_SIDE int workloadEntry(void* arg) { workload(*static_cast<const InitPlan*>(arg)); }

[[noreturn]] CLRK_CHILD_SIDE void initMain(const InitPlan& plan) {
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, nullptr);
  int keep[] = {plan.ctl_r,    plan.report_w, plan.stdin_r,
                plan.stdout_w, plan.stderr_w, plan.netns_fd};
  closeAllExcept(keep, 6);

  char byte = 0;
  if (!readAll(plan.ctl_r, &byte, 1) || byte != 'c') ::_exit(1);
  if (plan.new_cgroup_ns) check(plan, ::unshare(CLONE_NEWCGROUP) == 0, "unshare cgroup namespace");
  if (plan.netns_fd >= 0) {
    check(plan, ::setns(plan.netns_fd, CLONE_NEWNET) == 0, "join the network namespace");
    ::close(plan.netns_fd);
  }
  if (plan.fresh_net) loopbackUp();
  // Slave, not private: nothing mounted here reaches the host, and unmounts on the host (other
  // sandboxes' /run/netns entries) still propagate in, so no namespace is pinned by this one.
  check(plan, ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) == 0, "make / a slave");
  check(plan,
        ::mount("tmpfs", plan.scratch.c_str(), "tmpfs", MS_NOSUID | MS_NODEV,
                plan.scratch_opts.c_str()) == 0,
        "mount the private layer tmpfs");
  check(plan,
        ::mkdir(plan.upper.c_str(), 0755) == 0 && ::mkdir(plan.work.c_str(), 0700) == 0 &&
            ::mkdir(plan.newroot.c_str(), 0755) == 0,
        "mkdir in the private layer");
  check(plan,
        ::mount("overlay", plan.newroot.c_str(), "overlay", 0, plan.overlay_opts.c_str()) == 0,
        "mount the overlay root");

  // Detached copies of host paths, attached after pivot_root so that destinations resolve inside
  // the sandbox root (an image's symlinks cannot redirect them to host paths).
  int bundle_fd = cloneTree(plan.bundle_src.c_str(), true);
  check(plan, bundle_fd >= 0, "clone the CA bundle mount");
  int ca_fd = -1;
  if (!plan.ca_src.empty()) {
    ca_fd = cloneTree(plan.ca_src.c_str(), true);
    check(plan, ca_fd >= 0, "clone the CA mount");
  }
  int mount_fds[64];
  size_t mount_count = plan.mounts.size() < 64 ? plan.mounts.size() : 64;
  for (size_t index = 0; index < mount_count; ++index) {
    mount_fds[index] = cloneTree(plan.mounts[index].source.c_str(), plan.mounts[index].read_only);
    check(plan, mount_fds[index] >= 0, "clone a bind mount source");
  }

  check(plan, ::chdir(plan.newroot.c_str()) == 0, "chdir to the new root");
  check(plan, ::syscall(SYS_pivot_root, ".", ".") == 0, "pivot_root");
  check(plan, ::umount2(".", MNT_DETACH) == 0, "detach the old root");
  check(plan, ::chdir("/") == 0, "chdir /");

  setupProc(plan);
  setupDev(plan);
  maskProc();
  if (plan.host_root) {
    struct Dir {
      const char* path;
      const char* opts;
    };
    for (const std::string& masked : plan.masked_dirs) {
      const char* path = masked.c_str();
      check(plan, makeDirs(path, 0755), "mkdir a tmpfs mount point");
      bool sticky = std::strcmp(path, "/tmp") == 0;
      char opts[128];
      std::snprintf(opts, sizeof opts, "%s,mode=%s", plan.tmpfs_opts.c_str(),
                    sticky ? "1777" : (std::strcmp(path, "/root") == 0 ? "0700" : "0755"));
      check(plan, ::mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, opts) == 0, "mount tmpfs");
    }
  } else {
    makeDirs("/tmp", 01777);
  }
  check(plan, makeFile(kSandboxBundlePath), "create the CA bundle mount point");
  check(plan,
        ::move_mount(bundle_fd, "", AT_FDCWD, kSandboxBundlePath, MOVE_MOUNT_F_EMPTY_PATH) == 0,
        "mount the CA bundle");
  if (ca_fd >= 0) {
    check(plan, makeFile(kSandboxCaPath), "create the CA mount point");
    check(plan, ::move_mount(ca_fd, "", AT_FDCWD, kSandboxCaPath, MOVE_MOUNT_F_EMPTY_PATH) == 0,
          "mount the CA");
  }
  for (size_t index = 0; index < mount_count; ++index) {
    const MountPlan& mount = plan.mounts[index];
    check(plan,
          mount.is_dir ? makeDirs(mount.destination.c_str(), 0755)
                       : makeFile(mount.destination.c_str()),
          "create a bind mount point");
    check(plan,
          ::move_mount(mount_fds[index], "", AT_FDCWD, mount.destination.c_str(),
                       MOVE_MOUNT_F_EMPTY_PATH) == 0,
          "attach a bind mount");
  }
  check(plan, ::sethostname(plan.hostname.c_str(), plan.hostname.size()) == 0, "sethostname");

  Report ready;
  ready.kind = kReady;
  writeAll(plan.report_w, &ready, sizeof ready);

  if (!readAll(plan.ctl_r, &byte, 1) || byte != 's') ::_exit(0);
  // CLONE_VFORK: init waits until the workload has exec'd (or died), so the shared stack is
  // free again afterwards.
  pid_t child = cloneSharedVm(workloadEntry, const_cast<InitPlan*>(&plan), *plan.workload_stack,
                              CLONE_VFORK, nullptr);
  if (child < 0) fail(plan, "start the workload", errno);
  if (plan.stdin_r >= 0) ::close(plan.stdin_r);
  ::close(plan.stdout_w);
  ::close(plan.stderr_w);

  int sfd = ::signalfd(-1, &all, SFD_CLOEXEC);
  if (sfd < 0) {
    ::kill(child, SIGKILL);
    ::_exit(1);
  }
  while (true) {
    pollfd fds[2] = {{sfd, POLLIN, 0}, {plan.ctl_r, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents != 0) {
      // The worker is gone (or destroy() closed the pipe): end the sandbox.
      ssize_t n = ::read(plan.ctl_r, &byte, 1);
      if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) ::_exit(137);
    }
    if (fds[0].revents == 0) continue;
    signalfd_siginfo info{};
    if (::read(sfd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) continue;
    if (info.ssi_signo != SIGCHLD) {
      ::kill(child, static_cast<int>(info.ssi_signo));
      continue;
    }
    while (true) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) break;
      if (pid == child) {
        Report report;
        report.kind = kExit;
        report.value = status;
        writeAll(plan.report_w, &report, sizeof report);
        ::_exit(0);
      }
    }
  }
}

CLRK_CHILD_SIDE int initEntry(void* arg) { initMain(*static_cast<const InitPlan*>(arg)); }

// ---- parent side ------------------------------------------------------------------------------

class NamespacesSandbox final : public SupervisedSandbox {
 public:
  NamespacesSandbox(SandboxSpec spec, fs::path dir, std::shared_ptr<SandboxRegistry> registry)
      : SupervisedSandbox(std::move(spec), std::move(dir)), registry_(std::move(registry)) {}
  ~NamespacesSandbox() override {
    if (!abandoned_) (void)destroy();
  }

  Status start() override;
  Status signal(int signal) override;
  Status destroy() override;
  int hostPid() const override { return pid_; }

  void abandonForTest() override;

  // Filled in by NamespacesRuntime::prepare(). The init shares the worker's memory: it reads
  // plan_ and runs on init_stack_ (the workload starts on workload_stack_), so these live until
  // the init is reaped.
  std::unique_ptr<InitPlan> plan_;
  ChildStack init_stack_{256 * 1024};
  ChildStack workload_stack_{256 * 1024};
  SandboxCgroup cgroup_;
  UniqueFd ctl_w_, report_r_, pidfd_;
  UniqueFd stdin_w_, stdout_r_, stderr_r_;
  int pid_ = 0;

 protected:
  void killTree() override { ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0); }
  std::optional<int> readExit() override;
  bool oomKilled() override { return cgroup_.oomKilled(); }

 private:
  void reap();

  std::shared_ptr<SandboxRegistry> registry_;
  std::mutex lifecycle_mu_;
  bool started_ = false;
  bool destroyed_ = false;
  bool reaped_ = false;
  bool abandoned_ = false;
};

Status NamespacesSandbox::start() {
  std::lock_guard lock(lifecycle_mu_);
  if (destroyed_) return Status(Code::InvalidArgument, "sandbox " + id() + " was destroyed");
  if (started_) return Status(Code::InvalidArgument, "sandbox " + id() + " already started");
  started_ = true;
  char byte = 's';
  if (!writeAll(ctl_w_.get(), &byte, 1)) {
    return internalError("sandbox " + id() + ": its init is gone");
  }
  startSupervisor(std::move(stdin_w_), std::move(stdout_r_), std::move(stderr_r_), pidfd_.get());
  return {};
}

Status NamespacesSandbox::signal(int sig) {
  std::lock_guard lock(lifecycle_mu_);
  if (!started_ || destroyed_) {
    return Status(Code::InvalidArgument, "sandbox " + id() + " is not running");
  }
  if (finished()) return {};
  if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0) != 0 && errno != ESRCH) {
    return internalError("signal " + std::to_string(sig) + ": " + std::strerror(errno));
  }
  return {};
}

void NamespacesSandbox::reap() {
  if (reaped_ || pid_ <= 0) return;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  reaped_ = true;
}

std::optional<int> NamespacesSandbox::readExit() {
  {
    std::lock_guard lock(mu_);
    reap();
  }
  ::fcntl(report_r_.get(), F_SETFL, O_NONBLOCK);
  Report report;
  while (::read(report_r_.get(), &report, sizeof report) == sizeof report) {
    if (report.kind == kExit) return report.value;
  }
  return std::nullopt;
}

Status NamespacesSandbox::destroy() {
  std::lock_guard lock(lifecycle_mu_);
  if (destroyed_) return {};
  destroyed_ = true;
  if (pidfd_.valid()) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  ctl_w_.reset();
  if (supervising()) {
    joinSupervisor();
  } else {
    std::lock_guard state_lock(mu_);
    reap();
  }
  Status status = cgroup_.killAll();
  Status removed = cgroup_.remove();
  if (status.ok()) status = removed;
  Status rm = removeTree(state_dir_);
  if (status.ok()) status = rm;
  registry_->release(id());
  return status;
}

void NamespacesSandbox::abandonForTest() {
  std::lock_guard lock(lifecycle_mu_);
  abandoned_ = true;
  destroyed_ = true;
  // Leak the descriptors (a dead worker's would be closed, but then the init ends the sandbox
  // by itself; leaking keeps it running so clean-up has something to do).
  (void)ctl_w_.release();
  (void)report_r_.release();
  (void)pidfd_.release();
  init_stack_.leak();
  workload_stack_.leak();
  keepForChild(plan_.release());
  detachSupervisorForTest();
  registry_->release(id());
}

class NamespacesRuntime final : public Runtime {
 public:
  NamespacesRuntime(RuntimeOptions options, std::vector<sock_filter> seccomp)
      : options_(std::move(options)),
        seccomp_(std::move(seccomp)),
        registry_(std::make_shared<SandboxRegistry>()) {}

  std::string name() const override { return "namespaces"; }
  Result<std::unique_ptr<Sandbox>> prepare(const SandboxSpec& spec) override;
  Result<int> cleanupLeftovers() override {
    return cleanupStateDir(options_.state_dir, *registry_);
  }
  std::string limitsSupport() const override { return cgroupSupport().describe(); }

 private:
  RuntimeOptions options_;
  std::vector<sock_filter> seccomp_;
  std::shared_ptr<SandboxRegistry> registry_;
};

int capLast() {
  auto text = readFile("/proc/sys/kernel/cap_last_cap");
  if (!text.ok()) return 63;
  int value = std::atoi(text->c_str());
  return value > 0 ? value : 63;
}

Result<std::unique_ptr<Sandbox>> NamespacesRuntime::prepare(const SandboxSpec& requested) {
  auto effective = effectiveSpec(requested, options_);
  if (!effective.ok()) return effective.status();
  const SandboxSpec& spec = effective.value();
  CLRK_RETURN_IF_ERROR(validateSpec(spec));
  fs::path dir = options_.state_dir / spec.id;
  CLRK_RETURN_IF_ERROR(registry_->reserve(spec.id, dir));
  auto sandbox = std::make_unique<NamespacesSandbox>(spec, dir, registry_);
  auto fail_with = [&](Status status) -> Status {
    (void)sandbox->destroy();
    return status.withContext("sandbox " + spec.id);
  };
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail_with(internalError("mkdir " + dir.string() + ": " + ec.message()));
  fs::permissions(dir, fs::perms::owner_all, ec);
  fs::create_directory(dir / "layer", ec);

  SandboxRecord record;
  record.id = spec.id;
  record.backend = "namespaces";
  bool limited = spec.limits.cpu_millis > 0 || spec.limits.memory_bytes > 0 || spec.limits.pids > 0;
  // A cgroup only when limits ask for one: attaching a process to a v1 cgroup costs several ms
  // (an RCU grace period) and the pid namespace already bounds the process tree.
  record.cgroup = limited ? options_.cgroup_parent + "/" + spec.id : "";
  cgroupSupport().mode == CgroupMode::None ? "" : options_.cgroup_parent + "/" + spec.id;
  Status status = writeRecord(dir / "record.json", record);
  if (!status.ok()) return fail_with(status);

  fs::path lower = spec.rootfs_kind == RootfsKind::Host ? fs::path("/") : spec.rootfs_dir;
  auto ca = writeCaFiles(spec, lower, dir);
  if (!ca.ok()) return fail_with(ca.status());

  if (!record.cgroup.empty()) {
    auto cgroup = SandboxCgroup::create(record.cgroup, spec.limits);
    if (!cgroup.ok()) return fail_with(cgroup.status());
    sandbox->cgroup_ = *cgroup;
  }

  sandbox->plan_ = std::make_unique<InitPlan>();
  InitPlan& plan = *sandbox->plan_;
  UniqueFd ctl_r, report_w, stdin_r, stdout_w, stderr_w, netns;
  if (!(status = makePipe(ctl_r, sandbox->ctl_w_)).ok() ||
      !(status = makePipe(sandbox->report_r_, report_w)).ok() ||
      !(status = makePipe(sandbox->stdout_r_, stdout_w)).ok() ||
      !(status = makePipe(sandbox->stderr_r_, stderr_w)).ok()) {
    return fail_with(status);
  }
  if (spec.stdin_data) {
    status = makePipe(stdin_r, sandbox->stdin_w_);
    if (!status.ok()) return fail_with(status);
  }
  if (!spec.netns_path.empty()) {
    netns.reset(::open(spec.netns_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!netns.valid()) {
      return fail_with(
          invalidArgument("cannot open netns " + spec.netns_path + ": " + std::strerror(errno)));
    }
  }
  plan.ctl_r = ctl_r.get();
  plan.report_w = report_w.get();
  plan.stdin_r = stdin_r.get();
  plan.stdout_w = stdout_w.get();
  plan.stderr_w = stderr_w.get();
  plan.netns_fd = netns.get();
  plan.fresh_net = spec.netns_path.empty();
  plan.new_cgroup_ns = true;
  plan.host_root = spec.rootfs_kind == RootfsKind::Host;
  if (plan.host_root) plan.masked_dirs = hostMaskedDirs(options_);
  fs::path layer = dir / "layer";
  plan.scratch = layer.string();
  plan.upper = (layer / "upper").string();
  plan.work = (layer / "work").string();
  plan.newroot = (layer / "root").string();
  uint64_t scratch_bytes = spec.limits.memory_bytes > 0
                               ? static_cast<uint64_t>(spec.limits.memory_bytes)
                               : kDefaultScratchBytes;
  plan.scratch_opts = "mode=0700,size=" + std::to_string(scratch_bytes);
  plan.tmpfs_opts = "size=" + std::to_string(scratch_bytes);
  plan.overlay_opts =
      "lowerdir=" + lower.string() + ",upperdir=" + plan.upper + ",workdir=" + plan.work;
  plan.bundle_src = ca->bundle.string();
  plan.ca_src = ca->ca_cert.string();
  for (const auto& mount : spec.mounts) {
    plan.mounts.push_back({mount.source.string(), mount.destination, mount.read_only,
                           fs::is_directory(mount.source, ec)});
  }
  if (plan.mounts.size() > 64) return fail_with(invalidArgument("more than 64 bind mounts"));
  plan.hostname = spec.hostname;
  plan.cwd = spec.working_dir;
  plan.uid = spec.uid;
  plan.gid = spec.gid;
  plan.argv = spec.argv;
  plan.env = sandboxEnv(spec);
  for (auto& arg : plan.argv) plan.argv_ptrs.push_back(arg.data());
  plan.argv_ptrs.push_back(nullptr);
  for (auto& entry : plan.env) {
    plan.env_ptrs.push_back(entry.data());
    if (entry.rfind("PATH=", 0) == 0) {
      std::istringstream in(entry.substr(5));
      std::string part;
      while (std::getline(in, part, ':')) {
        if (!part.empty()) plan.path_dirs.push_back(part);
      }
    }
  }
  plan.env_ptrs.push_back(nullptr);
  plan.seccomp = seccomp_;
  plan.cap_last = capLast();
  plan.workload_stack = &sandbox->workload_stack_;

  uint64_t flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (plan.fresh_net) flags |= CLONE_NEWNET;
  int pidfd = -1;
  pid_t pid =
      cloneSharedVm(initEntry, &plan, sandbox->init_stack_, static_cast<int>(flags), &pidfd);
  if (pid < 0) return fail_with(internalError(std::string("clone: ") + std::strerror(errno)));
  sandbox->pid_ = pid;
  sandbox->pidfd_.reset(pidfd);
  ctl_r.reset();
  report_w.reset();
  stdin_r.reset();
  stdout_w.reset();
  stderr_w.reset();
  netns.reset();

  record.pid = pid;
  record.pid_start = processStartTime(pid);
  status = writeRecord(dir / "record.json", record);
  if (status.ok()) status = sandbox->cgroup_.addProcess(pid);
  if (!status.ok()) return fail_with(status);
  char byte = 'c';
  if (!writeAll(sandbox->ctl_w_.get(), &byte, 1)) {
    return fail_with(internalError("the sandbox init died before set-up"));
  }
  Report report;
  if (!waitReadable(sandbox->report_r_.get(), std::chrono::seconds(30)) ||
      !readAll(sandbox->report_r_.get(), &report, sizeof report)) {
    return fail_with(internalError("the sandbox init did not finish its set-up"));
  }
  if (report.kind != kReady) {
    report.text[sizeof report.text - 1] = '\0';
    return fail_with(internalError(std::string("set-up failed: ") + report.text + ": " +
                                   std::strerror(report.value)));
  }
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

// Deny-listed system calls: they fail with EPERM (the workload sees an ordinary error).
constexpr const char* kDeniedSyscalls[] = {"mount",
                                           "umount2",
                                           "pivot_root",
                                           "chroot",
                                           "unshare",
                                           "setns",
                                           "ptrace",
                                           "kexec_load",
                                           "kexec_file_load",
                                           "bpf",
                                           "perf_event_open",
                                           "keyctl",
                                           "add_key",
                                           "request_key",
                                           "open_by_handle_at",
                                           "name_to_handle_at",
                                           "init_module",
                                           "finit_module",
                                           "delete_module",
                                           "reboot",
                                           "swapon",
                                           "swapoff",
                                           "clock_settime",
                                           "clock_adjtime",
                                           "settimeofday",
                                           "adjtimex",
                                           "process_vm_readv",
                                           "process_vm_writev",
                                           "userfaultfd",
                                           "fsopen",
                                           "fsconfig",
                                           "fsmount",
                                           "fspick",
                                           "open_tree",
                                           "move_mount",
                                           "mount_setattr",
                                           "acct",
                                           "quotactl",
                                           "lookup_dcookie",
                                           "syslog",
                                           "vhangup",
                                           "iopl",
                                           "ioperm",
                                           "kcmp",
                                           "nfsservctl",
                                           "uselib",
                                           "create_module",
                                           "get_kernel_syms",
                                           "query_module",
                                           "pidfd_getfd",
                                           "fanotify_init",
                                           "sethostname",
                                           "setdomainname",
                                           "io_uring_setup",
                                           "io_uring_enter",
                                           "io_uring_register"};

}  // namespace

Result<std::vector<sock_filter>> buildSeccompProgram() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return internalError("seccomp_init failed");
  struct CtxGuard {
    scmp_filter_ctx ctx;
    ~CtxGuard() { seccomp_release(ctx); }
  } guard{ctx};
  const uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  auto add = [&](int rc, const char* what) -> Status {
    if (rc != 0)
      return internalError(std::string("seccomp rule ") + what + ": " + std::strerror(-rc));
    return {};
  };
  for (const char* name : kDeniedSyscalls) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;
    CLRK_RETURN_IF_ERROR(add(seccomp_rule_add(ctx, eperm, nr, 0), name));
  }
  // No new namespaces through clone; clone3 cannot be inspected, so it reports ENOSYS and libc
  // falls back to clone.
  for (uint64_t flag : {uint64_t{CLONE_NEWNS}, uint64_t{CLONE_NEWUTS}, uint64_t{CLONE_NEWIPC},
                        uint64_t{CLONE_NEWUSER}, uint64_t{CLONE_NEWPID}, uint64_t{CLONE_NEWNET},
                        uint64_t{CLONE_NEWCGROUP}, uint64_t{0x80} /* CLONE_NEWTIME */}) {
    CLRK_RETURN_IF_ERROR(add(
        seccomp_rule_add(ctx, eperm, SCMP_SYS(clone), 1, SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)),
        "clone"));
  }
  CLRK_RETURN_IF_ERROR(
      add(seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0), "clone3"));
  // Netlink (address/route changes, audit, ...), packet and raw sockets.
  CLRK_RETURN_IF_ERROR(
      add(seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_NETLINK)),
          "socket netlink"));
  CLRK_RETURN_IF_ERROR(
      add(seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_PACKET)),
          "socket packet"));
  CLRK_RETURN_IF_ERROR(add(
      seccomp_rule_add(ctx, eperm, SCMP_SYS(socket), 1, SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, SOCK_RAW)),
      "socket raw"));
  CLRK_RETURN_IF_ERROR(add(seccomp_rule_add(ctx, eperm, SCMP_SYS(ioctl), 1,
                                            SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffff, TIOCSTI)),
                           "ioctl TIOCSTI"));
  int memfd = ::memfd_create("clrk-seccomp", MFD_CLOEXEC);
  if (memfd < 0) return internalError("memfd_create failed");
  UniqueFd fd(memfd);
  CLRK_RETURN_IF_ERROR(add(seccomp_export_bpf(ctx, fd.get()), "export"));
  off_t size = ::lseek(fd.get(), 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0) {
    return internalError("seccomp export produced a bad program");
  }
  std::vector<sock_filter> program(static_cast<size_t>(size) / sizeof(sock_filter));
  if (::pread(fd.get(), program.data(), static_cast<size_t>(size), 0) != size) {
    return internalError("cannot read the seccomp program back");
  }
  return program;
}

Result<std::unique_ptr<Runtime>> makeNamespacesRuntime(RuntimeOptions options) {
  if (::geteuid() != 0) {
    return Status(Code::Unavailable,
                  "runtime namespaces: needs root (mount, pid and network namespaces, cgroups)");
  }
  std::error_code ec;
  fs::create_directories(options.state_dir, ec);
  if (ec) {
    return internalError("runtime namespaces: cannot create state dir " +
                         options.state_dir.string() + ": " + ec.message());
  }
  auto program = buildSeccompProgram();
  if (!program.ok()) return program.status().withContext("runtime namespaces");
  return std::unique_ptr<Runtime>(
      std::make_unique<NamespacesRuntime>(std::move(options), std::move(*program)));
}

}  // namespace clrk::sandbox::namespaces
