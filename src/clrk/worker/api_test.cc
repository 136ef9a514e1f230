#include "clrk/worker/api.h"

#include "clrk/worker/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::worker {
namespace {

using ::testing::HasSubstr;

TEST(ExecutionRequest, RoundTripsEveryField) {
  ExecutionRequest r;
  r.execution_id = "exec-1";
  r.namespace_name = "team";
  r.agent = "summarizer";
  r.agent_kind = "TaskAgent";
  r.agent_labels = {{"tier", "gold"}};
  r.request_id = "req-9";
  r.gateway = "team/gw";
  r.image = "registry.local:5000/agents/sum:1";
  r.image_pull_secrets = {"regcred"};
  r.command = {"node"};
  r.args = {"main.mjs", "--fast"};
  r.env = {{"A", "1"}, {"B", ""}};
  r.working_dir = "/app";
  r.timeout_seconds = 30;
  r.resources = {"500m", "512Mi"};
  r.stdin_data = "hello\n";
  r.caller_identity = {{"user", "alice"}, {"tenant_id", "acme \xc3\xa9"}};
  auto parsed = parseExecutionRequest(toJson(r).dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(toJson(parsed.value()), toJson(r));
  EXPECT_EQ(parsed->stdin_data, "hello\n");
  EXPECT_EQ(parsed->env[1].name, "B");
  EXPECT_EQ(parsed->caller_identity, r.caller_identity);
  EXPECT_FALSE(parsed->caller_identity_verified);
}

TEST(ExecutionRequest, MetadataDeliveryCarriesTheEventAndNoStdin) {
  ExecutionRequest r;
  r.execution_id = "exec-2";
  r.image = "host";
  r.delivery_mode = DeliveryMode::Metadata;
  r.event = R"({"specversion":"1.0","data":{"q":"ping"}})";
  Json json = toJson(r);
  EXPECT_EQ(json["deliveryMode"], "Metadata");
  EXPECT_FALSE(json.contains("stdin"));
  auto parsed = parseExecutionRequest(json.dump());
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(parsed->delivery_mode, DeliveryMode::Metadata);
  EXPECT_EQ(parsed->event, r.event);
  EXPECT_FALSE(parsed->stdin_data);
  // Stdin is the default and stays off the wire.
  r.delivery_mode = DeliveryMode::Stdin;
  r.event.clear();
  EXPECT_FALSE(toJson(r).contains("deliveryMode"));
  EXPECT_EQ(parseExecutionRequest(toJson(r).dump())->delivery_mode, DeliveryMode::Stdin);
}

TEST(ExecutionRequest, ErrorsNameTheField) {
  auto check = [](const std::string& body, const std::string& want) {
    auto parsed = parseExecutionRequest(body);
    ASSERT_FALSE(parsed.ok()) << body;
    EXPECT_EQ(parsed.status().code(), Code::InvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(want)) << body;
  };
  check("{", "not valid JSON");
  check("[]", "JSON object");
  check(R"({"image":"host"})", "executionId: required");
  check(R"({"executionId":"a/b","image":"host"})", "executionId");
  check(R"({"executionId":"a"})", "image: required");
  check(R"({"executionId":"a","image":"dir:rel"})", "absolute path");
  check(R"({"executionId":"a","image":"host","command":"sh"})", "command: must be an array");
  check(R"({"executionId":"a","image":"host","command":["sh",1]})", "command[1]");
  check(R"({"executionId":"a","image":"host","env":[{"name":"A=B"}]})", "env[0].name");
  check(R"({"executionId":"a","image":"host","env":[{"name":"A","value":3}]})", "env[0].value");
  check(R"({"executionId":"a","image":"host","timeoutSeconds":"5"})", "timeoutSeconds");
  check(R"({"executionId":"a","image":"host","timeoutSeconds":-1})", "timeoutSeconds");
  check(R"({"executionId":"a","image":"host","resources":{"memory":"12Qi"}})", "resources.memory");
  check(R"({"executionId":"a","image":"host","resources":{"cpu":"1Gi"}})", "resources.cpu");
  check(R"({"executionId":"a","image":"host","stdin":5})", "stdin");
  check(R"({"executionId":"a","image":"host","agentLabels":{"x":1}})", "agentLabels.x");
  // Caller identity: untrusted values, bounded again where the worker reads them.
  const std::string base = R"({"executionId":"a","image":"host","callerIdentity":)";
  check(base + R"("alice"})", "callerIdentity: must be an object");
  check(base + R"({"fields":{"User":"a"}}})", "callerIdentity.fields.User: the name must match");
  check(base + R"({"fields":{"user":1}}})", "callerIdentity.fields.user: must be a string");
  check(base + R"({"fields":{"user":""}}})", "callerIdentity.fields.user: unusable value (empty)");
  check(base + R"({"fields":{"user":"a\nb"}}})", "unusable value (contains a control character)");
  check(base + R"({"fields":{"user":")" + std::string(257, 'x') + R"("}}})",
        "unusable value (longer than 256 bytes)");
  check(base + R"({"verified":"no"}})", "callerIdentity.verified: must be a boolean");
  std::string many = base + R"({"fields":{)";
  for (int i = 0; i < 17; ++i)
    many += (i ? "," : "") + std::string("\"f") + std::to_string(i) + "\":\"v\"";
  check(many + "}}}", "callerIdentity.fields: more than 16 fields");
  check(std::string(kMaxRequestBodyBytes + 1, ' '), "larger than");
  check(R"({"executionId":"a","image":"host","deliveryMode":"Carrier"})", "deliveryMode");
  check(R"({"executionId":"a","image":"host","deliveryMode":"Metadata"})", "event: required");
  check(R"({"executionId":"a","image":"host","deliveryMode":"Metadata","event":"{"})",
        "event: must be a JSON document");
  check(R"({"executionId":"a","image":"host","deliveryMode":"Metadata","event":"{}",)"
        R"("stdin":"x"})",
        "stdin: must be absent");
  check(R"({"executionId":"a","image":"host","event":"{}"})", "event: only with");
}

TEST(Quantities, CpuAndMemory) {
  EXPECT_EQ(parseCpuMillis("500m").value(), 500);
  EXPECT_EQ(parseCpuMillis("2").value(), 2000);
  EXPECT_EQ(parseCpuMillis("0.5").value(), 500);
  EXPECT_EQ(parseCpuMillis("0.0001").value(), 1);
  EXPECT_FALSE(parseCpuMillis("").ok());
  EXPECT_FALSE(parseCpuMillis("m").ok());
  EXPECT_FALSE(parseCpuMillis("-1").ok());
  EXPECT_EQ(parseMemoryBytes("512Mi").value(), 512ll << 20);
  EXPECT_EQ(parseMemoryBytes("1G").value(), 1000000000ll);
  EXPECT_EQ(parseMemoryBytes("1e3").value(), 1000);
  EXPECT_EQ(parseMemoryBytes("1.5Ki").value(), 1536);
  EXPECT_EQ(parseMemoryBytes("100").value(), 100);
  EXPECT_FALSE(parseMemoryBytes("1.2.3").ok());
  EXPECT_FALSE(parseMemoryBytes("10Qi").ok());
  EXPECT_FALSE(parseMemoryBytes("99999999999Pi").ok());
}

TEST(ExecutionStatus, RoundTrips) {
  ExecutionStatus s;
  s.execution_id = "e";
  s.phase = Phase::TimedOut;
  s.exit_code = 137;
  s.message = "killed after 1s timeout";
  s.output.stdout_text = "hi\n";
  s.output.truncated = true;
  auto parsed = executionStatusFromJson(toJson(s));
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(parsed->phase, Phase::TimedOut);
  EXPECT_EQ(parsed->exit_code, 137);
  EXPECT_TRUE(parsed->output.truncated);
  EXPECT_EQ(toJson(parsed.value()), toJson(s));
  s.exit_code.reset();
  EXPECT_TRUE(toJson(s)["exitCode"].is_null());
  EXPECT_FALSE(executionStatusFromJson(Json{{"executionId", "e"}, {"phase", "Nope"}}).ok());
}

TEST(ExecutionStatus, ResponseRoundTripsAnyBytes) {
  ExecutionStatus s;
  s.execution_id = "e";
  s.phase = Phase::Succeeded;
  EXPECT_FALSE(toJson(s).contains("response"));
  EXPECT_FALSE(executionStatusFromJson(toJson(s))->response);
  ExecutionResponse response;
  response.content_type = "application/octet-stream";
  response.body = std::string("\xff\x00binary\xfe", 9);
  response.bytes = 9;
  s.response = response;
  Json json = toJson(s);
  EXPECT_NO_THROW((void)json.dump());  // not UTF-8, yet dumpable: base64 on the wire
  auto parsed = executionStatusFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  ASSERT_TRUE(parsed->response);
  EXPECT_EQ(parsed->response->body, response.body);
  EXPECT_EQ(parsed->response->bytes, 9);
  EXPECT_EQ(parsed->response->content_type, "application/octet-stream");
  EXPECT_FALSE(parsed->response->discarded);
  json["response"]["bodyBase64"] = "*not base64*";
  EXPECT_FALSE(executionStatusFromJson(json).ok());
}

TEST(Certs, SelfSignedHasStableFingerprintAndConstantTimeCompare) {
  auto cert = generateSelfSigned("worker-a", {"127.0.0.1", "worker-a.local"});
  ASSERT_TRUE(cert.ok()) << cert.status().toString();
  EXPECT_EQ(cert->fingerprint.size(), 64u);
  EXPECT_EQ(certificateFingerprint(cert->cert_pem).value(), cert->fingerprint);
  auto other = generateSelfSigned("worker-a", {"127.0.0.1"});
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->fingerprint, cert->fingerprint);
  EXPECT_TRUE(constantTimeEquals("abc", "abc"));
  EXPECT_FALSE(constantTimeEquals("abc", "abd"));
  EXPECT_FALSE(constantTimeEquals("abc", "abcd"));
  EXPECT_EQ(base64Encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(certificateFingerprint("not pem").ok());
}

}  // namespace
}  // namespace clrk::worker
