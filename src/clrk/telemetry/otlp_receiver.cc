#include "clrk/telemetry/otlp_receiver.h"

#include "clrk/base/ascii.h"
#include "clrk/base/log.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include <atomic>
#include <limits>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>
#include <zlib.h>

namespace clrk::telemetry {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using Json = nlohmann::json;

constexpr auto kRequestTimeout = std::chrono::seconds(30);
constexpr auto kIdleTimeout = std::chrono::seconds(120);
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr size_t kMaxConnections = 1024;

std::shared_ptr<spdlog::logger> log() {
  static std::shared_ptr<spdlog::logger> instance = clrk::logger("telemetry");
  return instance;
}

// google.rpc.Status codes used in error bodies.
constexpr int kRpcInvalidArgument = 3;
constexpr int kRpcUnauthenticated = 16;
constexpr int kRpcUnavailable = 14;
constexpr int kRpcUnimplemented = 12;
constexpr int kRpcResourceExhausted = 8;
constexpr int kRpcNotFound = 5;

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

void appendVarint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

Reply errorReply(int status, int rpc_code, const std::string& message,
                 std::optional<OtlpEncoding> encoding) {
  Reply reply;
  reply.status = status;
  if (encoding == OtlpEncoding::Protobuf) {
    reply.content_type = "application/x-protobuf";
    appendVarint(reply.body, 1 << 3);
    appendVarint(reply.body, static_cast<uint64_t>(rpc_code));
    appendVarint(reply.body, 2 << 3 | 2);
    appendVarint(reply.body, message.size());
    reply.body += message;
  } else {
    reply.body = Json{{"code", rpc_code}, {"message", message}}.dump(
                     -1, ' ', false, Json::error_handler_t::replace) +
                 "\n";
  }
  return reply;
}

std::string lowerTrimmed(std::string_view text) {
  return asciiLowerCopy(trimOptionalWhitespace(text));
}

// The encoding named by a Content-Type value (parameters such as charset ignored).
std::optional<OtlpEncoding> encodingOf(std::string_view content_type) {
  std::string media = lowerTrimmed(content_type.substr(0, content_type.find(';')));
  if (media == "application/json") return OtlpEncoding::Json;
  if (media == "application/x-protobuf") return OtlpEncoding::Protobuf;
  return std::nullopt;
}

// Inflates a gzip body into `out`, at most `limit` bytes (`too_large` set past it).
// InvalidArgument on a corrupt or truncated stream.
Status gunzip(std::string_view in, size_t limit, std::string& out, bool& too_large) {
  z_stream stream{};
  if (inflateInit2(&stream, 16 + MAX_WBITS) != Z_OK) return internalError("zlib init failed");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  stream.avail_in = static_cast<uInt>(in.size());  // in.size() <= max_body_bytes < 4 GiB
  out.clear();
  char chunk[64 * 1024];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof chunk;
    rc = inflate(&stream, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      std::string why = stream.msg != nullptr ? stream.msg : "truncated stream";
      inflateEnd(&stream);
      return invalidArgument("invalid gzip body: " + why);
    }
    size_t produced = sizeof chunk - stream.avail_out;
    if (out.size() + produced > limit) {
      inflateEnd(&stream);
      too_large = true;
      return invalidArgument("gzip body inflates past " + std::to_string(limit) + " bytes");
    }
    out.append(chunk, produced);
    if (rc == Z_OK && produced == 0 && stream.avail_in == 0) {
      inflateEnd(&stream);
      return invalidArgument("invalid gzip body: truncated stream");
    }
  }
  bool trailing = stream.avail_in != 0;
  inflateEnd(&stream);
  if (trailing) return invalidArgument("invalid gzip body: data after the gzip stream");
  return {};
}

std::string_view view(beast::string_view text) { return {text.data(), text.size()}; }

bool constantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

class OtlpReceiver::Impl {
 public:
  Impl(OtlpReceiverOptions options, Sink& sink)
      : options_(std::move(options)),
        sink_(sink),
        ssl_(ssl::context::tls_server),
        acceptor_(ioc_) {}

  ~Impl() { stop(); }

  Status init() {
    if (options_.io_threads < 1) return invalidArgument("otlp receiver: io_threads must be >= 1");
    error_code ec;
    address_ = net::ip::make_address(options_.bind, ec);
    if (ec) return invalidArgument("otlp receiver: bind \"" + options_.bind + "\": not an IP");
    if (options_.cert_pem.empty() != options_.key_pem.empty()) {
      return invalidArgument("otlp receiver: TLS needs both a certificate and a key");
    }
    tls_ = !options_.cert_pem.empty();
    if (!tls_) return {};
    ssl_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ssl_.use_certificate_chain(net::buffer(options_.cert_pem), ec);
    if (ec) return invalidArgument("otlp receiver: certificate: " + ec.message());
    ssl_.use_private_key(net::buffer(options_.key_pem), ssl::context::pem, ec);
    if (ec) return invalidArgument("otlp receiver: key: " + ec.message());
    SSL_CTX_set_mode(ssl_.native_handle(), SSL_MODE_RELEASE_BUFFERS);
    return {};
  }

  Status start() {
    if (started_.exchange(true)) return internalError("otlp receiver: start() called twice");
    tcp::endpoint endpoint(address_, options_.port);
    error_code ec;
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status(Code::Unavailable, "otlp receiver: listen on " + options_.bind + ":" +
                                           std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint(ec).port();
    net::co_spawn(ioc_, acceptLoop(), net::detached);
    for (int thread_idx = 0; thread_idx < options_.io_threads; ++thread_idx) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    log()->info("otlp receiver listening on {}://{}:{}", tls_ ? "https" : "http", options_.bind,
                port_.load());
    return {};
  }

  void stop() {
    if (stopped_.exchange(true) || !started_.load()) {
      joinThreads();
      return;
    }
    net::post(ioc_, [this] {
      error_code ec;
      acceptor_.close(ec);
      std::lock_guard lock(streams_mutex_);
      for (beast::tcp_stream* stream : streams_) {
        stream->socket().shutdown(tcp::socket::shutdown_both, ec);
        stream->socket().close(ec);
      }
    });
    // The sessions unwind on their closed sockets (a sink call in progress finishes first);
    // whatever has not ended after a grace period is abandoned with the loops.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (active_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ioc_.stop();
    joinThreads();
    // The posted close may not have run before ioc_.stop(); nothing else runs now.
    error_code ec;
    acceptor_.close(ec);
    std::lock_guard lock(streams_mutex_);
    for (beast::tcp_stream* stream : streams_) stream->socket().close(ec);
  }

  uint16_t port() const { return port_.load(); }

  OtlpReceiverStats stats() const {
    OtlpReceiverStats out;
    out.requests = requests_.load();
    out.accepted = accepted_.load();
    out.records = records_.load();
    out.unauthorized = unauthorized_.load();
    out.bad_requests = bad_requests_.load();
    out.too_large = too_large_.load();
    out.unsupported = unsupported_.load();
    out.sink_errors = sink_errors_.load();
    return out;
  }

 private:
  void joinThreads() {
    std::lock_guard lock(join_mutex_);
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }

  net::awaitable<void> acceptLoop() {
    for (;;) {
      error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(net::redirect_error(net::use_awaitable, ec));
      if (stopped_.load() || !acceptor_.is_open()) co_return;
      if (ec) continue;
      if (active_.load() >= kMaxConnections) continue;  // connection cap: drop
      if (tls_) {
        net::co_spawn(ioc_, tlsSession(std::move(socket)), net::detached);
      } else {
        net::co_spawn(ioc_, plainSession(std::move(socket)), net::detached);
      }
    }
  }

  // Registers a connection so stop() can close it.
  struct Tracked {
    Impl& impl;
    beast::tcp_stream* stream;
    Tracked(Impl& i, beast::tcp_stream* s) : impl(i), stream(s) {
      ++impl.active_;
      std::lock_guard lock(impl.streams_mutex_);
      impl.streams_.insert(stream);
    }
    ~Tracked() {
      {
        std::lock_guard lock(impl.streams_mutex_);
        impl.streams_.erase(stream);
      }
      --impl.active_;
    }
    Tracked(const Tracked&) = delete;
    Tracked& operator=(const Tracked&) = delete;
  };

  net::awaitable<void> plainSession(tcp::socket socket) {
    try {
      beast::tcp_stream stream(std::move(socket));
      Tracked tracked(*this, &stream);
      if (stopped_.load()) co_return;
      co_await serve(stream);
      error_code ec;
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    } catch (const std::exception& e) {
      log()->debug("otlp receiver: connection ended: {}", e.what());
    }
  }

  net::awaitable<void> tlsSession(tcp::socket socket) {
    try {
      TlsStream stream(beast::tcp_stream(std::move(socket)), ssl_);
      Tracked tracked(*this, &beast::get_lowest_layer(stream));
      if (stopped_.load()) co_return;
      beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
      error_code ec;
      co_await stream.async_handshake(ssl::stream_base::server,
                                      net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;
      co_await serve(stream);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
    } catch (const std::exception& e) {
      log()->debug("otlp receiver: TLS connection ended: {}", e.what());
    }
  }

  // Serves requests on one connection until it closes or a reply ends it.
  template <typename Stream>
  net::awaitable<void> serve(Stream& stream) {
    beast::flat_buffer buffer;
    error_code ec;
    while (!stopped_.load()) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(kHeaderLimit);
      // No limit while the head is read: checkHead() answers a Content-Length over the limit
      // with a 413; the limit applies from the body on (chunked bodies).
      parser.body_limit(std::numeric_limits<uint64_t>::max());
      beast::get_lowest_layer(stream).expires_after(kIdleTimeout);
      co_await http::async_read_header(stream, buffer, parser,
                                       net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        if (ec == http::error::header_limit) {
          co_await write(
              stream,
              errorReply(431, kRpcInvalidArgument, "request header too large", std::nullopt),
              false);
        } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                   ec != http::error::end_of_stream && ec != http::error::partial_message) {
          co_await write(stream,
                         errorReply(400, kRpcInvalidArgument,
                                    "malformed HTTP request: " + ec.message(), std::nullopt),
                         false);
        }
        co_return;
      }
      ++requests_;
      const auto& head = parser.get();
      std::optional<Reply> early = checkHead(head, contentLength(parser));
      if (early) {
        // The body is not parsed: answer, drop what the client still sends, and close.
        co_await write(stream, *early, false);
        if (!parser.is_done()) co_await drain(stream, buffer, contentLength(parser));
        co_return;
      }
      if (head[http::field::expect] == "100-continue") {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
        co_await http::async_write(stream, go_on, net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return;
      }
      parser.body_limit(options_.max_body_bytes);
      if (!parser.is_done()) {
        beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
        co_await http::async_read(stream, buffer, parser,
                                  net::redirect_error(net::use_awaitable, ec));
      }
      std::optional<OtlpEncoding> encoding =
          encodingOf(view(parser.get()[http::field::content_type]));
      if (ec == http::error::body_limit) {
        ++too_large_;
        co_await write(stream, tooLarge(encoding), false);
        co_await drain(stream, buffer, std::nullopt);
        co_return;
      }
      if (ec) co_return;
      auto request = parser.release();
      bool keep_alive = request.keep_alive() && !stopped_.load();
      Reply reply = handle(request, *encoding);
      if (!co_await write(stream, reply, keep_alive) || !keep_alive) co_return;
    }
  }

  Reply tooLarge(std::optional<OtlpEncoding> encoding) const {
    return errorReply(
        413, kRpcResourceExhausted,
        "request body larger than " + std::to_string(options_.max_body_bytes) + " bytes", encoding);
  }

  static std::optional<uint64_t> contentLength(
      const http::request_parser<http::string_body>& parser) {
    auto length = parser.content_length();
    return length ? std::optional<uint64_t>(*length) : std::nullopt;
  }

  // Reads (and drops) the rest of a body the server does not parse, bounded by `content_length`
  // (unknown: chunked) and twice the body limit, so the client reads the answer instead of
  // being reset mid-write.
  template <typename Stream>
  net::awaitable<void> drain(Stream& stream, beast::flat_buffer& buffer,
                             std::optional<uint64_t> content_length) {
    uint64_t cap = 2 * uint64_t{options_.max_body_bytes} + (64u << 10);
    uint64_t want = content_length ? std::min(*content_length, cap) : cap;
    uint64_t swallowed = buffer.size();
    buffer.consume(buffer.size());
    std::vector<char> sink(64 * 1024);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    while (swallowed < want && !stopped_.load()) {
      error_code ec;
      size_t n = co_await stream.async_read_some(net::buffer(sink),
                                                 net::redirect_error(net::use_awaitable, ec));
      if (ec) break;
      swallowed += n;
    }
  }

  // Checks what the head alone decides: the reply, or nullopt to read the body.
  std::optional<Reply> checkHead(const http::request_parser<http::string_body>::value_type& head,
                                 std::optional<uint64_t> content_length) {
    std::optional<OtlpEncoding> encoding = encodingOf(view(head[http::field::content_type]));
    if (!options_.token.empty() && !authorized(head)) {
      ++unauthorized_;
      return errorReply(401, kRpcUnauthenticated, "missing or wrong bearer token", encoding);
    }
    std::string_view target(head.target().data(), head.target().size());
    target = target.substr(0, target.find('?'));
    if (target != "/v1/traces" && target != "/v1/logs") {
      ++bad_requests_;
      return errorReply(404, kRpcNotFound, "no such path; want /v1/traces or /v1/logs", encoding);
    }
    if (head.method() != http::verb::post) {
      ++bad_requests_;
      return errorReply(405, kRpcUnimplemented, "want POST", encoding);
    }
    if (!encoding) {
      ++unsupported_;
      return errorReply(415, kRpcInvalidArgument,
                        "content type must be application/json or application/x-protobuf",
                        std::nullopt);
    }
    std::string content_encoding = lowerTrimmed(view(head[http::field::content_encoding]));
    if (!content_encoding.empty() && content_encoding != "gzip" && content_encoding != "identity") {
      ++unsupported_;
      return errorReply(415, kRpcInvalidArgument,
                        "content encoding must be gzip or identity, not \"" +
                            content_encoding.substr(0, 40) + "\"",
                        encoding);
    }
    if (content_length && *content_length > uint64_t{options_.max_body_bytes}) {
      ++too_large_;
      return tooLarge(encoding);
    }
    return std::nullopt;
  }

  bool authorized(const http::request_parser<http::string_body>::value_type& head) const {
    auto header = head[http::field::authorization];
    std::string_view value(header.data(), header.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.size() <= kBearer.size() ||
        !beast::iequals(beast::string_view(value.data(), kBearer.size()),
                        beast::string_view(kBearer.data(), kBearer.size()))) {
      return false;
    }
    return constantTimeEquals(value.substr(kBearer.size()), options_.token);
  }

  Reply handle(http::request<http::string_body>& request, OtlpEncoding encoding) {
    std::string_view target(request.target().data(), request.target().size());
    OtlpSignal signal =
        target.substr(0, target.find('?')) == "/v1/logs" ? OtlpSignal::Logs : OtlpSignal::Traces;
    std::string_view body = request.body();
    std::string inflated;
    if (lowerTrimmed(view(request[http::field::content_encoding])) == "gzip") {
      bool inflated_too_large = false;
      Status status = gunzip(body, options_.max_body_bytes, inflated, inflated_too_large);
      if (inflated_too_large) {
        ++too_large_;
        return tooLarge(encoding);
      }
      if (!status.ok()) {
        ++bad_requests_;
        return errorReply(400, kRpcInvalidArgument, status.message(), encoding);
      }
      body = inflated;
    }
    auto records = decodeOtlp(signal, encoding, body, options_.limits);
    if (!records.ok()) {
      ++bad_requests_;
      log()->debug("otlp receiver: rejected a request: {}", records.status().message());
      return errorReply(400, kRpcInvalidArgument, records.status().message(), encoding);
    }
    if (!records->empty()) {
      Status delivered;
      {
        std::lock_guard lock(sink_mutex_);
        delivered = sink_.deliver(*records);
      }
      if (!delivered.ok()) {
        ++sink_errors_;
        log()->warn("otlp receiver: sink {} refused {} records: {}", sink_.name(), records->size(),
                    delivered.message());
        return errorReply(503, kRpcUnavailable, "records not stored: " + delivered.message(),
                          encoding);
      }
    }
    ++accepted_;
    records_ += records->size();
    Reply reply;
    reply.body = emptyExportResponse(encoding);
    reply.content_type =
        encoding == OtlpEncoding::Json ? "application/json" : "application/x-protobuf";
    return reply;
  }

  template <typename Stream>
  net::awaitable<bool> write(Stream& stream, const Reply& reply, bool keep_alive) {
    http::response<http::string_body> response{static_cast<http::status>(reply.status), 11};
    response.set(http::field::content_type, reply.content_type);
    response.set(http::field::server, "clrk-otlp-receiver");
    if (reply.status == 401) response.set(http::field::www_authenticate, "Bearer");
    if (reply.status == 503) response.set(http::field::retry_after, "1");
    response.body() = reply.body;
    response.keep_alive(keep_alive);
    response.prepare_payload();
    error_code ec;
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    co_await http::async_write(stream, response, net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }

  OtlpReceiverOptions options_;
  Sink& sink_;
  std::mutex sink_mutex_;
  net::io_context ioc_;
  ssl::context ssl_;
  tcp::acceptor acceptor_;
  net::ip::address address_;
  bool tls_ = false;
  std::vector<std::thread> threads_;
  std::mutex join_mutex_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<uint16_t> port_{0};
  std::atomic<size_t> active_{0};
  std::mutex streams_mutex_;
  std::set<beast::tcp_stream*> streams_;

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> records_{0};
  std::atomic<uint64_t> unauthorized_{0};
  std::atomic<uint64_t> bad_requests_{0};
  std::atomic<uint64_t> too_large_{0};
  std::atomic<uint64_t> unsupported_{0};
  std::atomic<uint64_t> sink_errors_{0};
};

Result<std::unique_ptr<OtlpReceiver>> OtlpReceiver::create(OtlpReceiverOptions options,
                                                           Sink& sink) {
  auto impl = std::make_unique<Impl>(std::move(options), sink);
  CLRK_RETURN_IF_ERROR(impl->init());
  return std::unique_ptr<OtlpReceiver>(new OtlpReceiver(std::move(impl)));
}

OtlpReceiver::OtlpReceiver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OtlpReceiver::~OtlpReceiver() = default;

Status OtlpReceiver::start() { return impl_->start(); }
void OtlpReceiver::stop() { impl_->stop(); }
uint16_t OtlpReceiver::port() const { return impl_->port(); }
OtlpReceiverStats OtlpReceiver::stats() const { return impl_->stats(); }

}  // namespace clrk::telemetry
