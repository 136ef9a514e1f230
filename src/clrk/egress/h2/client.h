// HTTP/2 towards upstreams: a connection whose TLS handshake chose ALPN "h2" carries many
// requests at once. Each request is a ClientStream, an AsyncStream on which the caller writes one
// HTTP/1.1 request and reads one HTTP/1.1 response, exactly as on an HTTP/1.1 connection; the
// connection translates both (RFC 9113 §8.3) and multiplexes them.
//
// * Requests: the head becomes HEADERS (:authority from Host, :scheme https, hop-by-hop fields
//   dropped), the body DATA, sent as the caller writes it (buffered up to stream_buffer_bytes).
// * Responses: 1xx are skipped; the head is written with content-length when the server sent
//   one, else chunked (or "content-length: 0" when HEADERS ended the stream), plus
//   "connection: close" so the caller never pools the stream; DATA follows as it arrives, held
//   back by flow control (the window opens as the caller reads). A reset stream, a GOAWAY that
//   excludes it, or a lost connection fails the caller's read (a cut response).
// * Destroying a ClientStream before its response ended resets the stream (CANCEL).
// * A connection that is idle for idle_timeout sends GOAWAY and closes; one that received GOAWAY
//   or reached the server's SETTINGS_MAX_CONCURRENT_STREAMS refuses open().
//
// Single-threaded: a connection and its streams belong to one executor (an event loop).
#pragma once

#include "clrk/egress/h2/bridge.h"
#include "clrk/egress/h2/server.h"

#include <memory>
#include <optional>

namespace clrk::egress::h2 {

struct ClientOptions {
  uint32_t max_header_bytes = 64 * 1024;
  uint32_t idle_timeout_ms = 120000;
  uint32_t stream_buffer_bytes = 64 * 1024;
  uint32_t connection_window_bytes = 1024 * 1024;
};

class ClientConnection;
namespace detail {
struct ClientStreamState;
}

class ClientStream {
 public:
  using executor_type = net::any_io_executor;

  ClientStream(std::shared_ptr<detail::ClientStreamState> state,
               std::shared_ptr<ClientConnection> connection);
  ClientStream(ClientStream&&) noexcept;
  ClientStream& operator=(ClientStream&&) noexcept;
  ~ClientStream();

  executor_type get_executor() const;
  BridgeEnd& end();
  void expires_after(BridgeEnd::clock::duration d) { end().expires_after(d); }
  void expires_never() { end().expires_never(); }
  void cancel() { end().cancel(); }
  BridgeEnd& socket() { return end(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return end().async_read_some(buffers, std::forward<Token>(token));
  }
  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return end().async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  void release();
  std::shared_ptr<detail::ClientStreamState> state_;
  std::shared_ptr<ClientConnection> connection_;
};

class ClientConnection : public std::enable_shared_from_this<ClientConnection> {
 public:
  // Takes over a TLS stream whose handshake chose "h2" and serves it on the stream's executor
  // until it ends. `keep_alive` (e.g. the SSL_CTX owner) is held as long as the connection.
  static std::shared_ptr<ClientConnection> start(std::unique_ptr<TlsStream> tls,
                                                 std::shared_ptr<const void> keep_alive,
                                                 const ClientOptions& options);
  virtual ~ClientConnection() = default;

  // A new stream, or nullopt when this connection takes no more.
  virtual std::optional<ClientStream> open() = 0;
  // False once closed, draining after GOAWAY, or at the server's concurrency limit.
  virtual bool usable() const = 0;
  virtual bool closed() const = 0;

 protected:
  friend class ClientStream;
  virtual void abandon(detail::ClientStreamState& state) = 0;
};

}  // namespace clrk::egress::h2
