#include "clrk/worker/warm_pool.h"

#include "clrk/base/ids.h"
#include "clrk/base/log.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace clrk::worker {

using Clock = std::chrono::steady_clock;

WarmPool::WarmPool(WarmPoolOptions options, sandbox::Runtime& runtime,
                   sandbox::net::NetworkManager* network, SpecResolver resolver)
    : options_(options), runtime_(runtime), network_(network), resolver_(std::move(resolver)) {
  if (options_.max_executions < 1) options_.max_executions = 1;
  filler_ = std::thread([this] { fillLoop(); });
}

WarmPool::~WarmPool() { stop(); }

std::string WarmPool::shapeOf(const sandbox::SandboxSpec& spec) {
  nlohmann::json mounts = nlohmann::json::array();
  for (const auto& mount : spec.mounts) {
    mounts.push_back({mount.source.string(), mount.destination, mount.read_only});
  }
  nlohmann::json shape = {
      {"rootfs", spec.rootfs_kind == sandbox::RootfsKind::Host ? "host" : "dir"},
      {"dir", spec.rootfs_dir.string()},
      {"uid", spec.uid},
      {"gid", spec.gid},
      {"hostname", spec.hostname},
      {"mounts", mounts},
      {"ca", spec.ca_cert_pem},
      {"limits", {spec.limits.cpu_millis, spec.limits.memory_bytes, spec.limits.pids}},
      {"log", spec.log_max_bytes}};
  return shape.dump();
}

void WarmPool::applyCaps() {
  int per_pool = std::max(1, options_.max_executions / 2);
  int left = options_.max_executions;
  for (auto& [key, pool] : pools_) {
    pool.size = std::min({pool.spec.size, per_pool, left});
    left -= pool.size;
  }
}

void WarmPool::setDesired(std::vector<WarmPoolSpec> pools) {
  std::vector<WarmSandbox> doomed;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    std::map<std::string, WarmPoolSpec> wanted;
    for (auto& spec : pools) {
      std::string key = spec.key;
      wanted.emplace(std::move(key), std::move(spec));
    }
    for (auto it = pools_.begin(); it != pools_.end();) {
      if (wanted.count(it->first) == 0) {
        for (auto& ready : it->second.ready) doomed.push_back(std::move(ready.sandbox));
        it = pools_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [key, spec] : wanted) {
      Pool& pool = pools_[key];
      if (pool.version == 0 || toJson(pool.spec.request) != toJson(spec.request)) {
        // A new template: what was booted from the old one is of no use any more.
        for (auto& ready : pool.ready) doomed.push_back(std::move(ready.sandbox));
        pool.ready.clear();
        pool.resolved.reset();
        pool.shape.clear();
        pool.failures = 0;
        pool.retry_at = {};
        pool.last_error.clear();
        pool.version = ++versions_;
      }
      pool.spec = std::move(spec);
    }
    applyCaps();
  }
  cv_.notify_all();
  for (auto& sandbox : doomed) dispose(std::move(sandbox));
}

std::vector<WarmPoolState> WarmPool::states() const {
  std::lock_guard lock(mutex_);
  std::vector<WarmPoolState> states;
  for (const auto& [key, pool] : pools_) {
    WarmPoolState state;
    state.key = key;
    state.size = pool.size;
    state.ready = static_cast<int>(pool.ready.size());
    state.booting = pool.booting;
    state.claims = pool.claims;
    state.misses = pool.misses;
    state.last_error = pool.last_error;
    states.push_back(std::move(state));
  }
  return states;
}

std::optional<WarmSandbox> WarmPool::claim(const std::string& key, const std::string& shape) {
  std::optional<WarmSandbox> claimed;
  {
    std::lock_guard lock(mutex_);
    auto it = pools_.find(key);
    if (it == pools_.end()) return std::nullopt;
    Pool& pool = it->second;
    // Oldest first: the ones closest to their idle TTL are used before they expire.
    for (auto ready = pool.ready.begin(); ready != pool.ready.end(); ++ready) {
      if (ready->shape != shape) continue;
      claimed = std::move(ready->sandbox);
      pool.ready.erase(ready);
      break;
    }
    if (claimed) {
      ++pool.claims;
    } else {
      ++pool.misses;
    }
  }
  cv_.notify_all();  // refill
  return claimed;
}

void WarmPool::stop() {
  std::vector<WarmSandbox> doomed;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && !filler_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (filler_.joinable()) filler_.join();
  {
    std::lock_guard lock(mutex_);
    for (auto& [key, pool] : pools_) {
      for (auto& ready : pool.ready) doomed.push_back(std::move(ready.sandbox));
      pool.ready.clear();
    }
    pools_.clear();
  }
  for (auto& sandbox : doomed) dispose(std::move(sandbox));
}

void WarmPool::nudge() { cv_.notify_all(); }

void WarmPool::dispose(WarmSandbox sandbox) {
  if (sandbox.box) {
    Status destroyed = sandbox.box->destroy();
    if (!destroyed.ok()) {
      logger("worker")->warn("warm sandbox {}: {}", sandbox.sandbox_id, destroyed.toString());
    }
  }
  if (sandbox.network && network_ != nullptr) {
    Status released = network_->releaseSoon(*sandbox.network);
    if (!released.ok()) {
      logger("worker")->warn("warm sandbox {}: releasing its network: {}", sandbox.sandbox_id,
                             released.toString());
    }
  }
}

Clock::time_point WarmPool::collectExpired(std::vector<WarmSandbox>& out) {
  auto now = Clock::now();
  auto next = Clock::time_point::max();
  for (auto& [key, pool] : pools_) {
    auto ttl = std::chrono::seconds(pool.spec.idle_ttl_seconds);
    int keep = pool.size;
    for (auto it = pool.ready.begin(); it != pool.ready.end();) {
      // A launcher that ended (killed, out of memory) left a sandbox nobody can launch.
      bool dead = it->sandbox.box->wait(std::chrono::milliseconds(0)).ok();
      bool surplus = keep <= 0;
      if (dead || surplus || now >= it->booted_at + ttl || it->shape != pool.shape) {
        out.push_back(std::move(it->sandbox));
        it = pool.ready.erase(it);
        continue;
      }
      --keep;
      next = std::min(next, it->booted_at + ttl);
      ++it;
    }
  }
  return next;
}

WarmPool::Pool* WarmPool::nextToBoot(Clock::time_point& wake) {
  auto now = Clock::now();
  int total = 0;
  for (const auto& [key, pool] : pools_) {
    total += static_cast<int>(pool.ready.size()) + pool.booting;
  }
  if (total >= options_.max_executions) return nullptr;
  for (auto& [key, pool] : pools_) {
    if (static_cast<int>(pool.ready.size()) + pool.booting >= pool.size) continue;
    if (now < pool.retry_at) {
      wake = std::min(wake, pool.retry_at);
      continue;
    }
    return &pool;
  }
  return nullptr;
}

void WarmPool::fillLoop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    std::vector<WarmSandbox> doomed;
    Clock::time_point wake = collectExpired(doomed);
    if (!doomed.empty()) {
      lock.unlock();
      for (auto& sandbox : doomed) dispose(std::move(sandbox));
      lock.lock();
      continue;
    }
    // Poll for dead launchers now and then even when nothing expires.
    wake = std::min(wake, Clock::now() + std::chrono::seconds(5));
    if (Pool* pool = nextToBoot(wake)) {
      auto allowed = last_boot_ + options_.busy_spacing;
      if (options_.busy && Clock::now() < allowed) {
        lock.unlock();
        bool busy = options_.busy();
        lock.lock();
        if (busy) {
          cv_.wait_until(lock, std::min(wake, allowed));
          continue;
        }
      }
      std::string key = pool->spec.key;
      last_boot_ = Clock::now();
      boot(key, pool->version, lock);
      continue;
    }
    cv_.wait_until(lock, wake);
  }
}

// Called with `lock` held; releases it while the sandbox boots.
void WarmPool::boot(const std::string& key, uint64_t version, std::unique_lock<std::mutex>& lock) {
  Pool& pool = pools_.at(key);
  ++pool.booting;
  std::optional<sandbox::SandboxSpec> resolved = pool.resolved;
  ExecutionRequest request = pool.spec.request;
  lock.unlock();

  Status status;
  std::string shape;
  WarmSandbox warm;
  if (!resolved) {
    auto spec = resolver_(request);  // may pull an image
    if (spec.ok()) {
      resolved = std::move(spec).value();
    } else {
      status = spec.status();
    }
  }
  if (status.ok()) {
    shape = shapeOf(*resolved);
    warm.sandbox_id = "wp-" + randomHex(8);
    sandbox::SandboxSpec spec = *resolved;
    spec.id = warm.sandbox_id;
    spec.await_launch = true;
    if (network_ != nullptr) {
      auto allocated = network_->allocate(warm.sandbox_id);
      if (allocated.ok()) {
        warm.network = allocated.value();
        spec.netns_path = warm.network->netns_path;
      } else {
        status = allocated.status().withContext("sandbox network");
      }
    }
    if (status.ok()) {
      auto prepared = runtime_.prepare(spec);
      if (prepared.ok()) {
        warm.box = std::move(prepared).value();
        status = warm.box->start();
      } else {
        status = prepared.status();
      }
    }
  }

  lock.lock();
  auto it = pools_.find(key);
  bool wanted = it != pools_.end() && it->second.version == version && !stopping_;
  if (it != pools_.end() && it->second.version == version) {
    Pool& current = it->second;
    --current.booting;
    if (status.ok()) {
      current.resolved = resolved;
      current.shape = shape;
      current.failures = 0;
      current.last_error.clear();
    } else {
      current.last_error = status.toString();
      auto backoff = options_.retry_min * (1 << std::min(current.failures, 10));
      current.retry_at =
          Clock::now() + std::min<std::chrono::milliseconds>(backoff, options_.retry_max);
      ++current.failures;
      logger("worker")->warn("warm pool {}: boot failed: {}", key, current.last_error);
    }
  } else if (it != pools_.end()) {
    --it->second.booting;  // booted for a template that has changed since
  }
  if (status.ok() && wanted) {
    it->second.ready.push_back({std::move(warm), shape, Clock::now()});
    return;
  }
  lock.unlock();
  dispose(std::move(warm));
  lock.lock();
}

}  // namespace clrk::worker
