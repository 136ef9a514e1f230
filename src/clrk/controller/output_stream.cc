#include "clrk/controller/output_stream.h"

#include "clrk/base/log.h"

namespace clrk::controller {

OutputFollower::OutputFollower(const worker::WorkerClient& client, std::string execution_id,
                               std::shared_ptr<OutputSink> sink)
    : thread_([this, &client, id = std::move(execution_id), sink = std::move(sink)] {
        run(client, id, sink);
      }) {}

OutputFollower::~OutputFollower() { (void)finish(std::chrono::milliseconds(0)); }

void OutputFollower::run(const worker::WorkerClient& client, const std::string& execution_id,
                         const std::shared_ptr<OutputSink>& sink) {
  std::stop_token stop = stop_.get_token();
  size_t passed = 0;  // lines handed to the sink, over every attempt
  bool receiver_gone = false;
  Status status;
  for (int attempt = 0; attempt < kMaxAttempts && !stop.stop_requested(); ++attempt) {
    if (attempt > 0) {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, stop, std::chrono::milliseconds(500), [] { return false; });
      if (stop.stop_requested()) break;
    }
    size_t seen = 0;  // lines of this attempt's follow
    status = client.logs(
        execution_id, /*follow=*/true,
        [&](const worker::LogEntry& entry) {
          if (seen++ < passed) return true;  // passed on by an earlier attempt
          ++passed;
          if (!sink->line(entry)) {
            receiver_gone = true;
            return false;
          }
          return true;
        },
        stop);
    if (status.ok() || receiver_gone || status.code() == Code::NotFound) break;
    logger("controller")
        ->debug("execution {}: log follow failed ({}); retrying", execution_id, status.toString());
  }
  std::lock_guard lock(mutex_);
  done_ = true;
  status_ = status;
  cv_.notify_all();
}

Status OutputFollower::finish(std::chrono::milliseconds grace) {
  if (!thread_.joinable()) return status_;
  {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, grace, [this] { return done_; });
  }
  stop_.request_stop();
  thread_.join();
  return status_;
}

}  // namespace clrk::controller
