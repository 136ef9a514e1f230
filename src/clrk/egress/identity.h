// Who made an egress connection: the sandbox's address mapped to its agent and execution. The
// worker fills an IdentityMap as it starts and ends sandboxes; the data plane reads it on accept.
#pragma once

#include "clrk/base/utf8.h"

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace clrk::egress {

// The caller identity of an execution: fields (e.g. user, tenant) a TaskAgent's spec.identity
// extracted from the triggering request. Untrusted input, bounded where it enters (the HTTP
// trigger) and again where the worker reads it: at most kMaxCallerFields fields, names
// [a-z][a-z0-9_]{0,62}, values 1..kMaxCallerValueBytes bytes of UTF-8 without control
// characters.
inline constexpr size_t kMaxCallerFields = 16;
inline constexpr size_t kMaxCallerFieldNameBytes = 63;
inline constexpr size_t kMaxCallerValueBytes = 256;

inline bool isValidCallerField(std::string_view name) {
  if (name.empty() || name.size() > kMaxCallerFieldNameBytes) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

// Empty when `value` is a valid caller value, else what is wrong with it. UTF-8 is checked
// strictly (no overlong forms, surrogates or code points past U+10FFFF), as JSON encoders want.
inline std::string_view callerValueProblem(std::string_view value) {
  if (value.empty()) return "empty";
  if (value.size() > kMaxCallerValueBytes) return "longer than 256 bytes";
  size_t pos = 0;
  while (pos < value.size()) {
    auto lead = static_cast<unsigned char>(value[pos]);
    if (lead < 0x80) {
      if (lead < 0x20 || lead == 0x7f) return "contains a control character";
      ++pos;
      continue;
    }
    size_t length = utf8SequenceLength(value, pos);
    if (length == 0) return "not UTF-8";
    pos += length;
  }
  return {};
}

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
  // Caller identity fields (see above), recorded as clrk.identity.<field>. Asserted by the
  // caller: caller_verified is false unless something checked them (nothing does yet).
  std::map<std::string, std::string> caller;
  bool caller_verified = false;
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
