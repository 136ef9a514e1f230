#include "clrk/telemetry/trace_spans.h"

#include "clrk/base/time.h"
#include "clrk/telemetry/attributes.h"

#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

namespace clrk::telemetry {
namespace {

using Json = nlohmann::json;
using TimePoint = std::chrono::system_clock::time_point;

// Attribute names used only on the exported spans.
constexpr std::string_view kGenAiProviderName = "gen_ai.provider.name";  // semconv >= 1.37
constexpr std::string_view kFaasTrigger = "faas.trigger";
constexpr std::string_view kClrkInvocation = "clrk.invocation";
constexpr std::string_view kClrkAgentKind = "clrk.agent_kind";
constexpr std::string_view kClrkTriggerType = "clrk.trigger.type";
constexpr std::string_view kClrkTriggerSource = "clrk.trigger.source";
constexpr std::string_view kClrkPhase = "clrk.phase";
constexpr std::string_view kClrkPhaseReason = "clrk.phase_reason";
constexpr std::string_view kClrkExitCode = "clrk.exit_code";

template <size_t N>
std::array<uint8_t, N> digestPrefix(std::string_view prefix, std::string_view id) {
  std::string input;
  input.reserve(prefix.size() + id.size());
  input.append(prefix).append(id);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  std::array<uint8_t, N> out{};
  std::memcpy(out.data(), digest, N);
  // All-zero ids are invalid in OTLP; a 2^-64 chance, but cheap to rule out.
  if (std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0; })) out[N - 1] = 1;
  return out;
}

void setIfNotEmpty(Record& span, std::string_view key, const std::string& value) {
  if (!value.empty()) set(span, key, value);
}

bool isErrorPhase(std::string_view phase) {
  return phase == "Failed" || phase == "Timeout" || phase == "Rejected";
}

// FaaS semantic conventions: faas.trigger is one of datasource|http|pubsub|timer|other.
std::string faasTrigger(std::string_view trigger_type) {
  if (trigger_type == "HTTP") return "http";
  if (trigger_type == "Cron") return "timer";
  return "other";
}

TimePoint parseTime(const Json& object, std::string_view key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return parseRfc3339(it->get_ref<const std::string&>()).value_or(TimePoint{});
}

std::string stringAt(const Json& object, std::string_view key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

const Json& memberAt(const Json& object, std::string_view key) {
  static const Json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it != object.end() ? *it : kNull;
}

void setCallerIdentity(Record& span, const InvocationSpanInput& invocation) {
  for (const auto& [field, value] : invocation.caller_identity) {
    set(span, std::string(attr::kClrkIdentityPrefix) + field, value);
  }
  if (!invocation.caller_identity.empty()) {
    set(span, attr::kClrkIdentityVerified, invocation.caller_identity_verified);
  }
}

TimePoint firstKnown(std::initializer_list<TimePoint> times) {
  for (TimePoint time : times) {
    if (time != TimePoint{}) return time;
  }
  return {};
}

}  // namespace

TraceId traceIdFor(std::string_view execution_id) {
  return digestPrefix<16>("clrk-trace:", execution_id);
}

SpanId invocationSpanIdFor(std::string_view execution_id) {
  return digestPrefix<8>("invocation:", execution_id);
}

SpanId executionSpanIdFor(std::string_view execution_id) {
  return digestPrefix<8>("execution:", execution_id);
}

Record egressSpan(const Record& record) {
  Record span = record;
  span.kind = SpanKind::Client;
  if (const std::string* execution = findString(record, attr::kClrkExecutionId);
      execution != nullptr && !execution->empty()) {
    span.trace_id = traceIdFor(*execution);
    span.parent_span_id = executionSpanIdFor(*execution);
  }
  if (std::all_of(span.span_id.begin(), span.span_id.end(), [](uint8_t b) { return b == 0; })) {
    span.span_id = newSpanId();
  }
  if (std::all_of(span.trace_id.begin(), span.trace_id.end(), [](uint8_t b) { return b == 0; })) {
    span.trace_id = newTraceId();
  }

  const std::string* operation = findString(record, attr::kGenAiOperationName);
  const std::string* model = findString(record, attr::kGenAiRequestModel);
  const std::string* method = findString(record, attr::kHttpRequestMethod);
  const std::string* host = findString(record, attr::kServerAddress);
  const std::string* path = findString(record, attr::kUrlPath);
  if (operation != nullptr && model != nullptr && !operation->empty() && !model->empty()) {
    span.name = *operation + " " + *model;
  } else if (method != nullptr && host != nullptr) {
    span.name = *method + " " + *host + (path != nullptr ? *path : std::string());
  }
  if (const std::string* system = findString(record, attr::kGenAiSystem)) {
    set(span, kGenAiProviderName, *system);
  }

  const std::string* decision = findString(record, attr::kClrkDecision);
  std::optional<int64_t> http_status = findInt(record, attr::kHttpResponseStatusCode);
  const std::string* error_type = findString(record, attr::kErrorType);
  if (decision != nullptr && *decision == attr::kDecisionDeny) {
    span.status_code = static_cast<int>(StatusCode::Error);
    if (span.status_message.empty()) {
      const std::string* reason = findString(record, attr::kClrkReason);
      span.status_message = "denied: " + (reason != nullptr ? *reason : std::string("egress"));
    }
  } else if (http_status && *http_status >= 400) {
    span.status_code = static_cast<int>(StatusCode::Error);
    if (error_type == nullptr) set(span, attr::kErrorType, std::to_string(*http_status));
  } else if (error_type != nullptr && !error_type->empty()) {
    span.status_code = static_cast<int>(StatusCode::Error);
  }
  if (span.status_code != static_cast<int>(StatusCode::Error)) span.status_message.clear();
  return span;
}

bool isTerminalInvocationPhase(std::string_view phase) {
  return phase == "Succeeded" || phase == "Failed" || phase == "Timeout" || phase == "Rejected";
}

Result<InvocationSpanInput> invocationSpanInput(const nlohmann::json& invocation) {
  const Json& metadata = memberAt(invocation, "metadata");
  const Json& spec = memberAt(invocation, "spec");
  const Json& status = memberAt(invocation, "status");
  InvocationSpanInput out;
  out.name = stringAt(metadata, "name");
  if (out.name.empty()) return invalidArgument("Invocation: metadata.name is missing");
  out.namespace_name = stringAt(metadata, "namespace");
  const Json& parent = memberAt(spec, "parentRef");
  out.agent = stringAt(parent, "name");
  out.agent_kind = stringAt(parent, "kind");
  if (out.agent.empty()) {
    out.agent = stringAt(memberAt(metadata, "labels"), "clrk.apoxy.dev/agent");
  }
  const Json& trigger = memberAt(spec, "trigger");
  out.trigger_type = stringAt(trigger, "type");
  out.trigger_source = stringAt(trigger, "source");
  out.request_id = stringAt(spec, "requestId");
  out.execution_id = stringAt(status, "executionId");
  out.worker = stringAt(status, "worker");
  out.phase = stringAt(status, "phase");
  out.message = stringAt(status, "message");
  const Json& conditions = memberAt(status, "conditions");
  if (conditions.is_array()) {
    for (const Json& condition : conditions) {
      if (stringAt(condition, "type") == "Completed") out.reason = stringAt(condition, "reason");
    }
  }
  const Json& identity = memberAt(spec, "identity");
  const Json& fields = memberAt(identity, "fields");
  if (fields.is_object()) {
    for (const auto& [field, value] : fields.items()) {
      if (out.caller_identity.size() >= 16) break;
      if (!value.is_string() || field.empty() || field.size() > 63) continue;
      const auto& text = value.get_ref<const std::string&>();
      if (!text.empty() && text.size() <= 256) out.caller_identity[field] = text;
    }
    const Json& verified = memberAt(identity, "verified");
    out.caller_identity_verified = verified.is_boolean() && verified.get<bool>();
  }
  const Json& exit_code = memberAt(status, "exitCode");
  if (exit_code.is_number_integer()) out.exit_code = exit_code.get<int64_t>();
  out.created = parseTime(metadata, "creationTimestamp");
  out.started = parseTime(status, "startTime");
  out.completed = parseTime(status, "completionTime");
  return out;
}

std::vector<Record> invocationSpans(const InvocationSpanInput& invocation) {
  const std::string& key =
      invocation.execution_id.empty() ? invocation.name : invocation.execution_id;
  TimePoint end = firstKnown({invocation.completed, invocation.started, invocation.created});
  // creationTimestamp has second precision: never let the root start after its child.
  TimePoint root_start = firstKnown({invocation.created, invocation.started, end});
  if (invocation.started != TimePoint{}) root_start = std::min(root_start, invocation.started);
  bool failed = isErrorPhase(invocation.phase);

  std::vector<Record> spans;
  Record root;
  root.name = "invoke " + (invocation.agent.empty() ? invocation.name : invocation.agent);
  root.kind = SpanKind::Server;
  root.trace_id = traceIdFor(key);
  root.span_id = invocationSpanIdFor(key);
  root.start = root_start;
  root.end = std::max(end, root_start);
  if (failed) {
    root.status_code = static_cast<int>(StatusCode::Error);
    root.status_message = invocation.phase + (invocation.reason.empty() ? "" : ": ") +
                          invocation.reason +
                          (invocation.message.empty() ? "" : " (" + invocation.message + ")");
  }
  setIfNotEmpty(root, attr::kClrkNamespace, invocation.namespace_name);
  setIfNotEmpty(root, attr::kClrkAgent, invocation.agent);
  setIfNotEmpty(root, kClrkAgentKind, invocation.agent_kind);
  set(root, kClrkInvocation, invocation.name);
  setIfNotEmpty(root, attr::kClrkRequestId, invocation.request_id);
  set(root, kFaasTrigger, faasTrigger(invocation.trigger_type));
  setIfNotEmpty(root, kClrkTriggerType, invocation.trigger_type);
  setIfNotEmpty(root, kClrkTriggerSource, invocation.trigger_source);
  setIfNotEmpty(root, kClrkPhase, invocation.phase);
  setIfNotEmpty(root, kClrkPhaseReason, invocation.reason);
  if (invocation.exit_code) set(root, kClrkExitCode, *invocation.exit_code);
  setCallerIdentity(root, invocation);
  spans.push_back(std::move(root));

  if (!invocation.execution_id.empty()) {
    Record execution;
    execution.name = "execute " + (invocation.agent.empty() ? invocation.name : invocation.agent);
    execution.kind = SpanKind::Internal;
    execution.trace_id = traceIdFor(key);
    execution.span_id = executionSpanIdFor(key);
    execution.parent_span_id = invocationSpanIdFor(key);
    execution.start = firstKnown({invocation.started, root_start});
    execution.end = std::max(end, execution.start);
    bool exit_failed = invocation.exit_code && *invocation.exit_code != 0;
    if (failed || exit_failed) {
      execution.status_code = static_cast<int>(StatusCode::Error);
      execution.status_message =
          exit_failed ? "exit code " + std::to_string(*invocation.exit_code) : invocation.phase;
    }
    setIfNotEmpty(execution, attr::kClrkNamespace, invocation.namespace_name);
    setIfNotEmpty(execution, attr::kClrkAgent, invocation.agent);
    set(execution, attr::kClrkExecutionId, invocation.execution_id);
    setIfNotEmpty(execution, attr::kClrkWorker, invocation.worker);
    setIfNotEmpty(execution, kClrkPhase, invocation.phase);
    if (invocation.exit_code) set(execution, kClrkExitCode, *invocation.exit_code);
    setCallerIdentity(execution, invocation);
    spans.push_back(std::move(execution));
  }
  return spans;
}

}  // namespace clrk::telemetry
