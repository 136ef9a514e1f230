#include "clrk/apiserver/storage/watch_hub.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace clrk::apiserver::storage {

namespace {

using EventPtr = std::shared_ptr<const WatchEvent>;

size_t eventBytes(const WatchEvent& event) {
  const StoredObject& object = event.object;
  return object.value.size() + object.key.resource.size() + object.key.ns.size() +
         object.key.name.size() + sizeof(WatchEvent);
}

struct Subscriber {
  Subscriber(std::string_view resource_in, std::string_view ns_in, int64_t after_in)
      : resource(resource_in), ns(ns_in), after(after_in) {}

  bool matches(const WatchEvent& event) const {
    return event.object.revision > after && (ns.empty() || event.object.key.ns == ns);
  }

  const std::string resource;
  const std::string ns;
  const int64_t after;  // deliver only events with a greater revision

  std::mutex mu;
  std::condition_variable cv;
  std::deque<EventPtr> queue;  // guarded by mu
  size_t limit = 0;            // queue size beyond which the watcher is Gone
  size_t base_limit = 0;       // limit once the initial replay was taken
  bool gone = false;           // overflowed: next() returns Gone
  bool stopped = false;        // stop() called: next() returns Unavailable
  bool closed = false;         // hub shut down: next() drains, then returns Unavailable
  std::function<void()> notify;
};
using SubscriberPtr = std::shared_ptr<Subscriber>;

}  // namespace

struct WatchHub::Core {
  explicit Core(const WatchHubOptions& options_in) : options(options_in) {}

  void unsubscribe(const SubscriberPtr& subscriber) {
    std::lock_guard lock(mu);
    auto it = subscribers.find(subscriber->resource);
    if (it == subscribers.end()) return;
    auto& list = it->second;
    list.erase(std::remove(list.begin(), list.end(), subscriber), list.end());
    if (list.empty()) subscribers.erase(it);
  }

  const WatchHubOptions options;
  mutable std::mutex mu;
  std::deque<EventPtr> ring;  // revision order
  size_t ring_bytes = 0;
  int64_t last = 0;    // latest published revision
  int64_t oldest = 0;  // watches from an older revision are Gone
  bool shut_down = false;
  std::unordered_map<std::string, std::vector<SubscriberPtr>> subscribers;  // by resource
};

namespace {

class HubWatch final : public Watch {
 public:
  HubWatch(std::shared_ptr<WatchHub::Core> core, SubscriberPtr subscriber)
      : core_(std::move(core)), subscriber_(std::move(subscriber)) {}
  ~HubWatch() override { stop(); }
  HubWatch(const HubWatch&) = delete;
  HubWatch& operator=(const HubWatch&) = delete;

  Result<std::vector<WatchEvent>> next(std::chrono::milliseconds timeout) override {
    std::deque<EventPtr> taken;
    {
      std::unique_lock lock(subscriber_->mu);
      Subscriber& sub = *subscriber_;
      if (timeout.count() > 0) {
        sub.cv.wait_for(lock, timeout, [&] {
          return !sub.queue.empty() || sub.gone || sub.stopped || sub.closed;
        });
      }
      if (sub.stopped) return Status(Code::Unavailable, "watch stopped");
      if (sub.gone) {
        return Status(Code::Gone,
                      "watch on " + sub.resource + " fell too far behind; list again and re-watch");
      }
      if (sub.queue.empty()) {
        if (sub.closed) return Status(Code::Unavailable, "storage shut down");
        return std::vector<WatchEvent>{};
      }
      taken.swap(sub.queue);
      // The replay allowance is used up: from now on only live lag counts.
      sub.limit = sub.base_limit;
    }
    // Copy outside the lock so publishers are never held up by a slow consumer.
    std::vector<WatchEvent> events;
    events.reserve(taken.size());
    for (const auto& event : taken) events.push_back(*event);
    return events;
  }

  void setNotify(std::function<void()> callback) override {
    std::function<void()> fire;
    {
      std::lock_guard lock(subscriber_->mu);
      Subscriber& sub = *subscriber_;
      sub.notify = std::move(callback);
      // Events (or an end) that arrived before registration must not go unnoticed.
      if (sub.notify && (!sub.queue.empty() || sub.gone || sub.closed)) fire = sub.notify;
    }
    if (fire) fire();
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    // After unsubscribe returns, no publisher holds or will take this subscriber, so no
    // callback runs after stop().
    core_->unsubscribe(subscriber_);
    std::lock_guard lock(subscriber_->mu);
    subscriber_->stopped = true;
    subscriber_->queue.clear();
    subscriber_->notify = nullptr;
    subscriber_->cv.notify_all();
  }

 private:
  std::shared_ptr<WatchHub::Core> core_;
  SubscriberPtr subscriber_;
  std::atomic<bool> stopped_{false};
};

}  // namespace

WatchHub::WatchHub(const WatchHubOptions& options) : core_(std::make_shared<Core>(options)) {}

WatchHub::~WatchHub() {
  std::lock_guard lock(core_->mu);
  core_->shut_down = true;
  for (auto& [resource, list] : core_->subscribers) {
    for (auto& sub : list) {
      std::function<void()> fire;
      {
        std::lock_guard sub_lock(sub->mu);
        sub->closed = true;
        sub->cv.notify_all();
        fire = sub->notify;
      }
      if (fire) fire();
    }
  }
  core_->subscribers.clear();
  core_->ring.clear();
}

void WatchHub::reset(int64_t revision) {
  std::lock_guard lock(core_->mu);
  core_->ring.clear();
  core_->ring_bytes = 0;
  core_->last = revision;
  core_->oldest = revision;
}

void WatchHub::publish(WatchEvent event) {
  const int64_t revision = event.object.revision;
  EventPtr shared = std::make_shared<const WatchEvent>(std::move(event));
  Core& core = *core_;
  std::lock_guard lock(core.mu);
  core.last = revision;

  if (core.options.history > 0) {
    core.ring_bytes += eventBytes(*shared);
    core.ring.push_back(shared);
    while (!core.ring.empty() && (core.ring.size() > core.options.history ||
                                  core.ring_bytes > core.options.history_bytes)) {
      core.oldest = core.ring.front()->object.revision;
      core.ring_bytes -= eventBytes(*core.ring.front());
      core.ring.pop_front();
    }
  } else {
    core.oldest = revision;
  }

  auto it = core.subscribers.find(shared->object.key.resource);
  if (it == core.subscribers.end()) return;
  auto& list = it->second;
  bool dropped = false;
  for (auto& sub : list) {
    if (!sub->matches(*shared)) continue;
    std::function<void()> fire;
    {
      std::lock_guard sub_lock(sub->mu);
      if (sub->stopped || sub->gone) continue;
      if (sub->queue.size() >= sub->limit) {
        sub->gone = true;
        sub->queue.clear();
        dropped = true;
        sub->cv.notify_all();
        fire = sub->notify;
      } else {
        const bool was_empty = sub->queue.empty();
        sub->queue.push_back(shared);
        // A consumer only waits (or needs a callback) when its queue is empty.
        if (was_empty) {
          sub->cv.notify_all();
          fire = sub->notify;
        }
      }
    }
    if (fire) fire();
  }
  if (dropped) {
    list.erase(std::remove_if(list.begin(), list.end(),
                              [](const SubscriberPtr& sub) {
                                std::lock_guard sub_lock(sub->mu);
                                return sub->gone;
                              }),
               list.end());
    if (list.empty()) core.subscribers.erase(it);
  }
}

Result<WatchPtr> WatchHub::watch(std::string_view resource, std::string_view ns,
                                 int64_t from_revision) {
  Core& core = *core_;
  std::lock_guard lock(core.mu);
  if (core.shut_down) return Status(Code::Unavailable, "storage shut down");
  if (from_revision < 0) {
    return invalidArgument("resourceVersion " + std::to_string(from_revision) + " is negative");
  }
  if (from_revision != 0 && from_revision < core.oldest) {
    return Status(Code::Gone, "too old resource version: " + std::to_string(from_revision) + " (" +
                                  std::to_string(core.oldest) + ")");
  }
  const int64_t after = from_revision == 0 ? core.last : from_revision;
  auto sub = std::make_shared<Subscriber>(resource, ns, after);
  if (after < core.last) {
    // Replay the tail of the ring after `after`; live events follow under the same lock.
    auto first = std::upper_bound(
        core.ring.begin(), core.ring.end(), after,
        [](int64_t revision, const EventPtr& event) { return revision < event->object.revision; });
    for (auto it = first; it != core.ring.end(); ++it) {
      if ((*it)->object.key.resource == resource && sub->matches(**it)) sub->queue.push_back(*it);
    }
  }
  // The replayed backlog does not count against the watcher's lag bound.
  sub->base_limit = core.options.max_queue;
  sub->limit = core.options.max_queue + sub->queue.size();
  core.subscribers[sub->resource].push_back(sub);
  return WatchPtr(std::make_unique<HubWatch>(core_, std::move(sub)));
}

int64_t WatchHub::lastRevision() const {
  std::lock_guard lock(core_->mu);
  return core_->last;
}

int64_t WatchHub::oldestRevision() const {
  std::lock_guard lock(core_->mu);
  return core_->oldest;
}

size_t WatchHub::watcherCount() const {
  std::lock_guard lock(core_->mu);
  size_t count = 0;
  for (const auto& [resource, list] : core_->subscribers) count += list.size();
  return count;
}

}  // namespace clrk::apiserver::storage
