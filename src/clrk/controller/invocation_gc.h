// Invocation garbage collection: finished Invocations (Succeeded, Failed, Timeout, Rejected) are
// deleted once older than a TTL (counted from status.completionTime, else creation), and beyond
// the newest `history_limit` finished ones of each agent, like a CronJob's history limits. Running
// and pending Invocations are never touched. Without this every trigger leaves an object behind
// and the API server and the controllers' caches grow without bound.
// Thread model: InvocationCollector sweeps the Invocation informer's cache on its own thread.
#pragma once

#include "clrk/kube/client.h"
#include "clrk/kube/watch.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace clrk::controller {

struct InvocationGcOptions {
  std::chrono::seconds ttl{std::chrono::hours(24)};  // 0: no TTL
  int history_limit = 500;                           // finished ones kept per agent; 0: no cap
  std::chrono::milliseconds interval{std::chrono::seconds(30)};
};

// The (namespace, name) of every Invocation in `invocations` to delete at `now`.
std::vector<std::pair<std::string, std::string>> invocationsToCollect(
    const std::vector<kube::Json>& invocations, const InvocationGcOptions& options,
    std::chrono::system_clock::time_point now);

class InvocationCollector {
 public:
  InvocationCollector(kube::ClientPtr client, kube::Informer& invocations,
                      InvocationGcOptions options);
  ~InvocationCollector();  // stop()

  void start();
  void stop();
  // One sweep now; returns how many Invocations were deleted.
  int sweep();

 private:
  kube::ClientPtr client_;
  kube::Informer& invocations_;
  InvocationGcOptions options_;
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace clrk::controller
