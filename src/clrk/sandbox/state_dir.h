// The runtime's state directory: one sub-directory per sandbox (<state_dir>/<id>) holding its
// record.json, CA files, logs and backend state; the registry of live sandboxes of one Runtime;
// and the clean-up of sandboxes a crashed worker left behind.
// Thread model: SandboxRegistry is thread-safe; cleanup functions may run concurrently with
// sandboxes of other ids.
#pragma once

#include "clrk/base/status.h"
#include "clrk/sandbox/sandbox_util.h"

#include <filesystem>
#include <mutex>
#include <set>
#include <string>

namespace clrk::sandbox {

class SandboxRegistry {
 public:
  // Reserves `id`; AlreadyExists when live here or its directory exists under state_dir.
  Status reserve(const std::string& id, const std::filesystem::path& dir);
  void release(const std::string& id);
  bool contains(const std::string& id) const;

 private:
  mutable std::mutex mu_;
  std::set<std::string> ids_;
};

// Kills and removes everything `record` names (processes checked against their start time,
// runsc container, cgroups), then the directory itself. Idempotent.
Status cleanupSandboxDir(const std::filesystem::path& dir, const SandboxRecord& record);

// Cleans every sandbox directory under `state_dir` that `registry` does not hold. Returns how many.
Result<int> cleanupStateDir(const std::filesystem::path& state_dir,
                            const SandboxRegistry& registry);

}  // namespace clrk::sandbox
