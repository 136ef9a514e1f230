#include "clrk/egress/llm/provider.h"

namespace clrk::egress::llm {

std::string_view providerName(Provider provider) {
  switch (provider) {
    case Provider::kNone:
      return "";
    case Provider::kOpenAI:
      return "openai";
    case Provider::kAnthropic:
      return "anthropic";
    case Provider::kGemini:
      return "google";
    case Provider::kAzureOpenAI:
      return "azure-openai";
    case Provider::kBedrock:
      return "bedrock";
    case Provider::kCustom:
      return "custom";
  }
  return "";
}

Provider providerFromName(std::string_view name) {
  if (name == "openai") return Provider::kOpenAI;
  if (name == "anthropic") return Provider::kAnthropic;
  if (name == "google" || name == "gemini") return Provider::kGemini;
  if (name == "azure-openai") return Provider::kAzureOpenAI;
  if (name == "bedrock") return Provider::kBedrock;
  if (name == "custom") return Provider::kCustom;
  return Provider::kNone;
}

std::string_view genAiSystem(Provider provider) {
  switch (provider) {
    case Provider::kNone:
      return "";
    case Provider::kOpenAI:
      return "openai";
    case Provider::kAnthropic:
      return "anthropic";
    case Provider::kGemini:
      return "gcp.gemini";
    case Provider::kAzureOpenAI:
      return "az.ai.openai";
    case Provider::kBedrock:
      return "aws.bedrock";
    case Provider::kCustom:
      return "custom";
  }
  return "";
}

}  // namespace clrk::egress::llm
