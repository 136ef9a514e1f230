// Controller: a WorkQueue drained by worker threads that call a Reconciler, with the
// controller-runtime contract:
//   * reconciliation is level-based: the Reconciler reads the current state (informer caches or
//     the API) for the key it is given, never the event that queued it;
//   * an error result re-queues the key with exponential backoff (the ReconcileResult is then
//     ignored); a TerminalError (Code::InvalidArgument) is logged and not retried;
//   * an ok result with requeue_after > 0 re-queues the key after that delay, and resets the
//     key's backoff.
// Keys are "namespace/name" (informer keys).
// Thread model: start() spawns `workers` threads; stop() shuts the queue down and joins them.
#pragma once

#include "clrk/base/status.h"
#include "clrk/controller/work_queue.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace clrk::controller {

struct Request {
  std::string namespace_name;
  std::string name;
  std::string key() const { return namespace_name.empty() ? name : namespace_name + "/" + name; }
  static Request fromKey(const std::string& key);
};

struct ReconcileResult {
  std::chrono::milliseconds requeue_after{0};
};

class Reconciler {
 public:
  virtual ~Reconciler() = default;
  virtual Result<ReconcileResult> reconcile(const Request& request) = 0;
};

class Controller {
 public:
  Controller(std::string name, Reconciler& reconciler, int workers = 1,
             WorkQueue::Options queue_options = {});
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  void start();
  void stop();

  // Queues a key ("namespace/name").
  void enqueue(const std::string& key) { queue_.add(key); }
  void enqueueAfter(const std::string& key, std::chrono::milliseconds delay) {
    queue_.addAfter(key, delay);
  }
  const std::string& name() const { return name_; }
  // Reconciles run so far (for tests and metrics).
  uint64_t reconciles() const { return reconciles_.load(); }

 private:
  void work();

  std::string name_;
  Reconciler& reconciler_;
  int workers_;
  WorkQueue queue_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> reconciles_{0};
};

}  // namespace clrk::controller
