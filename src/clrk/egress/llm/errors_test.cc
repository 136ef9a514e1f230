#include "clrk/egress/llm/errors.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace clrk::egress::llm {
namespace {

nlohmann::json parsed(Provider p, int status, std::string_view msg) {
  return nlohmann::json::parse(providerErrorBody(p, status, msg));
}

TEST(ErrorsTest, OpenAiShape) {
  auto j = parsed(Provider::kOpenAI, 429, "Rate limit for agent a/b: 10 per 1m");
  EXPECT_EQ(j["error"]["message"], "Rate limit for agent a/b: 10 per 1m");
  EXPECT_EQ(j["error"]["type"], "rate_limit_exceeded");
  EXPECT_EQ(j["error"]["code"], "rate_limit_exceeded");
  EXPECT_TRUE(j["error"]["param"].is_null());
  EXPECT_EQ(parsed(Provider::kAzureOpenAI, 403, "no")["error"]["type"], "permission_error");
  EXPECT_EQ(parsed(Provider::kOpenAI, 400, "no")["error"]["type"], "invalid_request_error");
  EXPECT_EQ(parsed(Provider::kOpenAI, 502, "no")["error"]["type"], "server_error");
}

TEST(ErrorsTest, AnthropicShape) {
  auto j = parsed(Provider::kAnthropic, 429, "slow down");
  EXPECT_EQ(j["type"], "error");
  EXPECT_EQ(j["error"]["type"], "rate_limit_error");
  EXPECT_EQ(j["error"]["message"], "slow down");
  EXPECT_EQ(parsed(Provider::kAnthropic, 403, "x")["error"]["type"], "permission_error");
  EXPECT_EQ(parsed(Provider::kAnthropic, 529, "x")["error"]["type"], "overloaded_error");
  EXPECT_EQ(parsed(Provider::kAnthropic, 500, "x")["error"]["type"], "api_error");
}

TEST(ErrorsTest, GeminiShape) {
  auto j = parsed(Provider::kGemini, 429, "quota");
  EXPECT_EQ(j["error"]["code"], 429);
  EXPECT_EQ(j["error"]["status"], "RESOURCE_EXHAUSTED");
  EXPECT_EQ(j["error"]["message"], "quota");
  EXPECT_EQ(parsed(Provider::kGemini, 403, "x")["error"]["status"], "PERMISSION_DENIED");
}

TEST(ErrorsTest, ClrkAndBedrockShape) {
  auto j = parsed(Provider::kNone, 403, "denied by EgressPolicy ns/p rule 2");
  EXPECT_EQ(j["error"]["type"], "forbidden");
  EXPECT_EQ(j["error"]["message"], "denied by EgressPolicy ns/p rule 2");
  EXPECT_EQ(parsed(Provider::kNone, 429, "x")["error"]["type"], "rate_limited");
  EXPECT_EQ(parsed(Provider::kBedrock, 429, "x")["message"], "x");
}

TEST(ErrorsTest, EscapesHostileMessages) {
  std::string msg =
      "quote\" backslash\\ newline\n tab\t ctl\x01 del\x7f utf8 \xC3\xA9 bad \xFF\xC3";
  for (Provider p : {Provider::kNone, Provider::kOpenAI, Provider::kAnthropic, Provider::kGemini,
                     Provider::kBedrock}) {
    std::string body = providerErrorBody(p, 429, msg);
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(body)) << body;
    std::string got = p == Provider::kBedrock ? j["message"].get<std::string>()
                                              : j["error"]["message"].get<std::string>();
    EXPECT_EQ(got,
              "quote\" backslash\\ newline\n tab\t ctl\x01 del\x7f utf8 \xC3\xA9 bad "
              "\xEF\xBF\xBD\xEF\xBF\xBD");
  }
}

}  // namespace
}  // namespace clrk::egress::llm
