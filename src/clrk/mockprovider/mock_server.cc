// The socket side of MockServer: an Asio/Beast HTTP/1.1 server (optionally TLS) on its own
// io_context thread, handing each parsed request to the Dispatcher.
#include "clrk/mockprovider/mock_server.h"

#include "clrk/base/log.h"
#include "clrk/mockprovider/handlers.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

namespace clrk::mockprovider {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;

constexpr size_t kHeaderLimit = 64 * 1024;
constexpr uint64_t kBodyLimit = 64 * 1024 * 1024;
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr auto kIoTimeout = std::chrono::seconds(30);
constexpr int kMaxDelayMs = 30000;
constexpr int kMaxChunkDelayMs = 10000;

int delayHeader(const internal::Request& request, std::string_view name, int cap) {
  std::string value = request.header(name);
  if (value.empty()) return 0;
  try {
    int ms = std::stoi(value);
    return ms < 0 ? 0 : std::min(ms, cap);
  } catch (...) {
    return 0;
  }
}

Result<tcp::endpoint> parseListen(const std::string& listen) {
  std::string host;
  std::string port_text;
  if (!listen.empty() && listen[0] == '[') {
    size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':') {
      return invalidArgument("listen address \"" + listen + "\" must look like [::1]:PORT");
    }
    host = listen.substr(1, close - 1);
    port_text = listen.substr(close + 2);
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos) {
      return invalidArgument("listen address \"" + listen + "\" must be HOST:PORT");
    }
    host = listen.substr(0, colon);
    port_text = listen.substr(colon + 1);
  }
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  error_code ec;
  net::ip::address address = net::ip::make_address(host, ec);
  if (ec) return invalidArgument("listen address \"" + listen + "\": bad IP \"" + host + "\"");
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port_text) > 65535) {
    return invalidArgument("listen address \"" + listen + "\": bad port \"" + port_text + "\"");
  }
  return tcp::endpoint(address, static_cast<uint16_t>(std::stoi(port_text)));
}

int selectAlpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* /*arg*/) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof(kHttp11), in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

}  // namespace

class MockServer::Impl {
 public:
  explicit Impl(MockOptions options) : dispatcher_(std::move(options)) {}

  // Member order matters: members are destroyed in reverse order, so everything a handler or
  // coroutine frame can reach (the dispatcher, the TLS context, the live-connection registry)
  // is declared before the io_context and outlives anything still queued in it, and the
  // io_context outlives the acceptor registered with it.
  internal::Dispatcher dispatcher_;
  std::optional<ssl::context> ssl_;
  // Connections and delay timers in use, so stop() can cancel them. Touched only on the io thread
  // (and by frames destroyed in ~io_context after the thread has ended).
  std::set<beast::tcp_stream*> streams_;
  std::set<net::steady_timer*> timers_;
  net::io_context ioc_{1};
  tcp::acceptor acceptor_{ioc_};
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::mutex run_mutex_;
  std::condition_variable run_cv_;
  bool run_done_ = false;  // guarded by run_mutex_: the io thread has left ioc_.run()
  uint16_t port_ = 0;
  std::string base_url_;

  // Runs on the io thread: closes the listener and every connection and cancels delay timers,
  // so every coroutine finishes and ioc_.run() returns by itself.
  void shutdownOnIoThread();

  net::awaitable<void> acceptLoop();
  net::awaitable<void> session(tcp::socket socket);
  template <class Stream>
  net::awaitable<void> serve(Stream& stream);
  template <class Stream>
  net::awaitable<bool> respond(Stream& stream, const http::request<http::string_body>& req,
                               internal::Request request);
};

namespace {

// Registers a pointer in one of Impl's sets for the lifetime of a coroutine local.
template <class T>
class Registration {
 public:
  Registration(std::set<T*>& set, T* item) : set_(set), item_(item) { set_.insert(item_); }
  ~Registration() { set_.erase(item_); }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

 private:
  std::set<T*>& set_;
  T* item_;
};

}  // namespace

void MockServer::Impl::shutdownOnIoThread() {
  error_code ec;
  acceptor_.close(ec);
  for (beast::tcp_stream* stream : streams_) {
    stream->socket().shutdown(tcp::socket::shutdown_both, ec);
    stream->socket().close(ec);
    stream->cancel();
  }
  for (net::steady_timer* timer : timers_) timer->cancel();
}

net::awaitable<void> MockServer::Impl::acceptLoop() {
  for (;;) {
    error_code ec;
    tcp::socket socket =
        co_await acceptor_.async_accept(net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (!acceptor_.is_open() || ec == net::error::operation_aborted) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    if (stopped_.load()) co_return;  // accepted while stop() was on its way: drop it
    socket.set_option(tcp::no_delay(true), ec);
    net::co_spawn(ioc_, session(std::move(socket)), net::detached);
  }
}

net::awaitable<void> MockServer::Impl::session(tcp::socket socket) {
  try {
    beast::tcp_stream stream(std::move(socket));
    if (!ssl_) {
      Registration<beast::tcp_stream> registered(streams_, &stream);
      co_await serve(stream);
      error_code ec;
      stream.socket().shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> tls(std::move(stream), *ssl_);
    Registration<beast::tcp_stream> registered(streams_, &beast::get_lowest_layer(tls));
    beast::get_lowest_layer(tls).expires_after(kIoTimeout);
    error_code ec;
    co_await tls.async_handshake(ssl::stream_base::server,
                                 net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return;
    co_await serve(tls);
    beast::get_lowest_layer(tls).expires_after(std::chrono::seconds(2));
    co_await tls.async_shutdown(net::redirect_error(net::use_awaitable, ec));
  } catch (const std::exception& e) {
    logger("mockprovider")->warn("mock provider: connection failed: {}", e.what());
  }
}

template <class Stream>
net::awaitable<void> MockServer::Impl::serve(Stream& stream) {
  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(kBodyLimit);
    error_code ec;
    beast::get_lowest_layer(stream).expires_after(kIdleTimeout);
    co_await http::async_read_header(stream, buffer, parser,
                                     net::redirect_error(net::use_awaitable, ec));
    if (!ec && !parser.is_done()) {
      auto expect = parser.get()[http::field::expect];
      if (beast::iequals(expect, "100-continue")) {
        http::response<http::empty_body> cont{http::status::continue_, 11};
        beast::get_lowest_layer(stream).expires_after(kIoTimeout);
        co_await http::async_write(stream, cont, net::redirect_error(net::use_awaitable, ec));
      }
      if (!ec) {
        beast::get_lowest_layer(stream).expires_after(kIoTimeout);
        co_await http::async_read(stream, buffer, parser,
                                  net::redirect_error(net::use_awaitable, ec));
      }
    }
    if (ec == http::error::end_of_stream) co_return;
    if (ec) {
      bool parse_error = ec.category() == http::make_error_code(http::error::bad_target).category();
      if (!parse_error) co_return;
      // Malformed or oversized request: answer once in plain JSON, then close.
      int status = (ec == http::error::body_limit)     ? 413
                   : (ec == http::error::header_limit) ? 431
                                                       : 400;
      http::response<http::string_body> res{static_cast<http::status>(status), 11};
      res.set(http::field::content_type, "application/json");
      res.set("x-mock-name", dispatcher_.name());
      res.body() = R"({"error":{"message":"malformed HTTP request: )" + ec.message() +
                   R"(","type":"invalid_request_error","param":null,"code":null}})";
      res.keep_alive(false);
      res.prepare_payload();
      beast::get_lowest_layer(stream).expires_after(kIoTimeout);
      co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
      co_return;
    }
    const http::request<http::string_body>& req = parser.get();
    internal::Request request;
    request.method = std::string(req.method_string());
    request.target = std::string(req.target());
    request.host = std::string(req[http::field::host]);
    for (const auto& field : req) {
      request.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    request.body = req.body();
    bool keep_going = co_await respond(stream, req, std::move(request));
    if (!keep_going) co_return;
  }
}

template <class Stream>
net::awaitable<bool> MockServer::Impl::respond(Stream& stream,
                                               const http::request<http::string_body>& req,
                                               internal::Request request) {
  internal::Response response = dispatcher_.handle(request);
  error_code ec;
  int delay_ms = delayHeader(request, "x-mock-delay-ms", kMaxDelayMs);
  int chunk_delay_ms = delayHeader(request, "x-mock-chunk-delay-ms", kMaxChunkDelayMs);
  net::steady_timer timer(ioc_);
  Registration<net::steady_timer> registered(timers_, &timer);
  if (delay_ms > 0) {
    beast::get_lowest_layer(stream).expires_never();
    timer.expires_after(std::chrono::milliseconds(delay_ms));
    co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
  bool keep_alive = req.keep_alive();
  auto status = static_cast<unsigned>(response.status);
  bool unknown_reason =
      http::obsolete_reason(static_cast<http::status>(status)) == "<unknown-status>";
  bool chunked = response.streaming && req.version() >= 11;
  if (!chunked) {
    http::response<http::string_body> res;
    res.version(req.version());
    res.result(status);
    if (unknown_reason) res.reason("Mock Status");
    for (const auto& [name, value] : response.headers) res.insert(name, value);
    if (response.streaming) {
      for (const std::string& chunk : response.chunks) res.body() += chunk;
    } else {
      res.body() = std::move(response.body);
    }
    res.keep_alive(keep_alive);
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(kIoTimeout);
    co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
    co_return !ec && keep_alive;
  }
  http::response<http::empty_body> res;
  res.version(11);
  res.result(status);
  if (unknown_reason) res.reason("Mock Status");
  for (const auto& [name, value] : response.headers) res.insert(name, value);
  res.keep_alive(keep_alive);
  res.chunked(true);
  http::response_serializer<http::empty_body> serializer{res};
  beast::get_lowest_layer(stream).expires_after(kIoTimeout);
  co_await http::async_write_header(stream, serializer,
                                    net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return false;
  for (size_t chunk_idx = 0; chunk_idx < response.chunks.size(); ++chunk_idx) {
    if (chunk_idx > 0 && chunk_delay_ms > 0) {
      beast::get_lowest_layer(stream).expires_never();
      timer.expires_after(std::chrono::milliseconds(chunk_delay_ms));
      co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    }
    if (response.chunks[chunk_idx].empty()) continue;  // an empty chunk would end the body
    beast::get_lowest_layer(stream).expires_after(kIoTimeout);
    co_await net::async_write(stream, http::make_chunk(net::buffer(response.chunks[chunk_idx])),
                              net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return false;
  }
  beast::get_lowest_layer(stream).expires_after(kIoTimeout);
  co_await net::async_write(stream, http::make_chunk_last(),
                            net::redirect_error(net::use_awaitable, ec));
  co_return !ec && keep_alive;
}

MockServer::MockServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MockServer::~MockServer() { stop(); }

Result<std::unique_ptr<MockServer>> MockServer::start(MockOptions options) {
  CLRK_ASSIGN_OR_RETURN(tcp::endpoint endpoint, parseListen(options.listen));
  bool tls = !options.tls_cert_pem.empty() || !options.tls_key_pem.empty();
  if (tls && (options.tls_cert_pem.empty() || options.tls_key_pem.empty())) {
    return invalidArgument("TLS needs both a certificate and a private key");
  }
  if (options.fail_status != 0 && (options.fail_status < 100 || options.fail_status > 599)) {
    return invalidArgument("fail_status must be 0 or 100..599, got " +
                           std::to_string(options.fail_status));
  }
  auto impl = std::make_unique<Impl>(options);
  error_code ec;
  if (tls) {
    impl->ssl_.emplace(ssl::context::tls_server);
    ssl::context& context = *impl->ssl_;
    context.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                            ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                            ssl::context::no_tlsv1_1,
                        ec);
    context.use_certificate_chain(net::buffer(options.tls_cert_pem), ec);
    if (ec) return invalidArgument("TLS certificate is not usable PEM: " + ec.message());
    context.use_private_key(net::buffer(options.tls_key_pem), ssl::context::pem, ec);
    if (ec) return invalidArgument("TLS private key is not usable PEM: " + ec.message());
    if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
      return invalidArgument("TLS private key does not match the certificate");
    }
    SSL_CTX_set_alpn_select_cb(context.native_handle(), selectAlpn, nullptr);
  }
  impl->acceptor_.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor_.bind(endpoint, ec);
  if (!ec) impl->acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status(Code::Unavailable,
                  "mock provider cannot listen on " + options.listen + ": " + ec.message());
  }
  impl->port_ = impl->acceptor_.local_endpoint().port();
  net::ip::address address = endpoint.address();
  if (address.is_unspecified()) {
    address = address.is_v6() ? net::ip::address(net::ip::address_v6::loopback())
                              : net::ip::address(net::ip::address_v4::loopback());
  }
  std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  impl->base_url_ = (tls ? "https://" : "http://") + host + ":" + std::to_string(impl->port_);
  net::co_spawn(impl->ioc_, impl->acceptLoop(), net::detached);
  Impl* raw = impl.get();
  impl->thread_ = std::thread([raw] {
    try {
      raw->ioc_.run();
    } catch (const std::exception& e) {
      logger("mockprovider")->error("mock provider: io thread stopped: {}", e.what());
    }
    std::lock_guard lock(raw->run_mutex_);
    raw->run_done_ = true;
    raw->run_cv_.notify_all();
  });
  return std::unique_ptr<MockServer>(new MockServer(std::move(impl)));
}

void MockServer::stop() {
  if (!impl_ || impl_->stopped_.exchange(true)) return;
  Impl* impl = impl_.get();
  // Graceful first: with the listener and every connection closed, each coroutine runs to its
  // end on the io thread (its frame and handler memory released there, while the Impl is whole)
  // and ioc_.run() returns once no work is left.
  net::post(impl->ioc_, [impl] { impl->shutdownOnIoThread(); });
  {
    std::unique_lock lock(impl->run_mutex_);
    if (!impl->run_cv_.wait_for(lock, std::chrono::seconds(1),
                                [impl] { return impl->run_done_; })) {
      // Something still holds work (should not happen): stop the loop; what is left is destroyed
      // with the io_context, before the dispatcher and the TLS context.
      impl->ioc_.stop();
    }
  }
  if (impl->thread_.joinable()) impl->thread_.join();
}

uint16_t MockServer::port() const { return impl_->port_; }

std::string MockServer::baseUrl() const { return impl_->base_url_; }

std::vector<RecordedRequest> MockServer::requests() const { return impl_->dispatcher_.requests(); }

void MockServer::clearRequests() { impl_->dispatcher_.clearRequests(); }

void MockServer::setFailStatus(int status) { impl_->dispatcher_.setFailStatus(status); }

}  // namespace clrk::mockprovider
