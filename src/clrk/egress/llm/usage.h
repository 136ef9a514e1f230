// Token usage, response model and finish reasons read from an AI provider's response, JSON or
// SSE, fed in whatever chunks the network delivers. Bounded memory; never throws.
#pragma once

#include "clrk/egress/llm/aws_eventstream.h"
#include "clrk/egress/llm/provider.h"
#include "clrk/egress/llm/sse.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::egress::llm {

struct Usage {
  std::optional<int64_t> input_tokens;         // gen_ai.usage.input_tokens
  std::optional<int64_t> output_tokens;        // gen_ai.usage.output_tokens
  std::optional<int64_t> total_tokens;         // input + output when the provider gives none
  std::optional<int64_t> cached_input_tokens;  // OpenAI prompt_tokens_details.cached_tokens,
                                               // Anthropic cache_read_input_tokens, Gemini
                                               // cachedContentTokenCount
  std::optional<int64_t> reasoning_tokens;     // OpenAI *_tokens_details.reasoning_tokens,
                                               // Gemini thoughtsTokenCount
  std::string response_model;                  // gen_ai.response.model
  std::string response_id;                     // gen_ai.response.id
  std::vector<std::string> finish_reasons;     // gen_ai.response.finish_reasons (deduplicated)
};

// Observes one response body. `event_stream` = the response is text/event-stream. JSON bodies are
// accumulated up to max_json_bytes and parsed at finish(); a larger body keeps only its first and
// last 64 KiB (see truncated()): the head yields model and id, the tail the usage object that
// providers put last. SSE bodies are parsed event by event as they arrive, each event bounded by
// max_json_bytes too. Kinds understood: OpenAI chat/completions/embeddings (JSON and chunks,
// usage on the final chunk with include_usage), OpenAI Responses API (response.completed etc.),
// Anthropic messages (JSON; message_start / message_delta / error events), Gemini
// generateContent (JSON, JSON array of chunks, and ?alt=sse chunks; usageMetadata), Bedrock
// Converse JSON and, for Bedrock bodies that are not JSON, the AWS event stream of ConverseStream
// (metadata usage, messageStop) and InvokeModelWithResponseStream (base64 model chunks and
// amazon-bedrock-invocationMetrics; exceptions count as errors). Azure OpenAI and custom providers
// are read as OpenAI. Anthropic's cache_read/cache_creation input tokens are added into
// input_tokens (so input means all prompt tokens, as for the other providers). One per response;
// not thread-safe.
class ResponseObserver {
 public:
  ResponseObserver(Provider provider, bool event_stream, size_t max_json_bytes = size_t{1} << 20);

  void feed(std::string_view body_chunk);
  // End of body: parses an accumulated JSON body and fills total_tokens. Idempotent.
  void finish();

  const Usage& usage() const { return usage_; }
  // The body (or an SSE event) carried a provider error object.
  bool sawError() const { return saw_error_; }
  // Provider's error type ("rate_limit_error", "overloaded_error", "invalid_request_error",
  // "RESOURCE_EXHAUSTED", ...); "" when none.
  std::string errorType() const { return error_type_; }
  // The JSON body exceeded max_json_bytes: only its head and tail were read.
  bool truncated() const { return truncated_; }
  // SSE events seen (dispatched) so far; useful for "first token" bookkeeping.
  uint64_t eventCount() const { return sse_.dispatchedEvents(); }
  Provider provider() const { return provider_; }

  // Internal (public for the parser callbacks): reads one JSON document (a body or an event's
  // data) of the observed provider. `sse_type` is the SSE event type, "" for plain JSON.
  void observeJson(std::string_view json, std::string_view sse_type);

 private:
  void observeDoc(std::string_view json, std::string_view sse_type, int depth);
  void rescueFromTail();
  void observeAwsMessage(const AwsEventMessage& message);

  Provider provider_;
  bool event_stream_;
  size_t max_json_bytes_;
  SseParser sse_;
  AwsEventStreamDecoder aws_;
  bool aws_stream_ = false;  // Bedrock body framed as an AWS event stream
  bool saw_first_byte_ = false;
  std::string body_;  // whole JSON body, or its head once truncated
  std::string tail_;  // last bytes of a truncated JSON body
  bool truncated_ = false;
  bool finished_ = false;
  bool saw_error_ = false;
  std::string error_type_;
  Usage usage_;
};

}  // namespace clrk::egress::llm
