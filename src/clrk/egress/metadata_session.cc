// The metadata endpoint's side of a connection: reads bounded HTTP/1.1 requests, asks the
// MetadataStore and writes its replies, one telemetry record per request (rule "clrk-metadata").
#include "clrk/egress/proxy_internal.h"
#include "clrk/egress/reply.h"
#include "clrk/telemetry/attributes.h"

#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

#include <limits>
#include <optional>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange
#include <vector>

namespace clrk::egress::internal {
namespace {

namespace http = beast::http;
using net::use_awaitable;
using std::chrono::steady_clock;
using std::chrono::system_clock;

constexpr std::string_view kRule = "clrk-metadata";

std::string_view ssv(beast::string_view s) { return {s.data(), s.size()}; }

// The origin form of a request target: "/event" stays, "http://host/event?x" becomes "/event?x".
std::string originForm(std::string_view target) {
  if (target.empty() || target.front() == '/') return std::string(target);
  size_t scheme = target.find("://");
  if (scheme == std::string_view::npos) return std::string(target);
  size_t slash = target.find_first_of("/?", scheme + 3);
  if (slash == std::string_view::npos) return "/";
  std::string out(target.substr(slash));
  if (out.front() == '?') out.insert(0, "/");
  return out;
}

struct Exchange {
  system_clock::time_point start = system_clock::now();
  steady_clock::time_point started = steady_clock::now();
  std::string method;
  std::string path;
  int status = 0;
  std::string reason;
  uint64_t bytes_sent = 0;      // request body
  uint64_t bytes_received = 0;  // reply body
};

void emit(Shared& shared, const MetadataCaller& caller, const Exchange& ex) {
  namespace attr = telemetry::attr;
  telemetry::Record record;
  record.name = fmt::format("{} {} {}", ex.method, kMetadataHost, ex.path);
  record.start = ex.start;
  record.end = ex.start + (steady_clock::now() - ex.started);
  telemetry::set(record, attr::kClrkLayer, std::string("l7"));
  telemetry::set(record, attr::kHttpRequestMethod, ex.method);
  telemetry::set(record, attr::kUrlFull, fmt::format("http://{}{}", kMetadataHost, ex.path));
  telemetry::set(record, attr::kServerAddress, std::string(kMetadataHost));
  telemetry::set(record, attr::kServerPort, int64_t{kMetadataPort});
  if (ex.status) telemetry::set(record, attr::kHttpResponseStatusCode, int64_t{ex.status});
  telemetry::set(record, attr::kClrkDecision, std::string("allow"));
  telemetry::set(record, attr::kClrkRule, std::string(kRule));
  if (!ex.reason.empty()) telemetry::set(record, attr::kClrkReason, ex.reason);
  telemetry::set(record, "clrk.listener", caller.listener);
  telemetry::set(
      record, attr::kClrkDurationMs,
      std::chrono::duration<double, std::milli>(steady_clock::now() - ex.started).count());
  telemetry::set(record, attr::kClrkBytesSent, static_cast<int64_t>(ex.bytes_sent));
  telemetry::set(record, attr::kClrkBytesReceived, static_cast<int64_t>(ex.bytes_received));
  setIdentityAttributes(record, caller.client_ip, caller.identity.get());
  record.status_code = ex.status >= 500 || ex.status == 0 ? 2 : 1;
  if (record.status_code == 2) record.status_message = fmt::format("HTTP {}", ex.status);
  shared.emit(std::move(record));
}

net::awaitable<bool> write(beast::tcp_stream& stream, unsigned version, bool keep_alive,
                           const MetadataReply& reply) {
  ReplyHeaders headers = reply.headers;
  headers.emplace_back("Cache-Control", "no-store");
  co_return co_await writeReply(stream, version, keep_alive, reply.status, "clrk-metadata",
                                reply.content_type, reply.body, headers);
}

}  // namespace

net::awaitable<void> serveMetadata(Shared& shared, beast::tcp_stream& stream,
                                   beast::flat_buffer& buffer, const MetadataCaller& caller,
                                   http::request_parser<http::empty_body>* first) {
  // The explicit listener hands over one absolute-URI request: answer it and close, since the
  // client may send its next request on this connection to another host.
  const bool single = first != nullptr;
  for (;;) {
    std::optional<http::request_parser<http::empty_body>> own;
    http::request_parser<http::empty_body>* head = first;
    first = nullptr;
    boost::system::error_code ec;
    Exchange ex;
    if (head == nullptr) {
      own.emplace();
      head = &*own;
      head->header_limit(shared.options.max_header_bytes);
      // The body's limit is checked below, with a 413 (the parser's default would make a large
      // Content-Length fail the head).
      head->body_limit(std::numeric_limits<uint64_t>::max());
      // The whole head within header_timeout once it starts; an idle keep-alive connection
      // waits idle_timeout for it.
      stream.expires_after(std::chrono::milliseconds(
          buffer.size() > 0 ? shared.options.header_timeout_ms : shared.options.idle_timeout_ms));
      if (buffer.size() == 0) {
        size_t n = co_await stream.async_read_some(buffer.prepare(4096),
                                                   net::redirect_error(use_awaitable, ec));
        buffer.commit(n);
        if (ec) co_return;
        stream.expires_after(std::chrono::milliseconds(shared.options.header_timeout_ms));
      }
      co_await http::async_read_header(stream, buffer, *head,
                                       net::redirect_error(use_awaitable, ec));
      ex.start = system_clock::now();
      ex.started = steady_clock::now();
      if (ec) {
        if (ec == http::error::end_of_stream || ec == net::error::eof ||
            ec == net::error::operation_aborted || ec == beast::error::timeout) {
          co_return;
        }
        bool too_big = ec == http::error::header_limit;
        MetadataReply reply = MetadataStore::error(
            too_big ? 431 : 400, too_big ? "header_too_large" : "bad_request",
            too_big
                ? fmt::format("request header exceeds {} bytes", shared.options.max_header_bytes)
                : fmt::format("malformed HTTP request: {}", ec.message()));
        ex.method = "?";
        ex.path = "/";
        ex.status = reply.status;
        ex.reason = "malformed request";
        co_await write(stream, 11, false, reply);
        emit(shared, caller, ex);
        co_return;
      }
    }
    shared.counters.requests.fetch_add(1, std::memory_order_relaxed);
    auto& req = head->get();
    unsigned version = req.version();
    bool keep_alive = req.keep_alive() && !single;
    ex.method = std::string(ssv(req.method_string()));
    std::string target = originForm(ssv(req.target()));
    ex.path = target.substr(0, target.find('?'));
    std::string content_type(ssv(req[http::field::content_type]));
    bool has_body = head->content_length().value_or(0) > 0 || head->chunked();

    MetadataReply reply;
    std::string body;
    if (head->content_length().value_or(0) > kMaxMetadataResponseBytes) {
      // Refused before reading: the connection closes with the body unread.
      reply = MetadataStore::tooLarge();
      keep_alive = false;
    } else {
      if (has_body && beast::iequals(req[http::field::expect], "100-continue")) {
        co_await writeContinue(stream, version, ec);
        if (ec) co_return;
      }
      http::request_parser<http::string_body> full(std::move(*head));
      full.body_limit(kMaxMetadataResponseBytes);
      stream.expires_after(std::chrono::milliseconds(shared.options.idle_timeout_ms));
      co_await http::async_read(stream, buffer, full, net::redirect_error(use_awaitable, ec));
      if (ec == http::error::body_limit) {
        reply = MetadataStore::tooLarge();
        keep_alive = false;
      } else if (ec) {
        co_return;
      } else {
        body = std::move(full.get().body());
        ex.bytes_sent = body.size();
        if (shared.metadata == nullptr) {
          reply = MetadataStore::error(404, "not_found",
                                       "this egress serves no metadata endpoint (it runs outside "
                                       "a clrk worker)");
        } else {
          reply = shared.metadata->handle(caller.identity.get(),
                                          MetadataRequest{ex.method, target, content_type, body});
        }
      }
    }
    ex.status = reply.status;
    ex.bytes_received = reply.body.size();
    if (reply.status >= 400) ex.reason = "metadata endpoint: HTTP " + std::to_string(reply.status);
    bool written = co_await write(stream, version, keep_alive, reply);
    emit(shared, caller, ex);
    if (written && reply.status == 413) {
      co_await lingerBeforeClose(stream, 2 * kMaxMetadataResponseBytes);
    }
    if (!written || !keep_alive) co_return;
  }
}

}  // namespace clrk::egress::internal
