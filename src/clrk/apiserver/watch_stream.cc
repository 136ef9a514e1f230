#include "clrk/apiserver/watch_stream.h"

#include "clrk/apiserver/render.h"
#include "clrk/apiserver/status_errors.h"

#include <atomic>
#include <deque>
#include <unordered_map>
#include <utility>
#include <vector>

namespace clrk::apiserver {

void StreamRegistry::add(EventStream* stream) {
  bool stop_now = false;
  {
    std::lock_guard lock(mutex_);
    streams_.insert(stream);
    stop_now = stopped_;
  }
  if (stop_now) stream->stop();
}

void StreamRegistry::remove(EventStream* stream) {
  std::lock_guard lock(mutex_);
  streams_.erase(stream);
}

void StreamRegistry::stopAll() {
  std::lock_guard lock(mutex_);
  stopped_ = true;
  for (EventStream* stream : streams_) stream->stop();
}

bool StreamRegistry::stopped() const {
  std::lock_guard lock(mutex_);
  return stopped_;
}

namespace {

using Clock = std::chrono::steady_clock;
constexpr size_t kMaxBatch = 500;

std::string eventLine(std::string_view type, std::string_view object_json) {
  std::string line;
  line.reserve(object_json.size() + 32);
  line += "{\"type\":\"";
  line += type;
  line += "\",\"object\":";
  line += object_json;
  line += '}';
  return line;
}

std::string errorLine(const ApiError& error) {
  return eventLine("ERROR", dumpJson(error.toJson()));
}

class WatchEventStream final : public EventStream {
 public:
  WatchEventStream(WatchParams params, std::shared_ptr<StreamRegistry> registry)
      : params_(std::move(params)),
        registry_(std::move(registry)),
        filtered_(!params_.labels.empty() || !params_.fields.empty()),
        end_time_(Clock::now() + params_.timeout),
        next_bookmark_(Clock::now() + params_.bookmark_interval) {}

  ~WatchEventStream() override {
    if (registry_) registry_->remove(this);
    if (watch_) watch_->stop();
  }

  Status open(storage::Storage& storage) {
    int64_t from = params_.from_revision;
    if (params_.send_initial_events) {
      storage::ListOptions options;
      options.ns = params_.ns;
      auto listed = storage.list(params_.resource, options);
      if (!listed.ok()) return listed.status();
      from = listed->revision;
      for (auto& item : listed->items) {
        bool matches = true;
        if (filtered_) {
          api::Json object = api::Json::parse(item.value, nullptr, false);
          matches = !object.is_discarded() && matchesObject(object);
          visible_[keyOf(item.key)] = matches;
        }
        if (matches) pending_.push_back(eventLine("ADDED", item.value));
      }
      if (params_.initial_events_end_bookmark) {
        pending_.push_back(bookmarkLine(from, true));
      }
    }
    last_revision_ = from;
    auto watch = storage.watch(params_.resource, params_.ns, from);
    if (!watch.ok()) {
      if (watch.status().code() == Code::Gone) {
        pending_.push_back(
            errorLine(expiredError("too old resource version: " + std::to_string(from) + " (" +
                                   std::to_string(storage.currentRevision()) + ")")));
        ended_ = true;
        return {};
      }
      return watch.status();
    }
    watch_ = std::move(watch).value();
    return {};
  }

  std::optional<std::vector<std::string>> next(std::chrono::milliseconds timeout) override {
    if (stopped_.load()) return std::nullopt;
    if (pending_.empty() && !ended_) poll(timeout);
    if (stopped_.load()) return std::nullopt;
    if (pending_.empty() && ended_) return std::nullopt;
    std::vector<std::string> batch;
    while (!pending_.empty() && batch.size() < kMaxBatch) {
      batch.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    return batch;
  }

  void stop() override {
    stopped_.store(true);
    if (watch_) watch_->stop();
  }

 private:
  static std::string keyOf(const storage::ObjectKey& key) { return key.ns + "/" + key.name; }

  bool matchesObject(const api::Json& object) const {
    if (!params_.labels.empty()) {
      const api::Json* labels = nullptr;
      auto meta = object.find("metadata");
      if (meta != object.end() && meta->is_object()) {
        auto it = meta->find("labels");
        if (it != meta->end()) labels = &*it;
      }
      static const api::Json kNull;
      if (!params_.labels.matches(labels != nullptr ? *labels : kNull)) return false;
    }
    return params_.fields.matches(object);
  }

  std::string bookmarkLine(int64_t revision, bool initial_end) const {
    api::Json metadata = {{"resourceVersion", std::to_string(revision)}};
    if (initial_end) metadata["annotations"] = {{"k8s.io/initial-events-end", "true"}};
    api::Json object = {{"apiVersion", params_.type->apiVersion()},
                        {"kind", params_.type->kind},
                        {"metadata", std::move(metadata)}};
    return eventLine("BOOKMARK", dumpJson(object));
  }

  void poll(std::chrono::milliseconds timeout) {
    auto now = Clock::now();
    auto deadline = now + timeout;
    if (end_time_ < deadline) deadline = end_time_;
    if (params_.bookmarks && next_bookmark_ < deadline) deadline = next_bookmark_;
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (wait.count() < 0) wait = std::chrono::milliseconds(0);
    auto events = watch_->next(wait);
    if (!events.ok()) {
      if (events.status().code() == Code::Gone) {
        pending_.push_back(errorLine(
            expiredError("the watch fell too far behind; resourceVersion " +
                         std::to_string(last_revision_) + " is too old, relist and watch again")));
      }
      ended_ = true;
      return;
    }
    for (auto& event : *events) convert(event);
    now = Clock::now();
    if (params_.bookmarks && now >= next_bookmark_) {
      pending_.push_back(bookmarkLine(last_revision_, false));
      next_bookmark_ = now + params_.bookmark_interval;
    }
    if (now >= end_time_) ended_ = true;
  }

  void convert(storage::WatchEvent& event) {
    last_revision_ = event.object.revision;
    bool deleted = event.type == storage::EventType::Deleted;
    if (!filtered_ && !deleted) {
      pending_.push_back(eventLine(event.type == storage::EventType::Added ? "ADDED" : "MODIFIED",
                                   event.object.value));
      return;
    }
    api::Json object = api::Json::parse(event.object.value, nullptr, false);
    if (object.is_discarded() || !object.is_object()) return;
    if (deleted && object.contains("metadata") && object["metadata"].is_object()) {
      object["metadata"]["resourceVersion"] = std::to_string(event.object.revision);
    }
    if (!filtered_) {
      pending_.push_back(eventLine("DELETED", dumpJson(object)));
      return;
    }
    std::string key = keyOf(event.object.key);
    bool matches = matchesObject(object);
    auto it = visible_.find(key);
    // Unknown keys: after a full initial list they were not visible; when resuming from a
    // client-supplied resourceVersion assume the client may have them.
    bool was_visible = it != visible_.end() ? it->second : !params_.send_initial_events;
    const char* type = nullptr;
    switch (event.type) {
      case storage::EventType::Added:
        if (matches) type = "ADDED";
        break;
      case storage::EventType::Modified:
        if (matches) {
          type = was_visible ? "MODIFIED" : "ADDED";
        } else if (was_visible) {
          type = "DELETED";
        }
        break;
      case storage::EventType::Deleted:
        if (matches || was_visible) type = "DELETED";
        break;
    }
    if (deleted) {
      visible_.erase(key);
    } else {
      visible_[key] = matches;
    }
    if (type != nullptr) pending_.push_back(eventLine(type, dumpJson(object)));
  }

  WatchParams params_;
  std::shared_ptr<StreamRegistry> registry_;
  bool filtered_;
  storage::WatchPtr watch_;
  std::atomic<bool> stopped_{false};
  bool ended_ = false;
  std::deque<std::string> pending_;
  std::unordered_map<std::string, bool> visible_;
  int64_t last_revision_ = 0;
  Clock::time_point end_time_;
  Clock::time_point next_bookmark_;
};

}  // namespace

Result<EventStreamPtr> openWatchStream(storage::Storage& storage, WatchParams params,
                                       std::shared_ptr<StreamRegistry> registry) {
  auto stream = std::make_unique<WatchEventStream>(std::move(params), registry);
  CLRK_RETURN_IF_ERROR(stream->open(storage));
  if (registry) registry->add(stream.get());
  return EventStreamPtr(std::move(stream));
}

}  // namespace clrk::apiserver
