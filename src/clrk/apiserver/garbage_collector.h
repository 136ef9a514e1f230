// The garbage collector: a background thread that watches every resource, keeps an owner index
// (owner uid -> dependents) and, acting through the ResourceHandler's REST interface like the
// real kube-controller-manager's garbage collector and namespace controller:
//   - deletes objects whose every ownerReference (with a uid) points to an absent object, and
//     drops dangling references from objects that still have a live owner;
//   - processes the "foregroundDeletion" finalizer (deletes dependents, then removes the
//     finalizer once no dependent with blockOwnerDeletion remains) and the "orphan" finalizer
//     (removes the ownerReferences of dependents, then the finalizer);
//   - empties Terminating namespaces and then removes their "kubernetes" finalizer (finalize).
// Thread model: start()/stop() from one thread; the work runs on the collector's own thread.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/apiserver/handler.h"
#include "clrk/apiserver/storage/storage.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

namespace clrk::apiserver {

class GarbageCollector {
 public:
  // `handler` performs every write. All references must outlive the collector.
  GarbageCollector(storage::Storage& storage, const api::Registry& registry,
                   ResourceHandler& handler, std::chrono::milliseconds resync_interval);
  ~GarbageCollector();
  GarbageCollector(const GarbageCollector&) = delete;
  GarbageCollector& operator=(const GarbageCollector&) = delete;

  void start();
  // Stops and joins the thread. Idempotent.
  void stop();

 private:
  struct State;
  void run();
  void wake();

  storage::Storage& storage_;
  const api::Registry& registry_;
  ResourceHandler& handler_;
  std::chrono::milliseconds resync_interval_;
  std::thread thread_;
  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<State> state_;
};

}  // namespace clrk::apiserver
