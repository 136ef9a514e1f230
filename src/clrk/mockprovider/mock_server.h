// MockServer: a loopback HTTP(S)/1.1 server that speaks the wire formats of the OpenAI,
// Anthropic and Gemini APIs and of an MCP server (Streamable HTTP transport), for the egress
// integration tests and `clrk dev up --mock-providers`.
//
// Endpoints (one server, dispatched by path, any Host):
//   OpenAI     POST /v1/chat/completions, POST /v1/responses, POST /v1/embeddings, GET /v1/models
//              auth `Authorization: Bearer <key>`
//   Anthropic  POST /v1/messages, POST /v1/messages/count_tokens; auth `x-api-key` or
//              `Authorization: Bearer` (what @anthropic-ai/sdk 1.x sends); requires
//              `anthropic-version`
//   Gemini     POST /v1beta/models/{model}:generateContent, :streamGenerateContent[?alt=sse],
//              :countTokens (also under /v1/models/, which @google/genai uses)
//              auth `x-goog-api-key` header or `?key=`; alt=sse events end in CRLF CRLF as
//              Google's do, without alt=sse the stream is a JSON array sent in chunks
//   MCP        POST /mcp (JSON-RPC 2.0: initialize, notifications/initialized, ping, tools/list,
//              tools/call with tools `echo` and `add`); GET/DELETE /mcp -> 405
//   Debug      GET /__mock/requests -> JSON array of the recorded requests (DELETE clears);
//              POST /__mock/fail-status {"status":N}
//   Bulk       POST /__mock/echo -> the body back (x-mock-body-sha256 header);
//              GET /__mock/bytes?n=N[&chunk=K] -> N bytes (<= 64 MiB) in K-byte HTTP chunks
//              (recorded, unlike the debug endpoints; for large-body and benchmark tests)
//
// Answers are deterministic: the assistant text is "hello from <name>: <last user message>", the
// model is echoed from the request (or the Gemini path), and token counts follow
// countTokens() below so tests can predict them. "stream": true answers Server-Sent Events with
// each provider's exact event sequence, usage fields included.
//
// Missing credentials answer 401, bad JSON 400, unknown paths 404, each in the provider's own
// error JSON shape. Request headers steer failures and timing:
//   x-mock-status: N           answer status N with the provider's error body (N >= 400) instead
//   x-mock-delay-ms: N         wait N ms (capped at 30000) before the response starts
//   x-mock-chunk-delay-ms: N   wait N ms (capped at 10000) between stream events
// Every response carries `x-mock-name: <name>`.
//
// Thread model: start() spawns the server's own io_context thread; all public methods are
// thread-safe. The destructor stops the listener, closes connections and joins the thread.
#pragma once

#include "clrk/base/status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::mockprovider {

struct MockOptions {
  // "host:port"; port 0 picks a free port. IPv6 as "[::1]:0".
  std::string listen = "127.0.0.1:0";
  // PEM text (not paths). TLS (HTTPS only, ALPN http/1.1) iff both are set.
  // (Explicit `{}`: GCC 12 warns about designated initializers that skip members without one.)
  std::string tls_cert_pem{};
  std::string tls_key_pem{};
  // When nonzero every provider request (not /mcp, not /__mock) answers this status with the
  // provider's own error body; for fallback tests.
  int fail_status = 0;
  // Echoed in response text and in header x-mock-name.
  std::string name = "mock";
  // MCP answers text/event-stream whenever the client's Accept allows it (otherwise only when
  // Accept lacks application/json or the request carries `x-mock-mcp-stream: 1`).
  bool mcp_sse = false;
};

struct RecordedRequest {
  std::string method, target, host;
  // In arrival order, names as sent.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The provider credential the request carried (Bearer token, x-api-key, x-goog-api-key or
  // ?key=), "" when none; the provider the path selected ("openai", "anthropic", "gemini",
  // "mcp", "" otherwise).
  std::string api_key;
  std::string provider;
  // The full body's size and lowercase hex SHA-256 (`body` itself is capped at 1 MiB).
  size_t body_bytes = 0;
  std::string body_sha256;

  // First header with this name (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
};

// The deterministic token count used for usage fields: the number of whitespace-separated words
// in `text` (0 for empty). Prompt tokens are the sum over every message's text content; output
// tokens are countTokens() of the produced text.
int countTokens(std::string_view text);

class MockServer {
 public:
  // Binds and starts serving. Fails (InvalidArgument/Internal) on a bad listen address, a bind
  // failure or unusable TLS material.
  static Result<std::unique_ptr<MockServer>> start(MockOptions options);

  ~MockServer();
  MockServer(const MockServer&) = delete;
  MockServer& operator=(const MockServer&) = delete;

  // The bound port.
  uint16_t port() const;
  // "http://127.0.0.1:PORT" or "https://127.0.0.1:PORT" (no trailing slash, no /v1).
  std::string baseUrl() const;

  // The last 1000 requests, oldest first (bodies capped at 1 MiB each).
  std::vector<RecordedRequest> requests() const;
  void clearRequests();
  // See MockOptions::fail_status; 0 turns it off. Applies to requests received afterwards.
  void setFailStatus(int status);

  // Stops accepting, closes connections and joins the thread. Idempotent; the destructor calls it.
  void stop();

  class Impl;

 private:
  explicit MockServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clrk::mockprovider
