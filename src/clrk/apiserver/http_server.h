// The HTTP/1.1 transport of the API server: Boost.Beast over TLS (or plain TCP for tests),
// keep-alive, bounded requests, bearer-token and client-certificate authentication, and
// chunked streaming of watch responses.
//
// Requests are parsed into a Request (path and query percent-decoded), authenticated, handed to
// the RequestHandlerFn and the Response written back. A Response carrying an EventStream is
// written as `Transfer-Encoding: chunked`, one chunk per event line, each flushed at once; the
// blocking EventStream::next() runs on a dedicated thread per watch, never on the I/O threads.
//
// Limits: header block max_header_bytes (431), body max_body_bytes (413), a whole request must
// arrive within read_timeout (also the keep-alive idle limit; slowloris-safe), max_connections
// concurrent connections (further ones are closed at once).
//
// Thread model: the handler is called concurrently from the I/O threads (`io_threads` threads
// running one io_context; each connection runs on its own strand). stop() is thread-safe and
// idempotent; the destructor calls it.
#pragma once

#include "clrk/apiserver/handler.h"
#include "clrk/apiserver/pki.h"
#include "clrk/base/status.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::apiserver {

// User name of requests authenticated with the bearer token.
inline constexpr std::string_view kTokenUser = "admin";
// User name of unauthenticated requests to anonymous_paths.
inline constexpr std::string_view kAnonymousUser = "system:anonymous";

struct HttpServerOptions {
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0 = pick a free port
  bool tls = true;
  CertKeyPem serving;         // REQUIRES when tls: the serving certificate and key
  std::string client_ca_pem;  // when set (and tls): client certificates it signed authenticate
  std::string bearer_token;   // when set: "Authorization: Bearer <token>" authenticates
  int io_threads = 2;
  size_t max_header_bytes = 64 * 1024;
  size_t max_body_bytes = 3 * 1024 * 1024;
  size_t max_connections = 1024;
  // Bytes of watch events queued for a client that does not read before it is disconnected.
  size_t max_watch_backlog_bytes = 16 * 1024 * 1024;
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds read_timeout{60'000};
  std::chrono::milliseconds write_timeout{60'000};
  // Paths served without authentication (exact, or followed by '/'), as the real API server
  // allows them to system:unauthenticated.
  std::vector<std::string> anonymous_paths = {"/version", "/healthz", "/livez", "/readyz"};
};

using RequestHandlerFn = std::function<Response(const Request&)>;

class HttpServer;
using HttpServerPtr = std::unique_ptr<HttpServer>;

class HttpServer {
 public:
  // Binds, starts the I/O threads and serves `handler`. Fails with a clear Status when the
  // address can't be bound or the TLS material does not load.
  static Result<HttpServerPtr> start(HttpServerOptions options, RequestHandlerFn handler);

  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Stops accepting, ends open watches (EventStream::stop()), closes connections and joins every
  // thread. Idempotent.
  void stop();
  uint16_t port() const;
  // Open connections and watch streams (for tests and metrics).
  size_t connectionCountForTest() const;
  size_t watchCountForTest() const;

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A Kubernetes Status response: {"kind":"Status","apiVersion":"v1","status":"Failure",
// "message":...,"reason":...,"code":...}.
Response statusResponse(int code, std::string_view reason, std::string_view message);

// Percent-decodes `text` ("%2F" -> "/"); with `plus_as_space` '+' becomes ' ' (query strings).
// Returns false when a '%' is not followed by two hex digits.
bool percentDecode(std::string_view text, bool plus_as_space, std::string& out);

// Splits a request target ("/api/v1/pods?limit=5&watch=1") into the decoded path and query.
// InvalidArgument when the target is not origin-form or has a bad escape.
Status parseTarget(std::string_view target, std::string& path,
                   std::vector<std::pair<std::string, std::string>>& query);

}  // namespace clrk::apiserver
