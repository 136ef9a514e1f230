#include "clrk/egress/h2/server.h"

#include "clrk/base/log.h"
#include "clrk/egress/h2/convert.h"
#include "clrk/egress/h2/session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <nghttp2/nghttp2.h>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange
#include <vector>

namespace clrk::egress::h2 {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using net::use_awaitable;
using std::chrono::steady_clock;

constexpr size_t kReadChunk = 16 * 1024;
constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();

std::string jsonError(std::string_view message) {
  std::string out = R"({"error":{"type":"bad_request","message":")";
  for (char c : message) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  out += "\"}}";
  return out;
}

class Connection final : public detail::Session {
 public:
  Connection(TlsStream& tls, const ServerOptions& options, ServerHooks hooks, ServerStats* stats)
      : Session(tls, options.idle_timeout_ms),
        options_(options),
        hooks_(std::move(hooks)),
        stats_(stats) {}

  net::awaitable<void> run();

 private:
  struct Stream {
    Stream(int32_t stream_id, const net::any_io_executor& executor)
        : id(stream_id), body(executor) {}
    int32_t id;
    std::vector<HeaderField> fields;
    size_t header_bytes = 0;
    bool overflow = false;
    bool started = false;
    bool chunked = false;
    bool head_request = false;
    detail::Fields trailers;  // the request's, received after its body
    bool closed = false;      // nghttp2 closed it (both sides ended, or reset)
    uint64_t discarded = 0;   // request body bytes dropped after the handler returned
    bool reset_sent = false;
    std::unique_ptr<Bridge> bridge;
    detail::Outgoing body;  // response body waiting for nghttp2
  };

  bool init();
  size_t openStreams() const override { return streams_.size(); }
  void abortAll() override;
  net::awaitable<void> serveStream(std::shared_ptr<Stream> stream);
  net::awaitable<void> relayResponse(std::shared_ptr<Stream> stream);
  Stream* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void start(Stream& stream, bool body_follows);
  void endRequest(Stream& stream);
  void reject(Stream& stream, int status, std::string_view reason);
  void submit(Stream& stream, const detail::Fields& head, bool has_body);
  void resetStream(Stream& stream, uint32_t code);
  // Counts request body bytes nobody reads; past kDiscardBeforeReset, with the response out,
  // asks the client to stop sending.
  void discardedBody(Stream& stream, nghttp2_session* session, size_t len);

  // nghttp2 callbacks.
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_len, const uint8_t* value, size_t value_len, uint8_t flags,
                      void* self);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onDataChunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data,
                         size_t len, void* self);
  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t error_code, void* self);

  const ServerOptions& options_;
  ServerHooks hooks_;
  ServerStats* stats_;
  std::unordered_map<int32_t, std::shared_ptr<Stream>> streams_;
};

bool Connection::init() {
  Callbacks callbacks;
  callbacks.on_begin_headers = &Connection::onBeginHeaders;
  callbacks.on_header = &Connection::onHeader;
  callbacks.on_frame_recv = &Connection::onFrameRecv;
  callbacks.on_data_chunk_recv = &Connection::onDataChunk;
  callbacks.on_stream_close = &Connection::onStreamClose;
  return createSession(true, callbacks, this,
                       {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, options_.max_concurrent_streams},
                        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.stream_buffer_bytes},
                        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_bytes},
                        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}},
                       options_.connection_window_bytes);
}

net::awaitable<void> Connection::run() {
  if (!init()) {
    logger("egress")->warn("h2: cannot create an nghttp2 session");
    co_return;
  }
  co_await drive();
  streams_.clear();
}

void Connection::abortAll() {
  for (auto& [id, stream] : streams_) {
    stream->closed = true;
    if (stream->bridge) {
      stream->bridge->far().out().abort(net::error::connection_reset);
      stream->bridge->far().in().abort(net::error::connection_reset);
    }
    stream->body.drained.cancel();
  }
}

void Connection::start(Stream& stream, bool body_follows) {
  stream.started = true;
  Http1Request request;
  if (stream.overflow) {
    // Past the limit: an unterminated head longer than the HTTP/1.1 parser's limit makes the
    // handler answer 431 exactly as for an HTTP/1.1 client.
    request.head = "GET / HTTP/1.1\r\nx-clrk-header-overflow: ";
    request.head.append(options_.max_header_bytes + 1, 'x');
  } else {
    std::string error;
    if (!toHttp1Request(stream.fields, body_follows, request, error)) {
      reject(stream, 400, error);
      return;
    }
  }
  stream.fields.clear();
  stream.fields.shrink_to_fit();
  stream.chunked = request.chunked;
  stream.head_request = request.method == "HEAD";
  stream.bridge = std::make_unique<Bridge>(executor_, options_.stream_buffer_bytes);
  const int32_t id = stream.id;
  stream.bridge->far().out().on_credit = [this, id](size_t credit) {
    nghttp2_session_consume(session_, id, credit);
    signalWrite();
  };
  stream.bridge->far().out().push(request.head);
  if (stream.overflow) stream.bridge->far().out().close(net::error::eof);
  if (stats_) ++stats_->streams;
  auto shared = streams_.at(id);
  spawn(serveStream(shared));
  spawn(relayResponse(shared));
}

void Connection::endRequest(Stream& stream) {
  if (!stream.bridge) return;
  Pipe& pipe = stream.bridge->far().out();
  if (stream.chunked) pipe.push(lastChunk(stream.trailers));  // "0\r\n\r\n" without trailers
  stream.trailers.clear();
  pipe.close(net::error::eof);
}

void Connection::reject(Stream& stream, int status, std::string_view reason) {
  if (stats_) ++stats_->rejected;
  std::string method, authority, path;
  for (const auto& field : stream.fields) {
    if (field.name == ":method") method = field.value;
    if (field.name == ":authority") authority = field.value;
    if (field.name == ":path") path = field.value;
  }
  if (hooks_.rejected) hooks_.rejected(status, reason, method, authority, path);
  stream.fields.clear();
  stream.body.pending = jsonError(reason);
  stream.body.done = true;
  submit(stream,
         {{":status", std::to_string(status)},
          {"content-type", "application/json"},
          {"content-length", std::to_string(stream.body.pending.size())}},
         true);
}

void Connection::submit(Stream& stream, const detail::Fields& head, bool has_body) {
  std::vector<nghttp2_nv> nva = nameValues(head);
  nghttp2_data_provider body = provider(stream.body);
  int rv = nghttp2_submit_response(session_, stream.id, nva.data(), nva.size(),
                                   has_body ? &body : nullptr);
  if (rv != 0) {
    logger("egress")->debug("h2: cannot submit response on stream {}: {}", stream.id,
                            nghttp2_strerror(rv));
    resetStream(stream, NGHTTP2_INTERNAL_ERROR);
  }
  signalWrite();
}

void Connection::resetStream(Stream& stream, uint32_t code) {
  if (!stream.closed) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, code);
  signalWrite();
}

net::awaitable<void> Connection::serveStream(std::shared_ptr<Stream> stream) {
  BridgeEnd& near = stream->bridge->near();
  co_await hooks_.serve(near);
  near.out().close(net::error::eof);  // the response ends here, complete or not
  if (!stream->closed) {
    // Request bytes nobody will read (the handler answered before the body ended): their
    // window is given back, and so is that of DATA still to come (see onDataChunk).
    size_t unread = stream->bridge->far().out().abort(net::error::connection_reset);
    if (unread > 0) {
      nghttp2_session_consume(session_, stream->id, unread);
      signalWrite();
    }
  }
}

net::awaitable<void> Connection::relayResponse(std::shared_ptr<Stream> stream) {
  BridgeEnd& far = stream->bridge->far();
  beast::flat_buffer buffer;
  std::optional<http::response_parser<http::buffer_body>> parser;
  boost::system::error_code ec;
  for (;;) {
    parser.emplace();
    parser->header_limit(options_.max_header_bytes);
    parser->body_limit(kUnlimitedBody);
    if (stream->head_request) parser->skip(true);
    co_await http::async_read_header(far, buffer, *parser, net::redirect_error(use_awaitable, ec));
    if (ec) break;
    int code = parser->get().result_int();
    if (code >= 200) break;  // 1xx are interim (101 cannot happen: no upgrade over HTTP/2)
  }
  if (ec) {
    if (!closing_) resetStream(*stream, NGHTTP2_INTERNAL_ERROR);
    co_return;
  }
  if (stream->closed) co_return;
  bool has_body = !parser->is_done();
  // Fields the parser adds later are a chunked body's trailers (gRPC's grpc-status).
  auto head_fields = fieldCount(parser->get().base());
  submit(*stream, toHttp2Response(parser->get().base()), has_body);
  // Beast reads only what the buffer has room for (512 bytes at least): without room for a chunk
  // every body piece would leave as its own small DATA frame.
  if (has_body) buffer.reserve(kReadChunk);
  std::array<char, kReadChunk> chunk;
  while (has_body && !parser->is_done()) {
    parser->get().body().data = chunk.data();
    parser->get().body().size = chunk.size();
    co_await http::async_read_some(far, buffer, *parser, net::redirect_error(use_awaitable, ec));
    if (ec && ec != http::error::need_buffer) {
      // The handler cut the response short: the client must not take it as complete.
      resetStream(*stream, NGHTTP2_INTERNAL_ERROR);
      co_return;
    }
    ec = {};
    size_t n = chunk.size() - parser->get().body().size;
    if (n == 0) continue;
    bool sent = co_await append(stream->id, stream->body, std::string_view(chunk.data(), n),
                                options_.stream_buffer_bytes, stream->closed);
    if (!sent) co_return;
  }
  if (has_body && !stream->closed) {
    if (parser->chunked()) stream->body.trailers = trailersOf(parser->get().base(), head_fields);
    finish(stream->id, stream->body);
  }
}

int Connection::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* conn = static_cast<Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  conn->streams_.emplace(frame->hd.stream_id,
                         std::make_shared<Stream>(frame->hd.stream_id, conn->executor_));
  return 0;
}

int Connection::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                         size_t name_len, const uint8_t* value, size_t value_len, uint8_t,
                         void* self) {
  auto* conn = static_cast<Connection*>(self);
  Stream* stream = conn->find(frame->hd.stream_id);
  if (stream == nullptr || stream->overflow) return 0;
  // RFC 9113 §6.5.2 accounting; the trailers share the head's bound.
  stream->header_bytes += name_len + value_len + 32;
  const bool over = stream->header_bytes > conn->options_.max_header_bytes;
  std::string field_name(reinterpret_cast<const char*>(name), name_len);
  std::string field_value(reinterpret_cast<const char*>(value), value_len);
  if (stream->started) {
    // Trailers: relayed in the HTTP/1.1 body's last chunk (a body with a content-length cannot
    // carry them: dropped). Past the bound they are all dropped.
    if (over) {
      stream->trailers.clear();
    } else if (stream->chunked) {
      stream->trailers.emplace_back(std::move(field_name), std::move(field_value));
    }
    return 0;
  }
  if (over) {
    stream->overflow = true;
    stream->fields.clear();
    return 0;
  }
  stream->fields.push_back(HeaderField{std::move(field_name), std::move(field_value)});
  return 0;
}

int Connection::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* conn = static_cast<Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Stream* stream = conn->find(frame->hd.stream_id);
  if (stream == nullptr) return 0;
  bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !stream->started) {
    conn->start(*stream, !end_stream);
  }
  if (end_stream) conn->endRequest(*stream);
  return 0;
}

int Connection::onDataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                            size_t len, void* self) {
  auto* conn = static_cast<Connection*>(self);
  Stream* stream = conn->find(id);
  if (stream == nullptr || !stream->bridge || stream->bridge->far().out().closed()) {
    nghttp2_session_consume(session, id, len);  // nobody reads it: keep the windows open
    if (stream != nullptr) conn->discardedBody(*stream, session, len);
    return 0;
  }
  if (len == 0) return 0;
  pushBody(stream->bridge->far().out(), std::string_view(reinterpret_cast<const char*>(data), len),
           stream->chunked);
  return 0;
}

// A client may go on sending a body its response no longer needs (an early answer, a refused
// upload). RFC 9113 §8.1 lets the server stop it with RST_STREAM NO_ERROR after the response, but
// clients seen here (curl 7.88, Node 20) can drop response bytes that arrive together with that
// reset. So the body is first read and dropped for a while (the windows stay open) and only a
// client still sending after this much more gets the reset, long after its response went out.
constexpr uint64_t kDiscardBeforeReset = 1024 * 1024;

void Connection::discardedBody(Stream& stream, nghttp2_session* session, size_t len) {
  stream.discarded += len;
  if (stream.reset_sent || stream.discarded <= kDiscardBeforeReset) return;
  if (nghttp2_session_get_stream_local_close(session, stream.id) != 1) return;  // response not out
  stream.reset_sent = true;
  nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream.id, NGHTTP2_NO_ERROR);
  signalWrite();
}

int Connection::onStreamClose(nghttp2_session* session, int32_t id, uint32_t, void* self) {
  auto* conn = static_cast<Connection*>(self);
  auto it = conn->streams_.find(id);
  if (it == conn->streams_.end()) return 0;
  std::shared_ptr<Stream> stream = it->second;
  conn->streams_.erase(it);
  stream->closed = true;
  if (stream->bridge) {
    // Unread request bytes still hold connection window: give it back.
    size_t unread = stream->bridge->far().out().abort(net::error::connection_reset);
    if (unread > 0) nghttp2_session_consume_connection(session, unread);
    stream->bridge->far().in().abort(net::error::connection_reset);
  }
  stream->body.drained.cancel();
  return 0;
}

}  // namespace

net::awaitable<void> serveServer(TlsStream& stream, const ServerOptions& options, ServerHooks hooks,
                                 ServerStats* stats) {
  Connection connection(stream, options, std::move(hooks), stats);
  co_await connection.run();
}

}  // namespace clrk::egress::h2
