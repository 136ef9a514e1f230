#include "clrk/sandbox/state_dir.h"

#include "clrk/base/log.h"
#include "clrk/sandbox/cgroups.h"

#include <signal.h>
#include <sys/wait.h>
#include <thread>

namespace clrk::sandbox {
namespace {

namespace fs = std::filesystem;

// Waits until `pid` is gone (reaping it when it is our child), up to `timeout`.
void awaitGone(int pid, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t rc = ::waitpid(pid, &status, WNOHANG);
    if (rc == pid) return;
    // Not our child: a zombie waiting for its parent to reap it is gone for our purposes.
    if (rc < 0 && !processRunning(pid)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

}  // namespace

Status SandboxRegistry::reserve(const std::string& id, const fs::path& dir) {
  std::lock_guard lock(mu_);
  std::error_code ec;
  if (ids_.count(id) != 0 || fs::exists(dir, ec)) {
    return Status(Code::AlreadyExists, "sandbox \"" + id + "\" already exists");
  }
  ids_.insert(id);
  return {};
}

void SandboxRegistry::release(const std::string& id) {
  std::lock_guard lock(mu_);
  ids_.erase(id);
}

bool SandboxRegistry::contains(const std::string& id) const {
  std::lock_guard lock(mu_);
  return ids_.count(id) != 0;
}

Status cleanupSandboxDir(const fs::path& dir, const SandboxRecord& record) {
  Status status;
  if (signalIfSame(record.pid, record.pid_start, SIGKILL)) {
    awaitGone(record.pid, std::chrono::seconds(2));
  }
  if (record.backend == "gvisor" && !record.runsc_root.empty() && !record.runsc_binary.empty()) {
    std::error_code ec;
    if (fs::exists(fs::path(record.runsc_root) / "", ec)) {
      auto result = runCommand(
          {record.runsc_binary, "--root", record.runsc_root, "delete", "--force", record.id},
          std::chrono::seconds(10));
      (void)result;  // the container may be gone already
    }
  }
  if (signalIfSame(record.shim_pid, record.shim_start, SIGKILL)) {
    awaitGone(record.shim_pid, std::chrono::seconds(2));
  }
  if (!record.cgroup.empty()) {
    Status cg = removeCgroupEverywhere(record.cgroup);
    if (!cg.ok()) status = cg;
  }
  Status rm = removeTree(dir);
  if (!rm.ok() && status.ok()) status = rm;
  return status;
}

Result<int> cleanupStateDir(const fs::path& state_dir, const SandboxRegistry& registry) {
  std::error_code ec;
  if (!fs::is_directory(state_dir, ec)) return 0;
  int cleaned = 0;
  Status first_error;
  std::vector<fs::path> dirs;
  for (const auto& entry : fs::directory_iterator(state_dir, ec)) {
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) dirs.push_back(entry.path());
  }
  for (const auto& dir : dirs) {
    std::string id = dir.filename().string();
    if (registry.contains(id)) continue;
    SandboxRecord record;
    auto loaded = readRecord(dir / "record.json");
    if (loaded.ok()) {
      record = *loaded;
    } else {
      record.id = id;
    }
    Status status = cleanupSandboxDir(dir, record);
    if (!status.ok()) {
      logger("sandbox")->warn("clean-up of leftover sandbox {}: {}", id, status.toString());
      if (first_error.ok()) first_error = status;
      continue;
    }
    logger("sandbox")->info("removed leftover sandbox {} ({})", id,
                            record.backend.empty() ? "no record" : record.backend);
    ++cleaned;
  }
  if (!first_error.ok() && cleaned == 0) return first_error;
  return cleaned;
}

}  // namespace clrk::sandbox
