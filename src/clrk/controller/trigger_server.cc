#include "clrk/controller/trigger_server.h"

#include "clrk/base/log.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <charconv>
#include <mutex>
#include <set>
#include <thread>

namespace clrk::controller {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using Json = kube::Json;

constexpr auto kReadTimeout = std::chrono::seconds(30);
constexpr auto kIdleTimeout = std::chrono::seconds(120);
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr uint64_t kBodyLimit = 4 << 20;
constexpr int kMaxConnections = 1024;

struct Reply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Reply errorReply(int status, const std::string& reason, const std::string& message,
                 const std::string& invocation = {}, const std::string& request_id = {}) {
  Json error = {{"code", status}, {"reason", reason}, {"message", message}};
  if (!invocation.empty()) error["invocation"] = invocation;
  if (!request_id.empty()) error["requestId"] = request_id;
  Reply reply;
  reply.status = status;
  reply.body = Json{{"error", error}}.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  return reply;
}

std::vector<std::string> splitPath(std::string_view path) {
  std::vector<std::string> parts;
  size_t query = path.find('?');
  path = path.substr(0, query);
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) parts.emplace_back(path.substr(start, slash - start));
    start = slash + 1;
  }
  return parts;
}

bool looksLikeJson(const std::string& text) {
  size_t start = text.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return false;
  if (text[start] != '{' && text[start] != '[') return false;
  return !Json::parse(text, nullptr, false).is_discarded();
}

Reply replyForResult(const InvokeResult& result) {
  int status = httpStatusForResult(result);
  Reply reply;
  if (status == 200) {
    if (!result.output_content_type.empty()) {
      reply.content_type = result.output_content_type;  // as the agent POSTed it (sanitised)
    } else {
      reply.content_type =
          looksLikeJson(result.output) ? "application/json" : "text/plain; charset=utf-8";
    }
    reply.body = result.output;
  } else {
    std::string message = result.message;
    if (result.exit_code) message += " (exit code " + std::to_string(*result.exit_code) + ")";
    reply = errorReply(status, result.reason, message, result.invocation_name, result.request_id);
    if (!result.stderr_tail.empty()) {
      Json body = Json::parse(reply.body);
      std::string tail = result.stderr_tail.size() > 4096
                             ? result.stderr_tail.substr(result.stderr_tail.size() - 4096)
                             : result.stderr_tail;
      body["error"]["stderrTail"] = tail;
      reply.body = body.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
    }
  }
  if (!result.invocation_name.empty())
    reply.headers.emplace_back("X-Clrk-Invocation", result.invocation_name);
  if (!result.request_id.empty())
    reply.headers.emplace_back("X-Clrk-Request-Id", result.request_id);
  if (!result.worker.empty()) reply.headers.emplace_back("X-Clrk-Worker", result.worker);
  if (result.exit_code) {
    reply.headers.emplace_back("X-Clrk-Exit-Code", std::to_string(*result.exit_code));
  }
  if (!result.output_source.empty()) {
    reply.headers.emplace_back("X-Clrk-Output-Source", result.output_source);
  }
  if (status == 429 || status == 503) reply.headers.emplace_back("Retry-After", "1");
  return reply;
}

// Where an invocation's result meets the coroutine waiting for it: the manager's thread posts
// the result to the I/O thread, which stores it and cancels the timer the coroutine waits on.
struct InvocationWait {
  explicit InvocationWait(const net::any_io_executor& executor) : timer(executor) {}
  net::steady_timer timer;
  std::optional<InvokeResult> result;
};

class TriggerServerImpl : public TriggerServer {
 public:
  TriggerServerImpl(TriggerServerOptions options, InvocationManager& invocations)
      : options_(std::move(options)), invocations_(invocations), acceptor_(ioc_) {}
  ~TriggerServerImpl() override { stop(); }

  Status start() override {
    size_t colon = options_.listen.rfind(':');
    if (colon == std::string::npos) {
      return invalidArgument("trigger listen address \"" + options_.listen + "\": want ip:port");
    }
    std::string host = options_.listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    int port = -1;
    std::string_view port_text = std::string_view(options_.listen).substr(colon + 1);
    auto [ptr, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (perr != std::errc() || ptr != port_text.data() + port_text.size() || port < 0 ||
        port > 65535) {
      return invalidArgument("trigger listen address \"" + options_.listen + "\": bad port");
    }
    error_code ec;
    auto address = net::ip::make_address(host, ec);
    if (ec) return invalidArgument("trigger listen address \"" + options_.listen + "\": bad IP");
    tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) {
      return Status(Code::Unavailable,
                    "trigger listen on " + options_.listen + ": " + ec.message());
    }
    bound_ = acceptor_.local_endpoint(ec);
    net::co_spawn(ioc_, acceptLoop(), net::detached);
    thread_ = std::thread([this] { ioc_.run(); });
    return {};
  }

  // Stops accepting, lets requests being answered write their reply (the InvocationManager is
  // stopped first, so their results are on the way) for up to 2 s, then closes every connection.
  void stop() override {
    if (stopped_.exchange(true)) return;
    net::post(ioc_, [this] {
      error_code ec;
      acceptor_.close(ec);
    });
    for (int i = 0; i < 200 && busy_.load() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    net::post(ioc_, [this] {
      error_code ec;
      std::lock_guard lock(sockets_mutex_);
      for (tcp::socket* socket : sockets_) {
        socket->shutdown(tcp::socket::shutdown_both, ec);
        socket->close(ec);
      }
    });
    for (int i = 0; i < 50 && active_.load() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
    // The posted closes may not have run before ioc_.stop(); nothing else runs now.
    error_code ec;
    acceptor_.close(ec);
    std::lock_guard lock(sockets_mutex_);
    for (tcp::socket* socket : sockets_) socket->close(ec);
  }

  uint16_t port() const override { return bound_.port(); }
  std::string url() const override {
    std::string host = bound_.address().to_string();
    if (bound_.address().is_v6()) host = "[" + host + "]";
    return "http://" + host + ":" + std::to_string(bound_.port());
  }

 private:
  net::awaitable<void> acceptLoop() {
    for (;;) {
      error_code ec;
      tcp::socket socket =
          co_await acceptor_.async_accept(net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        if (stopped_.load() || !acceptor_.is_open()) co_return;
        continue;
      }
      if (active_.load() >= kMaxConnections) continue;  // over the cap: drop
      net::co_spawn(ioc_, session(std::move(socket)), net::detached);
    }
  }

  // Runs the invocation on the manager's thread and resumes here with its result (nullopt when
  // the manager refused to start it).
  net::awaitable<std::optional<InvokeResult>> invoke(InvokeRequest request) {
    auto wait = std::make_shared<InvocationWait>(co_await net::this_coro::executor);
    wait->timer.expires_at(std::chrono::steady_clock::time_point::max());
    Status started = invocations_.runAsync(std::move(request), [wait](InvokeResult result) {
      net::post(wait->timer.get_executor(), [wait, result = std::move(result)]() mutable {
        wait->result = std::move(result);
        wait->timer.cancel();
      });
    });
    if (!started.ok()) co_return std::nullopt;
    // Nothing runs on this thread between runAsync and here, so the post cannot come first.
    error_code ec;
    co_await wait->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
    co_return std::move(wait->result);
  }

  net::awaitable<Reply> handle(const http::request<http::string_body>& request) {
    std::string target(request.target());
    auto parts = splitPath(target);
    if (parts.size() == 1 && parts[0] == "healthz") {
      co_return Reply{200, "text/plain", "ok\n", {}};
    }
    std::string ns, name;
    auto header = request.find("X-Clrk-TaskAgent");
    if (parts.size() == 6 && parts[0] == "v1" && parts[1] == "namespaces" &&
        parts[3] == "taskagents" && parts[5] == "invoke") {
      ns = parts[2];
      name = parts[4];
    } else if (header != request.end()) {
      std::string value(header->value());
      size_t slash = value.find('/');
      if (slash == std::string::npos) {
        ns = "default";
        name = value;
      } else {
        ns = value.substr(0, slash);
        name = value.substr(slash + 1);
      }
      if (name.empty() || ns.empty()) {
        co_return errorReply(400, "BadRequest",
                             "X-Clrk-TaskAgent \"" + value + "\": want namespace/name");
      }
    } else {
      co_return errorReply(
          404, "NotFound",
          "no route for " + target + "; POST /v1/namespaces/{namespace}/taskagents/{name}/invoke");
    }
    if (request.method() != http::verb::post) {
      co_return errorReply(405, "MethodNotAllowed", "invoke with POST");
    }
    InvokeRequest invoke_request;
    invoke_request.namespace_name = ns;
    invoke_request.agent = name;
    invoke_request.trigger_type = "HTTP";
    invoke_request.trigger_source = target.substr(0, 256);
    if (auto id = request.find("X-Request-Id"); id != request.end()) {
      invoke_request.request_id = std::string(id->value()).substr(0, 128);
    }
    if (auto type = request.find(http::field::content_type); type != request.end()) {
      invoke_request.content_type = std::string(type->value()).substr(0, 256);
    }
    // For spec.identity extractors; bounded by the 64 KiB head limit.
    for (const auto& field : request) {
      invoke_request.headers.emplace_back(std::string(field.name_string()),
                                          std::string(field.value()));
    }
    invoke_request.body = request.body();
    auto result = co_await invoke(std::move(invoke_request));
    if (!result) {
      co_return errorReply(503, "Unavailable",
                           "the controller-manager cannot take invocations now");
    }
    co_return replyForResult(*result);
  }

  struct Tracked {
    TriggerServerImpl& server;
    tcp::socket* socket;
    Tracked(TriggerServerImpl& s, tcp::socket* so) : server(s), socket(so) {
      ++server.active_;
      std::lock_guard lock(server.sockets_mutex_);
      server.sockets_.insert(socket);
    }
    ~Tracked() {
      {
        std::lock_guard lock(server.sockets_mutex_);
        server.sockets_.erase(socket);
      }
      --server.active_;
    }
  };

  net::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    Tracked tracked(*this, &stream.socket());
    beast::flat_buffer buffer;
    try {
      while (!stopped_.load()) {
        http::request_parser<http::string_body> parser;
        parser.header_limit(kHeaderLimit);
        parser.body_limit(kBodyLimit);
        error_code ec;
        stream.expires_after(kIdleTimeout);
        co_await http::async_read_header(stream, buffer, parser,
                                         net::redirect_error(net::use_awaitable, ec));
        if (!ec && !parser.is_done()) {
          stream.expires_after(kReadTimeout);
          co_await http::async_read(stream, buffer, parser,
                                    net::redirect_error(net::use_awaitable, ec));
        }
        if (ec) {
          Reply reply;
          if (ec == http::error::body_limit) {
            reply = errorReply(413, "PayloadTooLarge", "request body over 4 MiB");
          } else if (ec == http::error::header_limit) {
            reply = errorReply(431, "HeaderTooLarge", "request head over 64 KiB");
          } else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                     ec != http::error::end_of_stream && ec != http::error::partial_message) {
            reply = errorReply(400, "BadRequest", "malformed HTTP request: " + ec.message());
          } else {
            break;
          }
          co_await write(stream, reply, false);
          break;
        }
        auto request = parser.release();
        bool keep_alive = request.keep_alive();
        stream.expires_never();
        ++busy_;
        Reply reply = co_await handle(request);
        bool written = co_await write(stream, reply, keep_alive && !stopped_.load());
        --busy_;
        if (!written) break;
        if (!keep_alive) break;
      }
    } catch (const std::exception& e) {
      logger("trigger")->debug("trigger connection ended: {}", e.what());
    }
    error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  net::awaitable<bool> write(beast::tcp_stream& stream, const Reply& reply, bool keep_alive) {
    http::response<http::string_body> response{static_cast<http::status>(reply.status), 11};
    response.set(http::field::content_type, reply.content_type);
    response.set(http::field::server, "clrk-controller-manager");
    for (const auto& [key, value] : reply.headers) response.set(key, value);
    response.body() = reply.body;
    response.keep_alive(keep_alive);
    response.prepare_payload();
    error_code ec;
    stream.expires_after(kReadTimeout);
    co_await http::async_write(stream, response, net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
  }

  TriggerServerOptions options_;
  InvocationManager& invocations_;
  net::io_context ioc_;
  tcp::acceptor acceptor_;
  tcp::endpoint bound_;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::atomic<int> active_{0};
  std::atomic<int> busy_{0};  // requests read and not yet answered
  std::mutex sockets_mutex_;
  std::set<tcp::socket*> sockets_;
};

}  // namespace

int httpStatusForResult(const InvokeResult& result) {
  if (result.phase == "Succeeded") return 200;
  if (result.phase == "Timeout") return 504;
  if (result.phase == "Rejected") {
    if (result.reason == "AgentNotFound" || result.reason == "InvocationNotFound") return 404;
    if (result.reason == "AgentNotReady") return 409;
    if (result.reason == "ConcurrencyLimit") return 429;
    return 503;
  }
  if (result.reason == "ControllerStopping") return 503;
  return 502;
}

std::unique_ptr<TriggerServer> makeTriggerServer(TriggerServerOptions options,
                                                 InvocationManager& invocations) {
  return std::make_unique<TriggerServerImpl>(std::move(options), invocations);
}

}  // namespace clrk::controller
