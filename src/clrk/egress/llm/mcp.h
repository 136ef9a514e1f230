// Model Context Protocol (JSON-RPC 2.0 over HTTP, Streamable HTTP and SSE) call recognition for
// telemetry and tool policies. Never throws; untrusted input is bounded by the caller's body cap.
#pragma once

#include "clrk/egress/llm/sse.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::egress::llm {

struct McpCall {
  std::string method;    // "tools/call", "initialize", "resources/read", ... ("" for a response)
  std::string tool;      // params.name of tools/call
  std::string resource;  // params.uri of resources/read (and resources/subscribe)
  std::string prompt;    // params.name of prompts/get
  std::string id;        // JSON-RPC id as text (string unquoted, number as written); "" for a
                         // notification
};

// Parses a JSON-RPC 2.0 request body (single message or batch array). Elements that are not
// JSON-RPC requests/notifications are skipped; an invalid body yields an empty vector.
std::vector<McpCall> parseMcpRequest(std::string_view body);

// Heuristic: a JSON body whose top level (or first batch element) has "jsonrpc":"2.0" and a
// "method", sent with a JSON content type (or none).
bool looksLikeMcp(std::string_view content_type, std::string_view body);

struct McpResult {
  std::string id;             // JSON-RPC id as text
  bool is_error = false;      // JSON-RPC error, or a tools/call result with "isError": true
  int64_t error_code = 0;     // JSON-RPC error.code (0 when not a JSON-RPC error)
  std::string error_message;  // JSON-RPC error.message (bounded to 1 KiB)
};

// Reads JSON-RPC responses from an MCP response body: application/json (single or batch) or
// text/event-stream (one JSON-RPC message per event). Requests/notifications in the stream are
// ignored. Keeps at most 1024 results.
// One per response; not thread-safe.
class McpResponseObserver {
 public:
  explicit McpResponseObserver(bool event_stream, size_t max_json_bytes = size_t{1} << 20);
  void feed(std::string_view chunk);
  void finish();
  const std::vector<McpResult>& results() const { return results_; }
  bool sawError() const;

  // Internal: reads one JSON-RPC message or batch.
  void observeJson(std::string_view json);

 private:
  bool event_stream_;
  size_t max_json_bytes_;
  SseParser sse_;
  std::string body_;
  bool truncated_ = false;
  bool finished_ = false;
  std::vector<McpResult> results_;
};

}  // namespace clrk::egress::llm
