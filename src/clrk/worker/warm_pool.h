// WarmPool: per agent, sandboxes booted ahead of their executions (TaskAgent spec.warmPoolSize).
// A warm sandbox has its network allocated (netns, veth, rules) and its runtime sandbox booted
// with the launcher waiting (sandbox::SandboxSpec::await_launch): an execution that claims one
// only publishes its identity and launches its process.
//
// Semantics:
//   * setDesired() replaces the whole set of pools (level-based). Each size is capped at half the
//     worker's execution slots (at least 1), and the sizes together at all of its slots.
//   * A pool boots from the static sandbox spec of its request (SpecResolver: root filesystem,
//     mounts, user, limits, CA; the process fields do not matter). claim(key, shape) hands out a
//     ready sandbox only when its shape (shapeOf()) equals the claimer's, so an execution never
//     runs in a sandbox made for another image, user or limits; a template change thus turns the
//     old sandboxes into misses, and they are replaced.
//   * Ready sandboxes older than the pool's idle TTL, of pools no longer desired, beyond the size,
//     or whose launcher died are destroyed (and replaced while wanted).
//   * A failed boot is recorded (WarmPoolState::last_error) and retried with a backoff of 2 s
//     doubling to 60 s.
//   * Sandboxes are booted one at a time by one filler thread, so a pool refills at the speed of
//     one boot (gVisor ~0.2 s) and never competes with executions for more than one core. While
//     executions run (options.busy), boots are spaced by options.busy_spacing: a boot costs as
//     much CPU as a cold start, and taking it from running executions would slow exactly the
//     runs the pool is there to speed up. nudge() re-evaluates at once (an execution ended).
// Warm sandboxes hold no execution slot; they are the worker's memory (~16 MiB each for gVisor).
// Thread model: every public method is thread-safe; claim() never blocks on a sandbox.
#pragma once

#include "clrk/sandbox/net/network.h"
#include "clrk/sandbox/runtime.h"
#include "clrk/worker/api.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace clrk::worker {

// A sandbox handed to an execution by WarmPool::claim(): booted, its launcher waiting.
struct WarmSandbox {
  std::string sandbox_id;
  std::unique_ptr<sandbox::Sandbox> box;
  std::optional<sandbox::net::SandboxNetwork> network;  // nullopt without a NetworkManager
};

struct WarmPoolOptions {
  int max_executions = 4;  // the worker's slots: the caps derive from it
  std::chrono::milliseconds retry_min{2000};
  std::chrono::milliseconds retry_max{60000};
  std::function<bool()> busy;  // executions are running (null: never busy)
  std::chrono::milliseconds busy_spacing{1000};
};

class WarmPool {
 public:
  // The static spec of a request's sandbox (ExecutionManager::sandboxSpecFor()).
  using SpecResolver = std::function<Result<sandbox::SandboxSpec>(const ExecutionRequest&)>;

  WarmPool(WarmPoolOptions options, sandbox::Runtime& runtime,
           sandbox::net::NetworkManager* network, SpecResolver resolver);
  ~WarmPool();  // stop()
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  void setDesired(std::vector<WarmPoolSpec> pools);
  std::vector<WarmPoolState> states() const;
  // A ready sandbox of pool `key` whose shape is `shape`, or nullopt (counted as a miss when the
  // pool exists). The caller owns the result: launch it, then destroy it and release its network.
  std::optional<WarmSandbox> claim(const std::string& key, const std::string& shape);
  // Destroys every warm sandbox and stops the filler; later setDesired() calls are ignored.
  void stop();
  // Wakes the filler to look again (e.g. the worker just became idle).
  void nudge();

  // The parts of a spec that a booted sandbox is made of, as one comparable string.
  static std::string shapeOf(const sandbox::SandboxSpec& spec);

 private:
  struct Ready {
    WarmSandbox sandbox;
    std::string shape;
    std::chrono::steady_clock::time_point booted_at;
  };
  struct Pool {
    WarmPoolSpec spec;
    int size = 0;          // capped
    uint64_t version = 0;  // new (from versions_) when spec.request changes
    std::optional<sandbox::SandboxSpec> resolved;
    std::string shape;  // of `resolved`
    std::list<Ready> ready;
    int booting = 0;
    uint64_t claims = 0;
    uint64_t misses = 0;
    std::string last_error;
    int failures = 0;
    std::chrono::steady_clock::time_point retry_at{};
  };

  void fillLoop();
  // Under mutex_: moves out what must be destroyed now; returns the next TTL expiry.
  std::chrono::steady_clock::time_point collectExpired(std::vector<WarmSandbox>& out);
  // Under mutex_: the pool that should boot one more sandbox now, or nullptr.
  Pool* nextToBoot(std::chrono::steady_clock::time_point& wake);
  void boot(const std::string& key, uint64_t version, std::unique_lock<std::mutex>& lock);
  void dispose(WarmSandbox sandbox);
  void applyCaps();

  WarmPoolOptions options_;
  sandbox::Runtime& runtime_;
  sandbox::net::NetworkManager* network_;
  SpecResolver resolver_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, Pool> pools_;
  uint64_t versions_ = 0;
  std::chrono::steady_clock::time_point last_boot_{};
  bool stopping_ = false;
  std::thread filler_;
};

}  // namespace clrk::worker
