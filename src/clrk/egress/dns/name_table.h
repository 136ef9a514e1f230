// NameTable: which synthetic IPv4 address stands for which DNS name.
//
// The sandbox resolver answers every allowed A query with an address from a private pool
// (default 198.18.0.0/15, the RFC 2544 benchmarking range, never routed on the internet). When a
// sandbox then connects to that address, the transparent listener asks nameFor(address) to learn
// the host the agent meant. The same name keeps the same address while it is remembered.
//
// Capacity and recycling. The table holds at most `capacity` names (default 65536, never more
// than the pool has addresses minus its first one, which is never handed out). When it is full a
// new name takes over the address of the least recently used entry — "used" meaning returned by
// addressFor() or looked up by nameFor() — but ONLY if that entry has been unused for at least
// `min_reuse_age` (default 5 min). Guarantee: an address is never mapped to a different name
// within min_reuse_age of its last use. Keep the DNS answer TTL well below that (the server
// default is 30 s), so a client that honours the TTL never connects to a recycled address with
// a stale name. If every entry was used within min_reuse_age, addressFor() fails (Unavailable)
// rather than break that guarantee; the server then answers SERVFAIL.
//
// Thread model: all methods are thread-safe. Lookups of known names and addresses (the hot path:
// one nameFor per accepted connection) take a shared lock and bump an atomic timestamp; only
// inserting a new name takes the exclusive lock.
#pragma once

#include "clrk/base/status.h"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace clrk::egress::dns {

using Ipv4 = std::array<uint8_t, 4>;

// "198.18.0.5". Always four decimal octets.
std::string formatIpv4(const Ipv4& address);
// Strict dotted-quad parse (inet_pton rules); nullopt for anything else.
std::optional<Ipv4> parseIpv4(std::string_view text);

class NameTable {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::string cidr = "198.18.0.0/15";  // the pool; prefix length 8..30
    size_t capacity = 65536;             // clamped to the pool size minus one
    std::chrono::nanoseconds min_reuse_age = std::chrono::minutes(5);
    std::function<Clock::time_point()> now;  // for tests; default Clock::now
  };

  // A table with the default options (cannot fail).
  NameTable();
  // Validates the options: a bad CIDR ("10.0.0.0/33", "banana", host bits set) or a zero
  // capacity is InvalidArgument naming the value.
  static Result<std::unique_ptr<NameTable>> create(Options options);

  NameTable(const NameTable&) = delete;
  NameTable& operator=(const NameTable&) = delete;

  // The address for `name` (compared exactly: callers pass the lower-case, dot-free-at-the-end
  // form that parseQuery produces), allocating one if the name is new. Fails with Unavailable
  // when the table is full and no entry is old enough to recycle (see above), and with
  // InvalidArgument for an empty name or one longer than 253 characters.
  Result<Ipv4> addressFor(std::string_view name);

  // The name an address currently stands for; nullopt if the address is outside the pool, not
  // handed out, or not a valid dotted quad. Counts as a use of the entry.
  std::optional<std::string> nameFor(std::string_view ipv4_text) const;
  std::optional<std::string> nameFor(const Ipv4& address) const;

  // Whether `address` lies in the pool (whether or not it is handed out).
  bool inPool(const Ipv4& address) const;
  // Number of names currently remembered, and the most there can be.
  size_t size() const;
  size_t capacity() const { return capacity_; }
  // The pool, e.g. "198.18.0.0/15".
  const std::string& cidr() const { return cidr_; }

 private:
  struct Slot {
    std::string name;                           // empty while the slot is unused
    mutable std::atomic<int64_t> last_used{0};  // Clock ticks; bumped under the shared lock
    int64_t stamp = 0;                          // position key in lru_ (<= last_used)
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  NameTable(uint32_t base, int prefix, std::string cidr, size_t capacity,
            std::chrono::nanoseconds min_reuse_age, std::function<Clock::time_point()> now);

  int64_t nowTicks() const;
  void touch(const Slot& slot) const;
  // REQUIRES: offset in [1, slots_.size()]; exclusive or shared lock held.
  Ipv4 addressOf(uint32_t offset) const;
  std::optional<uint32_t> offsetOf(const Ipv4& address) const;

  const uint32_t base_;  // network address, host order
  const uint32_t size_;  // addresses in the pool
  const std::string cidr_;
  const size_t capacity_;
  const int64_t min_reuse_ticks_;
  const std::function<Clock::time_point()> now_;

  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> by_name_;
  std::deque<Slot> slots_;  // slots_[i] is pool offset i + 1 (offset 0 is never handed out)
  std::set<std::pair<int64_t, uint32_t>> lru_;  // (stamp, offset), oldest first
};

}  // namespace clrk::egress::dns
