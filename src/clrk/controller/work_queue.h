// WorkQueue: the deduplicating, rate-limited queue between event sources and a Reconciler
// (controller-runtime semantics).
//   * A key queued twice before it is taken is processed once.
//   * A key is never processed by two workers at once: a key added while it is being processed
//     is queued again when done() is called for it.
//   * addAfter() queues a key after a delay; addRateLimited() after the key's exponential
//     backoff (base * 2^failures, capped), which forget() resets. A key waits at most once: the
//     earliest of its delays wins (else every reconcile that asks for a requeue would start one
//     more chain of timers, and they never merge).
// Thread model: every method is thread-safe; get() blocks until a key is ready or shutDown().
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>

namespace clrk::controller {

class WorkQueue {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    std::chrono::milliseconds base_delay{5};
    std::chrono::milliseconds max_delay{60000};
  };

  WorkQueue() : WorkQueue(Options{}) {}
  explicit WorkQueue(Options options) : options_(options) {}

  void add(const std::string& key);
  void addAfter(const std::string& key, std::chrono::milliseconds delay);
  void addRateLimited(const std::string& key);
  // Clears the key's failure count.
  void forget(const std::string& key);
  int failures(const std::string& key) const;

  // The next ready key (marked processing), or nullopt once shut down.
  std::optional<std::string> get();
  // Marks `key` no longer processing; re-queues it when it was added meanwhile.
  void done(const std::string& key);

  void shutDown();
  bool shuttingDown() const;
  // Keys queued and ready (not counting delayed ones).
  size_t length() const;
  // Keys waiting for their delay.
  size_t delayedLength() const;

 private:
  void addLocked(const std::string& key);
  void promoteDueLocked(Clock::time_point now);

  Options options_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::string> queue_;
  std::set<std::string> dirty_;       // queued (in queue_ or waiting for done())
  std::set<std::string> processing_;  // taken by get(), not yet done()
  std::set<std::pair<Clock::time_point, std::string>> delayed_;  // by due time
  std::map<std::string, Clock::time_point> delay_of_;            // each key of delayed_, once
  std::map<std::string, int> failures_;
  bool shutting_down_ = false;
};

}  // namespace clrk::controller
