#include "clrk/egress/llm/usage.h"

#include "clrk/egress/llm/testdata.h"

#include <gtest/gtest.h>

#include <string>

namespace clrk::egress::llm {
namespace {

using testing::readTestdata;

Usage observe(Provider p, bool sse, std::string_view body, size_t step = 0,
              ResponseObserver* out = nullptr) {
  ResponseObserver local(p, sse);
  ResponseObserver& obs = out ? *out : local;
  if (step == 0) step = body.size() + 1;
  for (size_t i = 0; i < body.size(); i += step) obs.feed(body.substr(i, step));
  obs.finish();
  return obs.usage();
}

void expectSame(const Usage& a, const Usage& b, const std::string& what) {
  EXPECT_EQ(a.input_tokens, b.input_tokens) << what;
  EXPECT_EQ(a.output_tokens, b.output_tokens) << what;
  EXPECT_EQ(a.total_tokens, b.total_tokens) << what;
  EXPECT_EQ(a.cached_input_tokens, b.cached_input_tokens) << what;
  EXPECT_EQ(a.reasoning_tokens, b.reasoning_tokens) << what;
  EXPECT_EQ(a.response_model, b.response_model) << what;
  EXPECT_EQ(a.response_id, b.response_id) << what;
  EXPECT_EQ(a.finish_reasons, b.finish_reasons) << what;
}

TEST(UsageTest, OpenAiChatJson) {
  Usage u = observe(Provider::kOpenAI, false, readTestdata("openai_chat.json"));
  EXPECT_EQ(u.input_tokens, 19);
  EXPECT_EQ(u.output_tokens, 10);
  EXPECT_EQ(u.total_tokens, 29);
  EXPECT_EQ(u.cached_input_tokens, 6);
  EXPECT_EQ(u.reasoning_tokens, 2);
  EXPECT_EQ(u.response_model, "gpt-4.1-2025-04-14");
  EXPECT_EQ(u.response_id, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT");
  EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"stop"});
}

TEST(UsageTest, OpenAiChatStreamWithIncludeUsage) {
  ResponseObserver obs(Provider::kOpenAI, true);
  Usage u = observe(Provider::kOpenAI, true, readTestdata("openai_chat_stream.sse"), 0, &obs);
  EXPECT_EQ(u.input_tokens, 9);
  EXPECT_EQ(u.output_tokens, 12);
  EXPECT_EQ(u.total_tokens, 21);
  EXPECT_EQ(u.response_model, "gpt-4o-mini-2024-07-18");
  EXPECT_EQ(u.response_id, "chatcmpl-7a1c2b3d");
  EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"stop"});
  EXPECT_FALSE(obs.sawError());
  EXPECT_EQ(obs.eventCount(), 11u);
}

TEST(UsageTest, OpenAiStreamWithoutUsageLeavesTokensUnknown) {
  std::string body = readTestdata("openai_chat_stream.sse");
  // Drop the usage chunk (the one with "choices":[]).
  size_t at = body.find(R"("choices":[])");
  ASSERT_NE(at, std::string::npos);
  size_t begin = body.rfind("data: ", at);
  size_t end = body.find("\n\n", at) + 2;
  body.erase(begin, end - begin);
  Usage u = observe(Provider::kOpenAI, true, body);
  EXPECT_FALSE(u.input_tokens.has_value());
  EXPECT_FALSE(u.total_tokens.has_value());
  EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"stop"});
}

TEST(UsageTest, OpenAiResponsesStreamAndJson) {
  for (bool sse : {true, false}) {
    Usage u = observe(Provider::kOpenAI, sse,
                      readTestdata(sse ? "openai_responses_stream.sse" : "openai_responses.json"));
    EXPECT_EQ(u.input_tokens, 37) << sse;
    EXPECT_EQ(u.output_tokens, 11);
    EXPECT_EQ(u.total_tokens, 48);
    EXPECT_EQ(u.cached_input_tokens, 5);
    EXPECT_EQ(u.reasoning_tokens, 3);
    EXPECT_EQ(u.response_model, "gpt-4.1-2025-04-14");
    EXPECT_EQ(u.response_id, "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654");
  }
  Usage s = observe(Provider::kOpenAI, true, readTestdata("openai_responses_stream.sse"));
  EXPECT_EQ(s.finish_reasons, std::vector<std::string>{"completed"});
}

TEST(UsageTest, OpenAiEmbeddings) {
  Usage u = observe(Provider::kOpenAI, false, readTestdata("openai_embeddings.json"));
  EXPECT_EQ(u.input_tokens, 8);
  EXPECT_FALSE(u.output_tokens.has_value());
  EXPECT_EQ(u.total_tokens, 8);
  EXPECT_EQ(u.response_model, "text-embedding-3-small");
}

TEST(UsageTest, AnthropicJsonCountsCacheTokensAsInput) {
  Usage u = observe(Provider::kAnthropic, false, readTestdata("anthropic_messages.json"));
  EXPECT_EQ(u.input_tokens, 2095 + 100 + 1024);
  EXPECT_EQ(u.cached_input_tokens, 1024);
  EXPECT_EQ(u.output_tokens, 503);
  EXPECT_EQ(u.total_tokens, 2095 + 100 + 1024 + 503);
  EXPECT_EQ(u.response_model, "claude-sonnet-4-5-20250929");
  EXPECT_EQ(u.response_id, "msg_013Zva2CMHLNnXjNJJKqJ2EF");
  EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"end_turn"});
}

TEST(UsageTest, AnthropicStream) {
  ResponseObserver obs(Provider::kAnthropic, true);
  Usage u = observe(Provider::kAnthropic, true, readTestdata("anthropic_stream.sse"), 0, &obs);
  EXPECT_EQ(u.input_tokens, 25);
  EXPECT_EQ(u.output_tokens, 15);
  EXPECT_EQ(u.total_tokens, 40);
  EXPECT_EQ(u.response_model, "claude-sonnet-4-5-20250929");
  EXPECT_EQ(u.response_id, "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY");
  EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"end_turn"});
  EXPECT_FALSE(obs.sawError());
}

TEST(UsageTest, AnthropicStreamError) {
  ResponseObserver obs(Provider::kAnthropic, true);
  Usage u =
      observe(Provider::kAnthropic, true, readTestdata("anthropic_error_stream.sse"), 0, &obs);
  EXPECT_TRUE(obs.sawError());
  EXPECT_EQ(obs.errorType(), "overloaded_error");
  EXPECT_EQ(u.input_tokens, 12);
  EXPECT_EQ(u.output_tokens, 1);
}

TEST(UsageTest, GeminiSseJsonAndArray) {
  for (const char* name : {"gemini_stream.sse", "gemini_stream_array.json"}) {
    bool sse = std::string_view(name).ends_with(".sse");
    Usage u = observe(Provider::kGemini, sse, readTestdata(name));
    EXPECT_EQ(u.input_tokens, 8) << name;
    EXPECT_EQ(u.output_tokens, 12) << name;
    EXPECT_EQ(u.total_tokens, 20) << name;
    EXPECT_EQ(u.response_model, "gemini-2.0-flash") << name;
    EXPECT_EQ(u.response_id, "mK5BaLbVLpGcz7IP8L6X4AQ") << name;
    EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"STOP"}) << name;
  }
  Usage g = observe(Provider::kGemini, false, readTestdata("gemini_generate.json"));
  EXPECT_EQ(g.input_tokens, 10);
  EXPECT_EQ(g.output_tokens, 50);
  EXPECT_EQ(g.total_tokens, 75);  // provider's total wins (includes thoughts)
  EXPECT_EQ(g.cached_input_tokens, 4);
  EXPECT_EQ(g.reasoning_tokens, 15);
  EXPECT_EQ(g.response_model, "gemini-2.5-flash");
}

TEST(UsageTest, BedrockConverse) {
  Usage u = observe(Provider::kBedrock, false, readTestdata("bedrock_converse.json"));
  EXPECT_EQ(u.input_tokens, 30);
  EXPECT_EQ(u.output_tokens, 628);
  EXPECT_EQ(u.total_tokens, 658);
  EXPECT_EQ(u.finish_reasons, std::vector<std::string>{"end_turn"});
}

TEST(UsageTest, BedrockEventStreams) {
  ResponseObserver converse(Provider::kBedrock, false);
  Usage c =
      observe(Provider::kBedrock, false, readTestdata("bedrock_converse_stream.bin"), 0, &converse);
  EXPECT_EQ(c.input_tokens, 21);
  EXPECT_EQ(c.output_tokens, 7);
  EXPECT_EQ(c.total_tokens, 28);
  EXPECT_EQ(c.finish_reasons, std::vector<std::string>{"end_turn"});
  EXPECT_FALSE(converse.sawError());

  Usage i = observe(Provider::kBedrock, false, readTestdata("bedrock_invoke_stream.bin"));
  EXPECT_EQ(i.input_tokens, 14);
  EXPECT_EQ(i.output_tokens, 9);
  EXPECT_EQ(i.total_tokens, 23);
  EXPECT_EQ(i.response_model, "claude-3-5-sonnet-20241022");
  EXPECT_EQ(i.finish_reasons, std::vector<std::string>{"end_turn"});

  ResponseObserver exc(Provider::kBedrock, false);
  observe(Provider::kBedrock, false, readTestdata("bedrock_stream_exception.bin"), 0, &exc);
  EXPECT_TRUE(exc.sawError());
  EXPECT_EQ(exc.errorType(), "throttlingException");

  // A corrupted frame stops decoding rather than misreading numbers.
  std::string bad = readTestdata("bedrock_converse_stream.bin");
  bad[bad.size() - 30] ^= 0x20;  // inside the metadata message
  Usage b = observe(Provider::kBedrock, false, bad);
  EXPECT_FALSE(b.input_tokens.has_value());
  EXPECT_EQ(b.finish_reasons, std::vector<std::string>{"end_turn"});
}

TEST(UsageTest, ProviderErrors) {
  ResponseObserver openai(Provider::kOpenAI, false);
  observe(Provider::kOpenAI, false, readTestdata("openai_error_429.json"), 0, &openai);
  EXPECT_TRUE(openai.sawError());
  EXPECT_EQ(openai.errorType(), "tokens");
  ResponseObserver gemini(Provider::kGemini, false);
  observe(Provider::kGemini, false, readTestdata("gemini_error_429.json"), 0, &gemini);
  EXPECT_TRUE(gemini.sawError());
  EXPECT_EQ(gemini.errorType(), "RESOURCE_EXHAUSTED");
  ResponseObserver responses(Provider::kOpenAI, true);
  observe(Provider::kOpenAI, true,
          "event: error\ndata: {\"type\":\"error\",\"code\":\"ERR_SOMETHING\",\"message\":\"x\"}"
          "\n\n",
          0, &responses);
  EXPECT_TRUE(responses.sawError());
  EXPECT_EQ(responses.errorType(), "ERR_SOMETHING");
  ResponseObserver fine(Provider::kOpenAI, false);
  observe(Provider::kOpenAI, false, readTestdata("openai_responses.json"), 0, &fine);
  EXPECT_FALSE(fine.sawError());  // "error": null is no error
}

TEST(UsageTest, EveryChunkSplitGivesTheSameUsage) {
  struct Case {
    Provider p;
    bool sse;
    const char* file;
  };
  for (const Case& c : {Case{Provider::kOpenAI, true, "openai_chat_stream.sse"},
                        Case{Provider::kOpenAI, false, "openai_chat.json"},
                        Case{Provider::kOpenAI, true, "openai_responses_stream.sse"},
                        Case{Provider::kAnthropic, true, "anthropic_stream.sse"},
                        Case{Provider::kAnthropic, false, "anthropic_messages.json"},
                        Case{Provider::kGemini, true, "gemini_stream.sse"},
                        Case{Provider::kGemini, false, "gemini_stream_array.json"},
                        Case{Provider::kBedrock, false, "bedrock_converse_stream.bin"},
                        Case{Provider::kBedrock, false, "bedrock_invoke_stream.bin"}}) {
    std::string body = readTestdata(c.file);
    Usage whole = observe(c.p, c.sse, body);
    ASSERT_TRUE(whole.total_tokens.has_value()) << c.file;
    for (size_t step : {1, 2, 3, 5, 8, 64, 1000}) {
      expectSame(observe(c.p, c.sse, body, step), whole,
                 std::string(c.file) + " step " + std::to_string(step));
    }
    // Every single split point into two chunks.
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      ResponseObserver obs(c.p, c.sse);
      obs.feed(std::string_view(body).substr(0, cut));
      obs.feed(std::string_view(body).substr(cut));
      obs.finish();
      if (obs.usage().total_tokens != whole.total_tokens ||
          obs.usage().response_model != whole.response_model) {
        ADD_FAILURE() << c.file << " differs when cut at " << cut;
        break;
      }
    }
  }
}

TEST(UsageTest, OversizeJsonBodyReadsHeadAndTail) {
  // An embeddings response far larger than the bound: model first, usage last.
  std::string body = R"({"object":"list","model":"text-embedding-3-large","data":[)";
  for (int i = 0; i < 4000; ++i) {
    if (i) body += ",";
    body += R"({"object":"embedding","index":)" + std::to_string(i) +
            R"(,"embedding":[0.0023064255,-0.009327292,-0.0028842222,0.1,0.2,0.3,0.4,0.5,0.6]})";
  }
  body += R"(],"usage":{"prompt_tokens":4000,"total_tokens":4000}})";
  ASSERT_GT(body.size(), 300000u);
  for (size_t step : {size_t{1000}, size_t{65536}, body.size()}) {
    ResponseObserver obs(Provider::kOpenAI, false, 100000);
    for (size_t i = 0; i < body.size(); i += step) obs.feed(std::string_view(body).substr(i, step));
    obs.finish();
    EXPECT_TRUE(obs.truncated());
    EXPECT_EQ(obs.usage().response_model, "text-embedding-3-large") << step;
    EXPECT_EQ(obs.usage().input_tokens, 4000) << step;
    EXPECT_EQ(obs.usage().total_tokens, 4000) << step;
  }
  // A "usage" that only appears inside string content is not mistaken for the member.
  std::string fake = R"({"model":"m","choices":[{"message":{"content":")" +
                     std::string(200000, 'x') + R"( \"usage\":{\"prompt_tokens\":99}"}}]})";
  ResponseObserver obs(Provider::kOpenAI, false, 1000);
  obs.feed(fake);
  obs.finish();
  EXPECT_TRUE(obs.truncated());
  EXPECT_FALSE(obs.usage().input_tokens.has_value());
  EXPECT_EQ(obs.usage().response_model, "m");
}

TEST(UsageTest, GarbageNeverThrowsOrInventsNumbers) {
  for (std::string_view junk :
       {"", "\0\0\0", "data: {\"usage\":{\"prompt_tokens\":\"nine\"}}\n\n", "{\"usage\":[1,2]}",
        "data: [DONE]\n\n", "{\"type\":\"message_start\",\"message\":5}",
        "{\"usage\":{\"prompt_tokens\":1e400}}", "<html>502 Bad Gateway</html>"}) {
    for (bool sse : {true, false}) {
      Usage u = observe(Provider::kOpenAI, sse, junk);
      EXPECT_FALSE(u.input_tokens.has_value()) << junk;
      EXPECT_FALSE(u.total_tokens.has_value()) << junk;
    }
  }
  // Hostile nesting of message_start inside message_start is bounded.
  std::string nested;
  for (int i = 0; i < 10000; ++i) nested += R"({"type":"message_start","message":)";
  nested += "{}";
  for (int i = 0; i < 10000; ++i) nested += "}";
  observe(Provider::kAnthropic, false, nested);
}

}  // namespace
}  // namespace clrk::egress::llm
