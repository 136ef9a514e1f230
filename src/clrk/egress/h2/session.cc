#include "clrk/egress/h2/session.h"

#include "clrk/base/log.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <nghttp2/nghttp2.h>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange

namespace clrk::egress::h2::detail {
namespace {

namespace beast = boost::beast;
using net::use_awaitable;
using std::chrono::steady_clock;

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;

std::vector<nghttp2_nv> toNameValues(const Fields& fields) {
  std::vector<nghttp2_nv> out;
  out.reserve(fields.size());
  for (const auto& [name, value] : fields) {
    out.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                             reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())),
                             name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return out;
}

// The body's end: END_STREAM on the last DATA, or on the trailers submitted here.
void endOutgoing(nghttp2_session* session, int32_t id, Outgoing& out, uint32_t* data_flags) {
  *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  if (out.trailers.empty()) return;
  std::vector<nghttp2_nv> nva = toNameValues(out.trailers);  // nghttp2 copies them
  if (nghttp2_submit_trailer(session, id, nva.data(), nva.size()) == 0) {
    *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
  }
  out.trailers.clear();
}

ssize_t readOutgoing(nghttp2_session* session, int32_t id, uint8_t* buf, size_t length,
                     uint32_t* data_flags, nghttp2_data_source* source, void*) {
  auto* out = static_cast<Outgoing*>(source->ptr);
  size_t available = out->size();
  if (available == 0) {
    if (out->done) {
      endOutgoing(session, id, *out, data_flags);
      return 0;
    }
    out->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  size_t n = std::min(length, available);
  std::memcpy(buf, out->pending.data() + out->head, n);
  out->head += n;
  if (out->head == out->pending.size()) {
    out->pending.clear();
    out->head = 0;
    if (out->done) endOutgoing(session, id, *out, data_flags);
  }
  out->drained.cancel();
  return static_cast<ssize_t>(n);
}

}  // namespace

Session::Session(TlsStream& tls, uint32_t idle_timeout_ms)
    : tls_(tls),
      executor_(tls.get_executor()),
      idle_timeout_(idle_timeout_ms),
      write_wake_(executor_),
      done_wake_(executor_),
      watchdog_(executor_) {}

Session::~Session() {
  if (session_ != nullptr) nghttp2_session_del(session_);
}

void Session::spawn(net::awaitable<void> task) {
  ++running_;
  net::co_spawn(executor_, std::move(task), [this](std::exception_ptr error) {
    if (error) {
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        logger("egress")->warn("h2: task failed: {}", e.what());
      }
    }
    --running_;
    done_wake_.cancel();
  });
}

net::awaitable<void> Session::drive() {
  beast::get_lowest_layer(tls_).expires_never();  // the watchdog keeps time instead
  spawn(writeLoop());
  spawn(watchdog());
  co_await readLoop();
  closing_ = true;
  abortAll();
  signalWrite();
  watchdog_.cancel();
  while (running_ > 0) {
    boost::system::error_code ec;
    done_wake_.expires_at(steady_clock::time_point::max());
    co_await done_wake_.async_wait(net::redirect_error(use_awaitable, ec));
  }
}

net::awaitable<void> Session::readLoop() {
  std::array<uint8_t, kReadChunk> buffer;
  for (;;) {
    boost::system::error_code ec;
    size_t n =
        co_await tls_.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, ec));
    if (n > 0) {
      last_read_ = steady_clock::now();
      ssize_t rv = nghttp2_session_mem_recv(session_, buffer.data(), n);
      if (rv < 0) {
        logger("egress")->debug("h2: closing: {}", nghttp2_strerror(static_cast<int>(rv)));
        break;
      }
      signalWrite();
    }
    if (ec) break;
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      break;
    }
  }
}

net::awaitable<void> Session::writeLoop() {
  std::string out;
  for (;;) {
    out.clear();
    for (;;) {
      const uint8_t* data = nullptr;
      ssize_t n = nghttp2_session_mem_send(session_, &data);
      if (n < 0) {
        logger("egress")->debug("h2: send failed: {}", nghttp2_strerror(static_cast<int>(n)));
        closeSocket();
        co_return;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      if (out.size() >= kWriteBatch) break;
    }
    if (!out.empty()) {
      boost::system::error_code ec;
      write_started_ = steady_clock::now();
      co_await net::async_write(tls_, net::buffer(out), net::redirect_error(use_awaitable, ec));
      write_started_.reset();
      if (ec) {
        closeSocket();
        co_return;
      }
      continue;
    }
    if (closing_ ||
        (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0)) {
      closeSocket();  // ends the read loop too
      co_return;
    }
    boost::system::error_code ec;
    write_wake_.expires_at(steady_clock::time_point::max());
    co_await write_wake_.async_wait(net::redirect_error(use_awaitable, ec));
  }
}

net::awaitable<void> Session::watchdog() {
  while (!closing_) {
    boost::system::error_code ec;
    watchdog_.expires_after(
        std::min<steady_clock::duration>(idle_timeout_, std::chrono::seconds(1)));
    co_await watchdog_.async_wait(net::redirect_error(use_awaitable, ec));
    if (closing_) break;
    auto now = steady_clock::now();
    if (write_started_ && now - *write_started_ >= idle_timeout_) {
      logger("egress")->debug("h2: peer stopped reading; closing");
      closeSocket();
      break;
    }
    if (openStreams() == 0 && now - last_read_ >= idle_timeout_) {
      nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);  // GOAWAY, then close
      signalWrite();
      break;
    }
  }
}

void Session::closeSocket() {
  boost::system::error_code ignored;
  beast::get_lowest_layer(tls_).socket().shutdown(net::socket_base::shutdown_both, ignored);
  beast::get_lowest_layer(tls_).socket().cancel(ignored);
}

bool Session::createSession(bool server, const Callbacks& callbacks, void* self,
                            const std::vector<nghttp2_settings_entry>& settings,
                            uint32_t connection_window_bytes) {
  nghttp2_session_callbacks* table = nullptr;
  if (nghttp2_session_callbacks_new(&table) != 0) return false;
  if (callbacks.on_begin_headers) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(table, callbacks.on_begin_headers);
  }
  nghttp2_session_callbacks_set_on_header_callback(table, callbacks.on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(table, callbacks.on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(table, callbacks.on_data_chunk_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(table, callbacks.on_stream_close);
  nghttp2_option* option = nullptr;
  if (nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(table);
    return false;
  }
  nghttp2_option_set_no_auto_window_update(option, 1);
  int rv = server ? nghttp2_session_server_new2(&session_, table, self, option)
                  : nghttp2_session_client_new2(&session_, table, self, option);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(table);
  if (rv != 0) return false;
  if (nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size()) != 0) {
    return false;
  }
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(connection_window_bytes));
  return true;
}

void Session::pushBody(Pipe& pipe, std::string_view bytes, bool chunked) {
  if (!chunked) {
    pipe.push(bytes, bytes.size());
    return;
  }
  char size_line[24];
  int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", bytes.size());
  pipe.push(std::string_view(size_line, static_cast<size_t>(n)));
  pipe.push(bytes, bytes.size());
  pipe.push("\r\n");
}

net::awaitable<bool> Session::append(int32_t id, Outgoing& out, std::string_view bytes, size_t cap,
                                     const bool& gone) {
  while (out.size() >= cap && !gone) {
    boost::system::error_code ec;
    out.drained.expires_at(steady_clock::time_point::max());
    co_await out.drained.async_wait(net::redirect_error(use_awaitable, ec));
  }
  if (gone) co_return false;
  if (out.head > 0 && out.head == out.pending.size()) {
    out.pending.clear();
    out.head = 0;
  }
  out.pending.append(bytes);
  if (out.deferred) {
    out.deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
  signalWrite();
  co_return true;
}

void Session::finish(int32_t id, Outgoing& out) {
  out.done = true;
  if (out.deferred) {
    out.deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
  signalWrite();
}

nghttp2_data_provider Session::provider(Outgoing& out) {
  nghttp2_data_provider result{};
  result.source.ptr = &out;
  result.read_callback = &readOutgoing;
  return result;
}

std::vector<nghttp2_nv> Session::nameValues(const Fields& fields) { return toNameValues(fields); }

}  // namespace clrk::egress::h2::detail
