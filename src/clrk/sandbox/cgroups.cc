#include "clrk/sandbox/cgroups.h"

#include "clrk/base/files.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <linux/magic.h>
#include <signal.h>
#include <sstream>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox {
namespace {

namespace fs = std::filesystem;
const fs::path kCgroupRoot = "/sys/fs/cgroup";

bool writeValue(const fs::path& file, const std::string& value) {
  std::ofstream out(file);
  if (!out) return false;
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

std::string readValue(const fs::path& file) {
  auto text = readFile(file);
  return text.ok() ? *text : std::string();
}

// The hierarchies a sandbox cgroup lives in: v1 one per controller, v2 the unified root.
std::vector<fs::path> hierarchies(const CgroupSupport& support) {
  std::vector<fs::path> roots;
  if (support.mode == CgroupMode::V2) {
    roots.push_back(kCgroupRoot);
  } else if (support.mode == CgroupMode::V1) {
    if (support.cpu) roots.push_back(kCgroupRoot / "cpu");
    if (support.memory) roots.push_back(kCgroupRoot / "memory");
    if (support.pids) roots.push_back(kCgroupRoot / "pids");
    if (support.freezer) roots.push_back(kCgroupRoot / "freezer");
  }
  return roots;
}

// Every mounted v1 hierarchy (runsc creates the sandbox cgroup in all of them).
std::vector<fs::path> allHierarchies() {
  std::vector<fs::path> roots;
  if (cgroupSupport().mode == CgroupMode::V2) return {kCgroupRoot};
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(kCgroupRoot, ec)) {
    struct statfs st {};
    if (::statfs(entry.path().c_str(), &st) != 0) continue;
    if (st.f_type == CGROUP_SUPER_MAGIC || st.f_type == CGROUP2_SUPER_MAGIC) {
      if (!fs::is_symlink(entry.path(), ec)) roots.push_back(entry.path());
    }
  }
  return roots;
}

std::vector<pid_t> readPids(const fs::path& file) {
  std::vector<pid_t> pids;
  std::istringstream in(readValue(file));
  long pid = 0;
  while (in >> pid) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

Status rmdirRecursive(const fs::path& dir) {
  // Children first (runsc or the workload may have made sub-cgroups).
  std::error_code ec;
  std::vector<fs::path> children;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_directory(ec) && !entry.is_symlink(ec)) children.push_back(entry.path());
  }
  for (const auto& child : children) CLRK_RETURN_IF_ERROR(rmdirRecursive(child));
  for (int attempt = 0; attempt < 100; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return internalError("rmdir " + dir.string() + ": " + std::strerror(errno));
}

}  // namespace

std::string CgroupSupport::describe() const {
  if (mode == CgroupMode::None) return "no cgroups: cpu, memory and pids limits not enforced";
  std::string text = mode == CgroupMode::V1 ? "cgroup v1: " : "cgroup v2: ";
  std::vector<std::string> on, off;
  (cpu ? on : off).push_back("cpu");
  (memory ? on : off).push_back("memory");
  (pids ? on : off).push_back("pids");
  for (size_t index = 0; index < on.size(); ++index) text += (index ? ", " : "") + on[index];
  if (!on.empty()) text += " enforced";
  if (!off.empty()) {
    text += on.empty() ? "" : "; ";
    for (size_t index = 0; index < off.size(); ++index) text += (index ? ", " : "") + off[index];
    text += " not available";
  }
  return text;
}

const CgroupSupport& cgroupSupport() {
  static const CgroupSupport support = [] {
    CgroupSupport result;
    struct statfs st {};
    if (::statfs(kCgroupRoot.c_str(), &st) != 0) return result;
    if (st.f_type == CGROUP2_SUPER_MAGIC) {
      result.mode = CgroupMode::V2;
      std::string controllers = readValue(kCgroupRoot / "cgroup.controllers");
      std::istringstream in(controllers);
      std::string name;
      while (in >> name) {
        if (name == "cpu") result.cpu = true;
        if (name == "memory") result.memory = true;
        if (name == "pids") result.pids = true;
      }
      result.freezer = true;
      return result;
    }
    auto isCgroup = [](const fs::path& path) {
      struct statfs cst {};
      return ::statfs(path.c_str(), &cst) == 0 && cst.f_type == CGROUP_SUPER_MAGIC;
    };
    result.cpu = isCgroup(kCgroupRoot / "cpu") && fs::exists(kCgroupRoot / "cpu/cpu.cfs_quota_us");
    result.memory = isCgroup(kCgroupRoot / "memory");
    result.pids = isCgroup(kCgroupRoot / "pids");
    result.freezer = isCgroup(kCgroupRoot / "freezer");
    if (result.cpu || result.memory || result.pids) result.mode = CgroupMode::V1;
    return result;
  }();
  return support;
}

Result<SandboxCgroup> SandboxCgroup::create(const std::string& relative, const Limits& limits) {
  const CgroupSupport& support = cgroupSupport();
  if (support.mode == CgroupMode::None) {
    if (limits.cpu_millis || limits.memory_bytes || limits.pids) {
      return Status(Code::Unavailable, "limits requested but this host has no cgroups");
    }
    return SandboxCgroup{};
  }
  if ((limits.cpu_millis && !support.cpu) || (limits.memory_bytes && !support.memory) ||
      (limits.pids && !support.pids)) {
    return Status(Code::Unavailable, "limit not enforceable here (" + support.describe() + ")");
  }
  SandboxCgroup cgroup;
  cgroup.relative_ = relative;
  std::error_code ec;
  if (support.mode == CgroupMode::V2) {
    // Enable the controllers down the path (the root and each intermediate level).
    fs::path level = kCgroupRoot;
    std::string enable;
    if (support.cpu) enable += "+cpu ";
    if (support.memory) enable += "+memory ";
    if (support.pids) enable += "+pids ";
    fs::path rel(relative);
    for (const auto& part : rel) {
      writeValue(level / "cgroup.subtree_control", enable);
      level /= part;
      fs::create_directory(level, ec);
    }
    fs::path dir = kCgroupRoot / relative;
    if (!fs::is_directory(dir)) return internalError("cannot create cgroup " + dir.string());
    if (limits.cpu_millis &&
        !writeValue(dir / "cpu.max", std::to_string(limits.cpu_millis * 100) + " 100000")) {
      return internalError("cannot write " + (dir / "cpu.max").string());
    }
    if (limits.memory_bytes) {
      if (!writeValue(dir / "memory.max", std::to_string(limits.memory_bytes))) {
        return internalError("cannot write " + (dir / "memory.max").string());
      }
      writeValue(dir / "memory.swap.max", "0");
    }
    if (limits.pids && !writeValue(dir / "pids.max", std::to_string(limits.pids))) {
      return internalError("cannot write " + (dir / "pids.max").string());
    }
    return cgroup;
  }
  for (const auto& root : hierarchies(support)) {
    fs::create_directories(root / relative, ec);
    if (ec)
      return internalError("cannot create cgroup " + (root / relative).string() + ": " +
                           ec.message());
  }
  if (limits.cpu_millis) {
    fs::path dir = kCgroupRoot / "cpu" / relative;
    if (!writeValue(dir / "cpu.cfs_period_us", "100000") ||
        !writeValue(dir / "cpu.cfs_quota_us", std::to_string(limits.cpu_millis * 100))) {
      return internalError("cannot write the cpu quota in " + dir.string());
    }
  }
  if (limits.memory_bytes) {
    fs::path dir = kCgroupRoot / "memory" / relative;
    if (!writeValue(dir / "memory.limit_in_bytes", std::to_string(limits.memory_bytes))) {
      return internalError("cannot write memory.limit_in_bytes in " + dir.string());
    }
    if (fs::exists(dir / "memory.memsw.limit_in_bytes")) {
      writeValue(dir / "memory.memsw.limit_in_bytes", std::to_string(limits.memory_bytes));
    }
  }
  if (limits.pids) {
    fs::path dir = kCgroupRoot / "pids" / relative;
    if (!writeValue(dir / "pids.max", std::to_string(limits.pids))) {
      return internalError("cannot write pids.max in " + dir.string());
    }
  }
  return cgroup;
}

SandboxCgroup SandboxCgroup::attach(const std::string& relative) {
  SandboxCgroup cgroup;
  cgroup.relative_ = relative;
  return cgroup;
}

Status SandboxCgroup::addProcess(pid_t pid) const {
  if (relative_.empty()) return {};
  for (const auto& root : hierarchies(cgroupSupport())) {
    fs::path file = root / relative_ / "cgroup.procs";
    if (!writeValue(file, std::to_string(pid))) {
      return internalError("cannot move pid " + std::to_string(pid) + " into " + file.string());
    }
  }
  return {};
}

std::vector<pid_t> SandboxCgroup::processes() const {
  std::vector<pid_t> pids;
  if (relative_.empty()) return pids;
  for (const auto& root : allHierarchies()) {
    std::error_code ec;
    fs::path dir = root / relative_;
    if (!fs::is_directory(dir, ec)) continue;
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      if (it->path().filename() == "cgroup.procs") {
        for (pid_t pid : readPids(it->path())) pids.push_back(pid);
      }
    }
    for (pid_t pid : readPids(dir / "cgroup.procs")) pids.push_back(pid);
  }
  std::sort(pids.begin(), pids.end());
  pids.erase(std::unique(pids.begin(), pids.end()), pids.end());
  return pids;
}

Status SandboxCgroup::killAll() const {
  if (relative_.empty()) return {};
  const CgroupSupport& support = cgroupSupport();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  fs::path freezer = support.mode == CgroupMode::V2 ? kCgroupRoot / relative_
                                                    : kCgroupRoot / "freezer" / relative_;
  std::error_code ec;
  bool can_freeze = support.freezer && fs::is_directory(freezer, ec);
  while (true) {
    std::vector<pid_t> pids = processes();
    if (pids.empty()) return {};
    if (std::chrono::steady_clock::now() > deadline) {
      return internalError("cgroup " + relative_ + " still has " + std::to_string(pids.size()) +
                           " processes after SIGKILL");
    }
    if (support.mode == CgroupMode::V2 && fs::exists(freezer / "cgroup.kill", ec)) {
      writeValue(freezer / "cgroup.kill", "1");
    } else {
      // Frozen members cannot fork between the read and the kill.
      if (can_freeze) {
        writeValue(freezer / (support.mode == CgroupMode::V2 ? "cgroup.freeze" : "freezer.state"),
                   support.mode == CgroupMode::V2 ? "1" : "FROZEN");
      }
      for (pid_t pid : processes()) ::kill(pid, SIGKILL);
      if (can_freeze) {
        writeValue(freezer / (support.mode == CgroupMode::V2 ? "cgroup.freeze" : "freezer.state"),
                   support.mode == CgroupMode::V2 ? "0" : "THAWED");
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

bool SandboxCgroup::oomKilled() const {
  if (relative_.empty()) return false;
  const CgroupSupport& support = cgroupSupport();
  std::string text = support.mode == CgroupMode::V2
                         ? readValue(kCgroupRoot / relative_ / "memory.events")
                         : readValue(kCgroupRoot / "memory" / relative_ / "memory.oom_control");
  std::istringstream in(text);
  std::string key;
  long value = 0;
  while (in >> key >> value) {
    if (key == "oom_kill" && value > 0) return true;
  }
  return false;
}

Status SandboxCgroup::remove() const {
  if (relative_.empty()) return {};
  return removeCgroupEverywhere(relative_);
}

Status removeCgroupEverywhere(const std::string& relative) {
  if (relative.empty() || relative.find("..") != std::string::npos) {
    return invalidArgument("bad cgroup path \"" + relative + "\"");
  }
  Status kill_status = SandboxCgroup::attach(relative).killAll();
  Status status = kill_status;
  for (const auto& root : allHierarchies()) {
    std::error_code ec;
    fs::path dir = root / relative;
    if (!fs::is_directory(dir, ec)) continue;
    Status rm = rmdirRecursive(dir);
    if (!rm.ok() && status.ok()) status = rm;
  }
  return status;
}

}  // namespace clrk::sandbox
