#include "clrk/worker/client.h"

#include "clrk/worker/certs.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <charconv>
#include <optional>

namespace clrk::worker {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

constexpr uint64_t kMaxReplyBytes = 64ull << 20;

std::string derOf(X509* cert) {
  int size = i2d_X509(cert, nullptr);
  if (size <= 0) return {};
  std::string der(static_cast<size_t>(size), '\0');
  auto* out = reinterpret_cast<unsigned char*>(der.data());
  i2d_X509(cert, &out);
  return der;
}

// One connection: TCP connect, TLS handshake, fingerprint check. Errors carry the reason.
net::awaitable<Status> connect(TlsStream& stream, const std::string& host, uint16_t port,
                               const std::string& fingerprint, std::chrono::milliseconds timeout) {
  error_code ec;
  auto executor = co_await net::this_coro::executor;
  tcp::resolver resolver(executor);
  auto endpoints = co_await resolver.async_resolve(host, std::to_string(port),
                                                   net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return Status(Code::Unavailable, "resolving " + host + ": " + ec.message());
  beast::get_lowest_layer(stream).expires_after(timeout);
  co_await beast::get_lowest_layer(stream).async_connect(
      endpoints, net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    co_return Status(Code::Unavailable,
                     fmt::format("connecting to worker {}:{}: {}", host, port, ec.message()));
  }
  co_await stream.async_handshake(ssl::stream_base::client,
                                  net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return Status(Code::Unavailable, "TLS handshake with the worker: " + ec.message());
  X509* peer = SSL_get1_peer_certificate(stream.native_handle());
  if (peer == nullptr) co_return Status(Code::Unauthenticated, "worker sent no certificate");
  std::string got = fingerprintOfDer(derOf(peer));
  X509_free(peer);
  if (!constantTimeEquals(got, fingerprint)) {
    co_return Status(Code::Unauthenticated,
                     fmt::format("worker certificate fingerprint {} does not match the pinned {}",
                                 got, fingerprint));
  }
  co_return Status();
}

http::request<http::string_body> makeRequest(const std::string& method, const std::string& target,
                                             const std::string& body, const std::string& host,
                                             const std::string& token, bool keep_alive) {
  http::request<http::string_body> request{http::string_to_verb(method), target, 11};
  request.set(http::field::host, host);
  request.set(http::field::user_agent, "clrk-worker-client");
  request.set(http::field::accept, "application/json");
  if (!token.empty()) request.set(http::field::authorization, "Bearer " + token);
  if (!body.empty() || method == "POST") {
    request.set(http::field::content_type, "application/json");
    request.body() = body;
  }
  request.keep_alive(keep_alive);
  request.prepare_payload();
  return request;
}

// Runs `task` (which stores its result in `out`) to completion on `ioc`, or until a stop is
// requested on `cancel`.
template <typename T>
Result<T> runOn(net::io_context& ioc, net::awaitable<void> task, std::optional<Result<T>>& out,
                std::stop_token cancel = {}) {
  std::stop_callback on_cancel(cancel, [&ioc] { ioc.stop(); });
  std::string failure;
  net::co_spawn(ioc, std::move(task), [&](std::exception_ptr error) {
    if (!error) return;
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  ioc.run();
  if (!out && cancel.stop_requested()) {
    return Status(Code::Unavailable, "worker client: request cancelled");
  }
  if (!failure.empty()) return Status(Code::Internal, "worker client: " + failure);
  if (!out) return Status(Code::Internal, "worker client: request did not complete");
  return std::move(*out);
}

}  // namespace

// One keep-alive connection with its own event loop (a call runs it on the calling thread).
// Members are destroyed stream first, then the loop (with a cancelled call's coroutine frame),
// then the TLS context.
struct WorkerConnectionPool::Connection {
  ssl::context ctx{ssl::context::tls_client};
  net::io_context ioc;
  std::optional<TlsStream> stream;  // set once connected
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;

  Connection() { ctx.set_verify_mode(ssl::verify_none); }  // pinned by fingerprint instead
};

WorkerConnectionPool::WorkerConnectionPool() = default;
WorkerConnectionPool::~WorkerConnectionPool() = default;

std::unique_ptr<WorkerConnectionPool::Connection> WorkerConnectionPool::take() {
  std::lock_guard lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  while (!idle_.empty()) {
    std::unique_ptr<Connection> connection = std::move(idle_.back());
    idle_.pop_back();
    if (now - connection->idle_since < kMaxIdleTime) return connection;
  }
  return nullptr;
}

void WorkerConnectionPool::giveBack(std::unique_ptr<Connection> connection) {
  connection->idle_since = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  if (idle_.size() >= kMaxIdle) idle_.erase(idle_.begin());  // the oldest goes
  idle_.push_back(std::move(connection));
}

namespace {

// What one request on a connection came to.
struct Exchanged {
  std::optional<Result<HttpReply>> reply;
  bool reusable = false;       // the reply was read whole and both sides keep the connection
  bool answered_some = false;  // some of a reply arrived (so the request reached the worker)
};

// One request on `connection`, connecting it first when new (`opened` counts that).
net::awaitable<void> exchange(WorkerConnectionPool::Connection& connection,
                              const WorkerEndpoint& endpoint, const std::string& host,
                              uint16_t port, const std::string& method, const std::string& target,
                              const std::string& body, std::chrono::milliseconds timeout,
                              Exchanged& out) {
  TlsStream& stream = *connection.stream;
  if (!beast::get_lowest_layer(stream).socket().is_open()) {
    Status connected = co_await connect(stream, host, port, endpoint.fingerprint, timeout);
    if (!connected.ok()) {
      out.reply.emplace(std::move(connected));
      co_return;
    }
  }
  auto req = makeRequest(method, target, body, host, endpoint.token, true);
  error_code ec;
  beast::get_lowest_layer(stream).expires_after(timeout);
  co_await http::async_write(stream, req, net::redirect_error(net::use_awaitable, ec));
  // On a write error the server may still have answered (e.g. 413 before the whole body): read.
  error_code write_ec = ec;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxReplyBytes);
  co_await http::async_read(stream, connection.buffer, parser,
                            net::redirect_error(net::use_awaitable, ec));
  out.answered_some = parser.got_some();
  if (ec && write_ec) {
    out.reply.emplace(Status(Code::Unavailable, "sending to the worker: " + write_ec.message()));
    co_return;
  }
  if (ec) {
    out.reply.emplace(Status(Code::Unavailable, "reading the worker's reply: " + ec.message()));
    co_return;
  }
  out.reusable = !write_ec && parser.is_done() && parser.get().keep_alive();
  HttpReply reply;
  reply.status = static_cast<int>(parser.get().result_int());
  reply.content_type = std::string(parser.get()[http::field::content_type]);
  reply.body = std::move(parser.get().body());
  out.reply.emplace(std::move(reply));
}

net::awaitable<Result<bool>> streamLogs(ssl::context& ctx, const WorkerEndpoint& endpoint,
                                        const std::string& host, uint16_t port,
                                        const std::string& target,
                                        const std::function<bool(const LogEntry&)>& on_entry) {
  TlsStream stream(co_await net::this_coro::executor, ctx);
  Status connected = co_await connect(stream, host, port, endpoint.fingerprint, endpoint.timeout);
  if (!connected.ok()) co_return connected;
  auto req = makeRequest("GET", target, {}, host, endpoint.token, false);
  error_code ec;
  beast::get_lowest_layer(stream).expires_after(endpoint.timeout);
  co_await http::async_write(stream, req, net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return Status(Code::Unavailable, "sending to the worker: " + ec.message());
  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(std::numeric_limits<uint64_t>::max());
  co_await http::async_read_header(stream, buffer, parser,
                                   net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return Status(Code::Unavailable, "reading the worker's reply: " + ec.message());
  int http_status = static_cast<int>(parser.get().result_int());
  std::string pending;
  char chunk[8192];
  bool keep_going = true;
  while (!parser.is_done() && keep_going) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof chunk;
    // Follow streams stay idle while the execution is quiet: the server sends a keep-alive
    // line every 30 s, so a read that waits longer than that means the worker is gone.
    beast::get_lowest_layer(stream).expires_after(endpoint.timeout + std::chrono::seconds(35));
    // read_some, not read: a read would wait until the 8 KiB buffer is full, holding back the
    // lines of a follow until that much output accumulated.
    co_await http::async_read_some(stream, buffer, parser,
                                   net::redirect_error(net::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) co_return Status(Code::Unavailable, "reading logs: " + ec.message());
    size_t n = sizeof chunk - parser.get().body().size;
    pending.append(chunk, n);
    if (http_status >= 400) {
      if (pending.size() > (1 << 20)) break;
      continue;
    }
    size_t newline = 0;
    while ((newline = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (line.empty()) continue;
      Json json = Json::parse(line, nullptr, false);
      if (json.is_discarded()) co_return Status(Code::Internal, "logs: a line is not JSON");
      auto entry = logEntryFromJson(json);
      if (!entry.ok()) co_return entry.status();
      if (!on_entry(entry.value())) {
        keep_going = false;
        break;
      }
    }
  }
  if (http_status >= 400) co_return statusFromReply(http_status, pending);
  co_return true;
}

}  // namespace

Status statusFromReply(int http_status, const std::string& body) {
  std::string message = body;
  Json json = Json::parse(body, nullptr, false);
  if (!json.is_discarded() && json.is_object() && json.contains("message") &&
      json["message"].is_string()) {
    message = json["message"].get<std::string>();
  }
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r')) {
    message.pop_back();
  }
  Code code = Code::Internal;
  switch (http_status) {
    case 400:
    case 413:
    case 422:
    case 431:
      code = Code::InvalidArgument;
      break;
    case 401:
      code = Code::Unauthenticated;
      break;
    case 403:
      code = Code::Forbidden;
      break;
    case 404:
      code = Code::NotFound;
      break;
    case 409:
      code = Code::AlreadyExists;
      break;
    case 429:
    case 503:
      code = Code::Unavailable;
      break;
    case 504:
      code = Code::Timeout;
      break;
    default:
      break;
  }
  return Status(code, fmt::format("worker API {}: {}", http_status, message));
}

WorkerClient::WorkerClient(WorkerEndpoint endpoint, std::string host, uint16_t port,
                           std::shared_ptr<WorkerConnectionPool> pool)
    : endpoint_(std::move(endpoint)), host_(std::move(host)), port_(port), pool_(std::move(pool)) {
  if (!pool_) pool_ = std::make_shared<WorkerConnectionPool>();
}

Result<std::unique_ptr<WorkerClient>> WorkerClient::create(
    WorkerEndpoint endpoint, std::shared_ptr<WorkerConnectionPool> pool) {
  constexpr std::string_view kScheme = "https://";
  if (endpoint.url.rfind(kScheme, 0) != 0) {
    return invalidArgument("worker endpoint \"" + endpoint.url + "\": want https://host:port");
  }
  std::string rest = endpoint.url.substr(kScheme.size());
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || rest.find('/') != std::string::npos) {
    return invalidArgument("worker endpoint \"" + endpoint.url + "\": want https://host:port");
  }
  std::string host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  std::string_view port_text = std::string_view(rest).substr(colon + 1);
  auto [ptr, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (host.empty() || ec != std::errc() || ptr != port_text.data() + port_text.size() ||
      port <= 0 || port > 65535) {
    return invalidArgument("worker endpoint \"" + endpoint.url + "\": bad host or port");
  }
  if (endpoint.fingerprint.size() != 64) {
    return invalidArgument("worker fingerprint: want 64 hex digits (sha256)");
  }
  return std::unique_ptr<WorkerClient>(new WorkerClient(
      std::move(endpoint), std::move(host), static_cast<uint16_t>(port), std::move(pool)));
}

Result<HttpReply> WorkerClient::request(const std::string& method, const std::string& target,
                                        const std::string& body,
                                        std::chrono::milliseconds extra_timeout,
                                        std::stop_token cancel) const {
  using Connection = WorkerConnectionPool::Connection;
  auto timeout = endpoint_.timeout + extra_timeout;
  // A kept connection may have been closed by the worker meanwhile (idle timeout, restart):
  // when it fails before any reply arrived, the request never reached the worker, so it is sent
  // again on a new connection.
  for (bool fresh : {false, true}) {
    // Declared before `connection`: a cancelled call's coroutine frame, destroyed with the
    // connection's loop, refers to it.
    Exchanged exchanged;
    std::unique_ptr<Connection> connection = fresh ? nullptr : pool_->take();
    bool reused = connection != nullptr;
    if (!connection) {
      connection = std::make_unique<Connection>();
      pool_->opened_.fetch_add(1);
    }
    if (!connection->stream) connection->stream.emplace(connection->ioc, connection->ctx);
    connection->ioc.restart();
    auto task = [&]() -> net::awaitable<void> {
      co_await exchange(*connection, endpoint_, host_, port_, method, target, body, timeout,
                        exchanged);
    };
    Result<HttpReply> result = runOn<HttpReply>(connection->ioc, task(), exchanged.reply, cancel);
    if (result.ok()) {
      if (exchanged.reusable) pool_->giveBack(std::move(connection));
      return result;
    }
    if (!reused || exchanged.answered_some || cancel.stop_requested()) return result;
  }
  return Status(Code::Internal, "worker client: unreachable");
}

Result<Json> WorkerClient::call(const std::string& method, const std::string& target,
                                const std::string& body, std::chrono::milliseconds extra_timeout,
                                std::stop_token cancel) const {
  CLRK_ASSIGN_OR_RETURN(HttpReply reply,
                        request(method, target, body, extra_timeout, std::move(cancel)));
  if (reply.status >= 400) return statusFromReply(reply.status, reply.body);
  Json json = Json::parse(reply.body, nullptr, false);
  if (json.is_discarded()) {
    return Status(Code::Internal, "worker API: reply is not JSON: " + reply.body.substr(0, 200));
  }
  return json;
}

Result<ExecutionStatus> WorkerClient::run(const ExecutionRequest& request) const {
  CLRK_ASSIGN_OR_RETURN(Json json, call("POST", "/v1/executions", toJson(request).dump()));
  return executionStatusFromJson(json);
}

Result<ExecutionStatus> WorkerClient::get(const std::string& id, std::chrono::seconds wait,
                                          std::stop_token cancel) const {
  if (!isValidExecutionId(id)) return invalidArgument("execution id \"" + id + "\" is not valid");
  std::string target = "/v1/executions/" + id;
  if (wait.count() > 0) target += "?waitSeconds=" + std::to_string(wait.count());
  CLRK_ASSIGN_OR_RETURN(Json json, call("GET", target, {}, wait, std::move(cancel)));
  return executionStatusFromJson(json);
}

Result<ExecutionStatus> WorkerClient::stop(const std::string& id) const {
  if (!isValidExecutionId(id)) return invalidArgument("execution id \"" + id + "\" is not valid");
  CLRK_ASSIGN_OR_RETURN(Json json, call("POST", "/v1/executions/" + id + "/stop"));
  return executionStatusFromJson(json);
}

Result<std::vector<ExecutionStatus>> WorkerClient::list() const {
  CLRK_ASSIGN_OR_RETURN(Json json, call("GET", "/v1/executions"));
  std::vector<ExecutionStatus> out;
  if (!json.contains("items") || !json["items"].is_array()) {
    return Status(Code::Internal, "worker API: list reply has no items");
  }
  for (const auto& item : json["items"]) {
    CLRK_ASSIGN_OR_RETURN(auto status, executionStatusFromJson(item));
    out.push_back(std::move(status));
  }
  return out;
}

Result<Json> WorkerClient::status() const { return call("GET", "/v1/status"); }

Result<std::vector<WarmPoolState>> WorkerClient::setWarmPools(
    const std::vector<WarmPoolSpec>& pools, std::stop_token cancel) const {
  Json items = Json::array();
  for (const auto& pool : pools) items.push_back(toJson(pool));
  CLRK_ASSIGN_OR_RETURN(Json json, call("PUT", "/v1/warm-pools", Json{{"pools", items}}.dump(), {},
                                        std::move(cancel)));
  if (!json.contains("pools") || !json["pools"].is_array()) {
    return Status(Code::Internal, "worker API: warm-pools reply has no pools");
  }
  std::vector<WarmPoolState> states;
  for (const auto& item : json["pools"]) {
    CLRK_ASSIGN_OR_RETURN(auto state, warmPoolStateFromJson(item));
    states.push_back(std::move(state));
  }
  return states;
}

Status WorkerClient::logs(const std::string& id, bool follow,
                          const std::function<bool(const LogEntry&)>& on_entry,
                          std::stop_token cancel) const {
  if (!isValidExecutionId(id)) return invalidArgument("execution id \"" + id + "\" is not valid");
  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(ssl::verify_none);
  // Declared after `ctx`: a cancelled stream's coroutine frame is destroyed with `ioc`.
  net::io_context ioc;
  std::string target = "/v1/executions/" + id + "/logs" + (follow ? "?follow=true" : "");
  std::optional<Result<bool>> out;
  auto task = [&]() -> net::awaitable<void> {
    out.emplace(co_await streamLogs(ctx, endpoint_, host_, port_, target, on_entry));
  };
  auto result = runOn<bool>(ioc, task(), out, std::move(cancel));
  return result.ok() ? Status() : result.status();
}

}  // namespace clrk::worker
