#include "clrk/sandbox/net/netns.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <optional>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox::net {
namespace {

Status errnoError(const std::string& what) {
  int error = errno;
  std::string message = what + ": " + std::strerror(error);
  if (error == EEXIST) return {Code::AlreadyExists, message};
  if (error == ENOENT) return notFound(message);
  if (error == EPERM || error == EACCES) return {Code::Forbidden, message + " (needs root)"};
  return internalError(message);
}

}  // namespace

Status ensureNetnsDir() {
  if (::mkdir(kNetnsDir, 0755) != 0 && errno != EEXIST) return errnoError("mkdir /run/netns");
  bool bound = false;
  while (::mount("", kNetnsDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    if (errno != EINVAL || bound) return errnoError("making /run/netns a shared mount");
    if (::mount(kNetnsDir, kNetnsDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
      return errnoError("bind-mounting /run/netns on itself");
    }
    bound = true;
  }
  return {};
}

Result<NamedNetns> createNetns() {
  std::optional<NamedNetns> made;
  Status status;
  // The thread's namespace changes, not the caller's; the thread ends right after.
  std::thread worker([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      status = errnoError("unshare(CLONE_NEWNET)");
      return;
    }
    UniqueFd fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      status = errnoError("opening /proc/thread-self/ns/net");
      return;
    }
    auto netlink = RtNetlink::open();
    if (!netlink.ok()) {
      status = netlink.status();
      return;
    }
    made.emplace(NamedNetns{std::move(fd), std::move(netlink).value()});
  });
  worker.join();
  if (!status.ok()) return status;
  return std::move(*made);
}

Status bindNetns(const NamedNetns& netns, const std::string& path) {
  int file = ::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
  if (file < 0) return errnoError("creating " + path);
  ::close(file);
  std::string source = "/proc/self/fd/" + std::to_string(netns.fd.get());
  if (::mount(source.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
    Status status = errnoError("bind-mounting the network namespace at " + path);
    ::unlink(path.c_str());
    return status;
  }
  return {};
}

Result<NamedNetns> createNamedNetns(const std::string& path) {
  CLRK_ASSIGN_OR_RETURN(NamedNetns netns, createNetns());
  CLRK_RETURN_IF_ERROR(bindNetns(netns, path));
  return netns;
}

Status deleteNamedNetns(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return errnoError("unmounting " + path);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return errnoError("removing " + path);
  return {};
}

std::vector<std::string> listNetnsNames() {
  std::vector<std::string> names;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(kNetnsDir, error)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

Status runInNetns(const std::string& path, const std::function<void()>& body) {
  Status status;
  std::thread worker([&] {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      status = errnoError("opening " + path);
      return;
    }
    if (::setns(fd.get(), CLONE_NEWNET) != 0) {
      status = errnoError("setns " + path);
      return;
    }
    body();
  });
  worker.join();
  return status;
}

}  // namespace clrk::sandbox::net
