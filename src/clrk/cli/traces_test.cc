#include "clrk/cli/traces.h"

#include "clrk/telemetry/attributes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace attr = telemetry::attr;

api::Json invocation() {
  return api::Json::parse(R"({
    "metadata": {"name": "bot-0123456789", "creationTimestamp": "2026-12-05T10:00:00Z"},
    "spec": {"parentRef": {"kind": "TaskAgent", "name": "bot"}, "trigger": {"type": "HTTP"},
             "requestId": "6b1f2c3d-aaaa-bbbb-cccc-000000000000"},
    "status": {"phase": "Succeeded", "worker": "dev-0", "executionId": "bot-0123456789",
               "exitCode": 0, "completionTime": "2026-12-05T10:00:02Z"}})");
}

telemetry::Record call(int offset_ms) {
  telemetry::Record record;
  auto base = std::chrono::system_clock::time_point(std::chrono::seconds(1796464800));
  record.name = "POST api.openai.com /v1/chat/completions";
  record.start = base + std::chrono::milliseconds(offset_ms);
  record.end = record.start + std::chrono::milliseconds(41);
  telemetry::set(record, attr::kHttpRequestMethod, std::string("POST"));
  telemetry::set(record, attr::kUrlFull, std::string("https://api.openai.com/v1/chat/completions"));
  telemetry::set(record, attr::kHttpResponseStatusCode, int64_t{200});
  telemetry::set(record, attr::kGenAiSystem, std::string("openai"));
  telemetry::set(record, attr::kGenAiRequestModel, std::string("gpt-4o-mini"));
  telemetry::set(record, attr::kGenAiResponseModel, std::string("gpt-4o-mini-2024"));
  telemetry::set(record, attr::kGenAiUsageInputTokens, int64_t{12});
  telemetry::set(record, attr::kGenAiUsageOutputTokens, int64_t{8});
  telemetry::set(record, attr::kClrkUsageTotalTokens, int64_t{20});
  telemetry::set(record, attr::kClrkTtfbMs, int64_t{35});
  return record;
}

TEST(TracesRenderTest, TreeOfInvocationExecutionAndCalls) {
  telemetry::Record denied;
  denied.name = "CONNECT evil.example.com:443";
  denied.start = call(500).start;
  denied.end = denied.start;
  telemetry::set(denied, attr::kClrkDecision, std::string(attr::kDecisionDeny));
  telemetry::set(denied, attr::kClrkRule, std::string("default-deny"));
  // The egress repeats the rule in its reason; the tree shows it once.
  telemetry::set(denied, attr::kClrkReason,
                 std::string("egress denied by default-deny: default-deny: no route allows "
                             "evil.example.com"));
  // Given newest first (as the store returns them); printed oldest first.
  std::string text = renderInvocationTrace(invocation(), {denied, call(0)});
  EXPECT_THAT(text, HasSubstr("invocation/bot-0123456789  Succeeded  HTTP  request 6b1f2c3d…  "
                              "worker dev-0  2.00s\n"));
  EXPECT_THAT(text, HasSubstr("└─ execution bot-0123456789  exit 0\n"));
  EXPECT_THAT(text, HasSubstr("   ├─ POST https://api.openai.com/v1/chat/completions  200  openai "
                              "gpt-4o-mini→gpt-4o-mini-2024\n"));
  EXPECT_THAT(text, HasSubstr("   │    tokens in 12 out 8 total 20  ttfb 35ms  41ms\n"));
  EXPECT_THAT(text, HasSubstr("   └─ CONNECT evil.example.com:443  denied by default-deny: no "
                              "route allows evil.example.com\n"));
  EXPECT_LT(text.find("POST"), text.find("CONNECT"));
}

TEST(TracesRenderTest, GrpcCallsShowTheirStatus) {
  auto grpc = [](int offset_ms, int64_t code) {
    telemetry::Record record;
    record.name = "POST grpc.example.com /pkg.Svc/Get";
    record.start = call(offset_ms).start;
    record.end = record.start + std::chrono::milliseconds(3);
    telemetry::set(record, attr::kHttpRequestMethod, std::string("POST"));
    telemetry::set(record, attr::kUrlFull, std::string("https://grpc.example.com/pkg.Svc/Get"));
    telemetry::set(record, attr::kHttpResponseStatusCode, int64_t{200});
    telemetry::set(record, attr::kRpcSystem, std::string("grpc"));
    telemetry::set(record, attr::kRpcGrpcStatusCode, code);
    return record;
  };
  std::string text = renderInvocationTrace(invocation(), {grpc(0, 5), grpc(100, 42)});
  EXPECT_THAT(text, HasSubstr("POST https://grpc.example.com/pkg.Svc/Get  200  grpc NOT_FOUND\n"));
  EXPECT_THAT(text, HasSubstr("POST https://grpc.example.com/pkg.Svc/Get  200  grpc 42\n"));
}

TEST(TracesRenderTest, RejectedInvocationHasNoExecution) {
  api::Json rejected = invocation();
  rejected["status"] = {{"phase", "Rejected"}, {"message", "no worker has a free slot"}};
  std::string text = renderInvocationTrace(rejected, {});
  EXPECT_THAT(text, HasSubstr("Rejected"));
  EXPECT_THAT(text, HasSubstr("└─ no execution: no worker has a free slot"));
  EXPECT_THAT(text, Not(HasSubstr("worker dev-0")));
}

TEST(TracesRenderTest, JsonCarriesTheCalls) {
  api::Json json = invocationTraceJson(invocation(), {call(0)});
  EXPECT_EQ(json["invocation"], "bot-0123456789");
  ASSERT_EQ(json["calls"].size(), 1u);
  EXPECT_EQ(json["calls"][0]["name"], "POST api.openai.com /v1/chat/completions");
}

}  // namespace
}  // namespace clrk::cli
