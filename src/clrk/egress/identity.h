// Who made an egress connection: the sandbox's address mapped to its agent and execution. The
// worker fills an IdentityMap as it starts and ends sandboxes; the data plane reads it on accept.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

namespace clrk::egress {

// Attribution of one sandbox (one execution). Empty strings mean "unknown" (e.g. a client of the
// explicit proxy outside any sandbox).
struct Identity {
  std::string namespace_name;  // namespace of the agent (and of the policies that apply)
  std::string agent;           // TaskAgent/DaemonAgent name
  std::string agent_kind;      // "TaskAgent" or "DaemonAgent"
  std::map<std::string, std::string> agent_labels;  // for sourceAgents selectors
  std::string execution_id;                         // one run of the agent
  std::string request_id;  // inbound trigger request that caused the run, if any
  std::string sandbox_id;  // sandbox (container) id
  std::string gateway;     // "namespace/name" of the EgressGateway used; empty = the default
};

// Maps a client address (the sandbox's IP, as text, e.g. "10.200.0.2") to its identity.
// Thread-safe; lookups return a shared snapshot so an entry removed mid-connection stays valid.
class IdentityMap {
 public:
  void set(const std::string& address, Identity identity) {
    auto entry = std::make_shared<const Identity>(std::move(identity));
    std::lock_guard lock(mutex_);
    entries_[address] = std::move(entry);
  }
  void remove(const std::string& address) {
    std::lock_guard lock(mutex_);
    entries_.erase(address);
  }
  // Returns the identity for `address`, or nullptr when the address is unknown.
  std::shared_ptr<const Identity> lookup(const std::string& address) const {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(address);
    return it == entries_.end() ? nullptr : it->second;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<const Identity>> entries_;
};

}  // namespace clrk::egress
