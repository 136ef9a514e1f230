#include "clrk/egress/llm/limits.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>

namespace clrk::egress::llm {
namespace {

constexpr size_t kShards = 16;
// A shard sweeps its idle keys at most once per this many operations.
constexpr uint32_t kSweepEvery = 256;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

size_t shardOf(std::string_view key) { return std::hash<std::string_view>{}(key) % kShards; }

template <class Map>
typename Map::iterator findOrInsert(Map& map, std::string_view key, bool* inserted) {
  auto it = map.find(key);
  *inserted = it == map.end();
  if (*inserted) it = map.emplace(std::string(key), typename Map::mapped_type{}).first;
  return it;
}

std::chrono::milliseconds ceilMs(std::chrono::nanoseconds d) {
  return std::chrono::ceil<std::chrono::milliseconds>(std::max(d, std::chrono::nanoseconds(0)));
}

}  // namespace

// ---- RateLimiter ----

struct RateLimiter::Shard {
  struct Bucket {
    double tokens = 0;
    double capacity = 0;
    RateLimiter::Clock::time_point updated;
    RateLimiter::Clock::time_point full_at;  // when the bucket is full again if left alone
  };
  mutable std::mutex mutex;
  std::unordered_map<std::string, Bucket, StringHash, std::equal_to<>> buckets;
  uint32_t ops = 0;

  void sweep(Clock::time_point now, std::chrono::milliseconds idle_expiry) {
    std::erase_if(buckets, [&](const auto& entry) {
      const Bucket& b = entry.second;
      // A full bucket behaves exactly like a new one, so forgetting it changes nothing.
      return now >= b.full_at && now - b.updated >= idle_expiry;
    });
  }
};

RateLimiter::RateLimiter(std::chrono::milliseconds idle_expiry) : idle_expiry_(idle_expiry) {
  for (size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>());
}

RateLimiter::~RateLimiter() = default;

RateLimiter::Decision RateLimiter::acquire(std::string_view key, int32_t requests,
                                           std::chrono::milliseconds window,
                                           Clock::time_point now) {
  Decision d;
  if (requests <= 0 || window.count() <= 0) {
    d.allowed = false;
    d.never = true;
    return d;
  }
  const double capacity = requests;
  const double per_ns =
      capacity /
      static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(window).count());
  Shard& shard = *shards_[shardOf(key)];
  std::lock_guard lock(shard.mutex);
  if (++shard.ops % kSweepEvery == 0) shard.sweep(now, idle_expiry_);
  bool inserted = false;
  auto it = findOrInsert(shard.buckets, key, &inserted);
  Shard::Bucket& b = it->second;
  if (inserted) {
    b.tokens = capacity;
    b.updated = now;
  } else {
    if (now > b.updated) {
      double elapsed = static_cast<double>((now - b.updated).count());
      b.tokens += elapsed * per_ns;
      b.updated = now;
    }
    b.tokens = std::min(b.tokens, capacity);
  }
  b.capacity = capacity;
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    d.allowed = true;
    d.remaining = static_cast<int64_t>(std::floor(b.tokens));
  } else {
    d.allowed = false;
    d.remaining = 0;
    double wait_ns = (1.0 - b.tokens) / per_ns;
    d.retry_after = ceilMs(std::chrono::nanoseconds(static_cast<int64_t>(std::ceil(wait_ns))));
    if (d.retry_after.count() == 0) d.retry_after = std::chrono::milliseconds(1);
  }
  double to_full_ns = (capacity - b.tokens) / per_ns;
  b.full_at = now + std::chrono::nanoseconds(static_cast<int64_t>(std::ceil(to_full_ns)));
  return d;
}

size_t RateLimiter::size() const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    n += shard->buckets.size();
  }
  return n;
}

void RateLimiter::expire(Clock::time_point now) {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    shard->sweep(now, idle_expiry_);
  }
}

// ---- TokenBudgets ----

namespace {

int64_t utcDay(TokenBudgets::Clock::time_point now) {
  return std::chrono::floor<std::chrono::days>(now).time_since_epoch().count();
}

}  // namespace

struct TokenBudgets::Shard {
  struct Counter {
    int64_t used = 0;
    int64_t day = 0;  // kDay: the UTC day `used` belongs to
    Clock::time_point touched;
  };
  using Map = std::unordered_map<std::string, Counter, StringHash, std::equal_to<>>;
  mutable std::mutex mutex;
  Map daily;
  Map execution;
  uint32_t ops = 0;

  Map& map(BudgetWindow w) { return w == BudgetWindow::kDay ? daily : execution; }
  const Map& map(BudgetWindow w) const { return w == BudgetWindow::kDay ? daily : execution; }

  void sweep(Clock::time_point now, std::chrono::milliseconds idle_expiry) {
    int64_t today = utcDay(now);
    std::erase_if(daily, [&](const auto& e) { return e.second.day < today; });
    std::erase_if(execution, [&](const auto& e) { return now - e.second.touched >= idle_expiry; });
  }
};

TokenBudgets::TokenBudgets(std::chrono::milliseconds idle_expiry) : idle_expiry_(idle_expiry) {
  for (size_t i = 0; i < kShards; ++i) shards_.push_back(std::make_unique<Shard>());
}

TokenBudgets::~TokenBudgets() = default;

int64_t TokenBudgets::used(std::string_view key, BudgetWindow window, Clock::time_point now) const {
  const Shard& shard = *shards_[shardOf(key)];
  std::lock_guard lock(shard.mutex);
  const auto& map = shard.map(window);
  auto it = map.find(key);
  if (it == map.end()) return 0;
  if (window == BudgetWindow::kDay && it->second.day != utcDay(now)) return 0;
  return it->second.used;
}

TokenBudgets::Decision TokenBudgets::check(std::string_view key, int64_t limit, BudgetWindow window,
                                           Clock::time_point now) const {
  Decision d;
  if (limit <= 0) {
    d.allowed = true;
    d.remaining = std::numeric_limits<int64_t>::max();
    return d;
  }
  int64_t spent = used(key, window, now);
  d.remaining = std::max<int64_t>(0, limit - spent);
  d.allowed = spent < limit;
  if (!d.allowed) {
    if (window == BudgetWindow::kDay) {
      auto next_midnight = std::chrono::floor<std::chrono::days>(now) + std::chrono::days(1);
      d.retry_after = ceilMs(next_midnight - now);
    } else {
      d.never = true;
    }
  }
  return d;
}

void TokenBudgets::consume(std::string_view key, int64_t tokens, BudgetWindow window,
                           Clock::time_point now) {
  if (tokens <= 0) return;
  Shard& shard = *shards_[shardOf(key)];
  std::lock_guard lock(shard.mutex);
  if (++shard.ops % kSweepEvery == 0) shard.sweep(now, idle_expiry_);
  bool inserted = false;
  auto it = findOrInsert(shard.map(window), key, &inserted);
  Shard::Counter& c = it->second;
  int64_t today = utcDay(now);
  if (window == BudgetWindow::kDay && c.day != today) {
    c.day = today;
    c.used = 0;
  }
  c.used = tokens > std::numeric_limits<int64_t>::max() - c.used
               ? std::numeric_limits<int64_t>::max()
               : c.used + tokens;
  c.touched = now;
}

void TokenBudgets::forget(std::string_view key, BudgetWindow window) {
  Shard& shard = *shards_[shardOf(key)];
  std::lock_guard lock(shard.mutex);
  auto& map = shard.map(window);
  auto it = map.find(key);
  if (it != map.end()) map.erase(it);
}

size_t TokenBudgets::size() const {
  size_t n = 0;
  for (const auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    n += shard->daily.size() + shard->execution.size();
  }
  return n;
}

void TokenBudgets::expire(Clock::time_point now) {
  for (auto& shard : shards_) {
    std::lock_guard lock(shard->mutex);
    shard->sweep(now, idle_expiry_);
  }
}

}  // namespace clrk::egress::llm
