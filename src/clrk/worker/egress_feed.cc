#include "clrk/worker/egress_feed.h"

#include "clrk/api/registry.h"
#include "clrk/base/log.h"

#include <fmt/format.h>

namespace clrk::worker {
namespace {

struct WatchedKind {
  std::string_view api_version;
  std::string_view kind;
};

constexpr WatchedKind kKinds[] = {
    {"clrk.apoxy.dev/v1alpha1", "EgressGateway"},
    {"clrk.apoxy.dev/v1alpha1", "EgressL4Route"},
    {"clrk.apoxy.dev/v1alpha1", "AIProviderRoute"},
    {"clrk.apoxy.dev/v1alpha1", "MCPRoute"},
    {"clrk.apoxy.dev/v1alpha1", "Backend"},
    {"clrk.apoxy.dev/v1alpha1", "CredentialInjectionPolicy"},
    {"clrk.apoxy.dev/v1alpha1", "FallbackRoutingPolicy"},
    {"clrk.apoxy.dev/v1alpha1", "RateLimitPolicy"},
    {"clrk.apoxy.dev/v1alpha1", "LoggingPolicy"},
    {"clrk.apoxy.dev/v1alpha1", "EgressDenyPolicy"},
    {"v1", "Namespace"},
    {"v1", "Secret"},
};

// List items may come without kind/apiVersion; compile() needs both.
void fillTypeMeta(const std::string& kind, kube::Json& object) {
  if (!object.contains("kind")) object["kind"] = kind;
  if (!object.contains("apiVersion")) {
    for (const auto& watched : kKinds) {
      if (watched.kind == kind) object["apiVersion"] = std::string(watched.api_version);
    }
  }
}

std::string keyOf(const std::string& kind, const kube::Json& object) {
  const auto& metadata = object.contains("metadata") ? object["metadata"] : kube::Json::object();
  return kind + "/" + metadata.value("namespace", "") + "/" + metadata.value("name", "");
}

}  // namespace

EgressFeed::EgressFeed(kube::ClientPtr client, egress::config::SnapshotHolder& holder,
                       EgressFeedOptions options)
    : client_(std::move(client)), holder_(holder), options_(std::move(options)) {}

EgressFeed::~EgressFeed() { stop(); }

bool EgressFeed::keep(const std::string& kind, const kube::Json& object) const {
  if (kind != "Secret") return true;
  std::string type = object.value("type", "");
  if (type == "kubernetes.io/service-account-token") return false;
  const auto& metadata = object.contains("metadata") ? object["metadata"] : kube::Json::object();
  // The worker API token is never an egress credential.
  return !(metadata.value("namespace", "") == options_.system_namespace &&
           metadata.value("name", "") == "clrk-worker-token");
}

void EgressFeed::start() {
  holder_.swap(egress::config::compile({}, 0).snapshot);
  const auto& registry = api::Registry::builtin();
  for (const auto& watched : kKinds) {
    const api::ResourceType* type = registry.byKind(watched.api_version, watched.kind);
    if (type == nullptr) {
      logger("worker")->warn("egress feed: kind {} unknown to the registry", watched.kind);
      continue;
    }
    std::string kind(watched.kind);
    {
      std::lock_guard lock(mutex_);
      synced_[kind] = false;
    }
    kube::WatchHandlers handlers;
    handlers.on_replace = [this, kind](std::vector<kube::Json> items, const std::string&) {
      replace(kind, std::move(items));
    };
    handlers.on_event = [this, kind](kube::WatchEventType event, const kube::Json& object) {
      apply(kind, event, object);
    };
    kube::WatchOptions options;
    options.timeout_seconds = 300;
    watchers_.push_back(
        std::make_unique<kube::Watcher>(client_, *type, options, std::move(handlers)));
  }
  compiler_ = std::thread([this] { compileLoop(); });
  for (auto& watcher : watchers_) watcher->start();
}

void EgressFeed::stop() {
  for (auto& watcher : watchers_) watcher->stop();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (compiler_.joinable()) compiler_.join();
}

void EgressFeed::replace(const std::string& kind, std::vector<kube::Json> items) {
  {
    std::lock_guard lock(mutex_);
    std::string prefix = kind + "/";
    for (auto it = objects_.lower_bound(prefix);
         it != objects_.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
      it = objects_.erase(it);
    }
    for (auto& item : items) {
      fillTypeMeta(kind, item);
      if (!keep(kind, item)) continue;
      // The key first: in `map[key(item)] = std::move(item)` C++17 evaluates the right side
      // (json's by-value operator= parameter, moved from item) before the key.
      std::string key = keyOf(kind, item);
      objects_[key] = std::move(item);
    }
    synced_[kind] = true;
    dirty_ = true;
    ++change_;
  }
  cv_.notify_all();
}

void EgressFeed::apply(const std::string& kind, kube::WatchEventType type,
                       const kube::Json& object) {
  {
    std::lock_guard lock(mutex_);
    std::string key = keyOf(kind, object);
    if (type == kube::WatchEventType::Deleted || !keep(kind, object)) {
      objects_.erase(key);
    } else {
      kube::Json copy = object;
      fillTypeMeta(kind, copy);
      objects_[key] = std::move(copy);
    }
    dirty_ = true;
    ++change_;
  }
  cv_.notify_all();
}

void EgressFeed::compileLoop() {
  auto log = logger("worker");
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || dirty_; });
    if (stopping_) return;
    // Debounce: let a burst of events settle.
    cv_.wait_for(lock, options_.debounce, [&] { return stopping_; });
    if (stopping_) return;
    dirty_ = false;
    uint64_t change = change_;
    std::vector<nlohmann::json> objects;
    objects.reserve(objects_.size());
    for (const auto& [key, object] : objects_) objects.push_back(object);
    uint64_t generation = ++generation_;
    lock.unlock();
    auto compiled = egress::config::compile(objects, generation);
    std::vector<std::string> rejected;
    for (const auto& status : compiled.statuses) {
      if (status.accepted) continue;
      rejected.push_back(fmt::format("{} {}/{}: {}: {}", status.kind, status.namespace_name,
                                     status.name, status.reason, status.message));
    }
    holder_.swap(compiled.snapshot);
    log->debug("egress configuration generation {} compiled from {} objects ({} rejected)",
               generation, objects.size(), rejected.size());
    for (const auto& line : rejected) log->info("egress: not accepted: {}", line);
    if (options_.on_compiled) options_.on_compiled(objects, compiled);
    lock.lock();
    rejected_ = std::move(rejected);
    compiled_change_ = change;
    cv_.notify_all();
  }
}

bool EgressFeed::waitForSync(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] {
    for (const auto& [kind, synced] : synced_) {
      if (!synced) return false;
    }
    return compiled_change_ == change_ && generation_ > 0;
  });
}

uint64_t EgressFeed::generation() const {
  std::lock_guard lock(mutex_);
  return generation_;
}

std::vector<std::string> EgressFeed::rejected() const {
  std::lock_guard lock(mutex_);
  return rejected_;
}

}  // namespace clrk::worker
