// Trace spans for invocations: the spans the controller-manager exports to a user's OpenTelemetry
// collector (span_exporter.h), one trace per invocation:
//
//   invoke <agent>            SERVER    root; from the Invocation once it reaches a terminal phase
//   └─ execute <agent>        INTERNAL  the execution on a worker (absent when Rejected)
//      └─ chat gpt-4o-mini    CLIENT    one per egress call, from the worker's egress records
//
// Ids are derived, not stored: every producer computes them from the execution id (which is the
// Invocation's name), so egress spans exported while the execution still runs link to the
// invocation spans exported when it ends, across processes and restarts:
//   trace id            = SHA-256("clrk-trace:" + execution id)[0:16]
//   invocation span id  = SHA-256("invocation:" + execution id)[0:8]
//   execution span id   = SHA-256("execution:" + execution id)[0:8]
// The request id is not the key: a caller may send the same X-Request-Id twice, and each
// invocation must be its own trace; it is an attribute (clrk.request_id) instead.
//
// Attributes follow the OpenTelemetry HTTP, GenAI and FaaS semantic conventions where the data
// has them (attributes.h) and use clrk.* for the rest.
// Thread model: pure functions.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/record.h"

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::telemetry {

TraceId traceIdFor(std::string_view execution_id);
SpanId invocationSpanIdFor(std::string_view execution_id);
SpanId executionSpanIdFor(std::string_view execution_id);

// The CLIENT span for one egress record: the record with the trace id and parent (execution
// span) of its clrk.execution_id, named "{gen_ai.operation.name} {gen_ai.request.model}" for
// LLM calls (GenAI convention) and "{METHOD} {host}{path}" for other HTTP calls, with
// gen_ai.provider.name mirroring gen_ai.system, and status Error for a denied call, a failed
// one (error.type) or an HTTP status >= 400 (the HTTP convention for client spans). A record
// without an execution id keeps its own ids (a root span).
Record egressSpan(const Record& record);

// What the invocation spans are built from (the fields of an Invocation object).
struct InvocationSpanInput {
  std::string namespace_name;
  std::string name;  // the Invocation's name
  std::string agent;
  std::string agent_kind;  // "TaskAgent"
  std::string trigger_type;
  std::string trigger_source;
  std::string request_id;
  std::string execution_id;  // empty when never dispatched
  std::string worker;
  std::string phase;  // terminal: Succeeded, Failed, Timeout, Rejected
  std::string reason;
  std::string message;
  std::optional<int64_t> exit_code;
  // spec.identity.fields: the caller identity, as clrk.identity.<field> on both spans (at most 16
  // fields; names up to 63 and values up to 256 bytes, others are left out), with
  // clrk.identity_verified from spec.identity.verified.
  std::map<std::string, std::string> caller_identity;
  bool caller_identity_verified = false;
  std::chrono::system_clock::time_point created{};    // metadata.creationTimestamp
  std::chrono::system_clock::time_point started{};    // status.startTime; epoch = unknown
  std::chrono::system_clock::time_point completed{};  // status.completionTime
};

// Whether `phase` is a terminal Invocation phase.
bool isTerminalInvocationPhase(std::string_view phase);

// Reads an Invocation object (kube JSON). InvalidArgument when it has no name.
Result<InvocationSpanInput> invocationSpanInput(const nlohmann::json& invocation);

// The SERVER root span and, when the invocation was dispatched, its INTERNAL execution child.
std::vector<Record> invocationSpans(const InvocationSpanInput& invocation);

}  // namespace clrk::telemetry
