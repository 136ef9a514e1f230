// EgressFeed: keeps the worker's in-process egress configuration current. It list+watches every
// kind compile() reads (EgressGateway, EgressL4Route, AIProviderRoute, MCPRoute, Backend,
// CredentialInjectionPolicy, FallbackRoutingPolicy, RateLimitPolicy, LoggingPolicy,
// EgressDenyPolicy, plus Namespaces and Secrets) across namespaces, and after each change
// (debounced) recompiles everything into a new snapshot swapped into the SnapshotHolder.
// Secrets the egress never needs (service-account tokens, the worker token) are not kept.
// Thread model: one Watcher thread per kind plus one compile thread; public methods are
// thread-safe.
#pragma once

#include "clrk/egress/config/snapshot.h"
#include "clrk/kube/client.h"
#include "clrk/kube/watch.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace clrk::worker {

struct EgressFeedOptions {
  std::chrono::milliseconds debounce{100};
  std::string system_namespace = "clrk-system";  // its clrk-worker-token Secret is skipped
  // Called on the compile thread after each compile with the objects compiled (kind and
  // apiVersion filled in) and the result, before the next compile starts.
  std::function<void(const std::vector<nlohmann::json>& objects,
                     const egress::config::CompileResult& result)>
      on_compiled;
};

class EgressFeed {
 public:
  EgressFeed(kube::ClientPtr client, egress::config::SnapshotHolder& holder,
             EgressFeedOptions options = {});
  ~EgressFeed();  // stop()

  // Installs an empty (deny-all) snapshot, starts the watchers and the compile thread.
  void start();
  void stop();
  // Waits until every watcher listed once and that state was compiled; false on timeout.
  bool waitForSync(std::chrono::milliseconds timeout);
  // Generation of the last compiled snapshot (0 before the first compile).
  uint64_t generation() const;
  // Objects compile() did not accept at the last compile, "Kind ns/name: reason: message".
  std::vector<std::string> rejected() const;

 private:
  void replace(const std::string& kind, std::vector<kube::Json> items);
  void apply(const std::string& kind, kube::WatchEventType type, const kube::Json& object);
  bool keep(const std::string& kind, const kube::Json& object) const;
  void compileLoop();

  kube::ClientPtr client_;
  egress::config::SnapshotHolder& holder_;
  EgressFeedOptions options_;
  std::vector<std::unique_ptr<kube::Watcher>> watchers_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, kube::Json> objects_;  // "Kind/ns/name"
  std::map<std::string, bool> synced_;         // kind -> listed once
  bool dirty_ = false;
  bool stopping_ = false;
  uint64_t generation_ = 0;
  uint64_t change_ = 0;           // bumped per change
  uint64_t compiled_change_ = 0;  // change_ at the last compile
  std::vector<std::string> rejected_;
  std::thread compiler_;
};

}  // namespace clrk::worker
