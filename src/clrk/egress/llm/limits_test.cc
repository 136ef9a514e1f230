#include "clrk/egress/llm/limits.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace clrk::egress::llm {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(RateLimiterTest, TokenBucket) {
  RateLimiter limiter;
  auto t0 = RateLimiter::Clock::time_point() + hours(1);
  for (int i = 0; i < 3; ++i) {
    auto d = limiter.acquire("agent-a", 3, seconds(3), t0);
    EXPECT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 2 - i);
  }
  auto refused = limiter.acquire("agent-a", 3, seconds(3), t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_FALSE(refused.never);
  EXPECT_EQ(refused.retry_after, milliseconds(1000));
  // Other keys are independent.
  EXPECT_TRUE(limiter.acquire("agent-b", 3, seconds(3), t0).allowed);
  // Refill: one token per second.
  EXPECT_FALSE(limiter.acquire("agent-a", 3, seconds(3), t0 + milliseconds(999)).allowed);
  EXPECT_TRUE(limiter.acquire("agent-a", 3, seconds(3), t0 + milliseconds(1000)).allowed);
  auto again = limiter.acquire("agent-a", 3, seconds(3), t0 + milliseconds(1500));
  EXPECT_FALSE(again.allowed);
  EXPECT_EQ(again.retry_after, milliseconds(500));
  // Never beyond capacity after a long idle.
  auto later = t0 + hours(1);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(limiter.acquire("agent-a", 3, seconds(3), later).allowed);
  EXPECT_FALSE(limiter.acquire("agent-a", 3, seconds(3), later).allowed);
}

TEST(RateLimiterTest, InvalidLimitsRefuse) {
  RateLimiter limiter;
  auto now = RateLimiter::Clock::now();
  EXPECT_FALSE(limiter.acquire("k", 0, seconds(1), now).allowed);
  EXPECT_TRUE(limiter.acquire("k", 0, seconds(1), now).never);
  EXPECT_FALSE(limiter.acquire("k", 5, milliseconds(0), now).allowed);
}

TEST(RateLimiterTest, IdleKeysExpire) {
  RateLimiter limiter(seconds(10));
  auto t0 = RateLimiter::Clock::time_point() + hours(1);
  for (int i = 0; i < 1000; ++i) limiter.acquire("k" + std::to_string(i), 5, seconds(1), t0);
  EXPECT_EQ(limiter.size(), 1000u);
  limiter.expire(t0 + seconds(5));
  EXPECT_EQ(limiter.size(), 1000u);
  limiter.expire(t0 + seconds(11));
  EXPECT_EQ(limiter.size(), 0u);
  // Incremental sweeping keeps a stream of one-off keys bounded without explicit expire().
  RateLimiter churn(milliseconds(1));
  for (int i = 0; i < 20000; ++i) {
    churn.acquire("once-" + std::to_string(i), 1, milliseconds(1), t0 + milliseconds(10 * i));
  }
  EXPECT_LT(churn.size(), 20000u / 4);
}

TEST(RateLimiterTest, ConcurrentAcquireNeverOverAdmits) {
  RateLimiter limiter;
  auto now = RateLimiter::Clock::time_point() + hours(1);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 2000;
  std::atomic<int> allowed_shared{0};
  std::atomic<int> allowed_own{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (limiter.acquire("shared", 500, hours(1), now).allowed) ++allowed_shared;
        if (limiter.acquire("own-" + std::to_string(t), 100, hours(1), now).allowed) ++allowed_own;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(allowed_shared.load(), 500);
  EXPECT_EQ(allowed_own.load(), kThreads * 100);
}

// 2026-11-25T18:00:00Z
TokenBudgets::Clock::time_point evening() {
  return TokenBudgets::Clock::time_point(seconds(1795629600));
}

TEST(TokenBudgetsTest, DailyBudgetCrossedByStreamRefusesNextUntilMidnight) {
  TokenBudgets budgets;
  auto now = evening();
  auto d = budgets.check("ns/route", 1000, BudgetWindow::kDay, now);
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 1000);
  budgets.consume("ns/route", 900, BudgetWindow::kDay, now);
  EXPECT_TRUE(budgets.check("ns/route", 1000, BudgetWindow::kDay, now).allowed);
  // A stream that started under budget and finished over it is counted in full.
  budgets.consume("ns/route", 400, BudgetWindow::kDay, now);
  EXPECT_EQ(budgets.used("ns/route", BudgetWindow::kDay, now), 1300);
  auto refused = budgets.check("ns/route", 1000, BudgetWindow::kDay, now);
  EXPECT_FALSE(refused.allowed);
  EXPECT_FALSE(refused.never);
  EXPECT_EQ(refused.remaining, 0);
  EXPECT_EQ(refused.retry_after, std::chrono::duration_cast<milliseconds>(hours(6)));
  // Next UTC day: fresh budget.
  auto tomorrow = now + hours(6);
  EXPECT_TRUE(budgets.check("ns/route", 1000, BudgetWindow::kDay, tomorrow).allowed);
  EXPECT_EQ(budgets.used("ns/route", BudgetWindow::kDay, tomorrow), 0);
  budgets.consume("ns/route", 10, BudgetWindow::kDay, tomorrow);
  EXPECT_EQ(budgets.used("ns/route", BudgetWindow::kDay, tomorrow), 10);
}

TEST(TokenBudgetsTest, PerExecutionNeverResets) {
  TokenBudgets budgets(hours(1));
  auto now = evening();
  budgets.consume("exec-1", 500, BudgetWindow::kExecution, now);
  auto d = budgets.check("exec-1", 500, BudgetWindow::kExecution, now + hours(30) - hours(29));
  EXPECT_FALSE(d.allowed);
  EXPECT_TRUE(d.never);
  EXPECT_EQ(d.retry_after, milliseconds(0));
  // The same key in the daily window is a different counter.
  EXPECT_TRUE(budgets.check("exec-1", 500, BudgetWindow::kDay, now).allowed);
  EXPECT_TRUE(budgets.check("exec-1", 0, BudgetWindow::kExecution, now).allowed);  // unlimited
  budgets.forget("exec-1", BudgetWindow::kExecution);
  EXPECT_TRUE(budgets.check("exec-1", 500, BudgetWindow::kExecution, now).allowed);
}

TEST(TokenBudgetsTest, ExpiryBoundsMemory) {
  TokenBudgets budgets(hours(1));
  auto now = evening();
  for (int i = 0; i < 100; ++i) {
    budgets.consume("e" + std::to_string(i), 1, BudgetWindow::kExecution, now);
    budgets.consume("d" + std::to_string(i), 1, BudgetWindow::kDay, now);
  }
  EXPECT_EQ(budgets.size(), 200u);
  budgets.expire(now + std::chrono::minutes(30));
  EXPECT_EQ(budgets.size(), 200u);
  budgets.expire(now + hours(2));  // executions idle > 1h; still the same UTC day
  EXPECT_EQ(budgets.size(), 100u);
  budgets.expire(now + hours(7));  // next day: daily counters are dead
  EXPECT_EQ(budgets.size(), 0u);
}

TEST(TokenBudgetsTest, ConcurrentConsumeIsExact) {
  TokenBudgets budgets;
  auto now = evening();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5000; ++i) {
        budgets.consume("shared", 3, BudgetWindow::kDay, now);
        budgets.consume("agent-" + std::to_string(t % 4), 1, BudgetWindow::kExecution, now);
        (void)budgets.check("shared", 1000000, BudgetWindow::kDay, now);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(budgets.used("shared", BudgetWindow::kDay, now), 8 * 5000 * 3);
  EXPECT_EQ(budgets.used("agent-0", BudgetWindow::kExecution, now), 2 * 5000);
}

}  // namespace
}  // namespace clrk::egress::llm
