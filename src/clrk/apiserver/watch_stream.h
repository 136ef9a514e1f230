// Watch responses: an EventStream over a storage::Watch that emits the JSON lines the real
// kube-apiserver sends ({"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}):
// synthetic ADDED events for the current state when no resourceVersion (or "0") was given,
// selector filtering (an object that stops matching is sent as DELETED, one that starts
// matching as ADDED), periodic BOOKMARKs, timeoutSeconds, and a 410 Expired ERROR event when
// the requested resourceVersion is too old or the watcher fell behind.
// Thread model: next() from one thread at a time; stop() from any thread.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/apiserver/handler.h"
#include "clrk/apiserver/label_selector.h"
#include "clrk/apiserver/storage/storage.h"

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>

namespace clrk::apiserver {

// Tracks live streams so the handler can end them all on stop().
class StreamRegistry {
 public:
  void add(EventStream* stream);
  void remove(EventStream* stream);
  // Stops every registered stream and refuses (stops immediately) streams added later.
  void stopAll();
  bool stopped() const;

 private:
  mutable std::mutex mutex_;
  std::set<EventStream*> streams_;
  bool stopped_ = false;
};

struct WatchParams {
  const api::ResourceType* type = nullptr;
  std::string resource;  // storage resource key
  std::string ns;        // "" = all namespaces
  LabelSelector labels;
  FieldSelector fields;
  // True when the client gave no resourceVersion or "0": start with the current state.
  bool send_initial_events = true;
  int64_t from_revision = 0;  // when !send_initial_events
  bool bookmarks = false;
  // sendInitialEvents=true: a BOOKMARK annotated k8s.io/initial-events-end after the initial
  // events.
  bool initial_events_end_bookmark = false;
  std::chrono::milliseconds bookmark_interval{10000};
  std::chrono::milliseconds timeout{1800000};
};

// Opens the stream; storage errors other than Gone (which becomes the ERROR event) fail.
Result<EventStreamPtr> openWatchStream(storage::Storage& storage, WatchParams params,
                                       std::shared_ptr<StreamRegistry> registry);

}  // namespace clrk::apiserver
