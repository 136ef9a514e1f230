#include "clrk/worker/server.h"

#include "clrk/base/log.h"
#include "clrk/worker/certs.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

namespace clrk::worker {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using Request = http::request<http::string_body>;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr auto kRequestTimeout = std::chrono::seconds(30);
constexpr auto kIdleTimeout = std::chrono::seconds(120);
constexpr uint32_t kHeaderLimit = 64 * 1024;

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

Reply jsonReply(int status, const Json& body) { return {status, body.dump() + "\n"}; }

Reply errorReply(int status, const std::string& message) {
  return jsonReply(status, {{"code", status}, {"message", message}});
}

int httpStatusOf(const Status& status) {
  switch (status.code()) {
    case Code::InvalidArgument:
      return 400;
    case Code::NotFound:
      return 404;
    case Code::AlreadyExists:
    case Code::Conflict:
      return 409;
    case Code::Unauthenticated:
      return 401;
    case Code::Forbidden:
      return 403;
    case Code::Unavailable:
      return ExecutionManager::isFullError(status) ? 429 : 503;
    case Code::Timeout:
      return 504;
    default:
      return 500;
  }
}

// Splits "/a/b?x=1&y=2" into path and decoded query parameters.
struct Target {
  std::string path;
  std::map<std::string, std::string> query;
};

std::string percentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size()) {
      int value = 0;
      auto [ptr, ec] = std::from_chars(text.data() + i + 1, text.data() + i + 3, value, 16);
      if (ec == std::errc() && ptr == text.data() + i + 3) {
        out.push_back(static_cast<char>(value));
        i += 2;
        continue;
      }
    }
    out.push_back(text[i] == '+' ? ' ' : text[i]);
  }
  return out;
}

Target parseTarget(std::string_view target) {
  Target t;
  size_t q = target.find('?');
  t.path = std::string(target.substr(0, q));
  if (q == std::string_view::npos) return t;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    std::string key = percentDecode(pair.substr(0, eq));
    std::string value = eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1));
    t.query[key] = value;
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return t;
}

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    if (slash > start) parts.push_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

// The answer to a request that could not be read (nullopt: just close).
std::optional<Reply> readErrorReply(const error_code& ec) {
  if (ec == http::error::body_limit) {
    return errorReply(413, fmt::format("request body larger than {} bytes", kMaxRequestBodyBytes));
  }
  if (ec == http::error::header_limit) return errorReply(431, "request header too large");
  if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return errorReply(400, "malformed HTTP request: " + ec.message());
  }
  return std::nullopt;
}

class ServerImpl : public ApiServer {
 public:
  ServerImpl(ServerOptions options, ExecutionManager& executions, std::function<Json()> status)
      : options_(std::move(options)),
        executions_(executions),
        status_(std::move(status)),
        ssl_(ssl::context::tls_server),
        acceptor_(ioc_) {}

  ~ServerImpl() override { stop(); }

  Status init() {
    error_code ec;
    ssl_.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ssl_.use_certificate_chain(net::buffer(options_.cert_pem), ec);
    if (ec) return invalidArgument("worker API certificate: " + ec.message());
    ssl_.use_private_key(net::buffer(options_.key_pem), ssl::context::pem, ec);
    if (ec) return invalidArgument("worker API key: " + ec.message());
    SSL_CTX_set_mode(ssl_.native_handle(), SSL_MODE_RELEASE_BUFFERS);

    size_t colon = options_.listen.rfind(':');
    if (colon == std::string::npos) {
      return invalidArgument("--listen " + options_.listen + ": want ip:port");
    }
    std::string host = options_.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    int port = 0;
    auto port_text = std::string_view(options_.listen).substr(colon + 1);
    auto [ptr, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (perr != std::errc() || ptr != port_text.data() + port_text.size() || port < 0 ||
        port > 65535) {
      return invalidArgument("--listen " + options_.listen + ": bad port");
    }
    auto address = net::ip::make_address(host, ec);
    if (ec) return invalidArgument("--listen " + options_.listen + ": bad IP address");
    tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec)
      return Status(Code::Unavailable,
                    "worker API listen on " + options_.listen + ": " + ec.message());
    bound_ = acceptor_.local_endpoint(ec);
    listener_ = executions_.addListener([this] { wakeWaiters(); });
    net::co_spawn(ioc_, acceptLoop(), net::detached);
    int threads = std::max(1, options_.threads);
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { ioc_.run(); });
    }
    return {};
  }

  uint64_t addWaiter(std::function<void()> wake) {
    std::lock_guard lock(waiters_mutex_);
    uint64_t id = next_waiter_++;
    waiters_.emplace(id, std::move(wake));
    return id;
  }
  void removeWaiter(uint64_t id) {
    std::lock_guard lock(waiters_mutex_);
    waiters_.erase(id);
  }
  // Wakes every long poll (each re-reads its execution). Called from execution threads.
  void wakeWaiters() {
    std::lock_guard lock(waiters_mutex_);
    for (const auto& [id, wake] : waiters_) wake();
  }

  uint16_t port() const override { return bound_.port(); }
  std::string host() const override { return bound_.address().to_string(); }

  void stop() override {
    if (stopped_.exchange(true)) {
      joinThreads();
      return;
    }
    if (listener_) executions_.removeListener(*listener_);
    wakeWaiters();  // long polls answer at once when stopped
    // Idle keep-alive connections close now; a request being answered (a long poll sees
    // stopped_ and replies at once, a log stream ends) finishes its reply first.
    auto close_streams = [this](bool busy_too) {
      net::post(ioc_, [this, busy_too] {
        error_code ec;
        acceptor_.close(ec);
        std::lock_guard lock(streams_mutex_);
        for (beast::tcp_stream* stream : streams_) {
          if (!busy_too && busy_streams_.count(stream) > 0) continue;
          stream->socket().shutdown(tcp::socket::shutdown_both, ec);
          stream->socket().close(ec);
        }
      });
    };
    auto wait_idle = [this](std::chrono::milliseconds limit) {
      auto deadline = std::chrono::steady_clock::now() + limit;
      while (active_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    };
    close_streams(false);
    wait_idle(std::chrono::seconds(3));
    close_streams(true);
    wait_idle(std::chrono::milliseconds(500));
    ioc_.stop();
    joinThreads();
    // The posted closes may not have run before ioc_.stop(); nothing else runs now.
    error_code ec;
    acceptor_.close(ec);
    std::lock_guard lock(streams_mutex_);
    for (beast::tcp_stream* stream : streams_) stream->socket().close(ec);
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
      if (ec) {
        if (stopped_.load() || !acceptor_.is_open()) co_return;
        continue;
      }
      if (stopped_.load()) co_return;
      if (active_.load() >= 1024) continue;  // connection cap: drop
      // A strand per connection: long-poll wake-ups are posted to it (see handle()). Counted
      // from here, so stop() waits for a session that has not started yet to see stopped_.
      ++active_;
      net::co_spawn(net::make_strand(ioc_), session(std::move(socket)), net::detached);
    }
  }

  void markBusy(beast::tcp_stream* stream, bool busy) {
    std::lock_guard lock(streams_mutex_);
    if (busy) {
      busy_streams_.insert(stream);
    } else {
      busy_streams_.erase(stream);
    }
  }

  // A session's connection, in streams_ for stop() to close.
  struct Tracked {
    ServerImpl& server;
    beast::tcp_stream* stream;
    Tracked(ServerImpl& s, beast::tcp_stream* st) : server(s), stream(st) {
      std::lock_guard lock(server.streams_mutex_);
      server.streams_.insert(stream);
    }
    ~Tracked() {
      {
        std::lock_guard lock(server.streams_mutex_);
        server.streams_.erase(stream);
        server.busy_streams_.erase(stream);
      }
    }
  };

  net::awaitable<void> session(tcp::socket socket) {
    struct Counted {  // ends the count acceptLoop began
      std::atomic<int>& active;
      ~Counted() { --active; }
    } counted{active_};
    try {
      TlsStream stream(beast::tcp_stream(std::move(socket)), ssl_);
      Tracked tracked(*this, &beast::get_lowest_layer(stream));
      // Started after stop() closed the known connections: this one would be left open.
      if (stopped_.load()) co_return;
      beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
      error_code ec;
      co_await stream.async_handshake(ssl::stream_base::server,
                                      net::redirect_error(net::use_awaitable, ec));
      if (ec) co_return;
      beast::flat_buffer buffer;
      while (!stopped_.load()) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(kHeaderLimit);
        parser.body_limit(kMaxRequestBodyBytes);
        beast::get_lowest_layer(stream).expires_after(kIdleTimeout);
        co_await http::async_read_header(stream, buffer, parser,
                                         net::redirect_error(net::use_awaitable, ec));
        if (!ec && !parser.is_done()) {
          beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
          co_await http::async_read(stream, buffer, parser,
                                    net::redirect_error(net::use_awaitable, ec));
        }
        if (ec) {
          std::optional<Reply> reply = readErrorReply(ec);
          if (reply) co_await write(stream, *reply, false);
          if (ec == http::error::body_limit) {
            // Swallow (bounded) what the client is still sending so it can read the 413
            // instead of being reset mid-write.
            std::vector<char> sink(64 * 1024);
            size_t swallowed = 0;
            beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
            while (swallowed < 2 * kMaxRequestBodyBytes) {
              error_code read_ec;
              size_t n = co_await stream.async_read_some(
                  net::buffer(sink), net::redirect_error(net::use_awaitable, read_ec));
              if (read_ec) break;
              swallowed += n;
            }
          }
          break;
        }
        Request request = parser.release();
        bool keep_alive = request.keep_alive() && !stopped_.load();
        markBusy(&beast::get_lowest_layer(stream), true);
        bool ok = co_await handle(stream, request);
        markBusy(&beast::get_lowest_layer(stream), false);
        if (!ok || !keep_alive) break;
      }
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
      co_await stream.async_shutdown(net::redirect_error(net::use_awaitable, ec));
    } catch (const std::exception& e) {
      logger("worker")->debug("worker API connection ended: {}", e.what());
    }
  }

  net::awaitable<bool> write(TlsStream& stream, const Reply& reply, bool keep_alive) {
    http::response<http::string_body> response{static_cast<http::status>(reply.status), 11};
    response.set(http::field::content_type, reply.content_type);
    response.set(http::field::server, "clrk-worker");
    if (reply.status == 401) response.set(http::field::www_authenticate, "Bearer");
    response.body() = reply.body;
    response.keep_alive(keep_alive);
    response.prepare_payload();
    error_code ec;
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    co_await http::async_write(stream, response, net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }

  bool authorized(const Request& request) const {
    auto header = request[http::field::authorization];
    std::string_view value(header.data(), header.size());
    constexpr std::string_view kBearer = "Bearer ";
    if (value.size() <= kBearer.size() ||
        !beast::iequals(beast::string_view(value.data(), kBearer.size()),
                        beast::string_view(kBearer.data(), kBearer.size()))) {
      return false;
    }
    return constantTimeEquals(value.substr(kBearer.size()), options_.token);
  }

  // What a request asks for: an immediate reply, a long poll or a log stream.
  struct Routed {
    enum class Kind { kReply, kWait, kLogs } kind = Kind::kReply;
    Reply reply;
    std::string id;
    int wait_seconds = 0;
    bool follow = false;
  };

  static Routed replyWith(Reply reply) {
    Routed routed;
    routed.reply = std::move(reply);
    return routed;
  }

  // Synchronous routing (nothing here waits on an execution).
  Routed route(const Request& request) {
    Target target = parseTarget(std::string_view(request.target().data(), request.target().size()));
    auto parts = splitPath(target.path);
    http::verb method = request.method();
    if (target.path == "/healthz" && (method == http::verb::get || method == http::verb::head)) {
      Reply reply;
      reply.body = executions_.draining() ? "draining\n" : "ok\n";
      reply.content_type = "text/plain";
      return replyWith(std::move(reply));
    }
    if (!authorized(request)) {
      return replyWith(errorReply(401, "Unauthorized: a valid bearer token is required"));
    }
    Reply not_found = errorReply(404, "no route for " + target.path);
    Reply not_allowed = errorReply(405, "method not allowed");
    if (parts.size() < 2 || parts[0] != "v1") return replyWith(not_found);
    if (parts.size() == 2 && parts[1] == "status") {
      if (method != http::verb::get) return replyWith(not_allowed);
      return replyWith(jsonReply(200, status_ ? status_() : Json::object()));
    }
    if (parts.size() == 2 && parts[1] == "warm-pools") {
      if (method == http::verb::put) {
        auto pools = parseWarmPoolSpecs(request.body());
        if (!pools.ok()) return replyWith(errorReply(400, pools.status().message()));
        if (executions_.draining()) return replyWith(errorReply(503, "worker is draining"));
        executions_.setWarmPools(std::move(pools).value());
      } else if (method != http::verb::get) {
        return replyWith(not_allowed);
      }
      Json items = Json::array();
      for (const auto& state : executions_.warmPools()) items.push_back(toJson(state));
      return replyWith(jsonReply(200, Json{{"pools", std::move(items)}}));
    }
    if (parts[1] != "executions" || parts.size() > 4) return replyWith(not_found);
    if (parts.size() == 2) {
      if (method == http::verb::get) {
        Json items = Json::array();
        for (const auto& status : executions_.list()) items.push_back(toJson(status));
        Json body = Json::object();
        body["items"] = std::move(items);
        return replyWith(jsonReply(200, body));
      }
      if (method != http::verb::post) return replyWith(not_allowed);
      auto parsed = parseExecutionRequest(request.body());
      if (!parsed.ok()) return replyWith(errorReply(400, parsed.status().message()));
      auto submitted = executions_.submit(std::move(parsed).value());
      if (!submitted.ok()) {
        return replyWith(
            errorReply(httpStatusOf(submitted.status()), submitted.status().message()));
      }
      return replyWith(jsonReply(201, toJson(submitted.value())));
    }
    Routed routed;
    routed.id = parts[2];
    if (parts.size() == 3) {
      if (method != http::verb::get) return replyWith(not_allowed);
      if (auto it = target.query.find("waitSeconds"); it != target.query.end()) {
        int wait_seconds = 0;
        auto [ptr, ec] =
            std::from_chars(it->second.data(), it->second.data() + it->second.size(), wait_seconds);
        if (ec != std::errc() || ptr != it->second.data() + it->second.size() || wait_seconds < 0) {
          return replyWith(
              errorReply(400, "waitSeconds: \"" + it->second + "\" is not a whole number"));
        }
        routed.wait_seconds = std::min(wait_seconds, options_.max_wait_seconds);
      }
      routed.kind = Routed::Kind::kWait;
      return routed;
    }
    if (parts[3] == "stop") {
      if (method != http::verb::post) return replyWith(not_allowed);
      auto stopped = executions_.stop(routed.id);
      if (!stopped.ok()) {
        return replyWith(errorReply(httpStatusOf(stopped.status()), stopped.status().message()));
      }
      return replyWith(jsonReply(200, toJson(stopped.value())));
    }
    if (parts[3] == "logs") {
      if (method != http::verb::get) return replyWith(not_allowed);
      if (auto it = target.query.find("follow"); it != target.query.end()) {
        if (it->second == "true" || it->second == "1" || it->second.empty()) {
          routed.follow = true;
        } else if (it->second != "false" && it->second != "0") {
          return replyWith(errorReply(400, "follow: want true or false"));
        }
      }
      if (!executions_.get(routed.id)) {
        return replyWith(errorReply(404, "execution \"" + routed.id + "\" not found"));
      }
      routed.kind = Routed::Kind::kLogs;
      return routed;
    }
    return replyWith(not_found);
  }

  // Returns false when the connection must close.
  net::awaitable<bool> handle(TlsStream& stream, const Request& request) {
    bool keep_alive = request.keep_alive() && !stopped_.load();
    Routed routed = route(request);
    if (routed.kind == Routed::Kind::kReply) {
      co_return co_await write(stream, routed.reply, keep_alive);
    }
    if (routed.kind == Routed::Kind::kLogs) {
      co_return co_await streamLogs(stream, routed.id, routed.follow);
    }
    // Long poll, event-driven: a phase change of any execution (or stop()) cancels the timer
    // through the session's strand; the timer also ends each wait after at most 1 s. The waiter
    // is registered before the status is read, and a cancel posted while this coroutine runs
    // executes only once it waits again, so no change is missed.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(routed.wait_seconds);
    auto executor = co_await net::this_coro::executor;
    auto timer = std::make_shared<net::steady_timer>(executor);
    uint64_t waiter =
        addWaiter([executor, timer] { net::post(executor, [timer] { timer->cancel(); }); });
    struct WaiterGuard {
      ServerImpl& server;
      uint64_t id;
      ~WaiterGuard() { server.removeWaiter(id); }
    } guard{*this, waiter};
    for (;;) {
      timer->expires_after(std::min<std::chrono::steady_clock::duration>(
          std::chrono::seconds(1), deadline - std::chrono::steady_clock::now()));
      auto status = executions_.get(routed.id);
      Reply reply;
      if (!status) {
        reply = errorReply(404, "execution \"" + routed.id + "\" not found");
      } else if (isTerminal(status->phase) || std::chrono::steady_clock::now() >= deadline ||
                 stopped_.load()) {
        reply = jsonReply(200, toJson(*status));
      } else {
        error_code ec;
        co_await timer->async_wait(net::redirect_error(net::use_awaitable, ec));
        continue;
      }
      co_return co_await write(stream, reply, keep_alive);
    }
  }

  // NDJSON, chunked; ends when the execution is terminal and drained (follow) or at once.
  net::awaitable<bool> streamLogs(TlsStream& stream, const std::string& id, bool follow) {
    http::response<http::empty_body> head{http::status::ok, 11};
    head.set(http::field::content_type, "application/x-ndjson");
    head.set(http::field::server, "clrk-worker");
    head.chunked(true);
    head.keep_alive(false);
    http::response_serializer<http::empty_body> serializer(head);
    error_code ec;
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    co_await http::async_write_header(stream, serializer,
                                      net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return false;
    net::steady_timer timer(co_await net::this_coro::executor);
    size_t next = 0;
    auto last_write = std::chrono::steady_clock::now();
    for (;;) {
      auto slice = executions_.logs(id, next, 500);
      if (!slice) break;  // pruned meanwhile
      next = slice->next;
      if (!slice->entries.empty()) {
        std::string data;
        for (const auto& entry : slice->entries) data += toJson(entry).dump() + "\n";
        beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
        co_await net::async_write(stream, http::make_chunk(net::buffer(data)),
                                  net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return false;
        last_write = std::chrono::steady_clock::now();
        continue;  // maybe more already buffered
      }
      if (!follow || slice->finished || stopped_.load()) break;
      if (std::chrono::steady_clock::now() - last_write > std::chrono::seconds(30)) {
        // Keep the connection visibly alive through idle periods: an empty NDJSON line.
        std::string keepalive = "\n";
        beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
        co_await net::async_write(stream, http::make_chunk(net::buffer(keepalive)),
                                  net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return false;
        last_write = std::chrono::steady_clock::now();
      }
      timer.expires_after(std::chrono::milliseconds(100));
      co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    }
    beast::get_lowest_layer(stream).expires_after(kRequestTimeout);
    co_await net::async_write(stream, http::make_chunk_last(),
                              net::redirect_error(net::use_awaitable, ec));
    co_return false;
  }

  ServerOptions options_;
  ExecutionManager& executions_;
  std::function<Json()> status_;
  ssl::context ssl_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  tcp::endpoint bound_;
  std::vector<std::thread> threads_;
  std::mutex join_mutex_;
  std::atomic<bool> stopped_{false};
  std::atomic<int> active_{0};
  std::mutex waiters_mutex_;
  std::map<uint64_t, std::function<void()>> waiters_;  // long polls to wake on a change
  uint64_t next_waiter_ = 0;
  std::optional<uint64_t> listener_;  // ExecutionManager listener, set by init()
  std::mutex streams_mutex_;
  std::set<beast::tcp_stream*> streams_;
  std::set<beast::tcp_stream*> busy_streams_;  // answering a request: closed last on stop()
};

}  // namespace

Result<std::unique_ptr<ApiServer>> ApiServer::start(ServerOptions options,
                                                    ExecutionManager& executions,
                                                    std::function<Json()> status) {
  if (options.token.empty()) return invalidArgument("worker API: empty bearer token");
  auto server = std::make_unique<ServerImpl>(std::move(options), executions, std::move(status));
  CLRK_RETURN_IF_ERROR(server->init());
  return std::unique_ptr<ApiServer>(std::move(server));
}

}  // namespace clrk::worker
