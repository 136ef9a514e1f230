#include "clrk/sandbox/runtime.h"

#include "clrk/sandbox/gvisor/gvisor_runtime.h"
#include "clrk/sandbox/namespaces/namespaces_runtime.h"

namespace clrk::sandbox {

Result<std::unique_ptr<Runtime>> makeRuntime(const std::string& name, RuntimeOptions options) {
  if (options.state_dir.empty()) return invalidArgument("runtime " + name + ": state_dir is empty");
  if (options.cgroup_parent.empty() || options.cgroup_parent.find("..") != std::string::npos ||
      options.cgroup_parent.front() == '/') {
    return invalidArgument("runtime " + name + ": cgroup_parent \"" + options.cgroup_parent +
                           "\" must be a relative path without ..");
  }
  if (name == "gvisor") return gvisor::makeGvisorRuntime(std::move(options));
  if (name == "namespaces") return namespaces::makeNamespacesRuntime(std::move(options));
  return invalidArgument("unknown sandbox runtime \"" + name +
                         "\"; valid runtimes: gvisor, namespaces");
}

}  // namespace clrk::sandbox
