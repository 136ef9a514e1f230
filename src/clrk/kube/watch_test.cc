#include "clrk/kube/watch.h"

#include "clrk/kube/fake_server_for_test.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace clrk::kube {
namespace {

using namespace std::chrono_literals;

api::ResourceType taskAgentType() {
  api::ResourceType type;
  type.group = "clrk.apoxy.dev";
  type.version = "v1alpha1";
  type.kind = "TaskAgent";
  type.plural = "taskagents";
  return type;
}

constexpr char kCollection[] = "/apis/clrk.apoxy.dev/v1alpha1/taskagents";

Json agent(const std::string& name, const std::string& image) {
  return {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
          {"kind", "TaskAgent"},
          {"metadata", {{"name", name}, {"namespace", "default"}}},
          {"spec", {{"image", image}}}};
}

std::string key(const std::string& name) { return std::string(kCollection) + "|default|" + name; }

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

ClientPtr makeClient(const testing::FakeServer& server) {
  RestConfig config;
  config.server = server.url();
  config.token = "test-token";
  return *Client::create(config);
}

TEST(WatchEventType, Parses) {
  EXPECT_EQ(parseWatchEventType("ADDED"), WatchEventType::Added);
  EXPECT_EQ(parseWatchEventType("BOOKMARK"), WatchEventType::Bookmark);
  EXPECT_EQ(parseWatchEventType("ERROR"), WatchEventType::Error);
  EXPECT_FALSE(parseWatchEventType("added"));
}

class InformerTest : public ::testing::TestWithParam<bool> {};

TEST_P(InformerTest, SyncsWatchesAndRelistsOnGone) {
  testing::FakeServer server;
  server.setGoneAsEvent(GetParam());
  server.put(key("a"), agent("a", "img-a"));
  server.put(key("b"), agent("b", "img-b"));

  WatchOptions options;
  options.retry_delay = 20ms;
  Informer informer(makeClient(server), taskAgentType(), options);
  std::mutex mu;
  std::vector<std::string> log;
  informer.addHandlers({
      [&](const Json& o) {
        std::lock_guard l(mu);
        log.push_back("add " + o["metadata"]["name"].get<std::string>());
      },
      [&](const Json&, const Json& n) {
        std::lock_guard l(mu);
        log.push_back("update " + n["metadata"]["name"].get<std::string>() + " " +
                      n["spec"]["image"].get<std::string>());
      },
      [&](const Json& o) {
        std::lock_guard l(mu);
        log.push_back("delete " + o["metadata"]["name"].get<std::string>());
      },
  });
  EXPECT_FALSE(informer.hasSynced());
  informer.start();
  ASSERT_TRUE(informer.waitForSync(5s));
  EXPECT_EQ(informer.size(), 2u);
  ASSERT_TRUE(informer.get("default/a").has_value());
  EXPECT_EQ((*informer.get("default/a"))["spec"]["image"], "img-a");

  // Live events.
  ASSERT_TRUE(eventually([&] { return !server.watchTargets().empty(); }));
  server.put(key("c"), agent("c", "img-c"));
  server.put(key("a"), agent("a", "img-a2"));
  server.erase(key("b"));
  ASSERT_TRUE(eventually([&] {
    auto a = informer.get("default/a");
    return informer.size() == 2 && a && (*a)["spec"]["image"] == "img-a2";
  }));
  EXPECT_FALSE(informer.get("default/b").has_value());

  // A bookmark advances the resourceVersion without calling handlers.
  size_t handled;
  {
    std::lock_guard l(mu);
    handled = log.size();
  }
  server.bookmark();
  ASSERT_TRUE(eventually([&] { return server.watchTargets().size() >= 1; }));

  // The next re-watch gets 410 Gone: the informer must relist and so pick up changes that no
  // watch event announced (d added, c removed).
  server.failNextWatchWithGone();
  server.put(key("d"), agent("d", "img-d"), /*emit_event=*/false);
  {
    Json gone_c;
    server.erase(key("c"));
  }
  ASSERT_TRUE(eventually([&] {
    return !informer.get("default/c").has_value();
  }));               // the DELETED event for c still arrives on the open stream
  server.compact();  // ends the open stream; the re-watch is answered with 410
  ASSERT_TRUE(eventually([&] { return informer.get("default/d").has_value(); }))
      << "size=" << informer.size();
  EXPECT_EQ(informer.size(), 2u);
  informer.stop();

  std::lock_guard l(mu);
  std::string joined;
  for (const auto& entry : log) joined += entry + ";";
  EXPECT_NE(joined.find("add a;"), std::string::npos) << joined;
  EXPECT_NE(joined.find("add c;"), std::string::npos) << joined;
  EXPECT_NE(joined.find("update a img-a2;"), std::string::npos) << joined;
  EXPECT_NE(joined.find("delete b;"), std::string::npos) << joined;
  EXPECT_NE(joined.find("delete c;"), std::string::npos) << joined;
  EXPECT_GE(log.size(), handled);
  // Watches resumed from a resourceVersion (never from scratch) and asked for bookmarks.
  for (const auto& target : server.watchTargets()) {
    EXPECT_NE(target.find("allowWatchBookmarks=true"), std::string::npos);
    EXPECT_NE(target.find("resourceVersion=1"), std::string::npos) << target;
  }
}

INSTANTIATE_TEST_SUITE_P(GoneReporting, InformerTest, ::testing::Values(false, true),
                         [](const auto& param_info) {
                           return param_info.param ? "ErrorEvent" : "Http410";
                         });

TEST(Watcher, RelistsAfterGoneAndResumesOtherwise) {
  testing::FakeServer server;
  server.put(key("a"), agent("a", "1"));
  std::atomic<int> replaces{0};
  std::atomic<int> events{0};
  WatchOptions options;
  options.retry_delay = 10ms;
  options.namespace_name = "default";
  Watcher watcher(makeClient(server), taskAgentType(), options,
                  {[&](std::vector<Json> items, const std::string& rv) {
                     EXPECT_FALSE(rv.empty());
                     EXPECT_FALSE(items.empty());
                     ++replaces;
                   },
                   [&](WatchEventType, const Json&) { ++events; }});
  watcher.start();
  ASSERT_TRUE(eventually([&] { return watcher.watchCount() >= 1; }));
  EXPECT_EQ(replaces.load(), 1);
  server.put(key("a"), agent("a", "2"));
  ASSERT_TRUE(eventually([&] { return events.load() == 1; }));
  EXPECT_EQ(watcher.lastResourceVersion(), std::to_string(server.resourceVersion()));
  // A bookmark moves the resourceVersion forward.
  server.put(key("other-ns-object"), agent("z", "1"));  // same ns: an event
  ASSERT_TRUE(eventually([&] { return events.load() == 2; }));
  server.bookmark();
  // Stream end without compaction: resume, no relist.
  server.compact();  // compacts at the current version: resume from it is still valid
  ASSERT_TRUE(eventually([&] { return watcher.watchCount() >= 2; }));
  EXPECT_EQ(replaces.load(), 1);
  watcher.stop();
  EXPECT_EQ(watcher.listCount(), 1);
}

TEST(Watcher, StopInterruptsAnIdleStream) {
  testing::FakeServer server;
  Watcher watcher(makeClient(server), taskAgentType(), {}, {});
  watcher.start();
  ASSERT_TRUE(eventually([&] { return !server.watchTargets().empty(); }));
  auto start = std::chrono::steady_clock::now();
  watcher.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

}  // namespace
}  // namespace clrk::kube
