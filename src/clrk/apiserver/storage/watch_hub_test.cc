// WatchHub on its own: ring bounds, replay, queue limits, bookkeeping. (The backends' watch
// behaviour is covered by storage_conformance_test.)
#include "clrk/apiserver/storage/watch_hub.h"

#include "clrk/apiserver/storage/storage_test_util.h"

#include <gtest/gtest.h>

#include <thread>

namespace clrk::apiserver::storage {
namespace {

using std::chrono::milliseconds;
using testing::collect;

WatchEvent event(int64_t revision, std::string resource = "pods", std::string ns = "ns",
                 size_t value_size = 10) {
  return WatchEvent{EventType::Added, StoredObject{ObjectKey{std::move(resource), std::move(ns),
                                                             "o" + std::to_string(revision)},
                                                   std::string(value_size, 'v'), revision}};
}

TEST(WatchHub, CountBoundEvictsOldest) {
  WatchHub hub(WatchHubOptions{.history = 3, .history_bytes = 1 << 20, .max_queue = 100});
  hub.reset(10);
  EXPECT_EQ(hub.oldestRevision(), 10);
  for (int64_t r = 11; r <= 15; ++r) hub.publish(event(r));
  EXPECT_EQ(hub.lastRevision(), 15);
  EXPECT_EQ(hub.oldestRevision(), 12);  // 13, 14, 15 remain
  EXPECT_EQ(hub.watch("pods", "", 11).status().code(), Code::Gone);
  auto watch = hub.watch("pods", "", 12);
  ASSERT_TRUE(watch.ok());
  auto events = collect(**watch, 3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].object.revision, 13);
}

TEST(WatchHub, ByteBoundEvictsOldest) {
  WatchHub hub(WatchHubOptions{.history = 1000, .history_bytes = 5000, .max_queue = 100});
  hub.reset(0);
  for (int64_t r = 1; r <= 10; ++r) hub.publish(event(r, "pods", "ns", 1000));
  EXPECT_GE(hub.oldestRevision(), 5);
  EXPECT_LT(hub.oldestRevision(), 10);
  EXPECT_EQ(hub.watch("pods", "", 1).status().code(), Code::Gone);
  // A single event larger than the whole budget is not kept either.
  hub.publish(event(11, "pods", "ns", 10000));
  EXPECT_EQ(hub.oldestRevision(), 11);
  EXPECT_TRUE(hub.watch("pods", "", 11).ok());
}

TEST(WatchHub, NoHistoryStillWatchesFromNow) {
  WatchHub hub(WatchHubOptions{.history = 0, .history_bytes = 0, .max_queue = 10});
  hub.reset(5);
  hub.publish(event(6));
  EXPECT_EQ(hub.watch("pods", "", 5).status().code(), Code::Gone);
  auto watch = hub.watch("pods", "", 6);
  ASSERT_TRUE(watch.ok());
  auto from_now = hub.watch("pods", "", 0);
  ASSERT_TRUE(from_now.ok());
  hub.publish(event(7));
  EXPECT_EQ(collect(**watch, 1).at(0).object.revision, 7);
  EXPECT_EQ(collect(**from_now, 1).at(0).object.revision, 7);
}

TEST(WatchHub, ReplayLongerThanQueueBoundIsNotGone) {
  WatchHub hub(WatchHubOptions{.history = 1000, .history_bytes = 1 << 20, .max_queue = 10});
  hub.reset(0);
  for (int64_t r = 1; r <= 100; ++r) hub.publish(event(r));
  auto watch = hub.watch("pods", "", 0 + 1);
  ASSERT_TRUE(watch.ok());
  // 99 replayed events exceed max_queue, but only live lag counts against it.
  for (int64_t r = 101; r <= 105; ++r) hub.publish(event(r));
  auto events = collect(**watch, 104);
  EXPECT_EQ(events.size(), 104u);
  // Falling behind by more than max_queue live events does overflow.
  for (int64_t r = 106; r <= 120; ++r) hub.publish(event(r));
  EXPECT_EQ((*watch)->next(milliseconds(0)).status().code(), Code::Gone);
}

TEST(WatchHub, FutureRevisionWaitsForIt) {
  WatchHub hub(WatchHubOptions{});
  hub.reset(0);
  hub.publish(event(1));
  auto watch = hub.watch("pods", "", 3);  // e.g. a list saw revision 3 before it was published
  ASSERT_TRUE(watch.ok());
  hub.publish(event(2));
  hub.publish(event(3));
  hub.publish(event(4));
  auto events = collect(**watch, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].object.revision, 4);
}

TEST(WatchHub, SubscribersAreReleased) {
  WatchHub hub(WatchHubOptions{.history = 10, .history_bytes = 1 << 20, .max_queue = 2});
  hub.reset(0);
  auto a = hub.watch("pods", "", 0);
  auto b = hub.watch("pods", "x", 0);
  auto c = hub.watch("secrets", "", 0);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(hub.watcherCount(), 3u);
  (*b)->stop();
  EXPECT_EQ(hub.watcherCount(), 2u);
  c->reset();  // destroying a watch unsubscribes it
  EXPECT_EQ(hub.watcherCount(), 1u);
  for (int64_t r = 1; r <= 3; ++r) hub.publish(event(r));  // overflows `a`
  EXPECT_EQ(hub.watcherCount(), 0u);
  EXPECT_EQ((*a)->next(milliseconds(0)).status().code(), Code::Gone);
}

TEST(WatchHub, ManyThreadsPublishAndConsume) {
  WatchHub hub(WatchHubOptions{.history = 100, .history_bytes = 1 << 20, .max_queue = 100000});
  hub.reset(0);
  constexpr int kEvents = 20000;
  std::vector<WatchPtr> watches;
  for (int i = 0; i < 4; ++i) watches.push_back(hub.watch("pods", "", 0).value());
  std::vector<std::thread> consumers;
  std::vector<int64_t> last(watches.size(), 0);
  for (size_t i = 0; i < watches.size(); ++i) {
    consumers.emplace_back([&, i] {
      int64_t expect = 1;
      while (expect <= kEvents) {
        auto events = watches[i]->next(milliseconds(2000));
        if (!events.ok() || events->empty()) return;
        for (const auto& e : *events) {
          if (e.object.revision != expect) return;
          ++expect;
        }
      }
      last[i] = expect - 1;
    });
  }
  for (int64_t r = 1; r <= kEvents; ++r) hub.publish(event(r));
  for (auto& consumer : consumers) consumer.join();
  for (int64_t value : last) EXPECT_EQ(value, kEvents);
}

}  // namespace
}  // namespace clrk::apiserver::storage
