// Per-sandbox cgroups on cgroup v1 (one directory per controller: cpu, memory, pids, freezer)
// or v2 (one unified directory), created as <root>/<relative> with relative = "<parent>/<id>".
// Thread model: a SandboxCgroup is used by one sandbox; the free functions are thread-safe.
#pragma once

#include "clrk/base/status.h"
#include "clrk/sandbox/runtime.h"

#include <string>
#include <sys/types.h>
#include <vector>

namespace clrk::sandbox {

enum class CgroupMode { None, V1, V2 };

struct CgroupSupport {
  CgroupMode mode = CgroupMode::None;
  bool cpu = false;
  bool memory = false;
  bool pids = false;
  bool freezer = false;  // v1 freezer controller or v2 cgroup.freeze
  // "cgroup v1: cpu, memory, pids enforced" / "no cgroups: limits not enforced".
  std::string describe() const;
};

// Probes /sys/fs/cgroup once (cached).
const CgroupSupport& cgroupSupport();

class SandboxCgroup {
 public:
  // Creates the directories and writes the limits. Fails when a requested limit cannot be
  // enforced by the host (no such controller).
  static Result<SandboxCgroup> create(const std::string& relative, const Limits& limits);
  // Refers to existing directories (made by runsc or a crashed worker) without creating them.
  static SandboxCgroup attach(const std::string& relative);

  SandboxCgroup() = default;
  const std::string& relative() const { return relative_; }

  // Moves `pid` (and its future children) into every controller.
  Status addProcess(pid_t pid) const;
  // Pids currently in the cgroup (any controller).
  std::vector<pid_t> processes() const;
  // Freezes, SIGKILLs every member, thaws; repeats until empty or ~2 s passed.
  Status killAll() const;
  // True when the memory controller recorded an OOM kill.
  bool oomKilled() const;
  // Removes the directories in every mounted hierarchy; ok when already gone.
  Status remove() const;

 private:
  std::string relative_;
};

// Deletes every <hierarchy>/<relative> directory (after killing members); used by clean-up.
Status removeCgroupEverywhere(const std::string& relative);

}  // namespace clrk::sandbox
