// WatchHub: the watch fan-out shared by every Storage backend.
//
// The hub keeps a bounded ring of the most recent committed events (all resources, in revision
// order) and a set of subscribers. A backend publishes each committed write exactly once, in
// revision order; the hub appends it to the ring and pushes it to every subscriber whose
// resource (and namespace, if set) matches. Subscribing takes the same lock as publishing, so a
// watch opened from a revision still in the ring gets the replayed tail followed by live events
// with no gap and no duplicate.
//
// Each subscriber has a bounded queue: a watcher that falls more than `max_queue` events behind
// is dropped and its next() returns Gone (it must relist). Events are shared between the ring
// and all queues (one allocation per committed write, not per watcher).
//
// Thread model: every method is safe to call concurrently. publish() must be called by one
// writer at a time in increasing revision order (backends call it under their write lock).
#pragma once

#include "clrk/apiserver/storage/storage.h"
#include "clrk/base/status.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace clrk::apiserver::storage {

struct WatchHubOptions {
  size_t history = 100000;            // events kept for watch-from-revision (0 = none)
  size_t history_bytes = 128u << 20;  // ... and at most this many value bytes
  size_t max_queue = 10000;           // per-watcher backlog before it gets Gone
};

class WatchHub {
 public:
  explicit WatchHub(const WatchHubOptions& options);
  // Shuts down: every open watch returns Unavailable once its queue is drained.
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Forgets the ring and declares `revision` the current one: watches from older revisions get
  // Gone, watches from 0 start after it. Called once when a backend opens its data.
  void reset(int64_t revision);

  // Appends one committed event (event.object.revision must exceed every published revision)
  // and fans it out.
  void publish(WatchEvent event);

  // Opens a subscription for `resource` ("" ns = all namespaces) after `from_revision`
  // (0 = after the latest published revision). Gone if `from_revision` is older than the
  // oldest revision the ring can replay from.
  Result<WatchPtr> watch(std::string_view resource, std::string_view ns, int64_t from_revision);

  // The latest published revision.
  int64_t lastRevision() const;
  // The oldest revision a watch may start from (older -> Gone).
  int64_t oldestRevision() const;
  // Number of open subscriptions (tests, metrics).
  size_t watcherCount() const;

  struct Core;  // shared with the Watch objects, which may outlive the hub

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace clrk::apiserver::storage
