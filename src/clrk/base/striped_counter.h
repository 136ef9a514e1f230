// Per-thread striping for state that hot threads update concurrently.
//
// threadStripe() is a small, stable number for the calling thread (assigned in order of first
// use), for picking one of N shards so that threads running at once rarely share one.
// StripedCounter is a counter whose adders do not share a cache line: each adds to its thread's
// slot and load() sums the slots (exact once the adders are done, a snapshot while they run).
// Arithmetic is modulo 2^64, so a subtraction may land in another thread's slot than its add.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace clrk {

inline size_t threadStripe() {
  static std::atomic<size_t> next{0};
  thread_local size_t mine = next.fetch_add(1, std::memory_order_relaxed);
  return mine;
}

class StripedCounter {
 public:
  void fetch_add(uint64_t n, std::memory_order order = std::memory_order_relaxed) {
    slot().fetch_add(n, order);
  }
  void fetch_sub(uint64_t n, std::memory_order order = std::memory_order_relaxed) {
    slot().fetch_sub(n, order);
  }
  uint64_t load() const {
    uint64_t sum = 0;
    for (const Slot& slot : slots_) sum += slot.value.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr size_t kSlots = 16;
  struct alignas(64) Slot {
    std::atomic<uint64_t> value{0};
  };
  std::atomic<uint64_t>& slot() { return slots_[threadStripe() % kSlots].value; }

  std::array<Slot, kSlots> slots_{};
};

}  // namespace clrk
