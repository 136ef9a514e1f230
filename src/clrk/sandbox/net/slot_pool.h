// Slot allocation for the /30s of a NetworkManager's pool. Freed slots are reused
// least-recently-freed first, and a slot freed less than `quarantine` ago is only reused when no
// never-used slot is left, so an address the egress may still attribute is not handed out at once.
// Thread model: not thread-safe; the owner serialises calls.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

namespace clrk::sandbox::net {

class SlotPool {
 public:
  using Clock = std::chrono::steady_clock;

  SlotPool(int capacity, Clock::duration quarantine);

  // A free slot, or nullopt when all `capacity` slots are in use.
  std::optional<int> acquire(Clock::time_point now);
  // Returns `slot` to the pool; false (and no change) when it is not in use.
  bool release(int slot, Clock::time_point now);
  bool inUse(int slot) const;

  int capacity() const { return capacity_; }
  size_t used() const { return used_; }

 private:
  int capacity_;
  Clock::duration quarantine_;
  int next_fresh_ = 0;                                  // slots >= this were never used
  std::deque<std::pair<int, Clock::time_point>> free_;  // oldest release first
  std::vector<bool> in_use_;                            // grows with next_fresh_
  size_t used_ = 0;
};

}  // namespace clrk::sandbox::net
