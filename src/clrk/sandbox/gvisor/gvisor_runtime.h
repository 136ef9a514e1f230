// The "gvisor" backend: Debian's runsc (2022 build, ptrace platform). Per sandbox, prepare()
// writes an OCI bundle (host "/" or rootfs_dir as the root with --overlay2=root:memory, so writes
// stay in the sandbox's memory; tmpfs /tmp /root /home /work for Host; the CA files bind-mounted
// read-only; linux.resources for cpu/memory/pids applied by runsc in <cgroup_parent>/<id>; the
// sandbox's netns as linux.namespaces[network].path with --network=sandbox, or --network=none)
// and runs `runsc create` from a shim process. The shim is a clone of the worker in a private
// mount namespace where /proc/sys is a tmpfs holding only kernel/, vm/ and fs/ bind-mounted from
// the real one: runsc 2022 decides "this is the root netns" from /proc/sys/net existing, which on
// kernels >= 6 is true in every netns. The shim is also the child subreaper of the runsc sandbox
// and gofer processes, so it learns the container's exit status (runsc wait cannot once the
// sandbox has exited) and reports it over a pipe. start() asks the shim to run `runsc start`.
// Kill = SIGKILL of the runsc sandbox process (the whole sentry); destroy() then waits for the
// shim (which exits once every runsc process is reaped), removes cgroups and the state dir.
// Thread model: see runtime.h.
#pragma once

#include "clrk/sandbox/runtime.h"

namespace clrk::sandbox::gvisor {

// Fails when runsc is not in PATH (naming the Debian package).
Result<std::unique_ptr<Runtime>> makeGvisorRuntime(RuntimeOptions options);

}  // namespace clrk::sandbox::gvisor
