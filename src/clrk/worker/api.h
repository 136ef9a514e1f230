// The worker API: what the controller (and tests) send to a clrk-worker over HTTPS, as plain
// structs with JSON codecs. Endpoints and semantics are documented in docs/architecture/worker.md.
//
//   POST /v1/executions                    ExecutionRequest -> 201 ExecutionStatus
//   GET  /v1/executions                    {"items": [ExecutionStatus...]}
//   GET  /v1/executions/{id}[?waitSeconds] ExecutionStatus (long-polls until terminal)
//   POST /v1/executions/{id}/stop          ExecutionStatus
//   GET  /v1/executions/{id}/logs[?follow] NDJSON LogEntry lines
//   GET  /v1/status                        WorkerStatus
//   PUT  /v1/warm-pools                    {"pools": [WarmPoolSpec...]} -> {"pools":
//   [WarmPoolState...]} GET  /v1/warm-pools                    {"pools": [WarmPoolState...]} GET
//   /healthz                          "ok" (no authentication)
//
// Parsers never throw: malformed JSON or a bad field gives InvalidArgument naming the field
// ("resources.memory: \"12Qi\" is not a Kubernetes quantity").
// Thread model: plain values and free functions.
#pragma once

#include "clrk/base/status.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::worker {

using Json = nlohmann::json;

// Registration in the API (docs/architecture/worker.md): Secret names, and the labels and
// annotations of the Lease worker-<name> that the controller reads.
inline constexpr std::string_view kTokenSecretName = "clrk-worker-token";
inline constexpr std::string_view kCaSecretName = "clrk-ca";
inline constexpr std::string_view kLabelPool = "clrk.apoxy.dev/worker-pool";
inline constexpr std::string_view kLabelPoolNamespace = "clrk.apoxy.dev/pool-namespace";
inline constexpr std::string_view kLabelComponent = "app.kubernetes.io/component";
inline constexpr std::string_view kAnnotationEndpoint = "clrk.apoxy.dev/endpoint";
inline constexpr std::string_view kAnnotationFingerprint = "clrk.apoxy.dev/tls-sha256";
inline constexpr std::string_view kAnnotationCapacity = "clrk.apoxy.dev/capacity";
inline constexpr std::string_view kAnnotationState = "clrk.apoxy.dev/state";
// "true" on a local dev worker (`clrk-worker --any-pool`) that may run executions of every pool in
// every namespace; absent otherwise.
inline constexpr std::string_view kAnnotationAnyPool = "clrk.apoxy.dev/any-pool";

// Bounds on what a request may carry.
inline constexpr size_t kMaxRequestBodyBytes = 4 << 20;
inline constexpr size_t kMaxOutputBytes = 1 << 20;  // ExecutionStatus::output.stdout_text
inline constexpr size_t kMaxIdLength = 128;

struct EnvVar {
  std::string name;
  std::string value;
};

struct Resources {
  std::string cpu;     // Kubernetes quantity ("500m", "2"); empty = unlimited
  std::string memory;  // Kubernetes quantity ("512Mi", "1G"); empty = unlimited
};

// How the input reaches the agent (TaskAgent spec.delivery.mode).
enum class DeliveryMode {
  Stdin,     // `stdin` is written to the agent's stdin, then closed
  Metadata,  // stdin is closed (/dev/null); the worker's egress serves `event` at
             // $CLRK_METADATA_URL/event and keeps what the agent POSTs to /response
};
std::string_view deliveryModeName(DeliveryMode mode);
std::optional<DeliveryMode> parseDeliveryMode(std::string_view text);

struct ExecutionRequest {
  std::string execution_id;  // [A-Za-z0-9._-]{1,128}, unique on the worker
  std::string namespace_name;
  std::string agent;
  std::string agent_kind;  // "TaskAgent" | "DaemonAgent" (free text, for attribution)
  std::map<std::string, std::string> agent_labels;
  std::string request_id;
  std::string gateway;  // "namespace/name" of the EgressGateway; empty = the default
  // "host" (host rootfs read-only), "dir:/abs/path" (a local rootfs directory) or an OCI image
  // reference pulled by the worker.
  std::string image;
  std::vector<std::string> image_pull_secrets;  // Secret names in `namespace_name`
  std::vector<std::string> command;             // empty: the image's entrypoint
  std::vector<std::string> args;                // empty with empty command: the image's cmd
  std::vector<EnvVar> env;
  std::string working_dir;
  int64_t timeout_seconds = 0;  // 0 = none
  Resources resources;
  std::optional<std::string> stdin_data;             // JSON "stdin"; only with DeliveryMode::Stdin
  DeliveryMode delivery_mode = DeliveryMode::Stdin;  // JSON "deliveryMode"
  // JSON "event": with DeliveryMode::Metadata (required there, a JSON document), what GET
  // $CLRK_METADATA_URL/event answers: the CloudEvents envelope Stdin mode writes to stdin.
  std::string event;
  // Who the run acts for (TaskAgent spec.identity; bounds in egress/identity.h), recorded on the
  // execution's egress records as clrk.identity.<field>. JSON "callerIdentity":
  // {"fields": {"user": "alice"}, "verified": false}; verified: whether anyone authenticated it.
  std::map<std::string, std::string> caller_identity;
  bool caller_identity_verified = false;
};

Result<ExecutionRequest> parseExecutionRequest(std::string_view body);
Result<ExecutionRequest> executionRequestFromJson(const Json& json);
Json toJson(const ExecutionRequest& request);

enum class Phase { Pending, Running, Succeeded, Failed, TimedOut, Stopped };
std::string_view phaseName(Phase phase);
std::optional<Phase> parsePhase(std::string_view text);
inline bool isTerminal(Phase phase) { return phase != Phase::Pending && phase != Phase::Running; }

struct ExecutionOutput {
  std::string stdout_text;  // JSON "stdout": the first kMaxOutputBytes of stdout
  bool truncated = false;
  std::string stderr_tail;  // JSON "stderrTail": the last 64 KiB of stderr
};

// What a DeliveryMode::Metadata agent POSTed to $CLRK_METADATA_URL/response (the last POST).
// JSON "response": {"contentType", "bytes", "bodyBase64", "discarded"}.
struct ExecutionResponse {
  std::string content_type;  // as the agent sent it; empty when absent
  std::string body;          // at most egress::kMaxMetadataResponseBytes (8 MiB)
  int64_t bytes = 0;         // size of the body as posted
  // The worker dropped the body after the execution ended to stay within its memory bound for
  // retained responses (ExecutionManagerOptions::max_retained_response_bytes); `body` is empty.
  bool discarded = false;
};

struct ExecutionStatus {
  std::string execution_id;
  std::string namespace_name;
  std::string agent;
  std::string request_id;
  Phase phase = Phase::Pending;
  std::optional<int> exit_code;
  std::string message;
  std::string started_at;   // RFC 3339 (micro), empty until started
  std::string finished_at;  // RFC 3339 (micro), empty until terminal
  std::string sandbox_id;
  std::string sandbox_address;  // what the egress sees as the client
  ExecutionOutput output;
  std::optional<ExecutionResponse> response;  // Metadata delivery, once terminal, if posted
};

Json toJson(const ExecutionStatus& status);
Result<ExecutionStatus> executionStatusFromJson(const Json& json);

// One line of GET /v1/executions/{id}/logs.
struct LogEntry {
  std::string time;    // RFC 3339 (micro)
  std::string stream;  // "stdout" | "stderr"
  std::string text;
};
Json toJson(const LogEntry& entry);
Result<LogEntry> logEntryFromJson(const Json& json);

struct WorkerCapacity {
  int max_executions = 0;
  int running = 0;
  int free = 0;
  std::string runtime;
  std::string limits_support;
  int cpu = 0;               // host CPUs
  int64_t memory_bytes = 0;  // host memory
};
Json toJson(const WorkerCapacity& capacity);

// One agent's warm pool on a worker (TaskAgent spec.warmPoolSize): `size` sandboxes booted from
// the agent's template and kept ready, so its executions skip network and sandbox set-up. PUT
// /v1/warm-pools replaces the worker's whole set (level-based: the controller sends what it
// wants, again and again).
struct WarmPoolSpec {
  std::string key;                 // "namespace/agent"
  int size = 0;                    // the worker caps it (warm_pool.h)
  int64_t idle_ttl_seconds = 600;  // a ready sandbox older than this is replaced
  ExecutionRequest request;        // the agent's template as an execution (its id is unused)
};
Json toJson(const WarmPoolSpec& spec);
Result<WarmPoolSpec> warmPoolSpecFromJson(const Json& json);
// The body of PUT /v1/warm-pools; InvalidArgument naming the entry and field.
Result<std::vector<WarmPoolSpec>> parseWarmPoolSpecs(std::string_view body);

struct WarmPoolState {
  std::string key;
  int size = 0;            // after the worker's caps
  int ready = 0;           // booted and waiting
  int booting = 0;         // being booted now
  uint64_t claims = 0;     // executions that took a ready sandbox
  uint64_t misses = 0;     // executions of the agent that found none ready (ran cold)
  std::string last_error;  // why the last boot failed; empty after a success
};
Json toJson(const WarmPoolState& state);
Result<WarmPoolState> warmPoolStateFromJson(const Json& json);
Result<WorkerCapacity> workerCapacityFromJson(const Json& json);

// Kubernetes quantities: CPU in millicores ("500m" -> 500, "2" -> 2000, "0.5" -> 500) and memory
// in bytes ("512Mi", "1G", "1e3", "1000"). InvalidArgument naming `field` otherwise.
Result<int64_t> parseCpuMillis(std::string_view quantity, std::string_view field = "cpu");
Result<int64_t> parseMemoryBytes(std::string_view quantity, std::string_view field = "memory");

// Valid execution id: [A-Za-z0-9._-]{1,kMaxIdLength}, not "." or "..".
bool isValidExecutionId(std::string_view id);

}  // namespace clrk::worker
