// What an AI request asks for (model, streaming, token cap, operation), and the small body edits
// the data plane makes (forcing usage in OpenAI streams, rewriting the model). Pure functions on
// bytes: bodies may be truncated or invalid JSON; nothing here throws.
#pragma once

#include "clrk/egress/llm/provider.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace clrk::egress::llm {

struct RequestSummary {
  std::string model;  // gen_ai.request.model; "" when unknown
  bool stream = false;
  bool include_usage = false;         // OpenAI stream_options.include_usage
  std::optional<int64_t> max_tokens;  // max_tokens / max_completion_tokens / max_output_tokens /
                                      // generationConfig.maxOutputTokens / maxTokens
  // gen_ai.operation.name (OpenTelemetry GenAI values): "chat" (OpenAI chat/completions and
  // Responses API, Anthropic messages, Bedrock converse), "text_completion", "embeddings"
  // (OpenAI, Gemini embedContent), "generate_content" (Gemini), "invoke" (Bedrock invoke);
  // "" when the path is not recognised.
  std::string operation;
};

// Summarises a request. Model and stream come from the body, except: Gemini
// (/v1beta/models/<model>:streamGenerateContent -> model, stream=true), Azure OpenAI
// (/openai/deployments/<deployment>/... -> model when the body names none) and Bedrock
// (/model/<id>/invoke-with-response-stream | converse-stream -> model, stream=true). A body
// that is truncated or not JSON yields whatever top-level fields were read before the damage.
RequestSummary summarizeRequest(Provider provider, std::string_view path, std::string_view body);

// For an OpenAI-format streaming request body ("stream":true) that does not already ask for
// stream_options.include_usage=true, returns the body with "stream_options":{"include_usage":true}
// set (other bytes unchanged). nullopt when there is nothing to change (not streaming, already
// set, not one complete JSON object, or neither "messages" (chat) nor "prompt" (completions) at
// top level: a Responses API body ("input") reports usage in response.completed on its own and
// does not take include_usage). The client then also receives the final usage chunk
// (`"choices":[]`), which the OpenAI SDKs accept.
std::optional<std::string> ensureStreamUsage(std::string_view body);

// Returns the body with its top-level "model" value replaced by `new_model` (JSON-escaped; the
// rest of the bytes unchanged; every duplicate "model" member is replaced). nullopt when the body
// is not one complete JSON object or has no "model".
std::optional<std::string> rewriteModel(std::string_view body, std::string_view new_model);

// Returns `path` with the Gemini model segment (/models/<model>:method) or Bedrock model segment
// (/model/<id>/...) replaced by `new_model`; nullopt when the path has no model segment.
std::optional<std::string> rewriteModelInPath(Provider provider, std::string_view path,
                                              std::string_view new_model);

// Shell-style glob over bytes: `*` matches any run (including empty), `?` any one byte; every
// other byte matches itself. O(|glob| * |s|) worst case, no exponential backtracking.
bool globMatch(std::string_view glob, std::string_view s);

}  // namespace clrk::egress::llm
