#include "clrk/apiserver/http_server.h"

#include "clrk/base/ascii.h"
#include "clrk/base/log.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <thread>

namespace clrk::apiserver {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

namespace {

std::shared_ptr<spdlog::logger> httpLog() {
  static const auto kLogger = logger("apiserver");
  return kLogger;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string chunkOf(std::string_view data) {
  char size[32];
  int n = std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
  std::string out;
  out.reserve(static_cast<size_t>(n) + data.size() + 2);
  out.append(size, static_cast<size_t>(n));
  out.append(data);
  out.append("\r\n");
  return out;
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size() || a.empty()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool iequalsPrefix(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         asciiEqualsIgnoreCase(text.substr(0, prefix.size()), prefix);
}

// ALPN: agree on http/1.1 only; without overlap continue without ALPN.
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kProtos[] = "\x08http/1.1";
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kProtos, sizeof(kProtos) - 1, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

// Accept every client certificate during the handshake; the session checks the verify result
// afterwards so a bad certificate means "unauthenticated", not a failed handshake.
int acceptAnyCertificate(int, X509_STORE_CTX*) { return 1; }

}  // namespace

Response statusResponse(int code, std::string_view reason, std::string_view message) {
  nlohmann::json body = {{"kind", "Status"},
                         {"apiVersion", "v1"},
                         {"metadata", nlohmann::json::object()},
                         {"status", "Failure"},
                         {"message", std::string(message)},
                         {"reason", std::string(reason)},
                         {"code", code}};
  Response response;
  response.status = code;
  response.body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return response;
}

bool percentDecode(std::string_view text, bool plus_as_space, std::string& out) {
  out.clear();
  out.reserve(text.size());
  for (size_t idx = 0; idx < text.size(); ++idx) {
    char c = text[idx];
    if (c == '%') {
      if (idx + 2 >= text.size()) return false;
      int hi = hexValue(text[idx + 1]);
      int lo = hexValue(text[idx + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      idx += 2;
    } else if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

Status parseTarget(std::string_view target, std::string& path,
                   std::vector<std::pair<std::string, std::string>>& query) {
  query.clear();
  if (target.empty() || target.front() != '/') {
    return invalidArgument("request target must start with '/'");
  }
  size_t qpos = target.find('?');
  std::string_view raw_path = target.substr(0, qpos);
  if (size_t hash = raw_path.find('#'); hash != std::string_view::npos) {
    raw_path = raw_path.substr(0, hash);
  }
  if (!percentDecode(raw_path, false, path)) {
    return invalidArgument("bad percent-escape in request path");
  }
  if (qpos == std::string_view::npos) return {};
  std::string_view raw_query = target.substr(qpos + 1);
  if (size_t hash = raw_query.find('#'); hash != std::string_view::npos) {
    raw_query = raw_query.substr(0, hash);
  }
  while (!raw_query.empty()) {
    size_t amp = raw_query.find('&');
    std::string_view part = raw_query.substr(0, amp);
    raw_query = amp == std::string_view::npos ? std::string_view{} : raw_query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string key;
    std::string value;
    if (!percentDecode(part.substr(0, eq), true, key) ||
        (eq != std::string_view::npos && !percentDecode(part.substr(eq + 1), true, value))) {
      return invalidArgument("bad percent-escape in query parameter \"" +
                             std::string(part.substr(0, eq)) + "\"");
    }
    query.emplace_back(std::move(key), std::move(value));
  }
  return {};
}

// ---------------------------------------------------------------------------------------------

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Closes the connection from its strand (server shutdown).
  virtual void shutdown() = 0;
};

struct WatchState {
  EventStreamPtr stream;
  std::atomic<bool> done{false};
  std::thread thread;
};

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, RequestHandlerFn handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ssl_ctx_(ssl::context::tls_server),
        acceptor_(net::make_strand(ioc_)),
        retry_timer_(acceptor_.get_executor()) {}

  ~Impl() { stop(); }

  Status init();
  void stop();
  uint16_t port() const { return port_; }

  // Called by sessions.
  const HttpServerOptions& options() const { return options_; }
  ssl::context& sslContext() { return ssl_ctx_; }
  Response dispatch(Request& request, const std::string& authorization,
                    const std::string& cert_user);
  // Starts the pump thread of a watch. `post_events` runs on the pump thread and must only post
  // to the session's strand; `finish` likewise when the stream has ended.
  void startWatch(std::shared_ptr<WatchState> watch,
                  std::function<bool(std::vector<std::string>&&)> post_events,
                  std::function<void()> finish);
  void sessionOpened(const std::shared_ptr<SessionBase>& session);
  void sessionClosed() { connections_.fetch_sub(1); }
  size_t connectionCount() const { return connections_.load(); }
  size_t watchCount() const;

 private:
  void doAccept();
  void onAccept(beast::error_code ec, tcp::socket socket);
  void reapWatchesLocked();

  // Members used by sessions are declared before ioc_ so they outlive the handlers it destroys.
  HttpServerOptions options_;
  RequestHandlerFn handler_;
  ssl::context ssl_ctx_;
  std::atomic<size_t> connections_{0};
  mutable std::mutex mu_;
  bool stopped_ = false;
  std::list<std::weak_ptr<SessionBase>> sessions_;
  std::list<std::shared_ptr<WatchState>> watches_;
  std::mutex stop_mu_;
  bool stop_done_ = false;
  std::mutex run_mu_;
  std::condition_variable run_cv_;
  int running_threads_ = 0;

  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  uint16_t port_ = 0;
  std::vector<std::thread> threads_;
};

namespace {

template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  Session(HttpServer::Impl* server, tcp::socket&& socket)
      : server_(server), stream_(makeStream(server, std::move(socket))) {}

  ~Session() override { server_->sessionClosed(); }

  void run() {
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&Session::onStart, this->shared_from_this()));
  }

  void shutdown() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] { self->closeNow(); });
  }

 private:
  static Stream makeStream(HttpServer::Impl* server, tcp::socket&& socket) {
    if constexpr (kTls) {
      return Stream(std::move(socket), server->sslContext());
    } else {
      return Stream(std::move(socket));
    }
  }

  auto& lowest() { return beast::get_lowest_layer(stream_); }

  void onStart() {
    beast::error_code ec;
    lowest().socket().set_option(tcp::no_delay(true), ec);
    if constexpr (kTls) {
      lowest().expires_after(server_->options().handshake_timeout);
      stream_.async_handshake(
          ssl::stream_base::server,
          beast::bind_front_handler(&Session::onHandshake, this->shared_from_this()));
    } else {
      doRead();
    }
  }

  void onHandshake(beast::error_code ec) {
    if (ec) {
      httpLog()->debug("TLS handshake failed: {}", ec.message());
      return closeNow();
    }
    if constexpr (kTls) {
      SSL* ssl_handle = stream_.native_handle();
      X509* peer = SSL_get1_peer_certificate(ssl_handle);
      if (peer != nullptr) {
        if (SSL_get_verify_result(ssl_handle) == X509_V_OK &&
            !server_->options().client_ca_pem.empty()) {
          char cn[256];
          int len = X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
                                              sizeof(cn));
          if (len > 0) cert_user_.assign(cn, static_cast<size_t>(len));
        }
        X509_free(peer);
      }
    }
    doRead();
  }

  void doRead() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options().max_header_bytes));
    parser_->body_limit(server_->options().max_body_bytes);
    lowest().expires_after(server_->options().read_timeout);
    http::async_read(stream_, buffer_, *parser_,
                     beast::bind_front_handler(&Session::onRead, this->shared_from_this()));
  }

  void onRead(beast::error_code ec, std::size_t) {
    if (closed_) return;
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::operation_aborted || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == ssl::error::stream_truncated) {
      return closeNow();
    }
    if (ec == http::error::header_limit) {
      return writeErrorAndClose(
          statusResponse(431, "RequestHeaderFieldsTooLarge", "request header fields too large"));
    }
    if (ec == http::error::body_limit) {
      return writeErrorAndClose(
          statusResponse(413, "RequestEntityTooLarge",
                         "request body larger than " +
                             std::to_string(server_->options().max_body_bytes) + " bytes"));
    }
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_method).category() ||
          ec == http::error::partial_message) {
        return writeErrorAndClose(
            statusResponse(400, "BadRequest", "malformed HTTP request: " + ec.message()));
      }
      httpLog()->debug("read failed: {}", ec.message());
      return closeNow();
    }

    auto started = std::chrono::steady_clock::now();
    http::request<http::string_body> req = parser_->release();
    keep_alive_ = req.keep_alive();
    version_ = req.version();

    Request request;
    request.method = std::string(req.method_string());
    Response response;
    const auto target = req.target();
    Status parsed =
        parseTarget(std::string_view(target.data(), target.size()), request.path, request.query);
    if (!parsed.ok()) {
      response = statusResponse(400, "BadRequest", parsed.message());
    } else {
      request.content_type = std::string(req[http::field::content_type]);
      request.accept = std::string(req[http::field::accept]);
      request.body = std::move(req.body());
      response =
          server_->dispatch(request, std::string(req[http::field::authorization]), cert_user_);
    }
    auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
    httpLog()->debug("{} {} {} {}.{:03}ms user={}", request.method, request.path, response.status,
                     micros / 1000, micros % 1000, request.user);
    if (response.stream && response.status < 300) return beginWatch(std::move(response));
    writeResponse(std::move(response));
  }

  http::response<http::string_body> toBeast(Response&& response) {
    http::response<http::string_body> res{static_cast<http::status>(response.status), version_};
    res.set(http::field::content_type, response.content_type);
    for (auto& [name, value] : response.headers) res.insert(name, value);
    if (res.find(http::field::cache_control) == res.end()) {
      res.set(http::field::cache_control, "no-cache, private");
    }
    res.body() = std::move(response.body);
    res.keep_alive(keep_alive_);
    res.prepare_payload();
    return res;
  }

  void writeResponse(Response&& response) {
    res_ = std::make_shared<http::response<http::string_body>>(toBeast(std::move(response)));
    lowest().expires_after(server_->options().write_timeout);
    http::async_write(stream_, *res_,
                      beast::bind_front_handler(&Session::onWrite, this->shared_from_this()));
  }

  void onWrite(beast::error_code ec, std::size_t) {
    res_.reset();
    if (ec || !keep_alive_) return lingeringClose(!ec);
    doRead();
  }

  void writeErrorAndClose(Response&& response) {
    keep_alive_ = false;
    httpLog()->debug("rejecting request: {} {}", response.status, response.body);
    writeResponse(std::move(response));
  }

  // Half-closes and discards what the client still sends (bounded), so it reads the response
  // instead of a reset; then closes.
  void lingeringClose(bool graceful) {
    if (closed_) return;
    if (!graceful) return closeNow();
    // No TLS close_notify round trip: the response is complete (Content-Length or final chunk).
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (watch_) {
      // The watch's disconnect-detecting read is still pending and ends on the client's close;
      // the timer bounds the wait.
      linger_timer_.emplace(stream_.get_executor());
      linger_timer_->expires_after(std::chrono::seconds(2));
      linger_timer_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
        if (!ec) self->closeNow();
      });
      return;
    }
    lowest().expires_after(std::chrono::seconds(2));
    drained_ = 0;
    drain();
  }

  void drain() {
    lowest().async_read_some(net::buffer(scratch_), [self = this->shared_from_this()](
                                                        beast::error_code ec, std::size_t n) {
      self->drained_ += n;
      if (ec || self->drained_ > 2 * self->server_->options().max_body_bytes) {
        return self->closeNow();
      }
      self->drain();
    });
  }

  void closeNow() {
    if (closed_) return;
    closed_ = true;
    if (watch_) watch_->stream->stop();
    if (linger_timer_) linger_timer_->cancel();
    beast::error_code ignored;
    lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    lowest().socket().close(ignored);
  }

  // --- watch streaming (all on the strand, except the pump thread's posts) ---

  void beginWatch(Response&& response) {
    watch_ = std::make_shared<WatchState>();
    watch_->stream = std::move(response.stream);
    std::string head =
        "HTTP/1.1 " + std::to_string(response.status) + " " +
        std::string(http::obsolete_reason(static_cast<http::status>(response.status))) + "\r\n";
    head += "Content-Type: " + response.content_type + "\r\n";
    head += "Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n";
    head += "Connection: close\r\n";
    for (const auto& [name, value] : response.headers) head += name + ": " + value + "\r\n";
    head += "\r\n";
    keep_alive_ = false;
    lowest().expires_never();
    auto self = this->shared_from_this();
    server_->startWatch(
        watch_,
        [self](std::vector<std::string>&& events) {
          std::string data;
          for (std::string& event : events) {
            event.push_back('\n');
            data += chunkOf(event);
          }
          const size_t size = data.size();
          size_t backlog = self->backlog_.fetch_add(size) + size;
          if (backlog > self->server_->options().max_watch_backlog_bytes) {
            httpLog()->warn("watch client too slow ({} bytes queued): closing", backlog);
            net::post(self->stream_.get_executor(), [self] { self->closeNow(); });
            return false;
          }
          net::post(self->stream_.get_executor(), [self, data = std::move(data)]() mutable {
            self->queueWrite(std::move(data), /*counted=*/true);
          });
          return true;
        },
        [self] {
          net::post(self->stream_.get_executor(), [self] {
            if (self->closed_) return;
            self->finishing_ = true;
            self->queueWrite("0\r\n\r\n");
          });
        });
    detectDisconnect();  // first: its read must start without a deadline (see writeNext)
    queueWrite(std::move(head));
  }

  void detectDisconnect() {
    stream_.async_read_some(net::buffer(scratch_), [self = this->shared_from_this()](
                                                       beast::error_code ec, std::size_t) {
      if (self->closed_) return;
      if (ec) {
        // The client went away (or the server is closing): end the watch.
        return self->closeNow();
      }
      self->detectDisconnect();  // unexpected bytes from a watch client: discard
    });
  }

  // `counted`: already added to backlog_ by the pump thread.
  void queueWrite(std::string data, bool counted = false) {
    if (!counted) backlog_.fetch_add(data.size());
    if (closed_) return;
    queue_.push_back(std::move(data));
    if (!writing_) writeNext();
  }

  void writeNext() {
    if (queue_.empty()) {
      writing_ = false;
      if (finishing_) lingeringClose(true);
      return;
    }
    writing_ = true;
    // Only the write timer: the disconnect-detecting read stays without a deadline.
    lowest().expires_after(server_->options().write_timeout);
    net::async_write(stream_, net::buffer(queue_.front()),
                     [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                       self->backlog_.fetch_sub(self->queue_.front().size());
                       self->queue_.pop_front();
                       (void)n;
                       if (ec) return self->closeNow();
                       self->writeNext();
                     });
  }

  HttpServer::Impl* server_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> res_;
  std::string cert_user_;
  bool keep_alive_ = false;
  unsigned version_ = 11;
  bool closed_ = false;
  std::array<char, 4096> scratch_{};
  size_t drained_ = 0;
  // Watch state.
  std::shared_ptr<WatchState> watch_;
  std::deque<std::string> queue_;
  bool writing_ = false;
  bool finishing_ = false;
  std::atomic<size_t> backlog_{0};
  std::optional<net::steady_timer> linger_timer_;
};

}  // namespace

Status HttpServer::Impl::init() {
  if (options_.io_threads < 1) return invalidArgument("io_threads must be at least 1");
  if (options_.tls) {
    try {
      SSL_CTX* ctx = ssl_ctx_.native_handle();
      ssl_ctx_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
      SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
      ssl_ctx_.use_certificate_chain(net::buffer(options_.serving.cert_pem));
      ssl_ctx_.use_private_key(net::buffer(options_.serving.key_pem), ssl::context::pem);
      SSL_CTX_set_alpn_select_cb(ctx, selectAlpn, nullptr);
      if (!options_.client_ca_pem.empty()) {
        ssl_ctx_.add_certificate_authority(net::buffer(options_.client_ca_pem));
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, acceptAnyCertificate);
        SSL_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
        BIO* bio = BIO_new_mem_buf(options_.client_ca_pem.data(),
                                   static_cast<int>(options_.client_ca_pem.size()));
        X509* ca = bio != nullptr ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
        if (ca != nullptr) {
          SSL_CTX_add_client_CA(ctx, ca);
          X509_free(ca);
        }
        BIO_free(bio);
      }
    } catch (const std::exception& e) {
      return invalidArgument(std::string("loading TLS certificate or key: ") + e.what());
    }
  }

  beast::error_code ec;
  auto address = net::ip::make_address(options_.bind_address, ec);
  if (ec) return invalidArgument("bad bind address \"" + options_.bind_address + "\"");
  tcp::endpoint endpoint{address, options_.port};
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status(Code::Unavailable, "binding " + options_.bind_address + ":" +
                                         std::to_string(options_.port) + ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  work_.emplace(ioc_.get_executor());
  net::dispatch(acceptor_.get_executor(), [this] { doAccept(); });
  running_threads_ = options_.io_threads;
  for (int idx = 0; idx < options_.io_threads; ++idx) {
    threads_.emplace_back([this] {
      try {
        ioc_.run();
      } catch (const std::exception& e) {
        httpLog()->error("I/O thread stopped by exception: {}", e.what());
      }
      std::lock_guard lock(run_mu_);
      --running_threads_;
      run_cv_.notify_all();
    });
  }
  httpLog()->info("listening on {}:{} ({})", options_.bind_address, port_,
                  options_.tls ? "https" : "http");
  return {};
}

void HttpServer::Impl::doAccept() {
  acceptor_.async_accept(net::make_strand(ioc_), beast::bind_front_handler(&Impl::onAccept, this));
}

void HttpServer::Impl::onAccept(beast::error_code ec, tcp::socket socket) {
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
  }
  if (ec) {
    if (ec == net::error::operation_aborted) return;
    httpLog()->warn("accept failed: {}", ec.message());
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    retry_timer_.async_wait([this](beast::error_code timer_ec) {
      if (!timer_ec) doAccept();
    });
    return;
  }
  if (connections_.load() >= options_.max_connections) {
    httpLog()->warn("connection limit {} reached: closing new connection",
                    options_.max_connections);
    beast::error_code ignored;
    socket.close(ignored);
  } else {
    connections_.fetch_add(1);
    std::shared_ptr<SessionBase> session;
    if (options_.tls) {
      auto s =
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(this, std::move(socket));
      session = s;
      sessionOpened(session);
      s->run();
    } else {
      auto s = std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket));
      session = s;
      sessionOpened(session);
      s->run();
    }
  }
  doAccept();
}

void HttpServer::Impl::sessionOpened(const std::shared_ptr<SessionBase>& session) {
  std::lock_guard lock(mu_);
  if (sessions_.size() > 64 && sessions_.size() > 2 * connections_.load()) {
    sessions_.remove_if([](const std::weak_ptr<SessionBase>& w) { return w.expired(); });
  }
  sessions_.push_back(session);
}

Response HttpServer::Impl::dispatch(Request& request, const std::string& authorization,
                                    const std::string& cert_user) {
  bool authenticated = false;
  if (!options_.bearer_token.empty() && iequalsPrefix(authorization, "Bearer ")) {
    std::string_view presented = std::string_view(authorization).substr(7);
    while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
    while (!presented.empty() && presented.back() == ' ') presented.remove_suffix(1);
    if (constantTimeEquals(presented, options_.bearer_token)) {
      request.user = std::string(kTokenUser);
      authenticated = true;
    }
  }
  if (!authenticated && !cert_user.empty()) {
    request.user = cert_user;
    authenticated = true;
  }
  if (!authenticated) {
    bool anonymous = std::any_of(
        options_.anonymous_paths.begin(), options_.anonymous_paths.end(),
        [&](const std::string& prefix) {
          return request.path == prefix ||
                 (request.path.starts_with(prefix) && request.path[prefix.size()] == '/');
        });
    if (!anonymous) return statusResponse(401, "Unauthorized", "Unauthorized");
    request.user = std::string(kAnonymousUser);
  }
  try {
    return handler_(request);
  } catch (const std::exception& e) {
    httpLog()->error("handler failed on {} {}: {}", request.method, request.path, e.what());
    return statusResponse(500, "InternalError", "internal error");
  } catch (...) {
    httpLog()->error("handler failed on {} {}", request.method, request.path);
    return statusResponse(500, "InternalError", "internal error");
  }
}

void HttpServer::Impl::startWatch(std::shared_ptr<WatchState> watch,
                                  std::function<bool(std::vector<std::string>&&)> post_events,
                                  std::function<void()> finish) {
  std::lock_guard lock(mu_);
  reapWatchesLocked();
  if (stopped_) {
    watch->stream->stop();
    finish();
    return;
  }
  watch->thread =
      std::thread([watch, post_events = std::move(post_events), finish = std::move(finish)] {
        while (true) {
          std::optional<std::vector<std::string>> events;
          try {
            events = watch->stream->next(std::chrono::milliseconds(1000));
          } catch (const std::exception& e) {
            httpLog()->error("watch stream failed: {}", e.what());
            break;
          }
          if (!events) break;
          if (events->empty()) continue;
          if (!post_events(std::move(*events))) {
            watch->stream->stop();
            break;
          }
        }
        finish();
        watch->done.store(true);
      });
  watches_.push_back(std::move(watch));
}

void HttpServer::Impl::reapWatchesLocked() {
  for (auto it = watches_.begin(); it != watches_.end();) {
    if ((*it)->done.load()) {
      if ((*it)->thread.joinable()) (*it)->thread.join();
      it = watches_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t HttpServer::Impl::watchCount() const {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(watches_.begin(), watches_.end(),
                                           [](const auto& w) { return !w->done.load(); }));
}

void HttpServer::Impl::stop() {
  std::lock_guard stop_lock(stop_mu_);
  if (stop_done_) return;
  stop_done_ = true;
  std::list<std::shared_ptr<WatchState>> watches;
  std::list<std::weak_ptr<SessionBase>> sessions;
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
    watches = watches_;
    sessions.swap(sessions_);
  }
  net::post(acceptor_.get_executor(), [this] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    retry_timer_.cancel();
  });
  for (auto& watch : watches) watch->stream->stop();
  for (auto& weak : sessions) {
    if (auto session = weak.lock()) session->shutdown();
  }
  work_.reset();
  {
    std::unique_lock lock(run_mu_);
    if (!run_cv_.wait_for(lock, std::chrono::seconds(3),
                          [this] { return running_threads_ == 0; })) {
      httpLog()->warn("connections did not drain within 3s: stopping I/O");
    }
  }
  ioc_.stop();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
  std::lock_guard lock(mu_);
  for (auto& watch : watches_) {
    watch->stream->stop();
    if (watch->thread.joinable()) watch->thread.join();
  }
  watches_.clear();
}

// ---------------------------------------------------------------------------------------------

Result<HttpServerPtr> HttpServer::start(HttpServerOptions options, RequestHandlerFn handler) {
  auto impl = std::make_unique<Impl>(std::move(options), std::move(handler));
  CLRK_RETURN_IF_ERROR(impl->init());
  return HttpServerPtr(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::stop() { impl_->stop(); }

uint16_t HttpServer::port() const { return impl_->port(); }

size_t HttpServer::connectionCountForTest() const { return impl_->connectionCount(); }

size_t HttpServer::watchCountForTest() const { return impl_->watchCount(); }

}  // namespace clrk::apiserver
