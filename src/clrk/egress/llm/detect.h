// Recognising an AI provider from the request's host and path.
#pragma once

#include "clrk/egress/llm/provider.h"

#include <string_view>

namespace clrk::egress::llm {

// Which provider's wire format a request to `host` (an optional ":port" is ignored; matching is
// case-insensitive) with request-target `path` (a "?query" is ignored) speaks.
//   api.openai.com -> kOpenAI; api.anthropic.com -> kAnthropic;
//   generativelanguage.googleapis.com, aiplatform.googleapis.com and
//   <region>-aiplatform.googleapis.com (Vertex AI) -> kGemini; *.openai.azure.com -> kAzureOpenAI;
//   bedrock-runtime.<region>.amazonaws.com -> kBedrock.
// Unknown hosts are recognised by path: /v1/chat/completions, /v1/completions, /v1/responses,
// /v1/embeddings -> kOpenAI (OpenAI-compatible); /v1/messages -> kAnthropic;
// /v1beta/models/<m>:generateContent | :streamGenerateContent (also /v1/models/...) -> kGemini.
// Otherwise kNone.
// No allocation.
Provider detectProvider(std::string_view host, std::string_view path);

}  // namespace clrk::egress::llm
