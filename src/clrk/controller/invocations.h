// InvocationManager: turns one trigger (HTTP request, cron tick, CLI-created Invocation) into an
// Invocation object and an execution on a worker, waits for it and records the outcome.
//
// Lifecycle of one invocation (phases are monotonic, as the Invocation kind documents):
//   Pending     the Invocation object exists (created here, or by `clrk run-task`);
//   Rejected    refused before any placement: agent not Ready, over spec.maxConcurrent, or no
//               worker of the pool had a free slot;
//   Dispatched  a worker accepted the execution (status.worker, status.executionId);
//   Running     the worker reported the sandbox started;
//   Succeeded | Failed | Timeout   from the worker's result (exit 0, otherwise, timed out); a
//               worker whose Lease expires mid-run fails the invocation with reason WorkerLost
//               (it is not re-run: agents have side effects).
// Placement tries up to 3 workers when one refuses (full, draining) or cannot be reached.
// The agent's input is a CloudEvents 1.0 structured-mode JSON envelope: written to its stdin
// (spec.delivery.mode Stdin; its stdout is the response body), or served by the worker's egress
// at $CLRK_METADATA_URL/event with stdin closed (Metadata; the response body is what the agent
// POSTs to $CLRK_METADATA_URL/response, and its stdout when it posts nothing). With
// spec.identity, the caller identity extracted from an HTTP request (caller_identity.h) goes into
// the Invocation's spec.identity, the envelope (extensions clrkidentity, clrkidentityverified),
// the environment (CLRK_IDENTITY, CLRK_IDENTITY_<FIELD>) and the execution (egress records:
// clrk.identity.<field>). With spec.streaming.enabled and an InvokeRequest::output_sink, the
// agent's log lines reach the sink while the execution runs (output_stream.h).
//
// Thread model: run() blocks for the whole invocation and may be called from many threads;
// runAsync() runs it on a thread the manager owns. stop() fails new calls and joins.
#pragma once

#include "clrk/base/status.h"
#include "clrk/controller/caller_identity.h"
#include "clrk/controller/output_stream.h"
#include "clrk/controller/worker_registry.h"
#include "clrk/kube/client.h"

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

namespace clrk::controller {

inline constexpr std::string_view kLabelAgent = "clrk.apoxy.dev/agent";
inline constexpr std::string_view kLabelAgentKind = "clrk.apoxy.dev/agent-kind";
inline constexpr size_t kMaxStatusOutputBytes = 64 * 1024;
inline constexpr size_t kMaxStatusStderrBytes = 4 * 1024;
// Waiting on a worker for an execution (invocations and daemon instances alike): one long poll
// lasts at most kWorkerPollWait; a worker unreachable for kWorkerUnreachableLimit (with its Lease
// still alive) counts as lost.
inline constexpr auto kWorkerPollWait = std::chrono::seconds(10);
inline constexpr auto kWorkerUnreachableLimit = std::chrono::seconds(45);

struct InvokeRequest {
  std::string namespace_name;
  std::string agent;            // TaskAgent name
  std::string trigger_type;     // "HTTP" | "Cron" | "CLI"
  std::string trigger_source;   // route, cron expression or principal
  std::string request_id;       // empty: a new UUID
  std::string content_type;     // of body; empty: application/json
  std::string body;             // the input
  std::string invocation_name;  // an existing (CLI-created) Invocation; empty: create one
  RequestHeaders headers;       // of an HTTP trigger's request, for spec.identity extractors
  // Filled by run(): extracted by spec.identity (HTTP), or an existing Invocation's
  // spec.identity.fields.
  CallerIdentity caller_identity;
  // When set and the agent has spec.streaming.enabled: receives the output while it runs.
  std::shared_ptr<OutputSink> output_sink;
};

struct InvokeResult {
  std::string invocation_name;
  std::string request_id;
  std::string execution_id;
  std::string worker;
  std::string phase;   // the Invocation phase reached (terminal)
  std::string reason;  // condition reason: Completed, Error, TimedOut, WorkerLost, AgentNotFound,
                       // AgentNotReady, ConcurrencyLimit, NoCapacity, ...
  std::string message;
  std::optional<int> exit_code;
  // The response body: full stdout as the worker returned it (up to 1 MiB), or what a Metadata
  // delivery agent POSTed to /response (up to 8 MiB; see output_source).
  std::string output;
  bool output_truncated = false;
  std::string output_source;        // "Stdout" | "Response"
  std::string output_content_type;  // the POST's Content-Type (Response only; may be empty)
  std::string stderr_tail;
};

// The CloudEvents 1.0 structured-mode envelope written to the agent's stdin: JSON bodies are
// inlined under "data", other UTF-8 text as a string, anything else as "data_base64".
std::string cloudEventEnvelope(const InvokeRequest& request, const std::string& invocation_name,
                               std::chrono::system_clock::time_point now);

// A fresh name for one run of `agent` (Invocation and execution id): <agent prefix>-<10 hex>.
std::string runNameFor(const std::string& agent);

// Maps an agent's template, resources and egressRefs (the parts TaskAgent and DaemonAgent share)
// to the execution a worker runs; `kind` is the agent's kind. InvalidArgument naming the field
// when the template cannot run.
Result<worker::ExecutionRequest> executionFromAgentTemplate(const kube::Json& agent,
                                                            std::string_view kind);
// The same for a TaskAgent, with its timeout and delivery mode.
Result<worker::ExecutionRequest> executionFromTaskAgent(const kube::Json& agent);

class InvocationManager {
 public:
  using AgentLookup =
      std::function<std::optional<kube::Json>(const std::string& ns, const std::string& name)>;

  InvocationManager(kube::ClientPtr client, WorkerRegistry& workers, AgentLookup agent_lookup);
  ~InvocationManager();

  InvokeResult run(InvokeRequest request);
  // Runs on a manager-owned thread; `done` is called on that thread. Unavailable when stopping or
  // when kMaxInFlight invocations already run.
  Status runAsync(InvokeRequest request, std::function<void(InvokeResult)> done);

  // Takes over a Dispatched/Running Invocation that no controller is waiting for (this process
  // restarted): waits for its execution on the worker it names and records the outcome; Failed
  // (WorkerLost) when that worker is gone.
  InvokeResult resume(kube::Json invocation);
  Status resumeAsync(kube::Json invocation, std::function<void(InvokeResult)> done);
  // Whether this manager is waiting for `invocation` (by name).
  bool tracking(const std::string& invocation) const;

  // Non-terminal invocations of TaskAgent "namespace/name".
  int active(const std::string& agent_key) const;
  // Called with "namespace/name" whenever an agent's active count changes.
  void onActiveChanged(std::function<void(const std::string& agent_key)> callback);
  // Stops the executions of an agent (deleted) on their workers; returns how many were asked.
  int stopAgent(const std::string& agent_key);

  // Where the agent's warm sandboxes are (worker -> ready), so placement prefers those workers,
  // and a note that one was probably claimed. Set before start; both optional.
  struct WarmHints {
    std::function<std::map<std::string, int>(const std::string& agent_key)> ready;
    std::function<void(const std::string& worker, const std::string& agent_key)> placed;
  };
  void setWarmHints(WarmHints hints) { warm_hints_ = std::move(hints); }

  void stop();

  static constexpr int kMaxInFlight = 512;

 private:
  struct Running {
    std::string agent_key;
    std::string worker;
    std::string execution_id;
  };

  InvokeResult reject(const InvokeRequest& request, kube::Json invocation, std::string reason,
                      std::string message);
  Status writeStatus(kube::Json& invocation, const kube::Json& status);
  // Waits for the execution to end (or its worker to be lost) and writes the terminal status.
  InvokeResult awaitAndRecord(kube::Json& invocation, worker::WorkerClient& worker_client,
                              const std::string& worker_name, bool reported_running,
                              InvokeResult result);
  void track(const std::string& invocation, Running running, bool add);
  void reapFinishedThreads();
  // Runs `work` on a manager-owned thread (bounded by kMaxInFlight).
  Status spawn(std::function<void()> work);

  kube::ClientPtr client_;
  WorkerRegistry& workers_;
  AgentLookup agent_lookup_;
  std::function<void(const std::string&)> on_active_changed_;
  WarmHints warm_hints_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::map<std::string, Running> running_;   // by invocation name
  std::map<std::string, int> active_;        // by agent key
  std::map<std::string, int> placed_;        // in-flight executions by worker
  std::map<uint64_t, std::thread> threads_;  // runAsync threads
  std::vector<uint64_t> finished_threads_;
  uint64_t next_thread_id_ = 0;
  std::atomic<bool> stopping_{false};
  std::stop_source stop_source_;  // cancels the long polls of stop()ped waits
};

}  // namespace clrk::controller
