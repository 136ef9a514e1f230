// Internal to h2/: what the server and client connections share — the nghttp2 session driven
// over a TLS stream by a read loop, a write loop and a watchdog on one single-threaded executor,
// and outgoing bodies handed to nghttp2's data callback with bounded buffering.
#pragma once

#include "clrk/egress/h2/server.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <nghttp2/nghttp2.h>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::egress::h2::detail {

using Fields = std::vector<std::pair<std::string, std::string>>;

// A body being sent on one stream: filled by a coroutine (append), drained by nghttp2.
struct Outgoing {
  explicit Outgoing(const net::any_io_executor& executor) : drained(executor) {}
  std::string pending;
  size_t head = 0;
  bool done = false;          // no more bytes will be appended
  bool deferred = false;      // nghttp2 was told to wait (NGHTTP2_ERR_DEFERRED)
  Fields trailers;            // sent as a HEADERS frame after the last DATA, when not empty
  net::steady_timer drained;  // the filler waits here for room
  size_t size() const { return pending.size() - head; }
};

class Session {
 public:
  Session(TlsStream& tls, uint32_t idle_timeout_ms);
  virtual ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

 protected:
  // Runs the connection to its end: the write loop and the watchdog are spawned, the read loop
  // awaited; then abortAll() and a wait for every spawned task. session_ must be set.
  net::awaitable<void> drive();
  virtual size_t openStreams() const = 0;
  virtual void abortAll() = 0;

  void spawn(net::awaitable<void> task);
  void signalWrite() { write_wake_.cancel(); }
  void closeSocket();
  // Appends bytes for stream `id` and resumes its DATA. First waits while `out` holds `cap`
  // bytes or more; returns false (nothing appended) when `gone` became true meanwhile.
  net::awaitable<bool> append(int32_t id, Outgoing& out, std::string_view bytes, size_t cap,
                              const bool& gone);
  void finish(int32_t id, Outgoing& out);
  // The callbacks a side installs (on_begin_headers may be null).
  struct Callbacks {
    nghttp2_on_begin_headers_callback on_begin_headers = nullptr;
    nghttp2_on_header_callback on_header = nullptr;
    nghttp2_on_frame_recv_callback on_frame_recv = nullptr;
    nghttp2_on_data_chunk_recv_callback on_data_chunk_recv = nullptr;
    nghttp2_on_stream_close_callback on_stream_close = nullptr;
  };
  // Creates session_ (server or client side, `self` as user data) without automatic
  // WINDOW_UPDATE (consumed DATA is acknowledged as the bridge's reader takes it), submits
  // `settings` and opens the connection window to `connection_window_bytes`. False on failure.
  bool createSession(bool server, const Callbacks& callbacks, void* self,
                     const std::vector<nghttp2_settings_entry>& settings,
                     uint32_t connection_window_bytes);
  // Appends one received DATA payload to the HTTP/1.1 body in `pipe`: as a chunk when `chunked`,
  // with a credit of its length (acknowledged once read).
  static void pushBody(Pipe& pipe, std::string_view bytes, bool chunked);
  // nghttp2 data provider reading `out`.
  static nghttp2_data_provider provider(Outgoing& out);
  // Header list for nghttp2 (points into `fields`, which must outlive the submit call).
  static std::vector<nghttp2_nv> nameValues(const Fields& fields);

  TlsStream& tls_;
  net::any_io_executor executor_;
  nghttp2_session* session_ = nullptr;
  bool closing_ = false;

 private:
  net::awaitable<void> readLoop();
  net::awaitable<void> writeLoop();
  net::awaitable<void> watchdog();

  std::chrono::milliseconds idle_timeout_;
  net::steady_timer write_wake_;
  net::steady_timer done_wake_;
  net::steady_timer watchdog_;
  size_t running_ = 0;
  std::chrono::steady_clock::time_point last_read_ = std::chrono::steady_clock::now();
  std::optional<std::chrono::steady_clock::time_point> write_started_;
};

}  // namespace clrk::egress::h2::detail
