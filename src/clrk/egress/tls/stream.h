// tls::Stream: TLS over a TCP socket for the data plane, a drop-in for
// beast::ssl_stream<beast::tcp_stream> where the egress uses one.
//
// OpenSSL reads and writes the socket itself, through a BIO on its descriptor (send with
// MSG_NOSIGNAL, recv), and the stream waits for readiness with Asio. asio::ssl::stream instead
// keeps two 17 KiB record buffers per stream and copies every byte through a 2 x 17 KiB BIO pair,
// so an idle connection holds ~70 KiB before OpenSSL's own state; here an idle handshaked stream
// holds only the SSL object (its buffers are released when idle, SSL_MODE_RELEASE_BUFFERS on the
// context) and the socket.
//
// * It is its own lowest layer (no next_layer()): expires_after/expires_never/socket/close/cancel
//   behave like beast::tcp_stream's. A deadline fails pending and later waits with
//   beast::error::timeout once passed; unlike tcp_stream it never closes the descriptor itself
//   (OpenSSL's BIO refers to it), so expires_after() makes it usable again.
// * async_handshake(type, prefix) hands bytes already read from the socket (a sniffed
//   ClientHello) to OpenSSL before the socket; it reports them all as used.
// * async_write_some gathers up to 16 KiB of a buffer sequence into one SSL_write (one record),
//   partial writes allowed.
// * async_shutdown sends close_notify and completes without waiting for the peer's.
// * Errors: eof after the peer's close_notify, net::ssl::error::stream_truncated when the peer
//   closed without one, the OpenSSL error (asio's ssl category) otherwise.
// * Completions are never invoked inside the initiating call.
//
// Not thread-safe: one executor (an event loop) drives a stream; one read and one write may be
// pending at once. A stream must not be moved or destroyed while an operation is pending (as
// with asio::ssl::stream): its completion refers to the stream.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/error_code.hpp>
#include <openssl/ssl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>

namespace clrk::egress::tls {

namespace detail {

// What SSL_* calls leave for the stream to do next.
enum class Want { kNothing, kRead, kWrite, kFailed };

// Everything a Stream owns, at a stable address (OpenSSL's BIO points at it).
struct StreamCore {
  StreamCore(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& context);
  ~StreamCore();
  StreamCore(const StreamCore&) = delete;
  StreamCore& operator=(const StreamCore&) = delete;

  // Before each SSL call: clears the thread's OpenSSL error queue and the BIO's errno.
  void beginCall();
  // Classifies the result `ret` of an SSL call: what to wait for, or sets `ec` (kFailed).
  Want classify(int ret, boost::system::error_code& ec);

  // Waits until the socket is readable/writable or the deadline passes, then calls `handler`
  // with the error (beast::error::timeout, operation_aborted, ...).
  template <class Handler>
  void wait(Want want, Handler&& handler);
  void setDeadline(std::chrono::steady_clock::time_point when);
  // Arms the timer for `deadline` unless it already is (or there is none).
  void armDeadline();
  bool deadlinePassed() const;

  boost::asio::ip::tcp::socket socket;
  boost::asio::steady_timer timer;
  SSL* ssl = nullptr;
  std::string prefix;  // bytes handed to the handshake, served to OpenSSL before the socket
  size_t prefix_used = 0;
  int last_errno = 0;  // errno of the BIO's last failed send/recv
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::chrono::steady_clock::time_point armed_for = std::chrono::steady_clock::time_point::max();
};

template <class Handler>
void StreamCore::wait(Want want, Handler&& handler) {
  if (deadlinePassed()) {
    boost::asio::post(socket.get_executor(), [handler = std::forward<Handler>(handler)]() mutable {
      handler(boost::beast::error::timeout);
    });
    return;
  }
  armDeadline();
  auto kind = want == Want::kRead ? boost::asio::socket_base::wait_read
                                  : boost::asio::socket_base::wait_write;
  socket.async_wait(
      kind, [this, handler = std::forward<Handler>(handler)](boost::system::error_code ec) mutable {
        if (ec == boost::asio::error::operation_aborted && deadlinePassed()) {
          ec = boost::beast::error::timeout;
        }
        handler(ec);
      });
}

// Sizes of a buffer sequence's first non-empty buffer.
template <class Buffers>
boost::asio::mutable_buffer firstMutable(const Buffers& buffers) {
  for (auto it = boost::asio::buffer_sequence_begin(buffers);
       it != boost::asio::buffer_sequence_end(buffers); ++it) {
    boost::asio::mutable_buffer piece(*it);
    if (piece.size() > 0) return piece;
  }
  return {};
}

// Copies up to scratch_size bytes of `buffers` into `scratch` (a single buffer is used in place).
// One pass over the sequence: stepping Beast's composed buffer iterators is not cheap.
template <class Buffers>
boost::asio::const_buffer gather(const Buffers& buffers, char* scratch, size_t scratch_size) {
  boost::asio::const_buffer single;
  size_t used = 0;  // bytes in scratch once a second piece was seen
  bool copying = false;
  for (auto it = boost::asio::buffer_sequence_begin(buffers);
       it != boost::asio::buffer_sequence_end(buffers); ++it) {
    boost::asio::const_buffer piece(*it);
    if (piece.size() == 0) continue;
    if (single.size() == 0 && !copying) {
      single = piece;
      continue;
    }
    if (!copying) {
      copying = true;
      used = boost::asio::buffer_copy(boost::asio::buffer(scratch, scratch_size), single);
    }
    used +=
        boost::asio::buffer_copy(boost::asio::buffer(scratch + used, scratch_size - used), piece);
    if (used == scratch_size) break;
  }
  return copying ? boost::asio::const_buffer(scratch, used) : single;
}

// A per-thread gather buffer for writes (the bytes are in OpenSSL's record once SSL_write
// returns, and a retried write gathers the same bytes again).
char* gatherScratch();
inline constexpr size_t kGatherBytes = 16 * 1024;

}  // namespace detail

class Stream {
 public:
  using executor_type = boost::asio::any_io_executor;

  // Takes over the connected socket of `tcp`. `context` must outlive the stream.
  Stream(boost::beast::tcp_stream&& tcp, boost::asio::ssl::context& context);
  Stream(boost::asio::ip::tcp::socket&& socket, boost::asio::ssl::context& context);
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;
  ~Stream() = default;

  executor_type get_executor() { return core_->socket.get_executor(); }
  SSL* native_handle() { return core_->ssl; }

  // Lowest-layer interface (beast::get_lowest_layer(stream) is the stream itself).
  boost::asio::ip::tcp::socket& socket() { return core_->socket; }
  void expires_after(std::chrono::steady_clock::duration d) {
    core_->setDeadline(std::chrono::steady_clock::now() + d);
  }
  void expires_at(std::chrono::steady_clock::time_point t) { core_->setDeadline(t); }
  void expires_never() { core_->setDeadline(std::chrono::steady_clock::time_point::max()); }
  void cancel() {
    boost::system::error_code ignored;
    core_->socket.cancel(ignored);
  }
  void close() {
    boost::system::error_code ignored;
    core_->socket.close(ignored);
  }

  template <class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type, Token&& token) {
    return async_handshake(type, boost::asio::const_buffer(), std::forward<Token>(token));
  }

  // Completes with the number of `prefix` bytes used (all of them).
  template <class ConstBuffers, class Token>
  auto async_handshake(boost::asio::ssl::stream_base::handshake_type type,
                       const ConstBuffers& prefix, Token&& token) {
    size_t size = boost::asio::buffer_size(prefix);
    core_->prefix.resize(size);
    boost::asio::buffer_copy(boost::asio::buffer(core_->prefix), prefix);
    core_->prefix_used = 0;
    if (type == boost::asio::ssl::stream_base::server) {
      SSL_set_accept_state(core_->ssl);
    } else {
      SSL_set_connect_state(core_->ssl);
    }
    return boost::asio::async_compose<Token, void(boost::system::error_code, size_t)>(
        Op<HandshakeStep>{*core_, HandshakeStep{size}}, token, core_->socket);
  }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, size_t)>(
        Op<ReadStep>{*core_, ReadStep{detail::firstMutable(buffers)}}, token, core_->socket);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, size_t)>(
        Op<WriteStep<ConstBuffers>>{*core_, WriteStep<ConstBuffers>{buffers}}, token,
        core_->socket);
  }

  template <class Token>
  auto async_shutdown(Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code)>(ShutdownOp{*core_},
                                                                              token, core_->socket);
  }

 private:
  // A step tries its SSL call once: it returns the bytes done, or sets `want` (and `ec` when
  // it failed).
  struct HandshakeStep {
    size_t prefix_size;
    size_t attempt(detail::StreamCore& core, detail::Want& want, boost::system::error_code& ec) {
      core.beginCall();
      int ret = SSL_do_handshake(core.ssl);
      want = ret == 1 ? detail::Want::kNothing : core.classify(ret, ec);
      return prefix_size;
    }
  };
  struct ReadStep {
    boost::asio::mutable_buffer buffer;
    size_t attempt(detail::StreamCore& core, detail::Want& want, boost::system::error_code& ec) {
      if (buffer.size() == 0) {
        want = detail::Want::kNothing;
        return 0;
      }
      size_t n = 0;
      core.beginCall();
      int ret = SSL_read_ex(core.ssl, buffer.data(), buffer.size(), &n);
      want = ret == 1 ? detail::Want::kNothing : core.classify(ret, ec);
      return n;
    }
  };
  template <class ConstBuffers>
  struct WriteStep {
    ConstBuffers buffers;
    size_t attempt(detail::StreamCore& core, detail::Want& want, boost::system::error_code& ec) {
      boost::asio::const_buffer bytes =
          detail::gather(buffers, detail::gatherScratch(), detail::kGatherBytes);
      if (bytes.size() == 0) {
        want = detail::Want::kNothing;
        return 0;
      }
      size_t n = 0;
      core.beginCall();
      int ret = SSL_write_ex(core.ssl, bytes.data(), bytes.size(), &n);
      want = ret == 1 ? detail::Want::kNothing : core.classify(ret, ec);
      return n;
    }
  };

  // Runs a step until it is done, waiting for the socket between attempts. The first attempt
  // happens in the initiating call; a result reached there is posted.
  template <class Step>
  struct Op {
    detail::StreamCore& core;
    Step step;
    bool started = false;

    template <class Self>
    void operator()(Self& self, boost::system::error_code wait_ec = {}) {
      bool initiating = !started;
      started = true;
      if (wait_ec) {
        self.complete(wait_ec, 0);
        return;
      }
      detail::Want want = detail::Want::kNothing;
      boost::system::error_code ec;
      size_t n = step.attempt(core, want, ec);
      if (want == detail::Want::kRead || want == detail::Want::kWrite) {
        core.wait(want, std::move(self));
        return;
      }
      if (!initiating) {
        self.complete(ec, n);
        return;
      }
      boost::asio::post(core.socket.get_executor(),
                        [self = std::move(self), ec, n]() mutable { self.complete(ec, n); });
    }
  };

  struct ShutdownOp {
    detail::StreamCore& core;
    bool started = false;

    template <class Self>
    void operator()(Self& self, boost::system::error_code wait_ec = {}) {
      bool initiating = !started;
      started = true;
      boost::system::error_code ec = wait_ec;
      if (!ec) {
        core.beginCall();
        int ret = SSL_shutdown(core.ssl);
        if (ret < 0) {
          detail::Want want = core.classify(ret, ec);
          if (want == detail::Want::kWrite) {
            core.wait(want, std::move(self));
            return;
          }
          // Waiting to read means close_notify is out and the peer's is pending: done.
          if (want == detail::Want::kRead) ec = {};
        }
      }
      if (!initiating) {
        self.complete(ec);
        return;
      }
      boost::asio::post(core.socket.get_executor(),
                        [self = std::move(self), ec]() mutable { self.complete(ec); });
    }
  };

  std::unique_ptr<detail::StreamCore> core_;
};

}  // namespace clrk::egress::tls
