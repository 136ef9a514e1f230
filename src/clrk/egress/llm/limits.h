// Governance counters shared by all connections: request rate limits (token bucket) and token
// budgets. Thread-safe, sharded by key (no global lock); idle keys expire so memory is bounded
// by the number of active keys.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace clrk::egress::llm {

struct LimitDecision {
  bool allowed = true;
  // When refused: how long until a retry can succeed (rounded up to whole milliseconds; 0 with
  // `never`).
  std::chrono::milliseconds retry_after{0};
  // Requests (rate limiter) or tokens (budget) left after this decision; never negative.
  int64_t remaining = 0;
  // Refused for good: the window never resets (per-execution budget exhausted).
  bool never = false;
};

class RateLimiter {
 public:
  using Decision = LimitDecision;
  using Clock = std::chrono::steady_clock;

  // `idle_expiry`: a key untouched this long after its bucket refilled is forgotten.
  explicit RateLimiter(std::chrono::milliseconds idle_expiry = std::chrono::minutes(10));
  ~RateLimiter();
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes one request from `key`'s bucket: capacity `requests`, refilled continuously at
  // `requests` per `window`. A bucket starts full. requests <= 0 or window <= 0 -> refused,
  // never. A change of (requests, window) for a key keeps its level (clamped to the capacity).
  Decision acquire(std::string_view key, int32_t requests, std::chrono::milliseconds window,
                   Clock::time_point now);

  // Number of keys held (for tests and metrics).
  size_t size() const;
  // Drops keys idle past their expiry (also done incrementally by acquire()).
  void expire(Clock::time_point now);

 private:
  struct Shard;
  std::chrono::milliseconds idle_expiry_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

enum class BudgetWindow {
  kDay,        // the UTC calendar day of `now`; resets at 00:00 UTC
  kExecution,  // never resets (key it by execution id); forgotten after idle expiry
};

class TokenBudgets {
 public:
  using Decision = LimitDecision;
  using Window = BudgetWindow;
  using Clock = std::chrono::system_clock;

  explicit TokenBudgets(std::chrono::milliseconds idle_expiry = std::chrono::hours(26));
  ~TokenBudgets();
  TokenBudgets(const TokenBudgets&) = delete;
  TokenBudgets& operator=(const TokenBudgets&) = delete;

  // May a new request start? Allowed while tokens used in the current window < limit (a stream
  // that crossed the budget was allowed to finish; this refuses the next request). Refusal:
  // kDay -> retry_after = time until the next UTC midnight; kExecution -> never=true,
  // retry_after 0. limit <= 0 means unlimited (always allowed).
  Decision check(std::string_view key, int64_t limit, BudgetWindow window,
                 Clock::time_point now) const;
  // Adds `tokens` (input+output from the response) to `key` in the window of `now`.
  void consume(std::string_view key, int64_t tokens, BudgetWindow window, Clock::time_point now);
  // Tokens used by `key` in the window of `now`.
  int64_t used(std::string_view key, BudgetWindow window, Clock::time_point now) const;
  // Forgets a key (e.g. an execution ended).
  void forget(std::string_view key, BudgetWindow window);

  size_t size() const;
  void expire(Clock::time_point now);

 private:
  struct Shard;
  std::chrono::milliseconds idle_expiry_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace clrk::egress::llm
