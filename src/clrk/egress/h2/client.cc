#include "clrk/egress/h2/client.h"

#include "clrk/base/ascii.h"
#include "clrk/base/log.h"
#include "clrk/egress/h2/convert.h"
#include "clrk/egress/h2/session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <list>
#include <unordered_map>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange

namespace clrk::egress::h2 {

namespace detail {

struct ClientStreamState {
  ClientStreamState(const net::any_io_executor& executor, size_t capacity)
      : bridge(executor, capacity), body(executor) {}
  Bridge bridge;  // near: the caller (ClientStream), far: this connection
  Outgoing body;  // request body on its way to nghttp2
  int32_t id = -1;
  bool closed = false;  // reset, closed by nghttp2, abandoned, or the connection ended
  bool head_request = false;
  bool response_started = false;
  bool response_chunked = false;
  bool response_ended = false;
  int status = 0;
  Fields fields;
  Fields trailers;  // a HEADERS frame after the response's head and body (gRPC's status)
  size_t header_bytes = 0;
};

}  // namespace detail

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using detail::ClientStreamState;
using net::use_awaitable;

constexpr size_t kReadChunk = 16 * 1024;
constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

bool hopByHop(std::string_view name) {
  return name == "connection" || name == "keep-alive" || name == "proxy-connection" ||
         name == "transfer-encoding" || name == "upgrade" || name == "te" || name == "host" ||
         name == "expect" || name == "http2-settings";
}

// Owns the TLS stream; a base so it is built before Session, which refers to it.
struct TlsHolder {
  explicit TlsHolder(std::unique_ptr<TlsStream> stream) : owned_tls(std::move(stream)) {}
  std::unique_ptr<TlsStream> owned_tls;
};

class Connection final : public ClientConnection, private TlsHolder, public detail::Session {
 public:
  Connection(std::unique_ptr<TlsStream> stream, std::shared_ptr<const void> keep_alive,
             const ClientOptions& options)
      : TlsHolder(std::move(stream)),
        Session(*owned_tls, options.idle_timeout_ms),
        keep_alive_(std::move(keep_alive)),
        options_(options) {}

  bool init();
  net::awaitable<void> run(std::shared_ptr<ClientConnection> self);

  std::optional<ClientStream> open() override;
  bool usable() const override;
  bool closed() const override { return dead_ || closing_; }

 private:
  void abandon(ClientStreamState& state) override;
  size_t openStreams() const override { return streams_.size() + waiting_.size(); }
  void abortAll() override;
  void abort(ClientStreamState& state);
  net::awaitable<void> sendRequest(std::shared_ptr<ClientStreamState> state);
  ClientStreamState* find(int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }
  void startResponse(ClientStreamState& state, bool end_stream);
  void endResponse(ClientStreamState& state);

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_len, const uint8_t* value, size_t value_len, uint8_t flags,
                      void* self);
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self);
  static int onDataChunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data,
                         size_t len, void* self);
  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t error_code, void* self);

  std::shared_ptr<const void> keep_alive_;
  ClientOptions options_;
  std::unordered_map<int32_t, std::shared_ptr<ClientStreamState>> streams_;
  std::list<std::shared_ptr<ClientStreamState>> waiting_;  // opened, request head not sent yet
  bool goaway_ = false;
  bool dead_ = false;
};

bool Connection::init() {
  Callbacks callbacks;
  callbacks.on_header = &Connection::onHeader;
  callbacks.on_frame_recv = &Connection::onFrameRecv;
  callbacks.on_data_chunk_recv = &Connection::onDataChunk;
  callbacks.on_stream_close = &Connection::onStreamClose;
  return createSession(false, callbacks, this,
                       {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, options_.stream_buffer_bytes},
                        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, options_.max_header_bytes}},
                       options_.connection_window_bytes);
}

net::awaitable<void> Connection::run(std::shared_ptr<ClientConnection> self) {
  co_await drive();
  dead_ = true;
  streams_.clear();
  waiting_.clear();
  boost::system::error_code ignored;
  beast::get_lowest_layer(*owned_tls).socket().close(ignored);
  (void)self;  // kept alive until here
}

bool Connection::usable() const {
  if (dead_ || closing_ || goaway_ || session_ == nullptr) return false;
  if (nghttp2_session_check_request_allowed(session_) == 0) return false;
  uint32_t limit =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return openStreams() < limit;
}

std::optional<ClientStream> Connection::open() {
  if (!usable()) return std::nullopt;
  auto state = std::make_shared<ClientStreamState>(executor_, options_.stream_buffer_bytes);
  waiting_.push_back(state);
  spawn(sendRequest(state));
  return ClientStream(state, shared_from_this());
}

void Connection::abort(ClientStreamState& state) {
  state.closed = true;
  size_t unread = state.bridge.far().out().abort(net::error::connection_reset);
  if (unread > 0 && session_ != nullptr) nghttp2_session_consume_connection(session_, unread);
  state.bridge.far().in().abort(net::error::connection_reset);
  state.body.drained.cancel();
}

void Connection::abandon(ClientStreamState& state) {
  if (state.closed) return;
  if (state.id >= 0 && !dead_) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, state.id, NGHTTP2_CANCEL);
    signalWrite();
  }
  abort(state);
}

void Connection::abortAll() {
  for (auto& [id, state] : streams_) abort(*state);
  for (auto& state : waiting_) abort(*state);
}

net::awaitable<void> Connection::sendRequest(std::shared_ptr<ClientStreamState> state) {
  BridgeEnd& far = state->bridge.far();
  beast::flat_buffer buffer;
  http::request_parser<http::buffer_body> parser;
  parser.header_limit(options_.max_header_bytes);
  parser.body_limit(kUnlimitedBody);
  boost::system::error_code ec;
  co_await http::async_read_header(far, buffer, parser, net::redirect_error(use_awaitable, ec));
  waiting_.remove(state);
  if (ec || state->closed || closing_ || dead_) {
    abort(*state);
    co_return;
  }
  const auto& req = parser.get();
  // Fields the parser adds past these are a chunked body's trailers, sent in a HEADERS frame.
  const size_t head_fields = fieldCount(req.base());
  std::string method(sv(req.method_string()));
  detail::Fields head;
  head.emplace_back(":method", method);
  head.emplace_back(":scheme", "https");
  head.emplace_back(":authority", std::string(sv(req[http::field::host])));
  head.emplace_back(":path", std::string(sv(req.target())));
  for (const auto& field : req) {
    std::string name = asciiLowerCopy(sv(field.name_string()));
    if (name == "te" && teListsTrailers(sv(field.value()))) {
      head.emplace_back("te", "trailers");  // the one TE HTTP/2 carries (gRPC needs it)
      continue;
    }
    if (hopByHop(name)) continue;
    head.emplace_back(std::move(name), std::string(sv(field.value())));
  }
  state->head_request = method == "HEAD";
  bool has_body = !parser.is_done();
  std::vector<nghttp2_nv> nva = nameValues(head);
  nghttp2_data_provider body = provider(state->body);
  int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                      has_body ? &body : nullptr, nullptr);
  if (id < 0) {
    logger("egress")->debug("h2: cannot submit request: {}", nghttp2_strerror(id));
    abort(*state);
    co_return;
  }
  state->id = id;
  streams_[id] = state;
  far.out().on_credit = [this, id](size_t credit) {
    if (dead_) return;
    nghttp2_session_consume(session_, id, credit);
    signalWrite();
  };
  signalWrite();
  // Beast reads only what the buffer has room for (512 bytes at least): without room for a chunk
  // every body piece would leave as its own small DATA frame.
  if (has_body) buffer.reserve(kReadChunk);
  std::array<char, kReadChunk> chunk;
  while (has_body && !parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    co_await http::async_read_some(far, buffer, parser, net::redirect_error(use_awaitable, ec));
    if (ec && ec != http::error::need_buffer) {
      if (!state->closed) abandon(*state);  // the caller stopped mid-body
      co_return;
    }
    ec = {};
    size_t n = chunk.size() - parser.get().body().size;
    if (n == 0) continue;
    bool sent = co_await append(id, state->body, std::string_view(chunk.data(), n),
                                options_.stream_buffer_bytes, state->closed);
    if (!sent) co_return;
  }
  if (has_body && !state->closed) {
    if (parser.chunked()) state->body.trailers = trailersOf(parser.get().base(), head_fields);
    finish(id, state->body);
  }
}

void Connection::startResponse(ClientStreamState& state, bool end_stream) {
  state.response_started = true;
  bool has_length = false;
  std::string head = "HTTP/1.1 ";
  head += std::to_string(state.status);
  head += ' ';
  std::string_view reason = sv(http::obsolete_reason(static_cast<http::status>(state.status)));
  head.append(reason.empty() ? "Unknown" : reason);
  head += "\r\n";
  for (const auto& [name, value] : state.fields) {
    if (hopByHop(name)) continue;
    if (name == "content-length") has_length = true;
    head.append(name).append(": ").append(value).append("\r\n");
  }
  bool bodiless = state.status == 204 || state.status == 304 || state.head_request;
  if (!has_length && !bodiless) {
    if (end_stream) {
      head += "content-length: 0\r\n";
    } else {
      head += "transfer-encoding: chunked\r\n";
      state.response_chunked = true;
    }
  }
  head += "connection: close\r\n\r\n";
  state.fields.clear();
  state.bridge.far().out().push(head);
}

void Connection::endResponse(ClientStreamState& state) {
  if (state.response_ended) return;
  state.response_ended = true;
  // The last chunk carries the trailers (a response with a content-length cannot: dropped).
  if (state.response_chunked) state.bridge.far().out().push(lastChunk(state.trailers));
  state.trailers.clear();
  state.bridge.far().out().close(net::error::eof);
}

int Connection::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                         size_t name_len, const uint8_t* value, size_t value_len, uint8_t,
                         void* self) {
  auto* conn = static_cast<Connection*>(self);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  ClientStreamState* state = conn->find(frame->hd.stream_id);
  if (state == nullptr || state->response_ended) return 0;
  state->header_bytes += name_len + value_len + 32;  // head and trailers share the bound
  if (state->header_bytes > conn->options_.max_header_bytes) {
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // resets the stream
  }
  std::string_view field_name(reinterpret_cast<const char*>(name), name_len);
  std::string_view field_value(reinterpret_cast<const char*>(value), value_len);
  if (state->response_started) {  // trailers; nghttp2 refused pseudo-headers in them
    state->trailers.emplace_back(std::string(field_name), std::string(field_value));
    return 0;
  }
  if (field_name == ":status") {
    int status = 0;
    for (char c : field_value) status = status * 10 + (c - '0');  // nghttp2 checked 3 digits
    state->status = status;
    return 0;
  }
  if (!field_name.empty() && field_name.front() == ':') return 0;
  state->fields.emplace_back(std::string(field_name), std::string(field_value));
  return 0;
}

int Connection::onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* self) {
  auto* conn = static_cast<Connection*>(self);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    conn->goaway_ = true;
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  ClientStreamState* state = conn->find(frame->hd.stream_id);
  if (state == nullptr || state->closed) return 0;
  bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && !state->response_started) {
    if (state->status >= 100 && state->status < 200) {  // interim: wait for the final head
      state->fields.clear();
      state->header_bytes = 0;
      state->status = 0;
      return 0;
    }
    conn->startResponse(*state, end_stream);
  }
  if (end_stream && state->response_started) conn->endResponse(*state);
  return 0;
}

int Connection::onDataChunk(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                            size_t len, void* self) {
  auto* conn = static_cast<Connection*>(self);
  ClientStreamState* state = conn->find(id);
  if (state == nullptr || state->closed || !state->response_started || state->head_request) {
    nghttp2_session_consume(session, id, len);
    return 0;
  }
  if (len == 0) return 0;
  pushBody(state->bridge.far().out(), std::string_view(reinterpret_cast<const char*>(data), len),
           state->response_chunked);
  return 0;
}

int Connection::onStreamClose(nghttp2_session*, int32_t id, uint32_t, void* self) {
  auto* conn = static_cast<Connection*>(self);
  auto it = conn->streams_.find(id);
  if (it == conn->streams_.end()) return 0;
  std::shared_ptr<ClientStreamState> state = it->second;
  conn->streams_.erase(it);
  if (state->response_ended) {
    // Complete: the caller reads what is buffered, then EOF. Only the request side ends.
    state->closed = true;
    state->bridge.far().in().abort(net::error::connection_reset);
    state->body.drained.cancel();
  } else {
    conn->abort(*state);  // reset or cut: the caller's read fails
  }
  return 0;
}

}  // namespace

std::shared_ptr<ClientConnection> ClientConnection::start(std::unique_ptr<TlsStream> tls,
                                                          std::shared_ptr<const void> keep_alive,
                                                          const ClientOptions& options) {
  auto executor = tls->get_executor();
  auto connection = std::make_shared<Connection>(std::move(tls), std::move(keep_alive), options);
  if (!connection->init()) {
    logger("egress")->warn("h2: cannot create an nghttp2 client session");
    return nullptr;
  }
  net::co_spawn(executor, connection->run(connection), net::detached);
  return connection;
}

ClientStream::ClientStream(std::shared_ptr<detail::ClientStreamState> state,
                           std::shared_ptr<ClientConnection> connection)
    : state_(std::move(state)), connection_(std::move(connection)) {}

ClientStream::ClientStream(ClientStream&& other) noexcept = default;

ClientStream& ClientStream::operator=(ClientStream&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    connection_ = std::move(other.connection_);
  }
  return *this;
}

ClientStream::~ClientStream() { release(); }

void ClientStream::release() {
  if (state_ && connection_) connection_->abandon(*state_);
  state_.reset();
  connection_.reset();
}

ClientStream::executor_type ClientStream::get_executor() const {
  return state_->bridge.near().get_executor();
}

BridgeEnd& ClientStream::end() { return state_->bridge.near(); }

}  // namespace clrk::egress::h2
