// Storage: the versioned key-value store behind the embedded API server (etcd's role).
//
// Keys are (resource, namespace, name). Every successful write gets the next value of a single
// global revision counter; an object's resourceVersion is the revision of its last write.
// Values are opaque bytes to the store (the server keeps serialized JSON objects in them with
// metadata.resourceVersion already filled in, so lists are served without re-encoding).
//
// Durability: a write is acknowledged only after it is committed; a process crash at any point
// loses no acknowledged write.
// Thread model: every method is safe to call concurrently from any thread.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::apiserver::storage {

struct ObjectKey {
  std::string
      resource;    // "clrk.apoxy.dev/taskagents", "secrets" (core), "coordination.k8s.io/leases"
  std::string ns;  // "" for cluster-scoped resources
  std::string name;
  bool operator==(const ObjectKey&) const = default;
};

struct StoredObject {
  ObjectKey key;
  std::string value;
  int64_t revision = 0;  // revision of the write that produced `value`
};

// Produces the bytes to store given the revision this write will be committed at (so the value
// can carry its own resourceVersion). Called once per attempt, under the store's write lock:
// keep it cheap and non-blocking.
using RenderFn = std::function<std::string(int64_t revision)>;

enum class EventType { Added, Modified, Deleted };

struct WatchEvent {
  EventType type;
  // Added/Modified: the new object. Deleted: the last stored value, with `revision` set to the
  // revision of the deletion.
  StoredObject object;
};

// A live subscription. Events arrive in revision order, exactly once, starting strictly after
// the revision the watch was opened from.
class Watch {
 public:
  virtual ~Watch() = default;
  // Waits up to `timeout` for events; returns those ready (possibly empty on timeout).
  // Returns Gone if this watcher fell too far behind (its buffer overflowed); it must relist.
  // Returns Unavailable once stop() was called or the store shut down.
  virtual Result<std::vector<WatchEvent>> next(std::chrono::milliseconds timeout) = 0;
  // Registers `callback` to be invoked (from a store thread, possibly while holding internal
  // locks: it must only post work elsewhere) whenever events become available. Optional for
  // consumers that prefer not to block in next().
  virtual void setNotify(std::function<void()> callback) = 0;
  // Ends the subscription; a blocked next() returns promptly.
  virtual void stop() = 0;
};
using WatchPtr = std::unique_ptr<Watch>;

struct ListOptions {
  std::string_view ns;         // "" = all namespaces
  int64_t limit = 0;           // 0 = no limit
  std::string continue_token;  // opaque, from a previous ListResult
};

struct ListResult {
  std::vector<StoredObject> items;  // ordered by (ns, name)
  int64_t revision = 0;             // store revision the list is consistent with
  std::string continue_token;       // non-empty iff more items remain
  int64_t remaining = 0;            // items left after this page (when known)
};

class Storage {
 public:
  virtual ~Storage() = default;

  // AlreadyExists if the key exists. Returns the stored object.
  virtual Result<StoredObject> create(const ObjectKey& key, const RenderFn& render) = 0;
  // NotFound if absent.
  virtual Result<StoredObject> get(const ObjectKey& key) = 0;
  // Replaces the value. NotFound if absent; Conflict if expected_revision != 0 and differs from
  // the current revision of the key.
  virtual Result<StoredObject> update(const ObjectKey& key, int64_t expected_revision,
                                      const RenderFn& render) = 0;
  // Deletes the key. NotFound if absent; Conflict as for update. Returns the deleted object
  // with `revision` = the revision of the deletion.
  virtual Result<StoredObject> remove(const ObjectKey& key, int64_t expected_revision) = 0;
  // A consistent snapshot page of `resource` (optionally one namespace).
  // Continued pages (storage engineer's note): a page read with a continue token starts strictly
  // after the token's last key and reads the state current at that time; its `revision` stays
  // the first page's, so a watch from it replays whatever changed meanwhile (at-least-once).
  // InvalidArgument for a malformed token or a negative limit.
  virtual Result<ListResult> list(std::string_view resource, const ListOptions& options) = 0;
  // Events on `resource` (optionally one namespace) after `from_revision`. 0 = from now.
  // Gone if from_revision is older than the oldest revision the store still remembers.
  virtual Result<WatchPtr> watch(std::string_view resource, std::string_view ns,
                                 int64_t from_revision) = 0;
  // The latest committed revision.
  virtual int64_t currentRevision() = 0;
};
using StoragePtr = std::unique_ptr<Storage>;

// In-memory store (tests, ephemeral servers).
StoragePtr makeMemoryStorage();

// Added by the storage engineer: the watch bounds of the memory store (tests use small ones).
struct MemoryOptions {
  size_t watch_history = 100000;            // events remembered for watch-from-revision
  size_t watch_history_bytes = 128u << 20;  // bound on the value bytes of that history
  size_t watch_queue = 10000;               // events a watcher may fall behind before it gets Gone
};
StoragePtr makeMemoryStorage(const MemoryOptions& options);

struct SqliteOptions {
  std::string path;               // database file; created with mode 0600
  size_t watch_history = 100000;  // events remembered for watch-from-revision
  // Added by the storage engineer (appended, defaults keep existing initializers valid):
  // Durability. By default the database runs with synchronous=NORMAL in WAL mode: a committed
  // write survives a crash of the process (the requirement), but the last commits may be lost
  // on power loss or an OS crash. sync_full=true switches to synchronous=FULL (an fsync per
  // commit), which also survives those, at a large cost in write throughput.
  bool sync_full = false;
  size_t watch_history_bytes = 128u << 20;  // bound on the value bytes of that history
  size_t watch_queue = 10000;               // events a watcher may fall behind before it gets Gone
};
// SQLite store in WAL mode. Fails with a clear message if the file can't be opened.
// (Storage engineer's notes: the parent directory must exist; the file is locked for the life
// of the store, so a second open of it, from this or another process, fails with Unavailable.
// After a restart the watch history starts at the stored revision: older watches get Gone.)
Result<StoragePtr> openSqliteStorage(const SqliteOptions& options);

}  // namespace clrk::apiserver::storage
