// HTTP/2 for the client side of the data plane: serves a connection whose TLS handshake chose
// ALPN "h2" (RFC 9113, with nghttp2), handing each request stream to an HTTP/1.1 handler over a
// Bridge, so every filter (policy, credentials, limits, telemetry) applies unchanged.
//
// Per stream: the request head is translated (convert.h) and written to the handler's end of the
// bridge, DATA follows (chunked when no content-length); the handler's HTTP/1.1 response is
// parsed back into HEADERS and DATA. A request HTTP/1.1 cannot carry (CONNECT, bad pseudo-headers,
// CR/LF in a value) gets a 400 JSON answer and the `rejected` hook; a header list over
// max_header_bytes reaches the handler as an oversized head (so it answers 431 as for HTTP/1.1).
//
// Bounds: at most max_concurrent_streams streams; per stream, request bytes are held back by
// HTTP/2 flow control (window = stream_buffer_bytes, acknowledged as the handler reads) and
// response bytes by a stream_buffer_bytes buffer the handler waits on. An idle connection (no
// open stream, nothing received for idle_timeout) is closed with GOAWAY; so is one whose writes
// stall for idle_timeout. Returns once the connection ended and every handler returned.
#pragma once

#include "clrk/egress/h2/bridge.h"
#include "clrk/egress/tls/stream.h"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include <cstdint>
#include <functional>
#include <string_view>

namespace clrk::egress::h2 {

using TlsStream = tls::Stream;

struct ServerOptions {
  uint32_t max_concurrent_streams = 100;
  uint32_t max_header_bytes = 64 * 1024;
  uint32_t idle_timeout_ms = 120000;
  uint32_t stream_buffer_bytes = 64 * 1024;
  uint32_t connection_window_bytes = 1024 * 1024;
};

struct ServerHooks {
  // Serves the one HTTP/1.1 request readable from `stream` and writes its response there.
  std::function<net::awaitable<void>(BridgeEnd& stream)> serve;
  // Told about a stream refused before it reached `serve` (status, reason, the :method and
  // :authority and :path as received, possibly empty). May be empty.
  std::function<void(int status, std::string_view reason, std::string_view method,
                     std::string_view authority, std::string_view path)>
      rejected;
};

// Counts for tests and stats.
struct ServerStats {
  uint64_t streams = 0;   // streams handed to `serve`
  uint64_t rejected = 0;  // streams refused with 400
};

net::awaitable<void> serveServer(TlsStream& stream, const ServerOptions& options, ServerHooks hooks,
                                 ServerStats* stats = nullptr);

}  // namespace clrk::egress::h2
