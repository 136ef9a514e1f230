#include "clrk/sandbox/sandbox_util.h"

#include "clrk/base/files.h"
#include "clrk/sandbox/launch_protocol.h"

#include <nlohmann/json.hpp>

#include <sanitizer/asan_interface.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <linux/openat2.h>
#include <poll.h>
#include <regex>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char** environ;

namespace clrk::sandbox {
namespace {

constexpr size_t kMaxBundleBytes = 8u << 20;

bool hasEnv(const std::vector<std::string>& env, std::string_view name) {
  for (const auto& entry : env) {
    if (entry.size() > name.size() && entry.compare(0, name.size(), name) == 0 &&
        entry[name.size()] == '=') {
      return true;
    }
  }
  return false;
}

std::string errnoText(int err) { return std::strerror(err); }

// Reads the lower root's CA bundle with every path component resolved inside `root`, so an image
// cannot point the worker at a host file with a symlink.
std::string readLowerBundle(const std::filesystem::path& root) {
  int root_fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) return {};
  UniqueFd root_guard(root_fd);
  open_how how{};
  // Every component, symlinks included, resolves as if `root` were "/".
  how.flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_fd, "etc/ssl/certs/ca-certificates.crt", &how, sizeof how);
  if (fd < 0) return {};
  UniqueFd file(static_cast<int>(fd));
  struct stat st {};
  if (::fstat(file.get(), &st) != 0 || !S_ISREG(st.st_mode)) return {};
  std::string content;
  char buffer[65536];
  while (content.size() < kMaxBundleBytes) {
    ssize_t n = ::read(file.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    content.append(buffer, static_cast<size_t>(n));
  }
  if (content.size() > kMaxBundleBytes) content.resize(kMaxBundleBytes);
  return content;
}

}  // namespace

Status makePipe(UniqueFd& read_end, UniqueFd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return internalError("pipe2: " + errnoText(errno));
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return {};
}

Status makeSocketPair(UniqueFd& sandbox_end, UniqueFd& worker_end) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return internalError("socketpair: " + errnoText(errno));
  }
  sandbox_end.reset(fds[0]);
  worker_end.reset(fds[1]);
  return {};
}

Status writeStateFile(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return internalError("open " + tmp.string() + ": " + errnoText(errno));
  bool ok = writeAll(fd, content.data(), content.size());
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return internalError("write " + path.string() + ": " + errnoText(errno));
  }
  return {};
}

namespace {

// The checks of the process fields, shared by specs and launches.
Status validateProcess(const std::string& id, const std::vector<std::string>& argv,
                       const std::vector<std::string>& env, const std::string& working_dir) {
  if (argv.empty() || argv[0].empty()) {
    return invalidArgument("sandbox " + id + ": argv is empty");
  }
  for (const auto& arg : argv) {
    if (arg.find('\0') != std::string::npos) {
      return invalidArgument("sandbox " + id + ": argv holds a NUL byte");
    }
  }
  for (const auto& entry : env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=' ||
        entry.find('\0') != std::string::npos) {
      return invalidArgument("sandbox " + id + ": env entry \"" + entry + "\" is not NAME=VALUE");
    }
  }
  if (working_dir.empty() || working_dir.front() != '/' ||
      working_dir.find('\0') != std::string::npos) {
    return invalidArgument("sandbox " + id + ": working_dir must be absolute");
  }
  return {};
}

}  // namespace

Status validateSpec(const SandboxSpec& spec) {
  static const std::regex kIdRe("[a-z0-9-]{1,48}");
  if (!std::regex_match(spec.id, kIdRe)) {
    return invalidArgument("sandbox id \"" + spec.id + "\" must match [a-z0-9-]{1,48}");
  }
  CLRK_RETURN_IF_ERROR(validateProcess(spec.id, spec.argv, spec.env, spec.working_dir));
  if (spec.hostname.empty() || spec.hostname.size() > 63) {
    return invalidArgument("sandbox " + spec.id + ": hostname must be 1-63 characters");
  }
  if (spec.rootfs_kind == RootfsKind::Directory) {
    std::error_code ec;
    if (spec.rootfs_dir.empty() || !spec.rootfs_dir.is_absolute() ||
        !std::filesystem::is_directory(spec.rootfs_dir, ec)) {
      return invalidArgument("sandbox " + spec.id + ": rootfs_dir \"" + spec.rootfs_dir.string() +
                             "\" is not an absolute directory");
    }
    if (spec.rootfs_dir.string().find_first_of(",:\\") != std::string::npos) {
      return invalidArgument("sandbox " + spec.id + ": rootfs_dir must not contain , : or \\");
    }
  }
  for (const auto& mount : spec.mounts) {
    std::error_code ec;
    if (!mount.source.is_absolute() || !std::filesystem::exists(mount.source, ec)) {
      return invalidArgument("sandbox " + spec.id + ": mount source \"" + mount.source.string() +
                             "\" does not exist");
    }
    if (mount.destination.empty() || mount.destination.front() != '/' ||
        mount.destination.find("..") != std::string::npos || mount.destination == "/") {
      return invalidArgument("sandbox " + spec.id + ": mount destination \"" + mount.destination +
                             "\" must be an absolute path without ..");
    }
  }
  if (spec.ca_cert_pem.find("PRIVATE KEY") != std::string::npos) {
    return invalidArgument("sandbox " + spec.id +
                           ": ca_cert_pem holds a private key; pass the certificate only");
  }
  if (!spec.ca_cert_pem.empty() &&
      spec.ca_cert_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
    return invalidArgument("sandbox " + spec.id + ": ca_cert_pem is not a PEM certificate");
  }
  if (spec.limits.cpu_millis < 0 || spec.limits.memory_bytes < 0 || spec.limits.pids < 0) {
    return invalidArgument("sandbox " + spec.id + ": limits must not be negative");
  }
  return {};
}

Result<CaFiles> writeCaFiles(const SandboxSpec& spec, const std::filesystem::path& lower_root,
                             const std::filesystem::path& dir) {
  CaFiles files;
  std::string bundle = readLowerBundle(lower_root);
  if (!spec.ca_cert_pem.empty()) {
    files.ca_cert = dir / "ca.crt";
    std::string pem = spec.ca_cert_pem;
    if (pem.back() != '\n') pem.push_back('\n');
    CLRK_RETURN_IF_ERROR(writeStateFile(files.ca_cert, pem, 0644));
    if (!bundle.empty() && bundle.back() != '\n') bundle.push_back('\n');
    bundle += pem;
  }
  files.bundle = dir / "ca-bundle.crt";
  CLRK_RETURN_IF_ERROR(writeStateFile(files.bundle, bundle, 0644));
  return files;
}

std::vector<std::string> sandboxEnv(const SandboxSpec& spec) {
  std::vector<std::string> env = spec.env;
  if (!hasEnv(env, "PATH")) {
    env.emplace_back("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  }
  if (!spec.ca_cert_pem.empty()) {
    for (const char* name :
         {"SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}) {
      if (!hasEnv(env, name)) env.push_back(std::string(name) + "=" + kSandboxBundlePath);
    }
  }
  return env;
}

std::filesystem::path findLauncher(const RuntimeOptions& options) {
  if (!options.launcher_path.empty()) return options.launcher_path;
  if (const char* env = std::getenv("CLRK_SANDBOX_LAUNCHER"); env != nullptr && *env != '\0') {
    return env;
  }
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::filesystem::path sibling =
      ec ? std::filesystem::path() : self.parent_path() / kLauncherBinaryName;
#ifdef CLRK_BUILT_LAUNCHER
  // Binaries run from the build tree (tests, benchmarks) use the one this build made.
  if (sibling.empty() || !std::filesystem::exists(sibling, ec)) return CLRK_BUILT_LAUNCHER;
#endif
  return sibling;
}

Result<SandboxSpec> effectiveSpec(const SandboxSpec& spec, const RuntimeOptions& options) {
  if (!spec.await_launch) return spec;
  std::filesystem::path launcher = findLauncher(options);
  std::error_code ec;
  if (launcher.empty() || !std::filesystem::is_regular_file(launcher, ec) ||
      ::access(launcher.c_str(), X_OK) != 0) {
    return Status(Code::InvalidArgument,
                  "sandbox " + spec.id + ": the launcher " + std::string(kLauncherBinaryName) +
                      " for booted sandboxes was not found (looked at \"" + launcher.string() +
                      "\"; install it next to the worker or set CLRK_SANDBOX_LAUNCHER)");
  }
  SandboxSpec booted = spec;
  booted.argv = {kSandboxLauncherPath};
  booted.env.clear();
  booted.working_dir = "/";
  booted.stdin_data = std::string();  // a pipe the launch message travels on
  booted.timeout = std::chrono::milliseconds(0);
  booted.on_log = nullptr;
  booted.mounts.push_back({launcher, kSandboxLauncherPath, true});
  return booted;
}

Status validateLaunch(const std::string& sandbox_id, const Launch& launch) {
  CLRK_RETURN_IF_ERROR(validateProcess(sandbox_id, launch.argv, launch.env, launch.working_dir));
  if (launch.argv.size() + launch.env.size() + 1 > kMaxLaunchStrings) {
    return invalidArgument("sandbox " + sandbox_id + ": too many argv and env entries");
  }
  size_t bytes = launch.working_dir.size() + 1;
  for (const auto& text : launch.argv) bytes += text.size() + 1;
  for (const auto& text : launch.env) bytes += text.size() + 1;
  if (bytes + 4096 > kMaxLaunchBytes) {  // room for counts and the CA variables
    return invalidArgument("sandbox " + sandbox_id + ": argv and env exceed " +
                           std::to_string(kMaxLaunchBytes >> 20) + " MiB");
  }
  return {};
}

std::string encodeLaunch(const Launch& launch, const SandboxSpec& booted) {
  SandboxSpec process;
  process.env = launch.env;
  process.ca_cert_pem = booted.ca_cert_pem;
  std::vector<std::string> env = sandboxEnv(process);
  std::string payload;
  auto put = [&payload](const std::string& text) {
    payload += text;
    payload.push_back('\0');
  };
  put(std::to_string(launch.argv.size()));
  for (const auto& arg : launch.argv) put(arg);
  put(std::to_string(env.size()));
  for (const auto& entry : env) put(entry);
  put(launch.working_dir);
  std::string message(kLaunchMagic, sizeof kLaunchMagic - 1);
  auto size = static_cast<uint32_t>(payload.size());
  for (int shift = 0; shift < 32; shift += 8) message.push_back(static_cast<char>(size >> shift));
  message += payload;
  if (launch.stdin_data) message += *launch.stdin_data;
  return message;
}

bool ExitReportReader::take(const char* data, size_t size) {
  size_t magic = sizeof kExitMagic - 1;
  for (size_t index = 0; index < size; ++index) {
    if (complete()) return false;  // more than a report
    auto byte = static_cast<unsigned char>(data[index]);
    if (size_ < magic && byte != static_cast<unsigned char>(kExitMagic[size_])) return false;
    bytes_[size_++] = byte;
  }
  return true;
}

bool ExitReportReader::readFrom(int fd) {
  char buffer[kExitReportBytes];
  while (!complete()) {
    ssize_t n = ::recv(fd, buffer, sizeof bytes_ - size_, MSG_DONTWAIT);
    if (n > 0) {
      if (!take(buffer, static_cast<size_t>(n))) return false;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
  }
  return true;
}

int ExitReportReader::waitStatus() const {
  size_t at = sizeof kExitMagic - 1;
  uint32_t value = 0;
  for (size_t index = 0; index < 4; ++index) {
    value |= static_cast<uint32_t>(bytes_[at + index]) << (8 * index);
  }
  return static_cast<int>(value);
}

Status writeRecord(const std::filesystem::path& path, const SandboxRecord& record) {
  nlohmann::json json = {{"id", record.id},
                         {"backend", record.backend},
                         {"pid", record.pid},
                         {"pidStart", record.pid_start},
                         {"shimPid", record.shim_pid},
                         {"shimStart", record.shim_start},
                         {"cgroup", record.cgroup},
                         {"runscRoot", record.runsc_root},
                         {"runscBinary", record.runsc_binary}};
  return writeStateFile(path, json.dump(), 0600);
}

Result<SandboxRecord> readRecord(const std::filesystem::path& path) {
  CLRK_ASSIGN_OR_RETURN(std::string text, readFile(path));
  try {
    auto json = nlohmann::json::parse(text);
    SandboxRecord record;
    record.id = json.at("id").get<std::string>();
    record.backend = json.at("backend").get<std::string>();
    record.pid = json.value("pid", 0);
    record.pid_start = json.value("pidStart", uint64_t{0});
    record.shim_pid = json.value("shimPid", 0);
    record.shim_start = json.value("shimStart", uint64_t{0});
    record.cgroup = json.value("cgroup", std::string());
    record.runsc_root = json.value("runscRoot", std::string());
    record.runsc_binary = json.value("runscBinary", std::string());
    return record;
  } catch (const std::exception& e) {
    return invalidArgument(path.string() + ": bad sandbox record: " + e.what());
  }
}

uint64_t processStartTime(int pid) {
  if (pid <= 0) return 0;
  auto text = readFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return 0;
  // Field 22 (starttime); the command (field 2) may hold spaces, so count from the last ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream in(text->substr(close + 2));
  std::string field;
  for (int index = 3; index <= 22 && (in >> field); ++index) {
    if (index == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

bool processRunning(int pid) {
  if (pid <= 0) return false;
  auto text = readFile("/proc/" + std::to_string(pid) + "/stat");
  if (!text.ok()) return false;
  size_t close = text->rfind(')');
  return close != std::string::npos && close + 2 < text->size() && (*text)[close + 2] != 'Z' &&
         (*text)[close + 2] != 'X';
}

bool signalIfSame(int pid, uint64_t start_time, int sig) {
  if (pid <= 0 || start_time == 0) return false;
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return false;
  UniqueFd guard(pidfd);
  // Checked after the pidfd is open: the pidfd pins the process, so the check cannot race.
  if (processStartTime(pid) != start_time) return false;
  return ::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) == 0;
}

ChildStack::ChildStack(size_t size) : size_(size) {
  void* base = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
  base_ = base == MAP_FAILED ? nullptr : base;
}

ChildStack::ChildStack(ChildStack&& other) noexcept : base_(other.base_), size_(other.size_) {
  other.base_ = nullptr;
}

ChildStack& ChildStack::operator=(ChildStack&& other) noexcept {
  if (this != &other) {
    if (base_ != nullptr) {
      ASAN_UNPOISON_MEMORY_REGION(base_, size_);
      ::munmap(base_, size_);
    }
    base_ = other.base_;
    size_ = other.size_;
    other.base_ = nullptr;
  }
  return *this;
}

ChildStack::~ChildStack() {
  if (base_ != nullptr) {
    // Frames of the (now gone) process may have left shadow poisoned for this range.
    ASAN_UNPOISON_MEMORY_REGION(base_, size_);
    ::munmap(base_, size_);
  }
}

pid_t cloneSharedVm(int (*fn)(void*), void* arg, const ChildStack& stack, int flags, int* pidfd) {
  if (!stack.valid()) {
    errno = ENOMEM;
    return -1;
  }
  int all = flags | CLONE_VM | SIGCHLD | (pidfd != nullptr ? CLONE_PIDFD : 0);
  return ::clone(fn, stack.top(), all, arg, pidfd);
}

void keepForChild(const void* pointer) {
#if defined(__SANITIZE_ADDRESS__)
  if (pointer != nullptr) __lsan_ignore_object(pointer);
#else
  (void)pointer;
#endif
}

CLRK_CHILD_SIDE void closeAllExcept(const int* keep, int n) {
  int sorted[16];
  int count = 0;
  for (int index = 0; index < n && count < 16; ++index) {
    if (keep[index] < 0) continue;
    int value = keep[index];
    int pos = count++;
    while (pos > 0 && sorted[pos - 1] > value) {
      sorted[pos] = sorted[pos - 1];
      --pos;
    }
    sorted[pos] = value;
  }
  unsigned next = 0;
  for (int index = 0; index < count; ++index) {
    unsigned fd = static_cast<unsigned>(sorted[index]);
    if (fd > next) ::syscall(SYS_close_range, next, fd - 1, 0);
    next = fd + 1;
  }
  ::syscall(SYS_close_range, next, ~0U, 0);
}

CLRK_CHILD_SIDE bool writeAll(int fd, const void* data, size_t size) {
  const char* bytes = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

CLRK_CHILD_SIDE bool readAll(int fd, void* data, size_t size) {
  char* bytes = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, bytes, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool waitReadable(int fd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() < 0) return false;
    pollfd pfd{fd, POLLIN, 0};
    int rc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;
  }
}

namespace {

Status removeTreeAt(int parent_fd, const char* name, dev_t device, const std::string& shown) {
  struct stat st {};
  if (::fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return internalError("stat " + shown + ": " + errnoText(errno));
  }
  if (!S_ISDIR(st.st_mode)) {
    if (::unlinkat(parent_fd, name, 0) != 0 && errno != ENOENT) {
      return internalError("unlink " + shown + ": " + errnoText(errno));
    }
    return {};
  }
  if (st.st_dev != device) {
    return internalError("refusing to remove " + shown + ": another file system is mounted there");
  }
  int dir_fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir_fd < 0) return internalError("open " + shown + ": " + errnoText(errno));
  DIR* dir = ::fdopendir(dir_fd);
  if (dir == nullptr) {
    ::close(dir_fd);
    return internalError("opendir " + shown + ": " + errnoText(errno));
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) continue;
    names.emplace_back(entry->d_name);
  }
  Status status;
  for (const auto& child : names) {
    Status child_status = removeTreeAt(::dirfd(dir), child.c_str(), device, shown + "/" + child);
    if (!child_status.ok() && status.ok()) status = child_status;
  }
  ::closedir(dir);
  if (!status.ok()) return status;
  if (::unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return internalError("rmdir " + shown + ": " + errnoText(errno));
  }
  return {};
}

}  // namespace

Status removeTree(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::symlink_status(path, ec))) return {};
  // Unmount anything below `path` (deepest first) so the walk stays on one file system.
  std::string prefix = std::filesystem::absolute(path).lexically_normal().string();
  if (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  std::ifstream mountinfo("/proc/self/mountinfo");
  std::vector<std::string> mounts;
  std::string line;
  while (std::getline(mountinfo, line)) {
    std::istringstream in(line);
    std::string id, parent, devno, root, target;
    in >> id >> parent >> devno >> root >> target;
    if (target == prefix || target.rfind(prefix + "/", 0) == 0) mounts.push_back(target);
  }
  std::sort(mounts.begin(), mounts.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  for (const auto& target : mounts) ::umount2(target.c_str(), MNT_DETACH);

  std::filesystem::path parent = std::filesystem::absolute(path).lexically_normal();
  if (!parent.has_filename()) parent = parent.parent_path();
  std::string name = parent.filename().string();
  int parent_fd = ::open(parent.parent_path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (parent_fd < 0) return internalError("open " + parent.parent_path().string());
  UniqueFd guard(parent_fd);
  struct stat st {};
  if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Status{} : internalError("stat " + path.string());
  }
  return removeTreeAt(parent_fd, name.c_str(), st.st_dev, path.string());
}

Result<CommandResult> runCommand(const std::vector<std::string>& argv,
                                 std::chrono::milliseconds timeout) {
  if (argv.empty()) return invalidArgument("runCommand: empty argv");
  UniqueFd out_r, out_w;
  CLRK_RETURN_IF_ERROR(makePipe(out_r, out_w));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 2);
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return internalError("spawn " + argv[0] + ": " + errnoText(rc));
  out_w.reset();
  CommandResult result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      if (!killed) ::kill(pid, SIGKILL);
      killed = true;
      left = std::chrono::milliseconds(1000);
    }
    pollfd pfd{out_r.get(), POLLIN, 0};
    int prc = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (prc < 0 && errno == EINTR) continue;
    if (prc == 0) {
      if (killed) break;
      continue;
    }
    char buffer[4096];
    ssize_t n = ::read(out_r.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (result.output.size() < 65536) result.output.append(buffer, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.wait_status = status;
  if (killed) {
    return Status(Code::Timeout,
                  argv[0] + " did not finish within " + std::to_string(timeout.count()) + " ms");
  }
  return result;
}

std::filesystem::path findInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs =
      path != nullptr ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  std::istringstream in(dirs);
  std::string dir;
  while (std::getline(in, dir, ':')) {
    if (dir.empty()) continue;
    std::filesystem::path candidate = std::filesystem::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

void describeWaitStatus(int wait_status, ExitStatus& status) {
  if (WIFSIGNALED(wait_status)) {
    status.signal = WTERMSIG(wait_status);
    status.exit_code = 128 + status.signal;
    status.message =
        "killed by signal " + std::to_string(status.signal) + " (" + strsignal(status.signal) + ")";
  } else {
    status.signal = 0;
    status.exit_code = WEXITSTATUS(wait_status);
    status.message = "exited " + std::to_string(status.exit_code);
  }
}

std::vector<std::string> hostMaskedDirs(const RuntimeOptions& options) {
  std::vector<std::filesystem::path> candidates = {"/tmp",  "/root", "/home",
                                                   "/work", "/run",  "/var/tmp"};
  std::error_code ec;
  auto add = [&](const std::filesystem::path& path) {
    if (path.empty()) return;
    std::filesystem::path canonical = std::filesystem::weakly_canonical(path, ec);
    if (!ec) candidates.push_back(canonical);
  };
  add(options.state_dir);
  if (!options.state_dir.empty()) {
    std::filesystem::path parent =
        std::filesystem::weakly_canonical(options.state_dir, ec).parent_path();
    if (!ec && std::distance(parent.begin(), parent.end()) >= 3) add(parent);
  }
  for (const auto& path : options.hidden_paths) add(path);
  std::sort(candidates.begin(), candidates.end());
  std::vector<std::string> result;
  for (const auto& path : candidates) {
    if (!path.is_absolute() || path == "/" || !std::filesystem::is_directory(path, ec)) continue;
    std::string text = path.string();
    bool nested = false;
    for (const auto& outer : result) {
      if (text == outer || text.rfind(outer + "/", 0) == 0) nested = true;
    }
    if (!nested) result.push_back(std::move(text));
  }
  return result;
}

}  // namespace clrk::sandbox
