#include "clrk/sandbox/net/slot_pool.h"

namespace clrk::sandbox::net {

SlotPool::SlotPool(int capacity, Clock::duration quarantine)
    : capacity_(capacity), quarantine_(quarantine) {}

std::optional<int> SlotPool::acquire(Clock::time_point now) {
  int slot = -1;
  bool front_cooled = !free_.empty() && now - free_.front().second >= quarantine_;
  if (!free_.empty() && (front_cooled || next_fresh_ >= capacity_)) {
    slot = free_.front().first;
    free_.pop_front();
  } else if (next_fresh_ < capacity_) {
    slot = next_fresh_++;
    in_use_.resize(static_cast<size_t>(next_fresh_), false);
  } else {
    return std::nullopt;
  }
  in_use_[static_cast<size_t>(slot)] = true;
  ++used_;
  return slot;
}

bool SlotPool::release(int slot, Clock::time_point now) {
  if (!inUse(slot)) return false;
  in_use_[static_cast<size_t>(slot)] = false;
  --used_;
  free_.emplace_back(slot, now);
  return true;
}

bool SlotPool::inUse(int slot) const {
  return slot >= 0 && static_cast<size_t>(slot) < in_use_.size() &&
         in_use_[static_cast<size_t>(slot)];
}

}  // namespace clrk::sandbox::net
