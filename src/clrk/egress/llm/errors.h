// Error bodies in each provider's own shape, so SDKs surface clrk's refusals (429 rate limit,
// 403 policy) the way they surface the provider's.
#pragma once

#include "clrk/egress/llm/provider.h"

#include <string>
#include <string_view>

namespace clrk::egress::llm {

// JSON error body for HTTP `status` with `message` (JSON-escaped):
//   OpenAI/Azure/custom: {"error":{"message":..,"type":..,"param":null,"code":..}}
//     429 -> type "rate_limit_exceeded" code "rate_limit_exceeded"; 401/403 -> "permission_error";
//     other 4xx -> "invalid_request_error"; 5xx -> "server_error".
//   Anthropic: {"type":"error","error":{"type":..,"message":..}}
//     429 "rate_limit_error", 403 "permission_error", 401 "authentication_error",
//     404 "not_found_error", 413 "request_too_large", 529 "overloaded_error", 5xx "api_error",
//     other 4xx "invalid_request_error".
//   Gemini: {"error":{"code":status,"message":..,"status":..}}
//     429 RESOURCE_EXHAUSTED, 403 PERMISSION_DENIED, 401 UNAUTHENTICATED, 404 NOT_FOUND,
//     400 INVALID_ARGUMENT, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, other 5xx INTERNAL,
//     other 4xx FAILED_PRECONDITION.
//   Bedrock: {"message":..} (its x-amzn-ErrorType header is the proxy's business).
//   kNone: clrk's own {"error":{"type":..,"message":..}} with type "rate_limited",
//     "forbidden", "unauthorized", "not_found", "bad_request", "bad_gateway", "unavailable",
//     "gateway_timeout" or "error".
std::string providerErrorBody(Provider provider, int status, std::string_view message);

// Appends `s` as a JSON string literal (with quotes) to `out`: escapes quote, backslash and
// control characters; invalid UTF-8 bytes are replaced by U+FFFD.
void appendJsonString(std::string& out, std::string_view s);

}  // namespace clrk::egress::llm
