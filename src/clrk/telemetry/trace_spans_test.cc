#include "clrk/telemetry/trace_spans.h"

#include "clrk/base/time.h"
#include "clrk/telemetry/attributes.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/sha.h>

#include <cstring>

namespace clrk::telemetry {
namespace {

using Json = nlohmann::json;
using namespace std::chrono_literals;

std::string sha256Hex(const std::string& input, size_t bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest);
  return toHex(std::span<const uint8_t>(digest, bytes));
}

Record llmCall(const std::string& execution) {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.start = std::chrono::system_clock::time_point(1'800'000'000s);
  record.end = record.start + 250ms;
  set(record, attr::kHttpRequestMethod, std::string("POST"));
  set(record, attr::kUrlFull, std::string("https://api.openai.com/v1/chat/completions"));
  set(record, attr::kServerAddress, std::string("api.openai.com"));
  set(record, attr::kUrlPath, std::string("/v1/chat/completions"));
  set(record, attr::kHttpResponseStatusCode, int64_t{200});
  set(record, attr::kGenAiSystem, std::string("openai"));
  set(record, attr::kGenAiOperationName, std::string("chat"));
  set(record, attr::kGenAiRequestModel, std::string("gpt-4o-mini"));
  set(record, attr::kGenAiUsageInputTokens, int64_t{12});
  set(record, attr::kGenAiUsageOutputTokens, int64_t{34});
  set(record, attr::kClrkDecision, std::string(attr::kDecisionAllow));
  set(record, attr::kClrkRule, std::string("AIProviderRoute/default/openai"));
  if (!execution.empty()) set(record, attr::kClrkExecutionId, execution);
  return record;
}

Json invocationJson() {
  return Json::parse(R"({
    "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "Invocation",
    "metadata": {"name": "openai-bot-0123456789", "namespace": "default",
                 "creationTimestamp": "2027-01-15T08:00:00Z",
                 "labels": {"clrk.apoxy.dev/agent": "openai-bot"}},
    "spec": {"parentRef": {"kind": "TaskAgent", "name": "openai-bot"},
             "trigger": {"type": "HTTP", "source": "/v1/namespaces/default/taskagents/openai-bot/invoke"},
             "requestId": "req-42"},
    "status": {"phase": "Succeeded", "worker": "dev-1", "executionId": "openai-bot-0123456789",
               "startTime": "2027-01-15T08:00:00.250000Z",
               "completionTime": "2027-01-15T08:00:02.500000Z", "exitCode": 0,
               "conditions": [{"type": "Completed", "status": "True", "reason": "Completed"}]}
  })");
}

TEST(TraceSpans, IdsAreTheDocumentedDigests) {
  EXPECT_EQ(toHex(traceIdFor("run-1")), sha256Hex("clrk-trace:run-1", 16));
  EXPECT_EQ(toHex(invocationSpanIdFor("run-1")), sha256Hex("invocation:run-1", 8));
  EXPECT_EQ(toHex(executionSpanIdFor("run-1")), sha256Hex("execution:run-1", 8));
  EXPECT_NE(traceIdFor("run-1"), traceIdFor("run-2"));
  EXPECT_NE(invocationSpanIdFor("run-1"), executionSpanIdFor("run-1"));
}

TEST(TraceSpans, EgressSpanJoinsTheTraceOfItsExecution) {
  Record record = llmCall("openai-bot-0123456789");
  Record span = egressSpan(record);
  EXPECT_EQ(span.kind, SpanKind::Client);
  EXPECT_EQ(span.trace_id, traceIdFor("openai-bot-0123456789"));
  EXPECT_EQ(span.parent_span_id, executionSpanIdFor("openai-bot-0123456789"));
  EXPECT_EQ(span.span_id, record.span_id);  // the egress's own (random, unique) span id
  EXPECT_EQ(span.name, "chat gpt-4o-mini");
  EXPECT_EQ(span.start, record.start);
  EXPECT_EQ(span.end, record.end);
  EXPECT_EQ(span.status_code, 0);
  ASSERT_NE(findString(span, "gen_ai.provider.name"), nullptr);
  EXPECT_EQ(*findString(span, "gen_ai.provider.name"), "openai");
  EXPECT_EQ(findInt(span, attr::kGenAiUsageInputTokens), 12);
  EXPECT_EQ(findInt(span, attr::kHttpResponseStatusCode), 200);
  EXPECT_EQ(*findString(span, attr::kUrlFull), "https://api.openai.com/v1/chat/completions");
  EXPECT_EQ(*findString(span, attr::kClrkRule), "AIProviderRoute/default/openai");
}

TEST(TraceSpans, EgressSpanNamesAndStatuses) {
  Record plain = llmCall("run-1");
  plain.attributes.erase(plain.attributes.begin() + 6, plain.attributes.end());  // no gen_ai.*
  EXPECT_EQ(egressSpan(plain).name, "POST api.openai.com/v1/chat/completions");

  Record denied = llmCall("run-1");
  set(denied, attr::kClrkDecision, std::string(attr::kDecisionDeny));
  set(denied, attr::kClrkReason, std::string("no route matches host api.openai.com"));
  Record span = egressSpan(denied);
  EXPECT_EQ(span.status_code, static_cast<int>(StatusCode::Error));
  EXPECT_EQ(span.status_message, "denied: no route matches host api.openai.com");

  Record upstream_error = llmCall("run-1");
  set(upstream_error, attr::kHttpResponseStatusCode, int64_t{503});
  span = egressSpan(upstream_error);
  EXPECT_EQ(span.status_code, static_cast<int>(StatusCode::Error));
  EXPECT_EQ(*findString(span, attr::kErrorType), "503");

  Record orphan = llmCall("");  // no execution: keeps its own ids, a root span
  span = egressSpan(orphan);
  EXPECT_EQ(span.trace_id, orphan.trace_id);
  EXPECT_EQ(span.parent_span_id, SpanId{});
}

TEST(TraceSpans, InvocationSpansFromAnInvocationObject) {
  auto input = invocationSpanInput(invocationJson());
  ASSERT_TRUE(input.ok()) << input.status().toString();
  EXPECT_EQ(input->agent, "openai-bot");
  EXPECT_EQ(input->request_id, "req-42");
  EXPECT_EQ(input->reason, "Completed");
  EXPECT_EQ(input->exit_code, 0);

  std::vector<Record> spans = invocationSpans(*input);
  ASSERT_EQ(spans.size(), 2u);
  const Record& root = spans[0];
  const Record& execution = spans[1];
  EXPECT_EQ(root.name, "invoke openai-bot");
  EXPECT_EQ(root.kind, SpanKind::Server);
  EXPECT_EQ(root.trace_id, traceIdFor("openai-bot-0123456789"));
  EXPECT_EQ(root.span_id, invocationSpanIdFor("openai-bot-0123456789"));
  EXPECT_EQ(root.parent_span_id, SpanId{});
  EXPECT_EQ(root.status_code, 0);
  EXPECT_EQ(*findString(root, "faas.trigger"), "http");
  EXPECT_EQ(*findString(root, "clrk.trigger.type"), "HTTP");
  EXPECT_EQ(*findString(root, attr::kClrkRequestId), "req-42");
  EXPECT_EQ(*findString(root, "clrk.phase"), "Succeeded");
  EXPECT_EQ(findInt(root, "clrk.exit_code"), 0);
  EXPECT_EQ(root.start, *parseRfc3339("2027-01-15T08:00:00Z"));
  EXPECT_EQ(root.end, *parseRfc3339("2027-01-15T08:00:02.5Z"));

  EXPECT_EQ(execution.name, "execute openai-bot");
  EXPECT_EQ(execution.kind, SpanKind::Internal);
  EXPECT_EQ(execution.trace_id, root.trace_id);
  EXPECT_EQ(execution.span_id, executionSpanIdFor("openai-bot-0123456789"));
  EXPECT_EQ(execution.parent_span_id, root.span_id);
  EXPECT_EQ(*findString(execution, attr::kClrkWorker), "dev-1");
  EXPECT_EQ(*findString(execution, attr::kClrkExecutionId), "openai-bot-0123456789");
  EXPECT_EQ(execution.start, *parseRfc3339("2027-01-15T08:00:00.25Z"));
  EXPECT_EQ(execution.end, root.end);

  // An egress call of that execution is a child of the execution span, in the same trace.
  Record call = egressSpan(llmCall(input->execution_id));
  EXPECT_EQ(call.trace_id, root.trace_id);
  EXPECT_EQ(call.parent_span_id, execution.span_id);
}

// The caller identity of spec.identity goes on both invocation spans; egress spans carry it from
// their records (the worker's egress sets clrk.identity.* on each).
TEST(TraceSpans, CallerIdentityOnInvocationAndEgressSpans) {
  Json invocation = invocationJson();
  invocation["spec"]["identity"] = {{"fields", {{"user", "alice"}, {"tenant", "acme"}, {"bad", 7}}},
                                    {"sources", {{"user", "extractors[0] (JWT claim sub)"}}},
                                    {"verified", false}};
  auto input = invocationSpanInput(invocation);
  ASSERT_TRUE(input.ok());
  EXPECT_EQ(input->caller_identity,
            (std::map<std::string, std::string>{{"tenant", "acme"}, {"user", "alice"}}));
  for (const Record& span : invocationSpans(*input)) {
    ASSERT_NE(findString(span, "clrk.identity.user"), nullptr) << span.name;
    EXPECT_EQ(*findString(span, "clrk.identity.user"), "alice");
    EXPECT_EQ(*findString(span, "clrk.identity.tenant"), "acme");
    EXPECT_EQ(find(span, "clrk.identity.bad"), nullptr);
    const AttributeValue* verified = find(span, attr::kClrkIdentityVerified);
    ASSERT_NE(verified, nullptr);
    EXPECT_FALSE(std::get<bool>(*verified));
  }
  Record call = llmCall(input->execution_id);
  set(call, "clrk.identity.user", std::string("alice"));
  EXPECT_EQ(*findString(egressSpan(call), "clrk.identity.user"), "alice");

  // No identity: no identity attributes at all.
  for (const Record& span : invocationSpans(*invocationSpanInput(invocationJson()))) {
    EXPECT_EQ(find(span, attr::kClrkIdentityVerified), nullptr);
  }
}

TEST(TraceSpans, FailedAndRejectedInvocations) {
  Json failed = invocationJson();
  failed["status"]["phase"] = "Failed";
  failed["status"]["exitCode"] = 3;
  failed["status"]["conditions"][0]["reason"] = "Error";
  auto spans = invocationSpans(*invocationSpanInput(failed));
  ASSERT_EQ(spans.size(), 2u);
  EXPECT_EQ(spans[0].status_code, static_cast<int>(StatusCode::Error));
  EXPECT_EQ(spans[0].status_message, "Failed: Error");
  EXPECT_EQ(spans[1].status_code, static_cast<int>(StatusCode::Error));
  EXPECT_EQ(spans[1].status_message, "exit code 3");

  Json rejected = invocationJson();
  rejected["status"] = {{"phase", "Rejected"},
                        {"message", "no worker has a free slot"},
                        {"completionTime", "2027-01-15T08:00:00.100000Z"},
                        {"conditions", {{{"type", "Completed"}, {"reason", "NoCapacity"}}}}};
  spans = invocationSpans(*invocationSpanInput(rejected));
  ASSERT_EQ(spans.size(), 1u);  // never dispatched: no execution span
  EXPECT_EQ(spans[0].trace_id, traceIdFor("openai-bot-0123456789"));  // keyed by the name
  EXPECT_EQ(spans[0].status_message, "Rejected: NoCapacity (no worker has a free slot)");
  EXPECT_FALSE(invocationSpanInput(Json::object()).ok());
  EXPECT_TRUE(isTerminalInvocationPhase("Timeout"));
  EXPECT_FALSE(isTerminalInvocationPhase("Running"));
}

}  // namespace
}  // namespace clrk::telemetry
