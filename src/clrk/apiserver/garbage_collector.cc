#include "clrk/apiserver/garbage_collector.h"

#include "clrk/apiserver/render.h"
#include "clrk/base/log.h"

#include <algorithm>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace clrk::apiserver {
namespace {

using api::Json;

constexpr const char* kManager = "garbage-collector";

struct OwnerRef {
  std::string uid;
  std::string api_version;
  std::string kind;
  std::string name;
  bool block = false;
};

struct Node {
  const api::ResourceType* type = nullptr;
  std::string ns;
  std::string name;
  std::string uid;
  std::vector<OwnerRef> owners;
  bool deleting = false;
  std::vector<std::string> finalizers;
  std::vector<std::string> spec_finalizers;

  bool hasFinalizer(std::string_view finalizer) const {
    return std::find(finalizers.begin(), finalizers.end(), finalizer) != finalizers.end();
  }
};

std::string storageResource(const api::ResourceType& type) {
  return type.group.empty() ? type.plural : type.group + "/" + type.plural;
}

std::string itemPath(const api::ResourceType& type, const std::string& ns,
                     const std::string& name) {
  std::string path =
      type.group.empty() ? "/api/" + type.version : "/apis/" + type.group + "/" + type.version;
  if (type.namespaced) path += "/namespaces/" + ns;
  return path + "/" + type.plural + "/" + name;
}

std::string keyString(const api::ResourceType& type, const std::string& ns,
                      const std::string& name) {
  return storageResource(type) + "|" + ns + "|" + name;
}

std::string str(const Json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<std::string> strings(const Json& value) {
  std::vector<std::string> out;
  if (!value.is_array()) return out;
  for (const auto& item : value) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace

struct GarbageCollector::State {
  struct TypeWatch {
    const api::ResourceType* type = nullptr;
    storage::WatchPtr watch;
  };
  std::vector<TypeWatch> watches;
  std::unordered_map<std::string, Node> nodes;              // uid -> node
  std::unordered_map<std::string, std::string> uid_by_key;  // key -> uid
  std::unordered_map<std::string, std::unordered_set<std::string>> dependents;
  std::set<std::string> dirty;     // dependents whose owners may be gone
  std::set<std::string> deleting;  // objects with a deletionTimestamp
};

GarbageCollector::GarbageCollector(storage::Storage& storage, const api::Registry& registry,
                                   ResourceHandler& handler,
                                   std::chrono::milliseconds resync_interval)
    : storage_(storage),
      registry_(registry),
      handler_(handler),
      resync_interval_(resync_interval),
      state_(std::make_unique<State>()) {}

GarbageCollector::~GarbageCollector() { stop(); }

void GarbageCollector::start() {
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void GarbageCollector::stop() {
  stopping_ = true;
  wake();
  if (thread_.joinable()) thread_.join();
}

void GarbageCollector::wake() {
  {
    std::lock_guard lock(wake_mutex_);
    woken_ = true;
  }
  wake_cv_.notify_one();
}

void GarbageCollector::run() {
  auto log = logger("gc");
  State& state = *state_;

  auto removeNode = [&](const std::string& uid) {
    // Dependents of a deleted object are re-examined whether or not it was indexed.
    if (auto deps = state.dependents.find(uid); deps != state.dependents.end()) {
      for (const auto& dependent : deps->second) state.dirty.insert(dependent);
      // Keep the edge set: dependents still reference this uid until they are updated.
    }
    auto it = state.nodes.find(uid);
    if (it == state.nodes.end()) return;
    Node& node = it->second;
    for (const auto& owner : node.owners) {
      auto deps = state.dependents.find(owner.uid);
      if (deps != state.dependents.end()) {
        deps->second.erase(uid);
        if (deps->second.empty()) state.dependents.erase(deps);
      }
    }
    state.uid_by_key.erase(keyString(*node.type, node.ns, node.name));
    state.deleting.erase(uid);
    state.nodes.erase(it);
  };

  auto upsert = [&](const api::ResourceType* type, const std::string& value) {
    Json object = Json::parse(value, nullptr, false);
    if (object.is_discarded() || !object.is_object()) return;
    const Json& metadata = object["metadata"];
    Node node;
    node.type = type;
    node.ns = str(metadata, "namespace");
    node.name = str(metadata, "name");
    node.uid = str(metadata, "uid");
    if (node.uid.empty()) return;
    node.deleting = !str(metadata, "deletionTimestamp").empty();
    if (metadata.contains("finalizers")) node.finalizers = strings(metadata["finalizers"]);
    if (object.contains("spec") && object["spec"].is_object() &&
        object["spec"].contains("finalizers")) {
      node.spec_finalizers = strings(object["spec"]["finalizers"]);
    }
    if (metadata.contains("ownerReferences") && metadata["ownerReferences"].is_array()) {
      for (const auto& ref : metadata["ownerReferences"]) {
        OwnerRef owner{str(ref, "uid"), str(ref, "apiVersion"), str(ref, "kind"), str(ref, "name"),
                       false};
        if (owner.uid.empty()) continue;
        auto block = ref.find("blockOwnerDeletion");
        owner.block = block != ref.end() && block->is_boolean() && block->get<bool>();
        node.owners.push_back(std::move(owner));
      }
    }
    std::string key = keyString(*type, node.ns, node.name);
    auto existing = state.uid_by_key.find(key);
    if (existing != state.uid_by_key.end() && existing->second != node.uid) {
      removeNode(existing->second);
    }
    if (auto old = state.nodes.find(node.uid); old != state.nodes.end()) {
      for (const auto& owner : old->second.owners) {
        auto deps = state.dependents.find(owner.uid);
        if (deps != state.dependents.end()) deps->second.erase(node.uid);
      }
    }
    for (const auto& owner : node.owners) state.dependents[owner.uid].insert(node.uid);
    state.uid_by_key[key] = node.uid;
    if (!node.owners.empty()) state.dirty.insert(node.uid);
    if (node.deleting) {
      state.deleting.insert(node.uid);
    } else {
      state.deleting.erase(node.uid);
    }
    std::string uid = node.uid;
    state.nodes[uid] = std::move(node);
  };

  auto removeByKey = [&](const api::ResourceType* type, const std::string& value) {
    Json object = Json::parse(value, nullptr, false);
    if (object.is_discarded() || !object.is_object()) return;
    std::string uid = str(object["metadata"], "uid");
    if (!uid.empty()) removeNode(uid);
    (void)type;
  };

  // Only objects that take part in garbage collection are parsed and indexed: those with owner
  // references or a deletionTimestamp, and namespaces (keeps the per-write cost low).
  auto relevant = [&](const api::ResourceType* type, const storage::ObjectKey& key,
                      const std::string& value) {
    return (type->group.empty() && type->kind == "Namespace") ||
           value.find("\"ownerReferences\"") != std::string::npos ||
           value.find("\"deletionTimestamp\"") != std::string::npos ||
           state.uid_by_key.count(keyString(*type, key.ns, key.name)) != 0;
  };

  // Lists `type` fully and (re)opens its watch; returns false on a storage failure.
  auto sync = [&](State::TypeWatch& type_watch) -> bool {
    const api::ResourceType* type = type_watch.type;
    std::string resource = storageResource(*type);
    std::unordered_set<std::string> seen;
    int64_t revision = 0;
    std::string token;
    std::vector<std::string> values;
    do {
      storage::ListOptions options;
      options.limit = 1000;
      options.continue_token = token;
      auto page = storage_.list(resource, options);
      if (!page.ok()) {
        log->warn("listing {} failed: {}", resource, page.status().toString());
        return false;
      }
      if (revision == 0) revision = page->revision;
      for (auto& item : page->items) {
        if (relevant(type, item.key, item.value)) values.push_back(std::move(item.value));
      }
      token = page->continue_token;
    } while (!token.empty());
    // Drop nodes of this type that no longer exist.
    std::vector<std::string> stale;
    for (const auto& [uid, node] : state.nodes) {
      if (node.type == type) stale.push_back(uid);
    }
    std::unordered_set<std::string> present;
    for (const auto& value : values) {
      Json object = Json::parse(value, nullptr, false);
      if (!object.is_discarded() && object.is_object()) {
        present.insert(str(object["metadata"], "uid"));
      }
      upsert(type, value);
    }
    for (const auto& uid : stale) {
      if (present.count(uid) == 0) removeNode(uid);
    }
    if (type_watch.watch) type_watch.watch->stop();
    auto watch = storage_.watch(resource, "", revision);
    if (!watch.ok()) {
      log->warn("watching {} failed: {}", resource, watch.status().toString());
      type_watch.watch.reset();
      return false;
    }
    type_watch.watch = std::move(watch).value();
    type_watch.watch->setNotify([this] { wake(); });
    return true;
  };

  // ---- REST helpers (through the handler, like a real controller) ----------------------------

  auto call = [&](std::string method, std::string path, std::string body,
                  std::vector<std::pair<std::string, std::string>> query = {}) {
    Request request;
    request.method = std::move(method);
    request.path = std::move(path);
    request.content_type = "application/json";
    request.body = std::move(body);
    request.user = "system:serviceaccount:kube-system:generic-garbage-collector";
    query.emplace_back("fieldManager", kManager);
    request.query = std::move(query);
    return handler_.handle(request);
  };

  auto deleteNode = [&](const Node& node, const char* policy) {
    Json options = {{"kind", "DeleteOptions"},
                    {"apiVersion", "v1"},
                    {"propagationPolicy", policy},
                    {"preconditions", {{"uid", node.uid}}}};
    Response response = call("DELETE", itemPath(*node.type, node.ns, node.name), dumpJson(options));
    if (response.status >= 300 && response.status != 404 && response.status != 409) {
      log->warn("deleting {} {}/{} failed: {}", node.type->kind, node.ns, node.name, response.body);
    }
    return response.status < 300 || response.status == 404;
  };

  // GET, edit, PUT with the read resourceVersion (409s are retried on a later pass).
  auto edit = [&](const Node& node, const std::function<bool(Json&)>& change,
                  const std::string& subresource = "") {
    std::string path = itemPath(*node.type, node.ns, node.name);
    Response got = call("GET", path, "");
    if (got.status == 404) return true;
    if (got.status != 200) return false;
    Json object = Json::parse(got.body, nullptr, false);
    if (object.is_discarded() || str(object["metadata"], "uid") != node.uid) return true;
    if (!change(object)) return true;
    Response put =
        call("PUT", subresource.empty() ? path : path + "/" + subresource, dumpJson(object));
    if (put.status >= 300 && put.status != 404 && put.status != 409) {
      log->warn("updating {} {}/{} failed: {}", node.type->kind, node.ns, node.name, put.body);
    }
    return put.status < 300 || put.status == 404;
  };

  auto removeFinalizer = [&](const Node& node, const std::string& finalizer) {
    return edit(node, [&](Json& object) {
      Json& metadata = object["metadata"];
      if (!metadata.contains("finalizers") || !metadata["finalizers"].is_array()) return false;
      Json kept = Json::array();
      for (const auto& item : metadata["finalizers"]) {
        if (item != finalizer) kept.push_back(item);
      }
      if (kept.size() == metadata["finalizers"].size()) return false;
      metadata["finalizers"] = std::move(kept);
      return true;
    });
  };

  auto removeOwnerRefs = [&](const Node& node, const std::set<std::string>& owner_uids) {
    return edit(node, [&](Json& object) {
      Json& metadata = object["metadata"];
      if (!metadata.contains("ownerReferences") || !metadata["ownerReferences"].is_array()) {
        return false;
      }
      Json kept = Json::array();
      for (const auto& ref : metadata["ownerReferences"]) {
        if (owner_uids.count(str(ref, "uid")) == 0) kept.push_back(ref);
      }
      if (kept.size() == metadata["ownerReferences"].size()) return false;
      if (kept.empty()) {
        metadata.erase("ownerReferences");
      } else {
        metadata["ownerReferences"] = std::move(kept);
      }
      return true;
    });
  };

  auto ownerExists = [&](const Node& dependent, const OwnerRef& ref) {
    if (state.nodes.count(ref.uid) != 0) return true;
    const api::ResourceType* type = registry_.byKind(ref.api_version, ref.kind);
    if (type == nullptr) return true;  // unknown kinds are never treated as absent
    auto stored =
        storage_.get({storageResource(*type), type->namespaced ? dependent.ns : "", ref.name});
    if (!stored.ok()) return stored.status().code() != Code::NotFound;
    Json object = Json::parse(stored->value, nullptr, false);
    return !object.is_discarded() && str(object["metadata"], "uid") == ref.uid;
  };

  // ---- the passes ----------------------------------------------------------------------------

  auto attemptToDelete = [&](const std::string& uid) {
    auto it = state.nodes.find(uid);
    if (it == state.nodes.end()) return true;
    Node node = it->second;
    if (node.deleting || node.owners.empty()) return true;
    std::set<std::string> absent;
    size_t present = 0;
    for (const auto& owner : node.owners) {
      if (ownerExists(node, owner)) {
        ++present;
      } else {
        absent.insert(owner.uid);
      }
    }
    if (present == 0) return deleteNode(node, "Background");
    if (!absent.empty()) return removeOwnerRefs(node, absent);
    return true;
  };

  auto liveDependents = [&](const std::string& uid) {
    std::vector<Node> out;
    auto deps = state.dependents.find(uid);
    if (deps == state.dependents.end()) return out;
    for (const auto& dep_uid : deps->second) {
      auto node = state.nodes.find(dep_uid);
      if (node == state.nodes.end()) continue;
      bool still_owned = false;
      for (const auto& owner : node->second.owners) still_owned = still_owned || owner.uid == uid;
      if (still_owned) out.push_back(node->second);
    }
    return out;
  };

  auto processForeground = [&](const Node& owner) {
    bool blocked = false;
    for (const auto& dependent : liveDependents(owner.uid)) {
      bool has_dependents = !liveDependents(dependent.uid).empty();
      if (!dependent.deleting) {
        deleteNode(dependent, has_dependents ? "Foreground" : "Background");
      }
      for (const auto& ref : dependent.owners) {
        if (ref.uid == owner.uid && ref.block) blocked = true;
      }
    }
    if (!blocked) removeFinalizer(owner, "foregroundDeletion");
  };

  auto processOrphan = [&](const Node& owner) {
    bool ok = true;
    for (const auto& dependent : liveDependents(owner.uid)) {
      ok = removeOwnerRefs(dependent, {owner.uid}) && ok;
    }
    if (ok) removeFinalizer(owner, "orphan");
  };

  std::unordered_map<std::string, std::chrono::steady_clock::time_point> namespace_passes;
  auto processNamespace = [&](const Node& ns_node) {
    auto now = std::chrono::steady_clock::now();
    auto last = namespace_passes.find(ns_node.name);
    if (last != namespace_passes.end() && now - last->second < std::chrono::milliseconds(100)) {
      return;
    }
    namespace_passes[ns_node.name] = now;
    bool any = false;
    for (const auto& type : registry_.types()) {
      if (!type.namespaced || stopping_) continue;
      storage::ListOptions options;
      options.ns = ns_node.name;
      options.limit = 500;
      auto page = storage_.list(storageResource(type), options);
      if (!page.ok()) {
        any = true;
        continue;
      }
      for (const auto& item : page->items) {
        any = true;
        Json object = Json::parse(item.value, nullptr, false);
        if (object.is_discarded() || !object.is_object()) continue;
        const Json& metadata = object["metadata"];
        if (!str(metadata, "deletionTimestamp").empty()) continue;
        Node member;
        member.type = &type;
        member.ns = item.key.ns;
        member.name = item.key.name;
        member.uid = str(metadata, "uid");
        deleteNode(member, "Background");
      }
    }
    if (any) return;
    namespace_passes.erase(ns_node.name);
    edit(
        ns_node,
        [&](Json& object) {
          Json& spec = object["spec"];
          if (!spec.is_object() || !spec.contains("finalizers")) return false;
          Json kept = Json::array();
          for (const auto& item : spec["finalizers"]) {
            if (item != "kubernetes") kept.push_back(item);
          }
          spec["finalizers"] = std::move(kept);
          return true;
        },
        "finalize");
  };

  auto process = [&]() {
    std::set<std::string> dirty;
    dirty.swap(state.dirty);
    for (const auto& uid : dirty) {
      if (stopping_) return;
      if (!attemptToDelete(uid)) state.dirty.insert(uid);
    }
    std::vector<Node> deleting;
    for (const auto& uid : state.deleting) {
      auto node = state.nodes.find(uid);
      if (node != state.nodes.end()) deleting.push_back(node->second);
    }
    for (const auto& node : deleting) {
      if (stopping_) return;
      if (node.hasFinalizer("foregroundDeletion")) processForeground(node);
      if (node.hasFinalizer("orphan")) processOrphan(node);
      bool is_namespace = node.type->group.empty() && node.type->kind == "Namespace";
      if (is_namespace && std::find(node.spec_finalizers.begin(), node.spec_finalizers.end(),
                                    "kubernetes") != node.spec_finalizers.end()) {
        processNamespace(node);
      }
    }
  };

  // ---- main loop -----------------------------------------------------------------------------

  for (const auto& type : registry_.types()) state.watches.push_back({&type, nullptr});
  while (!stopping_) {
    bool all_synced = true;
    for (auto& type_watch : state.watches) {
      if (stopping_) break;
      if (!type_watch.watch) all_synced = sync(type_watch) && all_synced;
    }
    if (stopping_) break;
    for (auto& type_watch : state.watches) {
      if (!type_watch.watch) continue;
      while (!stopping_) {
        auto events = type_watch.watch->next(std::chrono::milliseconds(0));
        if (!events.ok()) {
          if (events.status().code() == Code::Gone) {
            log->info("watch on {} fell behind; relisting", type_watch.type->plural);
          }
          type_watch.watch.reset();
          if (!stopping_) sync(type_watch);
          break;
        }
        if (events->empty()) break;
        for (const auto& event : *events) {
          const api::ResourceType* type = type_watch.type;
          const storage::ObjectKey& key = event.object.key;
          if (event.type == storage::EventType::Deleted) {
            auto indexed = state.uid_by_key.find(keyString(*type, key.ns, key.name));
            if (indexed != state.uid_by_key.end()) {
              std::string uid = indexed->second;
              removeNode(uid);
            } else if (!state.dependents.empty()) {
              removeByKey(type, event.object.value);
            }
          } else if (relevant(type, key, event.object.value)) {
            upsert(type, event.object.value);
          }
        }
      }
    }
    if (stopping_) break;
    try {
      process();
    } catch (const std::exception& error) {
      log->error("garbage collector pass failed: {}", error.what());
    }
    std::unique_lock lock(wake_mutex_);
    auto wait = all_synced ? resync_interval_ : std::chrono::milliseconds(200);
    wake_cv_.wait_for(lock, wait, [this] { return woken_ || stopping_.load(); });
    woken_ = false;
  }
}

}  // namespace clrk::apiserver
