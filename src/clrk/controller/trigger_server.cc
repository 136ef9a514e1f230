#include "clrk/controller/trigger_server.h"

#include "clrk/base/log.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <variant>

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
// Streaming: output queued for a slow client before the follower waits (kStreamStall at most,
// then the stream is abandoned); SSE comments keep an idle stream visibly alive.
constexpr size_t kStreamBufferBytes = 1 << 20;
constexpr auto kStreamStall = std::chrono::seconds(30);
constexpr auto kSseKeepAlive = std::chrono::seconds(15);

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

enum class StreamMode { Off, Chunked, Sse };

// A streaming HTTP/1.1 response for agents with spec.streaming.enabled: chunked stdout by
// default, Server-Sent Events when the client accepts text/event-stream. HTTP/1.0 clients get
// the buffered reply.
StreamMode streamModeFor(const http::request<http::string_body>& request) {
  if (request.version() < 11) return StreamMode::Off;
  auto accept = request.find(http::field::accept);
  if (accept != request.end() &&
      accept->value().find("text/event-stream") != beast::string_view::npos) {
    return StreamMode::Sse;
  }
  return StreamMode::Chunked;
}

// Where a streaming invocation's output meets the coroutine writing the response. The manager's
// threads post events to the I/O thread (which alone touches `events`, `result` and `timer`);
// `mutex` guards the byte count that makes a follower wait for a slow client, and `closed`.
struct StreamChannel {
  struct Event {
    std::optional<InvokeResult> placed;  // set: the execution was placed (begin)
    worker::LogEntry line;
  };
  explicit StreamChannel(const net::any_io_executor& executor) : timer(executor) {}

  void close() {
    std::lock_guard lock(mutex);
    closed = true;
    space.notify_all();
  }
  void release(size_t bytes) {
    std::lock_guard lock(mutex);
    queued_bytes -= std::min(queued_bytes, bytes);
    space.notify_all();
  }
  // From any thread: queues `event` on the I/O thread and wakes the writer.
  static void post(const std::shared_ptr<StreamChannel>& channel, Event event) {
    net::post(channel->timer.get_executor(), [channel, event = std::move(event)]() mutable {
      channel->events.push_back(std::move(event));
      channel->timer.cancel();
    });
  }

  net::steady_timer timer;
  std::deque<Event> events;
  std::optional<InvokeResult> result;
  std::mutex mutex;
  std::condition_variable space;
  size_t queued_bytes = 0;
  bool closed = false;
};

// The InvocationManager's side of a StreamChannel.
class ChannelSink : public OutputSink {
 public:
  explicit ChannelSink(std::shared_ptr<StreamChannel> channel) : channel_(std::move(channel)) {}

  // OutputSink
  void begin(const InvokeResult& placed) override {
    StreamChannel::Event event;
    event.placed = placed;
    StreamChannel::post(channel_, std::move(event));
  }
  bool line(const worker::LogEntry& entry) override {
    {
      std::unique_lock lock(channel_->mutex);
      bool room = channel_->space.wait_for(lock, kStreamStall, [this] {
        return channel_->closed || channel_->queued_bytes < kStreamBufferBytes;
      });
      if (!room) channel_->closed = true;  // the client stopped reading
      if (channel_->closed) return false;
      channel_->queued_bytes += entry.text.size();
    }
    StreamChannel::Event event;
    event.line = entry;
    StreamChannel::post(channel_, std::move(event));
    return true;
  }

 private:
  std::shared_ptr<StreamChannel> channel_;
};

// One SSE event: `data` is one line of JSON (no raw newlines can split it).
std::string sseEvent(std::string_view name, const Json& data) {
  return "event: " + std::string(name) +
         "\ndata: " + data.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n\n";
}

Json resultEventData(const InvokeResult& result) {
  Json data = {{"invocation", result.invocation_name},
               {"requestId", result.request_id},
               {"worker", result.worker},
               {"phase", result.phase},
               {"reason", result.reason},
               {"message", result.message}};
  if (result.exit_code) data["exitCode"] = *result.exit_code;
  // Metadata delivery: "Response" when the agent POSTed its answer, which is not in the stream
  // (the Invocation's status.output has it).
  if (!result.output_source.empty()) data["outputSource"] = result.output_source;
  return data;
}

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

  // The invocation `request` asks for, or the reply when it asks for none or is wrong.
  std::variant<Reply, InvokeRequest> route(const http::request<http::string_body>& request) {
    std::string target(request.target());
    auto parts = splitPath(target);
    if (parts.size() == 1 && parts[0] == "healthz") {
      return Reply{200, "text/plain", "ok\n", {}};
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
        return errorReply(400, "BadRequest",
                          "X-Clrk-TaskAgent \"" + value + "\": want namespace/name");
      }
    } else {
      return errorReply(
          404, "NotFound",
          "no route for " + target + "; POST /v1/namespaces/{namespace}/taskagents/{name}/invoke");
    }
    if (request.method() != http::verb::post) {
      return errorReply(405, "MethodNotAllowed", "invoke with POST");
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
    return invoke_request;
  }

  net::awaitable<bool> respond(beast::tcp_stream& stream,
                               const http::request<http::string_body>& request, bool keep_alive) {
    auto routed = route(request);
    if (auto* reply = std::get_if<Reply>(&routed)) {
      co_return co_await write(stream, *reply, keep_alive && !stopped_.load());
    }
    InvokeRequest invoke_request = std::move(std::get<InvokeRequest>(routed));
    StreamMode mode = streamModeFor(request);
    if (mode != StreamMode::Off) {
      co_return co_await invokeStreaming(stream, std::move(invoke_request), mode, keep_alive);
    }
    auto result = co_await invoke(std::move(invoke_request));
    Reply reply = result ? replyForResult(*result)
                         : errorReply(503, "Unavailable",
                                      "the controller-manager cannot take invocations now");
    co_return co_await write(stream, reply, keep_alive && !stopped_.load());
  }

  // Runs the invocation with an OutputSink. An agent that does not stream (or an invocation
  // refused before placement) never begins the stream and gets the buffered reply; otherwise
  // the head goes out when the execution is placed, then each line as it comes, then the
  // outcome (trailers, or the SSE `result` event). Returns whether the connection may be reused.
  net::awaitable<bool> invokeStreaming(beast::tcp_stream& stream, InvokeRequest invoke_request,
                                       StreamMode mode, bool keep_alive) {
    auto channel = std::make_shared<StreamChannel>(co_await net::this_coro::executor);
    // However this ends (written, client gone, server stopping), the follower stops waiting.
    struct CloseOnExit {
      std::shared_ptr<StreamChannel> channel;
      ~CloseOnExit() { channel->close(); }
    } close_on_exit{channel};
    invoke_request.output_sink = std::make_shared<ChannelSink>(channel);
    Status started =
        invocations_.runAsync(std::move(invoke_request), [channel](InvokeResult result) {
          net::post(channel->timer.get_executor(), [channel, result = std::move(result)]() mutable {
            channel->result = std::move(result);
            channel->timer.cancel();
          });
        });
    if (!started.ok()) {
      Reply refused =
          errorReply(503, "Unavailable", "the controller-manager cannot take invocations now");
      co_return co_await write(stream, refused, keep_alive && !stopped_.load());
    }
    bool began = false;
    for (;;) {
      if (channel->events.empty() && !channel->result) {
        bool keep_alive_comment = began && mode == StreamMode::Sse;
        if (keep_alive_comment) {
          channel->timer.expires_after(kSseKeepAlive);
        } else {
          channel->timer.expires_at(std::chrono::steady_clock::time_point::max());
        }
        error_code ec;
        co_await channel->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (!ec && keep_alive_comment && channel->events.empty() && !channel->result) {
          bool written = co_await writeChunk(stream, ": keep-alive\n\n");
          if (!written) co_return false;
        }
        continue;
      }
      if (!channel->events.empty()) {
        StreamChannel::Event event = std::move(channel->events.front());
        channel->events.pop_front();
        if (event.placed) {
          began = true;
          bool written = co_await writeStreamHead(stream, *event.placed, mode, keep_alive);
          if (!written) co_return false;
          continue;
        }
        std::string data;
        if (mode == StreamMode::Sse) {
          data = sseEvent(event.line.stream, Json{{"text", event.line.text}});
        } else if (event.line.stream == "stdout") {
          data = event.line.text + "\n";
        }
        bool written = true;
        if (!data.empty()) written = co_await writeChunk(stream, data);
        channel->release(event.line.text.size());
        if (!written) co_return false;
        continue;
      }
      // The outcome; every line was written before it.
      if (!began) {
        Reply reply = replyForResult(*channel->result);
        co_return co_await write(stream, reply, keep_alive && !stopped_.load());
      }
      bool ended = co_await writeStreamEnd(stream, *channel->result, mode);
      bool reusable = ended && keep_alive && !stopped_.load();
      co_return reusable;
    }
  }

  net::awaitable<bool> writeStreamHead(beast::tcp_stream& stream, const InvokeResult& placed,
                                       StreamMode mode, bool keep_alive) {
    http::response<http::empty_body> head{http::status::ok, 11};
    head.set(http::field::server, "clrk-controller-manager");
    head.set(http::field::cache_control, "no-cache");
    head.set("X-Content-Type-Options", "nosniff");
    if (mode == StreamMode::Sse) {
      head.set(http::field::content_type, "text/event-stream");
    } else {
      head.set(http::field::content_type, "text/plain; charset=utf-8");
      head.set(http::field::trailer,
               "X-Clrk-Phase, X-Clrk-Reason, X-Clrk-Exit-Code, X-Clrk-Output-Source");
    }
    head.set("X-Clrk-Stream", mode == StreamMode::Sse ? "sse" : "chunked");
    if (!placed.invocation_name.empty()) head.set("X-Clrk-Invocation", placed.invocation_name);
    if (!placed.request_id.empty()) head.set("X-Clrk-Request-Id", placed.request_id);
    if (!placed.worker.empty()) head.set("X-Clrk-Worker", placed.worker);
    head.keep_alive(keep_alive);
    head.chunked(true);
    http::response_serializer<http::empty_body> serializer(head);
    error_code ec;
    stream.expires_after(kReadTimeout);
    co_await http::async_write_header(stream, serializer,
                                      net::redirect_error(net::use_awaitable, ec));
    stream.expires_never();  // the stream may idle for as long as the agent is quiet
    co_return !ec;
  }

  net::awaitable<bool> writeChunk(beast::tcp_stream& stream, const std::string& data) {
    error_code ec;
    stream.expires_after(kReadTimeout);
    co_await net::async_write(stream, http::make_chunk(net::buffer(data)),
                              net::redirect_error(net::use_awaitable, ec));
    stream.expires_never();
    co_return !ec;
  }

  net::awaitable<bool> writeStreamEnd(beast::tcp_stream& stream, const InvokeResult& result,
                                      StreamMode mode) {
    error_code ec;
    if (mode == StreamMode::Sse) {
      bool written = co_await writeChunk(stream, sseEvent("result", resultEventData(result)));
      if (!written) co_return false;
      stream.expires_after(kReadTimeout);
      co_await net::async_write(stream, http::make_chunk_last(),
                                net::redirect_error(net::use_awaitable, ec));
      co_return !ec;
    }
    http::fields trailer;
    trailer.set("X-Clrk-Phase", result.phase);
    trailer.set("X-Clrk-Reason", result.reason);
    if (result.exit_code) trailer.set("X-Clrk-Exit-Code", std::to_string(*result.exit_code));
    if (!result.output_source.empty()) trailer.set("X-Clrk-Output-Source", result.output_source);
    stream.expires_after(kReadTimeout);
    co_await net::async_write(stream, http::make_chunk_last(trailer),
                              net::redirect_error(net::use_awaitable, ec));
    co_return !ec;
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
        bool written = co_await respond(stream, request, keep_alive);
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
