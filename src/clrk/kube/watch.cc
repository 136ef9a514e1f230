#include "clrk/kube/watch.h"

#include "clrk/base/log.h"

namespace clrk::kube {
namespace {

constexpr size_t kMaxEventBytes = 16 * 1024 * 1024;

std::string resourceVersionOf(const Json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) {
    return {};
  }
  const Json& rv = object["metadata"].value("resourceVersion", Json());
  return rv.is_string() ? rv.get<std::string>() : std::string();
}

}  // namespace

std::optional<WatchEventType> parseWatchEventType(std::string_view text) {
  if (text == "ADDED") return WatchEventType::Added;
  if (text == "MODIFIED") return WatchEventType::Modified;
  if (text == "DELETED") return WatchEventType::Deleted;
  if (text == "BOOKMARK") return WatchEventType::Bookmark;
  if (text == "ERROR") return WatchEventType::Error;
  return std::nullopt;
}

Watcher::Watcher(ClientPtr client, api::ResourceType type, WatchOptions options,
                 WatchHandlers handlers)
    : client_(std::move(client)),
      type_(std::move(type)),
      options_(std::move(options)),
      handlers_(std::move(handlers)) {}

Watcher::~Watcher() { stop(); }

void Watcher::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void Watcher::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    if (stream_) stream_->cancel();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int Watcher::listCount() const {
  std::lock_guard lock(mutex_);
  return list_count_;
}
int Watcher::watchCount() const {
  std::lock_guard lock(mutex_);
  return watch_count_;
}
std::string Watcher::lastResourceVersion() const {
  std::lock_guard lock(mutex_);
  return resource_version_;
}
Status Watcher::lastError() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

void Watcher::sleepFor(std::chrono::milliseconds delay) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, delay, [this] { return stopping_; });
}

Status Watcher::listOnce() {
  ListOptions list_options;
  list_options.label_selector = options_.label_selector;
  list_options.field_selector = options_.field_selector;
  list_options.limit = 500;
  CLRK_ASSIGN_OR_RETURN(Json list, client_->list(type_, options_.namespace_name, list_options));
  std::string rv;
  if (list.contains("metadata") && list["metadata"].is_object()) {
    rv = list["metadata"].value("resourceVersion", "");
  }
  std::vector<Json> items;
  if (list["items"].is_array()) {
    for (auto& item : list["items"]) {
      // List items may omit apiVersion/kind; fill them like client-go does for typed lists.
      if (item.is_object()) {
        if (!item.contains("apiVersion")) item["apiVersion"] = type_.apiVersion();
        if (!item.contains("kind")) item["kind"] = type_.kind;
      }
      items.push_back(std::move(item));
    }
  }
  {
    std::lock_guard lock(mutex_);
    resource_version_ = rv;
    ++list_count_;
  }
  if (handlers_.on_replace) handlers_.on_replace(std::move(items), rv);
  return {};
}

bool Watcher::handleLine(std::string_view line, bool& need_relist) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty()) return true;
  Json event;
  try {
    event = Json::parse(line);
  } catch (const Json::exception& e) {
    std::lock_guard lock(mutex_);
    last_error_ = internalError("watch " + type_.plural + ": bad event: " + e.what());
    return false;  // re-watch from the last good resourceVersion
  }
  if (!event.is_object() || !event.contains("type") || !event["type"].is_string()) return true;
  auto type = parseWatchEventType(event["type"].get<std::string>());
  const Json& object = event.contains("object") ? event["object"] : Json();
  if (!type) return true;  // unknown event types are ignored
  if (*type == WatchEventType::Error) {
    Status status = statusFromResponse(
        object.is_object() && object.contains("code") ? object["code"].get<int>() : 500,
        object.dump());
    std::lock_guard lock(mutex_);
    last_error_ = status;
    if (status.code() == Code::Gone) need_relist = true;
    return false;
  }
  std::string rv = resourceVersionOf(object);
  if (*type != WatchEventType::Bookmark && handlers_.on_event) handlers_.on_event(*type, object);
  if (!rv.empty()) {
    std::lock_guard lock(mutex_);
    resource_version_ = rv;
  }
  return true;
}

Result<bool> Watcher::watchOnce() {
  std::string rv = lastResourceVersion();
  std::string target = Client::resourcePath(type_, options_.namespace_name) +
                       "?watch=1&allowWatchBookmarks=true&resourceVersion=" + urlEncode(rv) +
                       "&timeoutSeconds=" + std::to_string(options_.timeout_seconds);
  if (!options_.label_selector.empty()) {
    target += "&labelSelector=" + urlEncode(options_.label_selector);
  }
  if (!options_.field_selector.empty()) {
    target += "&fieldSelector=" + urlEncode(options_.field_selector);
  }
  {
    std::lock_guard lock(mutex_);
    ++watch_count_;
  }
  std::string pending;
  bool need_relist = false;
  std::string error_body;
  auto on_data = [&](int http_status, std::string_view data) {
    if (http_status >= 400) {
      if (error_body.size() < 65536) error_body.append(data);
      return true;
    }
    pending.append(data);
    size_t start = 0;
    for (size_t nl = pending.find('\n', start); nl != std::string::npos;
         nl = pending.find('\n', start)) {
      bool go_on = handleLine(std::string_view(pending).substr(start, nl - start), need_relist);
      start = nl + 1;
      if (!go_on) return false;
    }
    pending.erase(0, start);
    if (pending.size() > kMaxEventBytes) {
      std::lock_guard lock(mutex_);
      last_error_ = internalError("watch " + type_.plural + ": event larger than 16 MiB");
      return false;
    }
    return true;
  };
  auto result =
      client_->stream(target, on_data, [this](std::shared_ptr<Client::StreamHandle> handle) {
        std::lock_guard lock(mutex_);
        stream_ = std::move(handle);
        if (stopping_) stream_->cancel();
      });
  {
    std::lock_guard lock(mutex_);
    stream_.reset();
  }
  if (!result.ok()) return result.status();
  if (*result >= 400) {
    Status status = statusFromResponse(*result, error_body);
    if (status.code() == Code::Gone) return true;
    return status;
  }
  if (!pending.empty()) handleLine(pending, need_relist);
  return need_relist;
}

void Watcher::run() {
  auto log = logger("kube");
  bool need_list = true;
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    if (need_list) {
      Status status = listOnce();
      if (!status.ok()) {
        {
          std::lock_guard lock(mutex_);
          last_error_ = status;
        }
        log->debug("list {}: {}", type_.plural, status.toString());
        sleepFor(options_.retry_delay);
        continue;
      }
      need_list = false;
    }
    auto relist = watchOnce();
    if (!relist.ok()) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
        last_error_ = relist.status();
      }
      log->debug("watch {}: {}", type_.plural, relist.status().toString());
      if (relist.status().code() == Code::Gone) need_list = true;
      sleepFor(options_.retry_delay);
      continue;
    }
    if (*relist) {
      log->debug("watch {}: resourceVersion too old, relisting", type_.plural);
      need_list = true;
    }
  }
}

Informer::Informer(ClientPtr client, api::ResourceType type, WatchOptions options) {
  WatchHandlers handlers;
  handlers.on_replace = [this](std::vector<Json> items, const std::string&) {
    replace(std::move(items));
  };
  handlers.on_event = [this](WatchEventType event_type, const Json& object) {
    apply(event_type, object);
  };
  watcher_ = std::make_unique<Watcher>(std::move(client), std::move(type), std::move(options),
                                       std::move(handlers));
}

Informer::~Informer() { stop(); }

void Informer::addHandlers(InformerHandlers handlers) { handlers_.push_back(std::move(handlers)); }
void Informer::start() { watcher_->start(); }
void Informer::stop() { watcher_->stop(); }

bool Informer::hasSynced() const {
  std::lock_guard lock(mutex_);
  return synced_;
}

bool Informer::waitForSync(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return synced_; });
}

std::string Informer::keyOf(const Json& object) {
  if (!object.is_object() || !object.contains("metadata") || !object["metadata"].is_object()) {
    return {};
  }
  const Json& meta = object["metadata"];
  std::string name = meta.value("name", "");
  std::string ns = meta.value("namespace", "");
  return ns.empty() ? name : ns + "/" + name;
}

std::optional<Json> Informer::get(const std::string& key) const {
  std::lock_guard lock(mutex_);
  auto it = store_.find(key);
  if (it == store_.end()) return std::nullopt;
  return it->second;
}

std::vector<Json> Informer::list() const {
  std::lock_guard lock(mutex_);
  std::vector<Json> out;
  out.reserve(store_.size());
  for (const auto& [key, object] : store_) out.push_back(object);
  return out;
}

size_t Informer::size() const {
  std::lock_guard lock(mutex_);
  return store_.size();
}

void Informer::replace(std::vector<Json> items) {
  std::vector<Json> added;
  std::vector<std::pair<Json, Json>> updated;
  std::vector<Json> deleted;
  {
    std::lock_guard lock(mutex_);
    std::map<std::string, Json> next;
    for (auto& item : items) {
      std::string key = keyOf(item);
      if (key.empty()) continue;
      auto it = store_.find(key);
      if (it == store_.end()) {
        added.push_back(item);
      } else if (resourceVersionOf(it->second) != resourceVersionOf(item)) {
        updated.emplace_back(it->second, item);
      }
      next[key] = std::move(item);
    }
    for (auto& [key, object] : store_) {
      if (!next.count(key)) deleted.push_back(object);
    }
    store_ = std::move(next);
    synced_ = true;
  }
  cv_.notify_all();
  for (const auto& h : handlers_) {
    for (const auto& object : added) {
      if (h.on_add) h.on_add(object);
    }
    for (const auto& [old_object, new_object] : updated) {
      if (h.on_update) h.on_update(old_object, new_object);
    }
    for (const auto& object : deleted) {
      if (h.on_delete) h.on_delete(object);
    }
  }
}

void Informer::apply(WatchEventType type, const Json& object) {
  std::string key = keyOf(object);
  if (key.empty()) return;
  std::optional<Json> old_object;
  {
    std::lock_guard lock(mutex_);
    auto it = store_.find(key);
    if (it != store_.end()) old_object = it->second;
    if (type == WatchEventType::Deleted) {
      store_.erase(key);
    } else {
      store_[key] = object;
    }
  }
  for (const auto& h : handlers_) {
    if (type == WatchEventType::Deleted) {
      if (h.on_delete) h.on_delete(object);
    } else if (old_object) {
      if (h.on_update) h.on_update(*old_object, object);
    } else if (h.on_add) {
      h.on_add(object);
    }
  }
}

}  // namespace clrk::kube
