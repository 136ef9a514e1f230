// Streaming an invocation's output while it runs (TaskAgent spec.streaming.enabled): the
// InvocationManager hands a placed execution's log lines to an OutputSink (the HTTP trigger's
// streaming response), read by an OutputFollower from the worker's log follow
// (GET /v1/executions/{id}/logs?follow=true).
#pragma once

#include "clrk/base/status.h"
#include "clrk/worker/client.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

namespace clrk::controller {

struct InvokeResult;

// Receives one streaming invocation's output. Called on the invocation's threads, never
// concurrently: begin() once, when the execution is placed (the result has the invocation,
// request id, execution id and worker); then line() for each log line (stdout and stderr) in the
// order the worker recorded them, the last one before the invocation's result is returned.
class OutputSink {
 public:
  virtual ~OutputSink() = default;
  virtual void begin(const InvokeResult& placed) = 0;
  // false: the receiver is gone; no more lines are sent.
  virtual bool line(const worker::LogEntry& entry) = 0;
};

// Follows one execution's log on a thread of its own and passes every line to a sink, in order.
// A follow that fails (the connection broke) is retried up to kMaxAttempts times, skipping the
// lines already passed (the worker numbers lines from the start of the execution).
// Thread model: construct and finish() from one thread; the sink is called on the follower's.
class OutputFollower {
 public:
  static constexpr int kMaxAttempts = 4;

  // REQUIRES: `client` outlives this object.
  OutputFollower(const worker::WorkerClient& client, std::string execution_id,
                 std::shared_ptr<OutputSink> sink);
  ~OutputFollower();
  OutputFollower(const OutputFollower&) = delete;
  OutputFollower& operator=(const OutputFollower&) = delete;

  // Waits up to `grace` for the follow to end by itself (the worker ends it once the execution
  // is terminal and every line was sent), then cancels it and joins. Returns how it ended.
  Status finish(std::chrono::milliseconds grace);

 private:
  void run(const worker::WorkerClient& client, const std::string& execution_id,
           const std::shared_ptr<OutputSink>& sink);

  std::stop_source stop_;
  std::mutex mutex_;
  std::condition_variable_any cv_;
  bool done_ = false;
  Status status_;
  std::thread thread_;  // last: started once everything above exists
};

}  // namespace clrk::controller
