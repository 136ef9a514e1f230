// The "namespaces" backend: no external binaries. prepare() clones an init process into new
// mount, pid, ipc, uts and cgroup namespaces (joining spec.netns_path, or a fresh netns with only
// loopback), moves it into the sandbox cgroup, builds the root as an overlay (lower = host "/" or
// rootfs_dir, upper and work in a private tmpfs), pivots into it with a fresh /proc, a minimal
// /dev, tmpfs /tmp /root /home /work (Host), the CA files and bind mounts, then waits. start()
// lets it fork the workload, which drops every capability (bounding, ambient, effective,
// permitted, inheritable; root-fixup securebits locked), sets no_new_privs, switches to
// spec.uid/gid, installs the seccomp filter and execs. The init forwards signals and exits with
// the workload, which makes the kernel kill everything left in the pid namespace; if the worker
// dies, the init notices its control pipe closing and ends the sandbox as well.
// Thread model: see runtime.h.
#pragma once

#include "clrk/sandbox/runtime.h"

#include <linux/filter.h>
#include <memory>
#include <vector>

namespace clrk::sandbox::namespaces {

// The seccomp program every namespaces sandbox runs under (exported for tests and docs).
Result<std::vector<sock_filter>> buildSeccompProgram();

Result<std::unique_ptr<Runtime>> makeNamespacesRuntime(RuntimeOptions options);

}  // namespace clrk::sandbox::namespaces
