#include "clrk/controller/controller.h"

#include "clrk/base/log.h"

namespace clrk::controller {

Request Request::fromKey(const std::string& key) {
  size_t slash = key.find('/');
  if (slash == std::string::npos) return Request{"", key};
  return Request{key.substr(0, slash), key.substr(slash + 1)};
}

Controller::Controller(std::string name, Reconciler& reconciler, int workers,
                       WorkQueue::Options queue_options)
    : name_(std::move(name)),
      reconciler_(reconciler),
      workers_(std::max(1, workers)),
      queue_(queue_options) {}

Controller::~Controller() { stop(); }

void Controller::start() {
  for (int i = 0; i < workers_; ++i) threads_.emplace_back([this] { work(); });
}

void Controller::stop() {
  queue_.shutDown();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

void Controller::work() {
  auto log = logger("controller");
  while (auto key = queue_.get()) {
    Request request = Request::fromKey(*key);
    Result<ReconcileResult> result = reconciler_.reconcile(request);
    ++reconciles_;
    if (!result.ok()) {
      const Status& status = result.status();
      if (status.code() == Code::InvalidArgument) {
        log->warn("{} {}: {} (not retried)", name_, *key, status.message());
        queue_.forget(*key);
      } else {
        int failures = queue_.failures(*key);
        if (failures < 3) {
          log->debug("{} {}: {} (retrying)", name_, *key, status.toString());
        } else {
          log->warn("{} {}: {} (retry {})", name_, *key, status.toString(), failures);
        }
        queue_.addRateLimited(*key);
      }
    } else {
      queue_.forget(*key);
      if (result->requeue_after.count() > 0) queue_.addAfter(*key, result->requeue_after);
    }
    queue_.done(*key);
  }
}

}  // namespace clrk::controller
