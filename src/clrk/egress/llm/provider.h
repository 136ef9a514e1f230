// AI providers the egress recognises by wire format.
#pragma once

#include <string_view>

namespace clrk::egress::llm {

enum class Provider { kNone, kOpenAI, kAnthropic, kGemini, kAzureOpenAI, kBedrock, kCustom };

// API provider names as written in manifests: "openai", "anthropic", "google", "azure-openai",
// "bedrock", "custom"; "" for kNone.
std::string_view providerName(Provider provider);
// Inverse of providerName; "gemini" is accepted for kGemini too. kNone for unknown names.
Provider providerFromName(std::string_view name);
// OpenTelemetry `gen_ai.system` value: "openai", "anthropic", "gcp.gemini", "az.ai.openai",
// "aws.bedrock", "custom"; "" for kNone.
std::string_view genAiSystem(Provider provider);

}  // namespace clrk::egress::llm
