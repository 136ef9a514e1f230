// In-memory Storage: ordered maps per resource plus the shared WatchHub. Nothing survives the
// process; used by tests and ephemeral servers.
#include "clrk/apiserver/storage/common.h"
#include "clrk/apiserver/storage/continue_token.h"
#include "clrk/apiserver/storage/storage.h"
#include "clrk/apiserver/storage/watch_hub.h"

#include <atomic>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

namespace clrk::apiserver::storage {

namespace {

struct Entry {
  std::string value;
  int64_t revision = 0;
};
using NsName = std::pair<std::string, std::string>;
using ResourceMap = std::map<NsName, Entry>;

class MemoryStorage final : public Storage {
 public:
  explicit MemoryStorage(const MemoryOptions& options)
      : hub_(WatchHubOptions{options.watch_history, options.watch_history_bytes,
                             options.watch_queue}) {
    hub_.reset(0);
  }

  Result<StoredObject> create(const ObjectKey& key, const RenderFn& render) override {
    std::unique_lock lock(mu_);
    ResourceMap& objects = data_[key.resource];
    auto [it, inserted] = objects.try_emplace(NsName(key.ns, key.name));
    if (!inserted) return Status(Code::AlreadyExists, describeKey(key) + " already exists");
    const int64_t revision = revision_ + 1;
    std::string value;
    if (Status rendered = renderValue(render, revision, value); !rendered.ok()) {
      objects.erase(it);
      return rendered;
    }
    it->second = Entry{value, revision};
    return commit(EventType::Added, StoredObject{key, std::move(value), revision});
  }

  Result<StoredObject> get(const ObjectKey& key) override {
    std::shared_lock lock(mu_);
    const Entry* entry = find(key);
    if (entry == nullptr) return notFound(describeKey(key) + " not found");
    return StoredObject{key, entry->value, entry->revision};
  }

  Result<StoredObject> update(const ObjectKey& key, int64_t expected_revision,
                              const RenderFn& render) override {
    std::unique_lock lock(mu_);
    Entry* entry = find(key);
    if (entry == nullptr) return notFound(describeKey(key) + " not found");
    if (expected_revision != 0 && expected_revision != entry->revision) {
      return conflictError(key, expected_revision, entry->revision);
    }
    const int64_t revision = revision_ + 1;
    std::string value;
    CLRK_RETURN_IF_ERROR(renderValue(render, revision, value));
    entry->value = value;
    entry->revision = revision;
    return commit(EventType::Modified, StoredObject{key, std::move(value), revision});
  }

  Result<StoredObject> remove(const ObjectKey& key, int64_t expected_revision) override {
    std::unique_lock lock(mu_);
    auto resource_it = data_.find(key.resource);
    if (resource_it == data_.end()) return notFound(describeKey(key) + " not found");
    auto it = resource_it->second.find(NsName(key.ns, key.name));
    if (it == resource_it->second.end()) return notFound(describeKey(key) + " not found");
    if (expected_revision != 0 && expected_revision != it->second.revision) {
      return conflictError(key, expected_revision, it->second.revision);
    }
    std::string value = std::move(it->second.value);
    resource_it->second.erase(it);
    return commit(EventType::Deleted, StoredObject{key, std::move(value), revision_ + 1});
  }

  Result<ListResult> list(std::string_view resource, const ListOptions& options) override {
    if (options.limit < 0) return invalidArgument("limit must not be negative");
    ContinueToken from;
    const bool continued = !options.continue_token.empty();
    if (continued) {
      CLRK_ASSIGN_OR_RETURN(from, decodeContinueToken(options.continue_token));
    }
    std::shared_lock lock(mu_);
    ListResult result;
    result.revision = continued ? from.revision : revision_;
    auto resource_it = data_.find(std::string(resource));
    if (resource_it == data_.end()) return result;
    const ResourceMap& objects = resource_it->second;
    const std::string ns(options.ns);
    auto it = objects.lower_bound(NsName(ns, std::string()));
    if (continued) {
      // Resume strictly after the last key returned (whichever of the two starts is later).
      auto after = objects.upper_bound(NsName(from.ns, from.name));
      if (after == objects.end() || it == objects.end() || it->first < after->first) it = after;
    }
    const auto in_scope = [&](ResourceMap::const_iterator pos) {
      return pos != objects.end() && (ns.empty() || pos->first.first == ns);
    };
    for (; in_scope(it); ++it) {
      if (options.limit > 0 && static_cast<int64_t>(result.items.size()) == options.limit) break;
      result.items.push_back(
          StoredObject{ObjectKey{std::string(resource), it->first.first, it->first.second},
                       it->second.value, it->second.revision});
    }
    if (in_scope(it)) {
      const StoredObject& last = result.items.back();
      result.continue_token =
          encodeContinueToken(ContinueToken{result.revision, last.key.ns, last.key.name});
      for (; in_scope(it); ++it) ++result.remaining;
    }
    return result;
  }

  Result<WatchPtr> watch(std::string_view resource, std::string_view ns,
                         int64_t from_revision) override {
    return hub_.watch(resource, ns, from_revision);
  }

  int64_t currentRevision() override { return current_.load(std::memory_order_acquire); }

 private:
  Entry* find(const ObjectKey& key) {
    auto resource_it = data_.find(key.resource);
    if (resource_it == data_.end()) return nullptr;
    auto it = resource_it->second.find(NsName(key.ns, key.name));
    return it == resource_it->second.end() ? nullptr : &it->second;
  }

  // REQUIRES: mu_ held exclusively; object.revision == revision_ + 1.
  StoredObject commit(EventType type, StoredObject object) {
    revision_ = object.revision;
    current_.store(revision_, std::memory_order_release);
    hub_.publish(WatchEvent{type, object});
    return object;
  }

  std::shared_mutex mu_;
  std::map<std::string, ResourceMap, std::less<>> data_;  // guarded by mu_
  int64_t revision_ = 0;                                  // guarded by mu_
  std::atomic<int64_t> current_{0};
  WatchHub hub_;
};

}  // namespace

StoragePtr makeMemoryStorage() { return makeMemoryStorage(MemoryOptions{}); }

StoragePtr makeMemoryStorage(const MemoryOptions& options) {
  return std::make_unique<MemoryStorage>(options);
}

}  // namespace clrk::apiserver::storage
