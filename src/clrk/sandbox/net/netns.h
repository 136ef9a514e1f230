// Named network namespaces made in-process (no `ip netns` fork): a short-lived thread unshares
// CLONE_NEWNET and opens an rtnetlink socket that keeps operating inside it; the namespace is
// then bind-mounted at a path under /run/netns.
// Thread model: functions are thread-safe (each works on its own path).
#pragma once

#include "clrk/base/status.h"
#include "clrk/sandbox/net/netlink.h"

#include <functional>
#include <string>
#include <vector>

namespace clrk::sandbox::net {

inline constexpr const char* kNetnsDir = "/run/netns";

// Makes sure /run/netns exists and is a shared mount point (as `ip netns add` does), so a
// namespace unmounted here is unmounted in mount namespaces copied from this one too.
Status ensureNetnsDir();

struct NamedNetns {
  UniqueFd fd;        // the namespace (for IFLA_NET_NS_FD / setns)
  RtNetlink netlink;  // a NETLINK_ROUTE socket inside it
};

// Creates a fresh namespace (not bound anywhere: it lives while `fd` is open).
Result<NamedNetns> createNetns();
// Binds `netns` at `path` (like `ip netns add`); AlreadyExists when `path` exists.
Status bindNetns(const NamedNetns& netns, const std::string& path);
// createNetns() + bindNetns().
Result<NamedNetns> createNamedNetns(const std::string& path);
// Unmounts and removes `path`; ok when it does not exist.
Status deleteNamedNetns(const std::string& path);
// File names in /run/netns.
std::vector<std::string> listNetnsNames();

// Runs `body` on a thread that has joined the namespace at `path` (tests, diagnostics).
Status runInNetns(const std::string& path, const std::function<void()>& body);

}  // namespace clrk::sandbox::net
