#include "clrk/egress/llm/detect.h"
#include "clrk/egress/llm/provider.h"

#include <gtest/gtest.h>

namespace clrk::egress::llm {
namespace {

TEST(ProviderTest, NamesRoundTrip) {
  for (Provider p : {Provider::kOpenAI, Provider::kAnthropic, Provider::kGemini,
                     Provider::kAzureOpenAI, Provider::kBedrock, Provider::kCustom}) {
    EXPECT_EQ(providerFromName(providerName(p)), p) << providerName(p);
  }
  EXPECT_EQ(providerName(Provider::kGemini), "google");
  EXPECT_EQ(providerFromName("gemini"), Provider::kGemini);
  EXPECT_EQ(providerFromName("OpenAI"), Provider::kNone);
  EXPECT_EQ(providerFromName(""), Provider::kNone);
  EXPECT_EQ(providerName(Provider::kNone), "");
}

TEST(ProviderTest, GenAiSystem) {
  EXPECT_EQ(genAiSystem(Provider::kOpenAI), "openai");
  EXPECT_EQ(genAiSystem(Provider::kAnthropic), "anthropic");
  EXPECT_EQ(genAiSystem(Provider::kGemini), "gcp.gemini");
  EXPECT_EQ(genAiSystem(Provider::kAzureOpenAI), "az.ai.openai");
  EXPECT_EQ(genAiSystem(Provider::kBedrock), "aws.bedrock");
  EXPECT_EQ(genAiSystem(Provider::kNone), "");
}

TEST(DetectTest, ByHost) {
  EXPECT_EQ(detectProvider("api.openai.com", "/v1/models"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("API.OpenAI.com:443", "/anything"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("api.openai.com.", "/x"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("api.anthropic.com", "/v1/messages"), Provider::kAnthropic);
  EXPECT_EQ(detectProvider("generativelanguage.googleapis.com", "/v1beta/models"),
            Provider::kGemini);
  EXPECT_EQ(detectProvider("myres.openai.azure.com", "/openai/deployments/gpt4/chat/completions"),
            Provider::kAzureOpenAI);
  EXPECT_EQ(detectProvider(".openai.azure.com", "/"), Provider::kNone);
  EXPECT_EQ(detectProvider("bedrock-runtime.us-east-1.amazonaws.com", "/model/x/converse"),
            Provider::kBedrock);
  EXPECT_EQ(detectProvider("bedrock.us-east-1.amazonaws.com", "/"), Provider::kNone);
  EXPECT_EQ(detectProvider("evil-api.openai.com.attacker.net", "/"), Provider::kNone);
  EXPECT_EQ(detectProvider("example.com", "/"), Provider::kNone);
  EXPECT_EQ(detectProvider("us-central1-aiplatform.googleapis.com",
                           "/v1/projects/p/locations/us-central1/publishers/google/models/"
                           "gemini-2.0-flash:streamGenerateContent"),
            Provider::kGemini);
  EXPECT_EQ(detectProvider("-aiplatform.googleapis.com", "/"), Provider::kNone);
  EXPECT_EQ(detectProvider("llm.local", "/v1/models/gemini-2.0-flash:generateContent"),
            Provider::kGemini);
}

TEST(DetectTest, ByPathForUnknownHosts) {
  EXPECT_EQ(detectProvider("127.0.0.1:8080", "/v1/chat/completions"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("llm.local", "/v1/completions?x=1"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("llm.local", "/v1/responses"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("llm.local", "/v1/embeddings"), Provider::kOpenAI);
  EXPECT_EQ(detectProvider("llm.local", "/v1/messages"), Provider::kAnthropic);
  EXPECT_EQ(detectProvider("[::1]:9000", "/v1beta/models/gemini-2.0-flash:generateContent"),
            Provider::kGemini);
  EXPECT_EQ(
      detectProvider("llm.local", "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
      Provider::kGemini);
  EXPECT_EQ(detectProvider("llm.local", "/v1beta/models/gemini:countTokens"), Provider::kNone);
  EXPECT_EQ(detectProvider("llm.local", "/v1beta/models/:generateContent"), Provider::kNone);
  EXPECT_EQ(detectProvider("llm.local", "/v1/chat/completions/extra"), Provider::kNone);
  EXPECT_EQ(detectProvider("llm.local", "/"), Provider::kNone);
  EXPECT_EQ(detectProvider("", ""), Provider::kNone);
}

}  // namespace
}  // namespace clrk::egress::llm
