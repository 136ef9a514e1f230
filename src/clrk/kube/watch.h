// List+watch: a Watcher (reflector) that lists a resource, then streams watch events on its own
// thread, resumes from the last resourceVersion when a stream ends, relists when the server
// answers 410 Gone (HTTP or an ERROR event), and follows BOOKMARK events. An Informer keeps a
// cache of the objects (keyed "namespace/name") fed by a Watcher and calls event handlers.
// Thread model: handlers run on the watcher's thread, one at a time. Informer reads (get, list,
// hasSynced) are thread-safe.
#pragma once

#include "clrk/kube/client.h"

#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace clrk::kube {

enum class WatchEventType { Added, Modified, Deleted, Bookmark, Error };

// Parses "ADDED"/"MODIFIED"/"DELETED"/"BOOKMARK"/"ERROR"; nullopt otherwise.
std::optional<WatchEventType> parseWatchEventType(std::string_view text);

struct WatchHandlers {
  // After each successful (re)list: the full set of objects and the list's resourceVersion.
  std::function<void(std::vector<Json> items, const std::string& resource_version)> on_replace;
  // Each ADDED/MODIFIED/DELETED event (BOOKMARKs and ERRORs are handled internally).
  std::function<void(WatchEventType type, const Json& object)> on_event;
};

struct WatchOptions {
  std::string namespace_name;  // empty: all namespaces
  std::string label_selector;
  std::string field_selector;
  int timeout_seconds = 300;  // server-side watch timeout; the watcher re-watches after it
  std::chrono::milliseconds retry_delay{500};
};

class Watcher {
 public:
  Watcher(ClientPtr client, api::ResourceType type, WatchOptions options, WatchHandlers handlers);
  ~Watcher();  // stops
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  void start();
  // Cancels the stream and joins the thread. Idempotent.
  void stop();

  // Counters for tests and metrics.
  int listCount() const;
  int watchCount() const;
  std::string lastResourceVersion() const;
  // The last error seen (ok when none).
  Status lastError() const;

 private:
  void run();
  Status listOnce();
  // Returns true when a relist is needed (410).
  Result<bool> watchOnce();
  bool handleLine(std::string_view line, bool& need_relist);
  void sleepFor(std::chrono::milliseconds delay);

  ClientPtr client_;
  api::ResourceType type_;
  WatchOptions options_;
  WatchHandlers handlers_;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::shared_ptr<Client::StreamHandle> stream_;
  std::string resource_version_;
  Status last_error_;
  int list_count_ = 0;
  int watch_count_ = 0;
};

struct InformerHandlers {
  std::function<void(const Json& object)> on_add;
  std::function<void(const Json& old_object, const Json& new_object)> on_update;
  std::function<void(const Json& object)> on_delete;
};

class Informer {
 public:
  Informer(ClientPtr client, api::ResourceType type, WatchOptions options = {});
  ~Informer();

  // Handlers must be added before start().
  void addHandlers(InformerHandlers handlers);
  void start();
  void stop();

  // True after the first list has been delivered to the cache.
  bool hasSynced() const;
  // Waits until synced or the timeout passes; returns hasSynced().
  bool waitForSync(std::chrono::milliseconds timeout) const;

  // "namespace/name" (or "name" for cluster-scoped objects).
  static std::string keyOf(const Json& object);
  std::optional<Json> get(const std::string& key) const;
  std::vector<Json> list() const;
  size_t size() const;

 private:
  void replace(std::vector<Json> items);
  void apply(WatchEventType type, const Json& object);

  std::vector<InformerHandlers> handlers_;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::map<std::string, Json> store_;
  bool synced_ = false;
  std::unique_ptr<Watcher> watcher_;
};

}  // namespace clrk::kube
