#include "clrk/egress/llm/request.h"

#include "clrk/egress/llm/testdata.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace clrk::egress::llm {
namespace {

using testing::readTestdata;

TEST(RequestTest, OpenAiChat) {
  auto s = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions",
                            readTestdata("openai_chat_request.json"));
  EXPECT_EQ(s.model, "gpt-4o-mini");
  EXPECT_TRUE(s.stream);
  EXPECT_FALSE(s.include_usage);
  EXPECT_EQ(s.max_tokens, 256);
  EXPECT_EQ(s.operation, "chat");
}

TEST(RequestTest, Operations) {
  EXPECT_EQ(summarizeRequest(Provider::kOpenAI, "/v1/completions", "{}").operation,
            "text_completion");
  EXPECT_EQ(summarizeRequest(Provider::kOpenAI, "/v1/embeddings?x", "{}").operation, "embeddings");
  EXPECT_EQ(summarizeRequest(Provider::kOpenAI, "/v1/responses", "{}").operation, "chat");
  EXPECT_EQ(summarizeRequest(Provider::kOpenAI, "/v1/models", "{}").operation, "");
  EXPECT_EQ(
      summarizeRequest(Provider::kGemini, "/v1beta/models/text-embedding-004:embedContent", "{}")
          .operation,
      "embeddings");
}

TEST(RequestTest, Anthropic) {
  auto s = summarizeRequest(Provider::kAnthropic, "/v1/messages",
                            readTestdata("anthropic_request.json"));
  EXPECT_EQ(s.model, "claude-sonnet-4-5");
  EXPECT_TRUE(s.stream);
  EXPECT_EQ(s.max_tokens, 1024);
  EXPECT_EQ(s.operation, "chat");
}

TEST(RequestTest, GeminiModelAndStreamFromPath) {
  auto s = summarizeRequest(Provider::kGemini,
                            "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                            readTestdata("gemini_request.json"));
  EXPECT_EQ(s.model, "gemini-2.0-flash");
  EXPECT_TRUE(s.stream);
  EXPECT_EQ(s.max_tokens, 800);
  EXPECT_EQ(s.operation, "generate_content");
  auto u = summarizeRequest(Provider::kGemini, "/v1beta/models/gemini-2.5-pro:generateContent", "");
  EXPECT_EQ(u.model, "gemini-2.5-pro");
  EXPECT_FALSE(u.stream);
  auto vertex = summarizeRequest(
      Provider::kGemini,
      "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001"
      ":streamGenerateContent?alt=sse",
      readTestdata("gemini_request.json"));
  EXPECT_EQ(vertex.model, "gemini-2.0-flash-001");
  EXPECT_TRUE(vertex.stream);
}

TEST(RequestTest, AzureDeploymentAndBedrockPath) {
  auto a =
      summarizeRequest(Provider::kAzureOpenAI,
                       "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
                       R"({"messages":[]})");
  EXPECT_EQ(a.model, "gpt4o-prod");
  EXPECT_EQ(a.operation, "chat");
  auto b = summarizeRequest(Provider::kBedrock,
                            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream",
                            R"({"messages":[],"inferenceConfig":{"maxTokens":512}})");
  EXPECT_EQ(b.model, "anthropic.claude-3-haiku-20240307-v1:0");
  EXPECT_TRUE(b.stream);
  EXPECT_EQ(b.max_tokens, 512);
  EXPECT_EQ(b.operation, "chat");
}

TEST(RequestTest, TruncatedAndInvalidBodies) {
  std::string body = R"({"model":"gpt-4o","stream":true,"messages":[{"role":"user","cont)";
  auto s = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions", body);
  EXPECT_EQ(s.model, "gpt-4o");
  EXPECT_TRUE(s.stream);
  for (std::string_view junk : {"", "not json", "[1,2]", "{\"model\":", "\xff\xfe", "{{{{"}) {
    auto j = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions", junk);
    EXPECT_EQ(j.model, "");
    EXPECT_FALSE(j.stream);
  }
  // Wrong types are ignored, not trusted.
  auto w = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions",
                            R"({"model":7,"stream":"yes","max_tokens":"9"})");
  EXPECT_EQ(w.model, "");
  EXPECT_FALSE(w.stream);
  EXPECT_FALSE(w.max_tokens.has_value());
}

TEST(RequestTest, KeysAreReadAsTheUpstreamReadsThem) {
  // An escaped key is the same key to the provider's parser; a duplicate key's last value wins.
  auto s = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions",
                            R"({"model":"cheap","mo\u0064el":"gpt-4o","\u0073tream":true})");
  EXPECT_EQ(s.model, "gpt-4o");
  EXPECT_TRUE(s.stream);
  auto out = rewriteModel(R"({"model":"a","messages":[],"mod\u0065l":"b"})", "routed");
  ASSERT_TRUE(out.has_value());
  EXPECT_EQ(*out, R"({"model":"routed","messages":[],"mod\u0065l":"routed"})");
  EXPECT_EQ(nlohmann::json::parse(*out)["model"], "routed");
  auto usage = ensureStreamUsage(R"({"str\u0065am":true,"messages":[]})");
  ASSERT_TRUE(usage.has_value());
  EXPECT_EQ(nlohmann::json::parse(*usage)["stream_options"]["include_usage"], true);
}

TEST(RequestTest, EnsureStreamUsageInserts) {
  std::string body = R"({"model":"gpt-4o-mini","stream":true,"messages":[]})";
  auto out = ensureStreamUsage(body);
  ASSERT_TRUE(out.has_value());
  auto j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["stream_options"]["include_usage"], true);
  EXPECT_EQ(j["model"], "gpt-4o-mini");
  auto s = summarizeRequest(Provider::kOpenAI, "/v1/chat/completions", *out);
  EXPECT_TRUE(s.include_usage);
  EXPECT_FALSE(ensureStreamUsage(*out).has_value());  // idempotent
}

TEST(RequestTest, EnsureStreamUsageEditsExistingOptions) {
  auto a = ensureStreamUsage(
      R"({"stream":true,"messages":[],"stream_options":{"include_usage":false}})");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(nlohmann::json::parse(*a)["stream_options"]["include_usage"], true);
  auto b = ensureStreamUsage(R"({"stream":true,"prompt":"x","stream_options":{ }})");
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(nlohmann::json::parse(*b)["stream_options"]["include_usage"], true);
  auto c = ensureStreamUsage(R"({"messages":[],"stream":true,"stream_options":{"x":1}})");
  ASSERT_TRUE(c.has_value());
  auto cj = nlohmann::json::parse(*c);
  EXPECT_EQ(cj["stream_options"]["include_usage"], true);
  EXPECT_EQ(cj["stream_options"]["x"], 1);
  auto d = ensureStreamUsage(R"({"messages":[],"stream":true,"stream_options":null})");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(nlohmann::json::parse(*d)["stream_options"]["include_usage"], true);
}

TEST(RequestTest, EnsureStreamUsageLeavesOthersAlone) {
  EXPECT_FALSE(ensureStreamUsage(R"({"model":"m","messages":[]})").has_value());
  EXPECT_FALSE(ensureStreamUsage(R"({"stream":false,"messages":[]})").has_value());
  // Responses API body: no stream_options.include_usage.
  EXPECT_FALSE(ensureStreamUsage(R"({"model":"gpt-4.1","input":"hi","stream":true})").has_value());
  EXPECT_FALSE(
      ensureStreamUsage(R"({"stream":true,"stream_options":{"include_usage":true}})").has_value());
  EXPECT_FALSE(ensureStreamUsage(R"({"stream":true,"messages":[)").has_value());
  EXPECT_FALSE(ensureStreamUsage("").has_value());
  EXPECT_FALSE(ensureStreamUsage(R"({"stream":true} trailing)").has_value());
}

TEST(RequestTest, RewriteModel) {
  std::string body =
      "{\n  \"messages\": [{\"role\":\"user\",\"content\":\"model\"}],\n"
      "  \"model\" : \"gpt-4o\", \"stream\": true\n}";
  auto out = rewriteModel(body, "gpt-4o-mini\"\\");
  ASSERT_TRUE(out.has_value());
  auto j = nlohmann::json::parse(*out);
  EXPECT_EQ(j["model"], "gpt-4o-mini\"\\");
  EXPECT_EQ(j["messages"][0]["content"], "model");
  // Everything but the model value is byte-identical.
  EXPECT_EQ(out->substr(0, body.find("\"gpt-4o\"")), body.substr(0, body.find("\"gpt-4o\"")));
  EXPECT_FALSE(rewriteModel(R"({"messages":[]})", "x").has_value());
  EXPECT_FALSE(rewriteModel(R"({"model":"a")", "x").has_value());
  EXPECT_FALSE(rewriteModel("[]", "x").has_value());
}

TEST(RequestTest, RewriteModelInPath) {
  EXPECT_EQ(rewriteModelInPath(Provider::kGemini,
                               "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse",
                               "gemini-2.5-pro"),
            "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
  EXPECT_EQ(rewriteModelInPath(Provider::kBedrock, "/model/a.b/converse",
                               "anthropic.claude-3-haiku-20240307-v1:0"),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
  EXPECT_FALSE(rewriteModelInPath(Provider::kGemini, "/v1/chat/completions", "x").has_value());
}

TEST(RequestTest, GlobMatch) {
  EXPECT_TRUE(globMatch("gpt-4*", "gpt-4o-mini"));
  EXPECT_TRUE(globMatch("*", ""));
  EXPECT_TRUE(globMatch("claude-?-*", "claude-3-haiku"));
  EXPECT_TRUE(globMatch("*mini", "gpt-4o-mini"));
  EXPECT_TRUE(globMatch("a*b*c", "aXXbYYc"));
  EXPECT_TRUE(globMatch("exact", "exact"));
  EXPECT_FALSE(globMatch("exact", "exactly"));
  EXPECT_FALSE(globMatch("gpt-4?", "gpt-4"));
  EXPECT_FALSE(globMatch("a*b", "ac"));
  EXPECT_FALSE(globMatch("", "x"));
  EXPECT_TRUE(globMatch("", ""));
  // Pathological pattern stays fast.
  std::string s(5000, 'a');
  EXPECT_FALSE(globMatch("*a*a*a*a*a*a*a*b", s));
}

}  // namespace
}  // namespace clrk::egress::llm
