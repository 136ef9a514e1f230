#include "clrk/controller/work_queue.h"

#include "clrk/controller/controller.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace clrk::controller {
namespace {

using namespace std::chrono_literals;

TEST(WorkQueueTest, DeduplicatesQueuedKeys) {
  WorkQueue queue;
  queue.add("a");
  queue.add("b");
  queue.add("a");
  EXPECT_EQ(queue.length(), 2u);
  EXPECT_EQ(queue.get(), "a");
  EXPECT_EQ(queue.get(), "b");
  EXPECT_EQ(queue.length(), 0u);
}

TEST(WorkQueueTest, KeyAddedWhileProcessingIsRequeuedAfterDone) {
  WorkQueue queue;
  queue.add("a");
  ASSERT_EQ(queue.get(), "a");
  queue.add("a");  // while processing: not handed to a second worker
  EXPECT_EQ(queue.length(), 0u);
  queue.add("a");  // still one pending re-run
  queue.done("a");
  EXPECT_EQ(queue.length(), 1u);
  EXPECT_EQ(queue.get(), "a");
  queue.done("a");
  EXPECT_EQ(queue.length(), 0u);
}

TEST(WorkQueueTest, AddAfterDelaysTheKey) {
  WorkQueue queue;
  auto start = std::chrono::steady_clock::now();
  queue.addAfter("later", 100ms);
  EXPECT_EQ(queue.length(), 0u);
  EXPECT_EQ(queue.get(), "later");
  EXPECT_GE(std::chrono::steady_clock::now() - start, 100ms);
}

TEST(WorkQueueTest, AKeyWaitsOnceWithTheEarliestDelay) {
  // A reconciler that asks for a requeue on every pass must not pile up timers: each pass would
  // otherwise add one more, and after a burst of events the key would run many times a second.
  WorkQueue queue;
  for (int i = 0; i < 100; ++i) queue.addAfter("k", 10s);
  queue.addAfter("other", 10s);
  EXPECT_EQ(queue.delayedLength(), 2u);
  queue.addAfter("k", 20ms);  // earlier: replaces the 10 s wait
  queue.addAfter("k", 5s);    // later: ignored
  EXPECT_EQ(queue.delayedLength(), 2u);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(queue.get(), "k");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  queue.done("k");
  EXPECT_EQ(queue.delayedLength(), 1u);  // only "other" still waits
  queue.addAfter("k", 10s);              // a new wait once the old one fired
  EXPECT_EQ(queue.delayedLength(), 2u);
}

TEST(WorkQueueTest, RateLimitedBackoffGrowsAndForgetResets) {
  WorkQueue queue(WorkQueue::Options{.base_delay = 1ms, .max_delay = 8ms});
  for (int i = 0; i < 6; ++i) queue.addRateLimited("k");
  EXPECT_EQ(queue.failures("k"), 6);
  EXPECT_EQ(queue.get(), "k");  // delays are capped at 8 ms, so it arrives
  queue.forget("k");
  EXPECT_EQ(queue.failures("k"), 0);
}

TEST(WorkQueueTest, ShutDownWakesBlockedGetters) {
  WorkQueue queue;
  std::atomic<bool> returned{false};
  std::thread getter([&] {
    EXPECT_EQ(queue.get(), std::nullopt);
    returned = true;
  });
  std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(returned.load());
  queue.shutDown();
  getter.join();
  EXPECT_TRUE(returned.load());
  queue.add("ignored");
  EXPECT_EQ(queue.length(), 0u);
}

class CountingReconciler : public Reconciler {
 public:
  Result<ReconcileResult> reconcile(const Request& request) override {
    std::lock_guard lock(mutex);
    seen.push_back(request.key());
    if (request.name == "flaky" && ++flaky_calls < 3) {
      return Status(Code::Unavailable, "not yet");
    }
    if (request.name == "bad") return invalidArgument("never works");
    return ReconcileResult{};
  }
  std::mutex mutex;
  std::vector<std::string> seen;
  int flaky_calls = 0;
};

TEST(ControllerRuntimeTest, RetriesErrorsButNotTerminalErrors) {
  CountingReconciler reconciler;
  Controller controller("test", reconciler, 2, WorkQueue::Options{.base_delay = 1ms});
  controller.start();
  controller.enqueue("ns/flaky");
  controller.enqueue("ns/bad");
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(reconciler.mutex);
      if (reconciler.flaky_calls >= 3) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(50ms);
  controller.stop();
  std::lock_guard lock(reconciler.mutex);
  EXPECT_EQ(reconciler.flaky_calls, 3);  // two failures retried, then success and no more
  EXPECT_EQ(std::count(reconciler.seen.begin(), reconciler.seen.end(), "ns/bad"), 1);
  EXPECT_EQ(Request::fromKey("ns/x").namespace_name, "ns");
  EXPECT_EQ(Request::fromKey("cluster").name, "cluster");
}

}  // namespace
}  // namespace clrk::controller
