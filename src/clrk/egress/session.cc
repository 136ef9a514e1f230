// One client connection through the data plane: sniff, L4 decision, TLS interception, the HTTP/1.1
// filter chain (policy, routing, credentials, header rewrites, rate limits, budgets, telemetry)
// and upstream forwarding with bodies streamed in bounded chunks.
#include "clrk/base/ascii.h"
#include "clrk/base/log.h"
#include "clrk/egress/filters/request_edits.h"
#include "clrk/egress/h2/convert.h"
#include "clrk/egress/h2/server.h"
#include "clrk/egress/llm/detect.h"
#include "clrk/egress/llm/errors.h"
#include "clrk/egress/llm/mcp.h"
#include "clrk/egress/llm/request.h"
#include "clrk/egress/llm/usage.h"
#include "clrk/egress/proxy_internal.h"
#include "clrk/egress/reply.h"
#include "clrk/egress/tls/client_hello.h"
#include "clrk/egress/tls/upstream.h"
#include "clrk/telemetry/attributes.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <netinet/in.h>
#include <random>
#include <sys/socket.h>
#include <type_traits>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange

namespace clrk::egress::internal {
namespace {

namespace http = beast::http;
using net::use_awaitable;
using std::chrono::steady_clock;
using std::chrono::system_clock;

constexpr size_t kRelayChunk = 16 * 1024;
// Beast 1.74 compares the length against an empty optional as "over the limit", so
// body_limit(boost::none) rejects every body: use the largest value instead.
constexpr uint64_t kUnlimitedBody = std::numeric_limits<uint64_t>::max();

// Attributes specific to the data plane (the shared ones are in telemetry/attributes.h).
constexpr std::string_view kAttrListener = "clrk.listener";  // "transparent" | "explicit"
constexpr std::string_view kAttrMcpError = "clrk.mcp.is_error";
constexpr std::string_view kAttrCredentialWarning = "clrk.credential_warning";
constexpr std::string_view kAttrDestinationAddress = "destination.address";  // original dst IP

beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }
std::string_view ssv(beast::string_view s) { return {s.data(), s.size()}; }

bool isIpLiteral(std::string_view host) {
  boost::system::error_code ec;
  net::ip::make_address(std::string(host), ec);
  return !ec;
}

bool ignorable(const boost::system::error_code& ec) { return ec == http::error::need_buffer; }

// Adapts Beast header fields to the filter interface.
class FieldsHeaders final : public filters::Headers {
 public:
  explicit FieldsHeaders(http::fields& fields) : fields_(fields) {}
  std::optional<std::string_view> get(std::string_view name) const override {
    auto it = fields_.find(bsv(name));
    if (it == fields_.end()) return std::nullopt;
    return ssv(it->value());
  }
  void set(std::string_view name, std::string_view value) override {
    fields_.set(bsv(name), bsv(value));
  }
  void add(std::string_view name, std::string_view value) override {
    fields_.insert(bsv(name), bsv(value));
  }
  void remove(std::string_view name) override { fields_.erase(bsv(name)); }

 private:
  http::fields& fields_;
};

// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named by Connection (tokens
// are comma-separated, with optional spaces and tabs around them). TE is kept for the rule
// below even when Connection names it, as RFC 9110 §10.1.4 says a sender of TE must. Allocates
// nothing.
void stripHopByHop(http::fields& fields, bool keep_upgrade) {
  // Most messages carry none of these: one pass over the list is cheaper than the lookups below.
  bool any = false;
  for (const auto& field : fields) {
    switch (field.name()) {
      case http::field::connection:
      case http::field::upgrade:
      case http::field::keep_alive:
      case http::field::proxy_connection:
      case http::field::te:
        any = true;
        break;
      default:
        break;
    }
  }
  if (!any) return;
  // Erasing other fields keeps the Connection fields (and their values) in place.
  for (auto it = fields.find(http::field::connection);
       it != fields.end() && it->name() == http::field::connection; ++it) {
    anyListElement(ssv(it->value()), [&](std::string_view token) {
      if (!asciiEqualsIgnoreCase(token, "close") && !asciiEqualsIgnoreCase(token, "keep-alive") &&
          !asciiEqualsIgnoreCase(token, "connection") && !asciiEqualsIgnoreCase(token, "te") &&
          !(keep_upgrade && asciiEqualsIgnoreCase(token, "upgrade"))) {
        fields.erase(bsv(token));
      }
      return false;
    });
  }
  if (!keep_upgrade) {
    fields.erase(http::field::connection);
    fields.erase(http::field::upgrade);
  }
  fields.erase(http::field::keep_alive);
  fields.erase("Proxy-Connection");
  // TE is hop-by-hop but for "trailers" (what HTTP/2 and gRPC need end to end); Trailer is end to
  // end (RFC 9110 §6.6.2).
  bool te_trailers = false;
  for (auto range = fields.equal_range(http::field::te); range.first != range.second;
       ++range.first) {
    te_trailers = te_trailers || h2::teListsTrailers(ssv(range.first->value()));
  }
  fields.erase(http::field::te);
  if (te_trailers) fields.set(http::field::te, "trailers");
}

// <linux/netfilter_ipv4.h> clashes with <netinet/in.h>; the option's value is ABI.
constexpr int kSoOriginalDst = 80;

// The original destination of a REDIRECTed connection; nullopt when not redirected.
std::optional<tcp::endpoint> originalDestination(tcp::socket& socket) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  if (getsockopt(socket.native_handle(), SOL_IP, kSoOriginalDst, &addr, &len) != 0) {
    return std::nullopt;
  }
  net::ip::address_v4 ip(ntohl(addr.sin_addr.s_addr));
  tcp::endpoint endpoint(ip, ntohs(addr.sin_port));
  boost::system::error_code ec;
  auto local = socket.local_endpoint(ec);
  if (!ec && local == endpoint) return std::nullopt;  // a direct connection to the listener
  return endpoint;
}

struct Destination {
  std::string ip;  // original destination IP ("" when only a name is known)
  uint16_t port = 0;
  std::string hostname;  // best known name, lower case ("" when none)
};

// What one connection carries through its life.
struct Connection {
  Shared& shared;
  EventLoop& loop;
  std::shared_ptr<const config::Snapshot> snapshot;
  std::shared_ptr<const Identity> identity;
  std::string client_ip;
  std::string listener;  // "transparent" | "explicit"
  Destination dst;
  bool tls = false;
  std::string gateway_name;
  const config::GatewaySettings* gateway = nullptr;
  bool http2 = false;  // the client speaks HTTP/2 (each stream is bridged to the HTTP/1.1 chain)
};

void setIdentity(telemetry::Record& record, const Connection& conn) {
  setIdentityAttributes(record, conn.client_ip, conn.identity.get());
}

double msDouble(steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// ---------------------------------------------------------------------------------------------
// L4: records, splicing.

void emitL4(Connection& conn, std::string_view action, const std::string& rule,
            const std::string& reason, system_clock::time_point start,
            steady_clock::time_point started, uint64_t sent, uint64_t received,
            const std::string& sni) {
  namespace attr = telemetry::attr;
  telemetry::Record record;
  record.attributes.reserve(24);
  record.name = fmt::format(
      "tcp {}:{}", conn.dst.hostname.empty() ? conn.dst.ip : conn.dst.hostname, conn.dst.port);
  record.start = start;
  record.end = record.start + (steady_clock::now() - started);
  telemetry::add(record, attr::kClrkLayer, std::string("l4"));
  telemetry::add(record, attr::kNetworkTransport, std::string("tcp"));
  telemetry::add(record, attr::kServerAddress,
                 conn.dst.hostname.empty() ? conn.dst.ip : conn.dst.hostname);
  telemetry::add(record, attr::kServerPort, static_cast<int64_t>(conn.dst.port));
  if (!conn.dst.ip.empty()) telemetry::add(record, kAttrDestinationAddress, conn.dst.ip);
  if (!sni.empty()) telemetry::add(record, attr::kTlsServerName, sni);
  telemetry::add(record, attr::kClrkDecision, std::string(action));
  if (!rule.empty()) telemetry::add(record, attr::kClrkRule, rule);
  if (!reason.empty()) telemetry::add(record, attr::kClrkReason, reason);
  telemetry::add(record, kAttrListener, conn.listener);
  telemetry::add(record, attr::kClrkBytesSent, static_cast<int64_t>(sent));
  telemetry::add(record, attr::kClrkBytesReceived, static_cast<int64_t>(received));
  telemetry::add(record, attr::kClrkDurationMs, msDouble(steady_clock::now() - started));
  setIdentity(record, conn);
  if (action == "deny") {
    record.status_code = 2;
    record.status_message = reason;
  }
  conn.shared.emit(std::move(record));
}

// Copies bytes from `from` to `to` until EOF or error; counts them.
template <class From, class To>
net::awaitable<void> pump(From& from, To& to, uint64_t& count, uint32_t idle_ms) {
  std::array<char, kRelayChunk> buffer;
  for (;;) {
    boost::system::error_code ec;
    beast::get_lowest_layer(from).expires_after(std::chrono::milliseconds(idle_ms));
    size_t n =
        co_await from.async_read_some(net::buffer(buffer), net::redirect_error(use_awaitable, ec));
    if (n > 0) {
      beast::get_lowest_layer(to).expires_after(std::chrono::milliseconds(idle_ms));
      co_await net::async_write(to, net::buffer(buffer.data(), n),
                                net::redirect_error(use_awaitable, ec));
      if (ec) break;
      count += n;
    }
    if (ec) break;
  }
  // Half-close the other side so the peer sees EOF.
  boost::system::error_code ignored;
  beast::get_lowest_layer(to).socket().shutdown(tcp::socket::shutdown_send, ignored);
}

// Pumps both directions concurrently until both have ended.
template <class A, class B>
net::awaitable<void> splice(A& a, B& b, uint64_t& a_to_b, uint64_t& b_to_a, uint32_t idle_ms) {
  auto executor = co_await net::this_coro::executor;
  net::steady_timer other_done(executor, steady_clock::time_point::max());
  bool finished = false;
  net::co_spawn(executor, pump(a, b, a_to_b, idle_ms), [&](std::exception_ptr) {
    finished = true;
    other_done.cancel();
  });
  co_await pump(b, a, b_to_a, idle_ms);
  if (!finished) {
    boost::system::error_code ec;
    co_await other_done.async_wait(net::redirect_error(use_awaitable, ec));
  }
}

// ---------------------------------------------------------------------------------------------
// Upstream connections.

// True when the TLS handshake chose ALPN "h2".
bool negotiatedH2(TlsStream& stream) {
  const unsigned char* protocol = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(stream.native_handle(), &protocol, &length);
  return length == 2 && std::memcmp(protocol, "h2", 2) == 0;
}

struct DialTarget {
  std::string host;  // name (or IP) verified by TLS and sent as Host
  uint16_t port = 0;
  bool tls = false;
  std::string ip;  // a known IP to dial when no name must be resolved ("" = resolve host)
};

std::string poolKey(const DialTarget& target) {
  // Built by hand: this runs for every request, and fmt's runtime format parsing costs more than
  // the appends.
  std::string key;
  key.reserve(target.host.size() + target.ip.size() + 10);
  key += target.tls ? 's' : 'p';
  key += '|';
  key += target.host;
  key += '|';
  key += std::to_string(target.port);
  key += '|';
  key += target.ip;
  return key;
}

// Connects (or reuses a pooled connection). On failure returns nullptr and sets *failure.
// `allow_h2`: the request may travel on an HTTP/2 stream (an Upgrade request may not: HTTP/2 has
// no Upgrade, so it gets an HTTP/1.1 connection whatever the server prefers).
net::awaitable<std::unique_ptr<Upstream>> dial(Connection& conn, const DialTarget& target,
                                               std::string* failure, bool allow_h2 = true) {
  std::string key = poolKey(target);
  const bool offer_h2 = allow_h2 && target.tls && conn.shared.options.http2_upstream;
  if (offer_h2) {
    auto it = conn.loop.h2_upstreams.find(key);
    if (it != conn.loop.h2_upstreams.end()) {
      if (auto stream = it->second->open()) {
        conn.shared.counters.upstream_connections_reused.fetch_add(1, std::memory_order_relaxed);
        auto multiplexed = std::make_unique<Upstream>(std::move(*stream));
        multiplexed->key = key;
        multiplexed->reused = true;
        co_return multiplexed;
      }
      if (it->second->closed()) conn.loop.h2_upstreams.erase(it);
    }
  }
  if (auto pooled = conn.loop.pool.take(key)) {
    conn.shared.counters.upstream_connections_reused.fetch_add(1, std::memory_order_relaxed);
    pooled->reused = true;
    co_return pooled;
  }
  auto executor = co_await net::this_coro::executor;
  std::vector<tcp::endpoint> endpoints;
  boost::system::error_code ec;
  std::string dial_host = target.ip;
  uint16_t dial_port = target.port;
  if (const std::string* over = conn.shared.dialOverride(target.host, target.port)) {
    size_t colon = over->rfind(':');
    dial_host = over->substr(0, colon);
    dial_port = static_cast<uint16_t>(std::stoi(over->substr(colon + 1)));
  } else if (dial_host.empty() && conn.gateway) {
    for (const auto& [ip, names] : conn.gateway->host_aliases) {
      if (std::find(names.begin(), names.end(), target.host) != names.end()) dial_host = ip;
    }
  }
  if (dial_host.empty()) dial_host = target.host;
  auto address = net::ip::make_address(dial_host, ec);
  if (!ec) {
    endpoints.emplace_back(address, dial_port);
  } else {
    tcp::resolver resolver(executor);
    auto results = co_await resolver.async_resolve(dial_host, std::to_string(dial_port),
                                                   net::redirect_error(use_awaitable, ec));
    if (ec) {
      *failure = fmt::format("cannot resolve {}: {}", dial_host, ec.message());
      co_return nullptr;
    }
    for (const auto& entry : results) {
      if (entry.endpoint().address().is_v4()) endpoints.push_back(entry.endpoint());
    }
    for (const auto& entry : results) {
      if (entry.endpoint().address().is_v6()) endpoints.push_back(entry.endpoint());
    }
  }
  beast::tcp_stream tcp_stream(executor);
  tcp_stream.expires_after(std::chrono::milliseconds(conn.shared.options.connect_timeout_ms));
  co_await tcp_stream.async_connect(endpoints, net::redirect_error(use_awaitable, ec));
  if (ec) {
    *failure = fmt::format("cannot connect to {}:{}: {}", dial_host, dial_port, ec.message());
    co_return nullptr;
  }
  boost::system::error_code nodelay_ec;
  tcp_stream.socket().set_option(tcp::no_delay(true), nodelay_ec);
  auto upstream = std::make_unique<Upstream>(std::move(tcp_stream));
  upstream->key = key;
  if (target.tls) {
    auto context = conn.shared.upstreamContext(conn.gateway);
    if (!context.ok()) {
      *failure = context.status().message();
      co_return nullptr;
    }
    upstream->tls_context = context.value();
    auto& plain = std::get<beast::tcp_stream>(upstream->stream);
    TlsStream tls_stream(std::move(plain), *upstream->tls_context);
    Status prepared = tls::prepareUpstreamSsl(tls_stream.native_handle(), target.host, offer_h2);
    if (!prepared.ok()) {
      *failure = prepared.message();
      co_return nullptr;
    }
    beast::get_lowest_layer(tls_stream)
        .expires_after(std::chrono::milliseconds(conn.shared.options.connect_timeout_ms));
    co_await tls_stream.async_handshake(net::ssl::stream_base::client,
                                        net::redirect_error(use_awaitable, ec));
    if (ec) {
      std::string reason = tls::verifyFailureReason(tls_stream.native_handle());
      *failure = reason.empty() ? fmt::format("upstream TLS handshake with {} failed: {}",
                                              target.host, ec.message())
                                : fmt::format("upstream TLS to {}: {}", target.host, reason);
      co_return nullptr;
    }
    if (offer_h2 && negotiatedH2(tls_stream)) {
      h2::ClientOptions options;
      options.max_header_bytes = conn.shared.options.max_header_bytes;
      options.idle_timeout_ms = conn.shared.options.idle_timeout_ms;
      auto connection = h2::ClientConnection::start(
          std::make_unique<TlsStream>(std::move(tls_stream)), upstream->tls_context, options);
      std::optional<h2::ClientStream> stream;
      if (connection) stream = connection->open();
      if (!stream) {
        *failure = fmt::format("cannot open an HTTP/2 stream to {}", target.host);
        co_return nullptr;
      }
      conn.loop.h2_upstreams[key] = connection;
      auto multiplexed = std::make_unique<Upstream>(std::move(*stream));
      multiplexed->key = key;
      co_return multiplexed;
    }
    upstream->stream.emplace<TlsStream>(std::move(tls_stream));
  }
  co_return upstream;
}

// ---------------------------------------------------------------------------------------------
// HTTP.

// Writes a complete response generated by the proxy.
template <class Stream>
net::awaitable<bool> respond(Stream& stream, unsigned version, bool keep_alive, int status,
                             std::string body, std::string_view content_type,
                             ReplyHeaders extra = {}) {
  co_return co_await writeReply(stream, version, keep_alive, status, "clrk-egress", content_type,
                                std::move(body), extra);
}

std::string denyBody(std::string_view type, std::string_view message, std::string_view rule,
                     std::string_view host, std::string_view method, std::string_view path) {
  std::string out = "{\"error\":{\"type\":";
  llm::appendJsonString(out, type);
  out += ",\"message\":";
  llm::appendJsonString(out, message);
  out += ",\"rule\":";
  llm::appendJsonString(out, rule);
  out += ",\"host\":";
  llm::appendJsonString(out, host);
  if (!method.empty()) {
    out += ",\"method\":";
    llm::appendJsonString(out, method);
    out += ",\"path\":";
    llm::appendJsonString(out, path);
  }
  out += "}}";
  return out;
}

// Splits "host[:port]".
void splitHostPort(std::string_view authority, std::string& host, uint16_t& port) {
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    host = std::string(
        authority.substr(1, close == std::string_view::npos ? authority.size() - 1 : close - 1));
    if (close != std::string_view::npos && close + 1 < authority.size() &&
        authority[close + 1] == ':') {
      std::from_chars(authority.data() + close + 2, authority.data() + authority.size(), port);
    }
    return;
  }
  size_t colon = authority.rfind(':');
  if (colon != std::string_view::npos && authority.find(':') == colon) {
    host = asciiLowerCopy(authority.substr(0, colon));
    uint16_t parsed = 0;
    auto [ptr, err] =
        std::from_chars(authority.data() + colon + 1, authority.data() + authority.size(), parsed);
    if (err == std::errc() && ptr == authority.data() + authority.size()) port = parsed;
  } else {
    host = asciiLowerCopy(authority);
  }
}

// Parses an absolute-form target "http://host[:port]/path?q" into host, port and origin form.
bool parseAbsoluteTarget(std::string_view target, std::string& host, uint16_t& port, bool& tls,
                         std::string& origin_form) {
  size_t scheme_end = target.find("://");
  if (scheme_end == std::string_view::npos) return false;
  std::string scheme = asciiLowerCopy(target.substr(0, scheme_end));
  if (scheme != "http" && scheme != "https") return false;
  tls = scheme == "https";
  port = tls ? 443 : 80;
  std::string_view rest = target.substr(scheme_end + 3);
  size_t slash = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, slash);
  if (authority.empty()) return false;
  splitHostPort(authority, host, port);
  origin_form = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (!origin_form.empty() && origin_form.front() == '?') origin_form.insert(0, "/");
  return !host.empty();
}

struct Attempt {
  DialTarget target;
  const config::Backend* backend = nullptr;  // null = the original destination
};

// The state of one request/response exchange, for the record.
struct Exchange {
  system_clock::time_point start = system_clock::now();
  steady_clock::time_point started = steady_clock::now();
  std::optional<steady_clock::time_point> first_byte;
  std::string method;
  std::string host;
  uint16_t port = 0;
  std::string path;  // without query
  std::string url;   // scheme://host[:port]/path (no query: may hold credentials)
  llm::Provider provider = llm::Provider::kNone;
  llm::RequestSummary summary;
  std::vector<llm::McpCall> mcp;
  int status = 0;
  std::string decision = "allow";
  std::string rule;
  std::string reason;
  std::string backend;
  std::string credential_policy;
  std::string credential_warning;
  int attempts = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  std::optional<llm::Usage> usage;
  bool mcp_error = false;
  std::string error_type;
  bool grpc = false;               // the response's content-type is application/grpc[+...]
  std::optional<int> grpc_status;  // its grpc-status (trailers or a trailers-only head)
};

// grpc-status as a number: 0-99 digits only (the codes are 0-16), else nullopt.
std::optional<int> grpcStatusOf(std::string_view value) {
  if (value.empty() || value.size() > 2) return std::nullopt;
  int code = 0;
  for (char c : value) {
    if (c < '0' || c > '9') return std::nullopt;
    code = code * 10 + (c - '0');
  }
  return code;
}

void emitHttp(Connection& conn, const Exchange& ex) {
  namespace attr = telemetry::attr;
  telemetry::Record record;
  record.attributes.reserve(32);  // room for every attribute below and the identity's
  record.name.reserve(ex.method.size() + ex.host.size() + ex.path.size() + 2);
  record.name.append(ex.method).append(1, ' ').append(ex.host).append(1, ' ').append(ex.path);
  record.start = ex.start;
  record.end = ex.start + (steady_clock::now() - ex.started);
  telemetry::add(record, attr::kClrkLayer, std::string("l7"));
  telemetry::add(record, attr::kHttpRequestMethod, ex.method);
  telemetry::add(record, attr::kUrlFull, ex.url);
  telemetry::add(record, attr::kServerAddress, ex.host);
  telemetry::add(record, attr::kServerPort, static_cast<int64_t>(ex.port));
  if (ex.status) telemetry::add(record, attr::kHttpResponseStatusCode, int64_t{ex.status});
  telemetry::add(record, attr::kClrkDecision, ex.decision);
  if (!ex.rule.empty()) telemetry::add(record, attr::kClrkRule, ex.rule);
  if (!ex.reason.empty()) telemetry::add(record, attr::kClrkReason, ex.reason);
  telemetry::add(record, kAttrListener, conn.listener);
  telemetry::add(record, attr::kNetworkProtocolVersion, std::string(conn.http2 ? "2" : "1.1"));
  if (conn.tls) telemetry::add(record, attr::kTlsServerName, conn.dst.hostname);
  if (!ex.backend.empty()) telemetry::add(record, attr::kClrkBackend, ex.backend);
  if (!ex.credential_policy.empty()) {
    telemetry::add(record, attr::kClrkCredentialPolicy, ex.credential_policy);
  }
  if (!ex.credential_warning.empty()) {
    telemetry::add(record, kAttrCredentialWarning, ex.credential_warning);
  }
  if (ex.attempts > 1) {
    telemetry::add(record, attr::kClrkFallbackCount, int64_t{ex.attempts - 1});
  }
  if (ex.provider != llm::Provider::kNone) {
    telemetry::add(record, attr::kGenAiSystem, std::string(llm::genAiSystem(ex.provider)));
    if (!ex.summary.operation.empty()) {
      telemetry::add(record, attr::kGenAiOperationName, ex.summary.operation);
    }
    if (!ex.summary.model.empty()) {
      telemetry::add(record, attr::kGenAiRequestModel, ex.summary.model);
    }
    if (ex.summary.stream) telemetry::add(record, attr::kClrkStreaming, true);
  }
  if (ex.usage) {
    const llm::Usage& usage = *ex.usage;
    if (!usage.response_model.empty()) {
      telemetry::add(record, attr::kGenAiResponseModel, usage.response_model);
    }
    if (!usage.response_id.empty()) {
      telemetry::add(record, attr::kGenAiResponseId, usage.response_id);
    }
    if (!usage.finish_reasons.empty()) {
      std::string joined;
      for (const auto& reason : usage.finish_reasons) {
        if (!joined.empty()) joined += ',';
        joined += reason;
      }
      telemetry::add(record, attr::kGenAiResponseFinishReasons, joined);
    }
    if (usage.input_tokens) {
      telemetry::add(record, attr::kGenAiUsageInputTokens, *usage.input_tokens);
    }
    if (usage.output_tokens) {
      telemetry::add(record, attr::kGenAiUsageOutputTokens, *usage.output_tokens);
    }
    if (usage.total_tokens) {
      telemetry::add(record, attr::kClrkUsageTotalTokens, *usage.total_tokens);
    }
  }
  if (!ex.mcp.empty()) {
    telemetry::add(record, attr::kMcpMethodName, ex.mcp.front().method);
    if (!ex.mcp.front().tool.empty()) {
      telemetry::add(record, attr::kGenAiToolName, ex.mcp.front().tool);
    }
    if (ex.mcp_error) telemetry::add(record, kAttrMcpError, true);
  }
  if (ex.grpc) {
    telemetry::add(record, attr::kRpcSystem, std::string("grpc"));
    // The path is /package.Service/Method.
    std::string_view path = ex.path;
    size_t slash = path.size() > 1 ? path.find('/', 1) : std::string_view::npos;
    if (!path.empty() && path.front() == '/' && slash != std::string_view::npos &&
        slash + 1 < path.size()) {
      telemetry::add(record, attr::kRpcService, std::string(path.substr(1, slash - 1)));
      telemetry::add(record, attr::kRpcMethod, std::string(path.substr(slash + 1)));
    }
    if (ex.grpc_status) {
      telemetry::add(record, attr::kRpcGrpcStatusCode, int64_t{*ex.grpc_status});
    }
  }
  if (!ex.error_type.empty()) telemetry::add(record, attr::kErrorType, ex.error_type);
  if (ex.first_byte) {
    telemetry::add(record, attr::kClrkTtfbMs, msDouble(*ex.first_byte - ex.started));
  }
  telemetry::add(record, attr::kClrkDurationMs, msDouble(steady_clock::now() - ex.started));
  telemetry::add(record, attr::kClrkBytesSent, static_cast<int64_t>(ex.bytes_sent));
  telemetry::add(record, attr::kClrkBytesReceived, static_cast<int64_t>(ex.bytes_received));
  setIdentity(record, conn);
  if (ex.decision != "allow" || ex.status >= 500 || ex.status == 0) {
    record.status_code = 2;
    record.status_message = ex.reason.empty() ? fmt::format("HTTP {}", ex.status) : ex.reason;
  } else {
    record.status_code = 1;
  }
  conn.shared.emit(std::move(record));
}

std::string rateKey(const config::RateLimit& limit, const Connection& conn,
                    const config::RequestDecision& decision) {
  const Identity* id = conn.identity.get();
  switch (limit.scope) {
    case config::RateLimitScope::kPerExecution:
      return fmt::format("{}|exec|{}", limit.policy,
                         id && !id->execution_id.empty() ? id->execution_id : conn.client_ip);
    case config::RateLimitScope::kPerRoute:
      return fmt::format("{}|route|{}", limit.policy, decision.route);
    case config::RateLimitScope::kPerAgent:
    default:
      return fmt::format(
          "{}|agent|{}", limit.policy,
          id && !id->agent.empty() ? id->namespace_name + "/" + id->agent : conn.client_ip);
  }
}

std::string retryAfterSeconds(std::chrono::milliseconds ms) {
  return std::to_string(std::max<int64_t>(1, (ms.count() + 999) / 1000));
}

// Picks attempts for a request: the original destination, or backends (weighted, or in order for
// a fallback chain, where ejected backends move to the end).
std::vector<Attempt> planAttempts(const config::RequestDecision& decision, const Exchange& ex,
                                  bool tls, const EjectionTable& ejections) {
  std::vector<Attempt> attempts;
  if (decision.backends.empty()) {
    Attempt attempt;
    attempt.target = DialTarget{ex.host, ex.port, tls, {}};
    attempts.push_back(attempt);
    return attempts;
  }
  auto toAttempt = [](const config::Backend& backend) {
    Attempt attempt;
    attempt.target = DialTarget{backend.host, backend.port, backend.tls, {}};
    attempt.backend = &backend;
    return attempt;
  };
  if (decision.fallback) {
    size_t count = std::min<size_t>(decision.backends.size(),
                                    static_cast<size_t>(decision.fallback->num_retries) + 1);
    auto now = EjectionTable::Clock::now();
    std::vector<Attempt> ejected;
    for (const auto& backend : decision.backends) {
      if (ejections.ejected(backend.name, now)) {
        ejected.push_back(toAttempt(backend));
      } else {
        attempts.push_back(toAttempt(backend));
      }
    }
    attempts.insert(attempts.end(), ejected.begin(), ejected.end());
    attempts.resize(count);
    return attempts;
  }
  uint64_t total = 0;
  for (const auto& backend : decision.backends) total += backend.weight;
  if (total == 0) {
    attempts.push_back(toAttempt(decision.backends.front()));
    return attempts;
  }
  thread_local std::minstd_rand rng{std::random_device{}()};
  uint64_t pick = std::uniform_int_distribution<uint64_t>(0, total - 1)(rng);
  for (const auto& backend : decision.backends) {
    if (pick < backend.weight) {
      attempts.push_back(toAttempt(backend));
      break;
    }
    pick -= backend.weight;
  }
  return attempts;
}

bool retriable(const config::RequestDecision& decision, int status) {
  if (!decision.fallback) return false;
  const auto& codes = decision.fallback->retriable_status_codes;
  return std::find(codes.begin(), codes.end(), status) != codes.end();
}

bool observerNeeded(const Exchange& ex) {
  return ex.provider != llm::Provider::kNone || !ex.mcp.empty();
}

// Outcome of serving one request on a client connection.
enum class Next { kContinue, kClose, kUpgraded };

// Room for a relay chunk in a connection's read buffer while a body streams through it; the
// buffer shrinks back when empty afterwards, so an idle keep-alive connection does not hold it.
class ReadRoom {
 public:
  explicit ReadRoom(beast::flat_buffer& buffer) : buffer_(buffer) { buffer_.reserve(kRelayChunk); }
  ReadRoom(const ReadRoom&) = delete;
  ReadRoom& operator=(const ReadRoom&) = delete;
  ~ReadRoom() {
    if (buffer_.size() == 0) buffer_.shrink_to_fit();
  }

 private:
  beast::flat_buffer& buffer_;
};

// A streamed request body on its way to the upstream. It is relayed beside the response, not
// before it, so an upstream that answers while the client still sends (a gRPC bidirectional
// stream, a server that replies early) is heard: the body is full duplex with the response.
struct RequestBodyRelay {
  explicit RequestBodyRelay(const net::any_io_executor& executor)
      : done(executor, steady_clock::time_point::max()) {}

  http::request<http::buffer_body> message;  // its head is written first, then body pieces
  std::optional<http::request_serializer<http::buffer_body>> serializer;
  boost::system::error_code client_ec;    // reading the body failed: it was cut short
  boost::system::error_code upstream_ec;  // writing it failed
  bool relay_trailers = false;            // chunked on both sides: the last chunk's trailers too
  size_t trailers_from = 0;               // the parser's fields past these are the trailers
  const config::Credential* credential = nullptr;        // injected (its header is no trailer)
  const config::HeaderMutation* header_edits = nullptr;  // the route's (filters the trailers)
  bool running = false;                                  // spawned and not finished
  bool stopping = false;   // asked to stop (checked between operations)
  net::steady_timer done;  // cancelled when a spawned relay finishes

  bool failed() const { return client_ec || upstream_ec; }
};

// Completion of a spawned relay (a named type: GCC 12 mishandles capturing lambdas here).
struct RequestBodyRelayDone {
  RequestBodyRelay* relay;
  void operator()(std::exception_ptr) const {
    relay->running = false;
    relay->done.cancel();
  }
};

// Streams the rest of the body in `parser` from the client to the upstream through the relay's
// serializer (whose head is written) and ends the message. A body the client cuts short is cut
// short upstream too: the sending side is shut so the upstream never takes it as complete.
template <class Client, class Up>
net::awaitable<void> relayRequestBody(Client& client, beast::flat_buffer& client_buffer,
                                      http::request_parser<http::buffer_body>& parser, Up& up,
                                      RequestBodyRelay& relay, uint64_t& bytes_sent,
                                      std::chrono::milliseconds idle) {
  auto& body = relay.message.body();
  std::array<char, kRelayChunk> chunk;
  boost::system::error_code ec;
  // Beast reads what the buffer has room for (at least 512 bytes): a small buffer left by the
  // head would make every receive a 512-byte one. Given back once the body is through.
  ReadRoom room(client_buffer);
  while (!parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    if constexpr (std::is_same_v<Client, beast::tcp_stream>) {
      // Beside a response, a plain connection's body read has no deadline of its own: an upload
      // may rest while the response streams, and the exchange is watched elsewhere (every response
      // write and upstream read has one; the response's end stops this relay). tcp_stream times
      // reads apart from writes; TLS and HTTP/2 streams share one deadline, refreshed by the
      // response's writes.
      if (relay.running) {
        client.expires_never();
      } else {
        client.expires_after(idle);
      }
    } else {
      beast::get_lowest_layer(client).expires_after(idle);
    }
    co_await http::async_read_some(client, client_buffer, parser,
                                   net::redirect_error(use_awaitable, ec));
    // An operation that completed at once cannot be cancelled: the flag stops the loop.
    if (relay.stopping) ec = net::error::operation_aborted;
    if (ec && !ignorable(ec)) {
      relay.client_ec = ec;
      boost::system::error_code ignored;
      beast::get_lowest_layer(up).socket().shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    size_t n = chunk.size() - parser.get().body().size;
    if (n == 0) continue;
    body.data = chunk.data();
    body.size = n;
    body.more = true;
    bytes_sent += n;
    beast::get_lowest_layer(up).expires_after(idle);
    co_await http::async_write(up, *relay.serializer, net::redirect_error(use_awaitable, ec));
    if (ec && !ignorable(ec)) {
      relay.upstream_ec = ec;
      co_return;
    }
    if (relay.stopping && !parser.is_done()) {
      relay.client_ec = net::error::operation_aborted;
      co_return;
    }
  }
  beast::get_lowest_layer(up).expires_after(idle);
  auto trailers = relay.relay_trailers ? h2::trailersOf(parser.get().base(), relay.trailers_from)
                                       : std::vector<std::pair<std::string, std::string>>();
  if (relay.header_edits)
    filters::filterRequestTrailers(trailers, relay.credential, *relay.header_edits);
  if (!trailers.empty()) {
    std::string last = h2::lastChunk(trailers);  // instead of the serializer's empty one
    co_await net::async_write(up, net::buffer(last), net::redirect_error(use_awaitable, ec));
  } else {
    body.data = nullptr;
    body.size = 0;
    body.more = false;
    co_await http::async_write(up, *relay.serializer, net::redirect_error(use_awaitable, ec));
  }
  if (ec && !ignorable(ec)) relay.upstream_ec = ec;
}

// Writes a buffered request chunked: its body as one chunk, then `trailers` in the last chunk.
template <class Up>
net::awaitable<void> writeWithTrailers(
    Up& up, http::request<http::string_body>& request,
    const std::vector<std::pair<std::string, std::string>>& trailers,
    boost::system::error_code& ec) {
  request.chunked(true);  // drops any content-length
  http::request_serializer<http::string_body> serializer{request};
  co_await http::async_write_header(up, serializer, net::redirect_error(use_awaitable, ec));
  if (ec) co_return;
  const std::string& body = request.body();
  // A non-empty body is one chunk: its size line, the bytes, CRLF. Then the last chunk.
  std::string size_line = body.empty() ? std::string() : fmt::format("{:x}\r\n", body.size());
  std::string end = (body.empty() ? std::string() : std::string("\r\n")) + h2::lastChunk(trailers);
  std::array<net::const_buffer, 3> pieces = {net::buffer(size_line), net::buffer(body),
                                             net::buffer(end)};
  co_await net::async_write(up, pieces, net::redirect_error(use_awaitable, ec));
}

// Ends a spawned relay that is still running (the exchange is over: the response was relayed or
// cannot come): flags it and cancels its pending read or write, then waits until it returned.
template <class Client, class UpVariant>
net::awaitable<void> stopRequestBodyRelay(RequestBodyRelay& relay, Client& client, UpVariant& up) {
  if (!relay.running) co_return;
  relay.stopping = true;
  client.cancel();
  std::visit([](auto& stream) { stream.cancel(); }, up);
  boost::system::error_code ignored;
  while (relay.running) {
    co_await relay.done.async_wait(net::redirect_error(use_awaitable, ignored));
  }
}

// Relays the upstream response (header already parsed in `parser`) to the client.
template <class Client, class Up>
net::awaitable<Next> relayResponse(Connection& conn, Client& client, Up& up, Upstream& upstream,
                                   http::response_parser<http::buffer_body>& parser,
                                   const config::RequestDecision& decision, Exchange& ex,
                                   unsigned version, bool keep_alive, bool upgrade,
                                   beast::flat_buffer& client_buffer, bool& reusable) {
  reusable = false;
  auto& upstream_res = parser.get();
  http::response<http::buffer_body> res;
  res.base() = upstream_res.base();
  bool switching = upgrade && upstream_res.result() == http::status::switching_protocols;
  stripHopByHop(res.base(), switching);
  FieldsHeaders headers(res.base());
  filters::applyHeaderMutation(decision.response_headers, headers);
  res.version(version);
  if (switching) {
    res.set(http::field::connection, "upgrade");
  } else {
    res.keep_alive(keep_alive);
    if (!parser.skip() && !upstream_res.has_content_length() && !upstream_res.chunked() &&
        upstream_res.result_int() >= 200 && upstream_res.result_int() != 204 &&
        upstream_res.result_int() != 304) {
      res.chunked(true);  // close-delimited upstream body: re-frame for a keep-alive client
    }
  }
  std::string content_type = std::string(ssv(upstream_res[http::field::content_type]));
  bool event_stream = asciiLowerCopy(content_type).find("text/event-stream") != std::string::npos;
  ex.grpc = content_type.size() >= 16 &&
            asciiEqualsIgnoreCase(std::string_view(content_type).substr(0, 16), "application/grpc");
  if (ex.grpc) ex.grpc_status = grpcStatusOf(ssv(upstream_res["grpc-status"]));
  std::optional<llm::ResponseObserver> observer;
  std::optional<llm::McpResponseObserver> mcp_observer;
  if (ex.provider != llm::Provider::kNone) observer.emplace(ex.provider, event_stream);
  if (!ex.mcp.empty()) mcp_observer.emplace(event_stream);

  http::response_serializer<http::buffer_body> serializer{res};
  res.body().data = nullptr;
  res.body().size = 0;
  res.body().more = !switching && !parser.is_done();
  // A chunked body may end with trailers (gRPC's grpc-status): the serializer is kept open and
  // the last chunk written here with them. The parser appends them to the head's fields.
  bool relay_trailers =
      !switching && res.chunked() && upstream_res.chunked() && !parser.skip() && !parser.is_done();
  size_t head_fields = relay_trailers ? h2::fieldCount(upstream_res.base()) : 0;
  boost::system::error_code ec;  // upstream side
  auto idle = std::chrono::milliseconds(conn.shared.options.idle_timeout_ms);
  // Body bytes that arrived with the head (often all of a small response) leave in the same
  // write as the head: one TLS record and one send instead of two. Only what is already buffered
  // is parsed, without waiting on the upstream, so a streamed response's head is never held.
  std::array<char, kRelayChunk> chunk;
  size_t early = 0;
  bool upstream_failed = false;
  if (!switching && !parser.is_done() && upstream.buffer.size() > 0) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    size_t used = parser.put(upstream.buffer.data(), ec);
    upstream.buffer.consume(used);
    if (ec == http::error::need_more || ignorable(ec)) ec = {};
    upstream_failed = static_cast<bool>(ec);
    early = chunk.size() - parser.get().body().size;
  }
  // Hands the first `n` bytes of `chunk` to the observers and to the serializer's next write;
  // the last piece carries the end of the body (chunked: 0 CRLF).
  auto stage = [&](size_t n) {
    std::string_view piece(chunk.data(), n);
    if (observer) observer->feed(piece);
    if (mcp_observer) mcp_observer->feed(piece);
    ex.bytes_received += n;
    res.body().data = chunk.data();
    res.body().size = n;
    res.body().more = !parser.is_done() || relay_trailers;
  };
  boost::system::error_code head_ec;
  beast::get_lowest_layer(client).expires_after(idle);
  if (early > 0) {
    stage(early);
    co_await http::async_write(client, serializer, net::redirect_error(use_awaitable, head_ec));
    if (ignorable(head_ec)) head_ec = {};
  } else {
    co_await http::async_write_header(client, serializer,
                                      net::redirect_error(use_awaitable, head_ec));
  }
  if (head_ec) co_return Next::kClose;

  if (switching) {
    // WebSocket (or other upgrade): forward leftovers, then splice raw bytes both ways.
    if (upstream.buffer.size() > 0) {
      co_await net::async_write(client, upstream.buffer.data(),
                                net::redirect_error(use_awaitable, ec));
      ex.bytes_received += upstream.buffer.size();
      upstream.buffer.consume(upstream.buffer.size());
    }
    if (client_buffer.size() > 0) {
      co_await net::async_write(up, client_buffer.data(), net::redirect_error(use_awaitable, ec));
      client_buffer.consume(client_buffer.size());
    }
    co_await splice(client, up, ex.bytes_sent, ex.bytes_received,
                    conn.shared.options.idle_timeout_ms);
    co_return Next::kUpgraded;
  }

  std::optional<ReadRoom> room;
  if (!upstream_failed && !parser.is_done()) room.emplace(upstream.buffer);
  while (!upstream_failed && !parser.is_done()) {
    parser.get().body().data = chunk.data();
    parser.get().body().size = chunk.size();
    beast::get_lowest_layer(up).expires_after(idle);
    co_await http::async_read_some(up, upstream.buffer, parser,
                                   net::redirect_error(use_awaitable, ec));
    if (ec && !ignorable(ec)) break;
    size_t n = chunk.size() - parser.get().body().size;
    if (n == 0) continue;
    stage(n);
    beast::get_lowest_layer(client).expires_after(idle);
    boost::system::error_code write_ec;
    co_await http::async_write(client, serializer, net::redirect_error(use_awaitable, write_ec));
    if (write_ec && !ignorable(write_ec)) {
      ex.reason = "client went away mid-response";
      co_return Next::kClose;
    }
  }
  bool upstream_ok = !ec || ignorable(ec);
  if (!upstream_ok) {
    ex.reason = fmt::format("upstream response cut short: {}", ec.message());
    ex.error_type = "upstream_reset";
  }
  if (observer) {
    observer->finish();
    ex.usage = observer->usage();
    if (observer->sawError()) ex.error_type = observer->errorType();
  }
  if (mcp_observer) {
    mcp_observer->finish();
    ex.mcp_error = mcp_observer->sawError();
  }
  if (!upstream_ok) co_return Next::kClose;  // cannot frame the rest: close the client
  beast::get_lowest_layer(client).expires_after(idle);
  if (relay_trailers) {
    auto trailers = h2::trailersOf(upstream_res.base(), head_fields);
    for (const auto& [name, value] : trailers) {
      if (ex.grpc && name == "grpc-status") ex.grpc_status = grpcStatusOf(value);
    }
    std::string last = h2::lastChunk(trailers);
    co_await net::async_write(client, net::buffer(last), net::redirect_error(use_awaitable, ec));
  } else {
    res.body().data = nullptr;
    res.body().size = 0;
    res.body().more = false;
    co_await http::async_write(client, serializer, net::redirect_error(use_awaitable, ec));
  }
  if (ec && !ignorable(ec)) co_return Next::kClose;
  reusable = upstream_res.keep_alive() && parser.is_done();
  co_return keep_alive ? Next::kContinue : Next::kClose;
}

// Serves one request whose header was read into `header_parser`.
template <class Client>
net::awaitable<Next> serveRequest(Connection& conn, Client& client,
                                  beast::flat_buffer& client_buffer,
                                  http::request_parser<http::empty_body>& header_parser) {
  Shared& shared = conn.shared;
  shared.counters.requests.fetch_add(1, std::memory_order_relaxed);
  Exchange ex;
  auto& req = header_parser.get();
  unsigned version = req.version();
  bool keep_alive = req.keep_alive();
  ex.method = std::string(ssv(req.method_string()));
  std::string target(ssv(req.target()));
  bool tls = conn.tls;

  // Host and origin-form target.
  if (conn.listener == "explicit" && !conn.tls && !target.empty() && target.front() != '/') {
    std::string origin;
    bool absolute_tls = false;
    if (!parseAbsoluteTarget(target, ex.host, ex.port, absolute_tls, origin)) {
      co_await respond(client, version, false, 400,
                       denyBody("bad_request", "request target must be an absolute http URL", "",
                                "", ex.method, target),
                       "application/json");
      co_return Next::kClose;
    }
    tls = absolute_tls;
    target = origin;
  } else {
    auto host_header = req.find(http::field::host);
    ex.port = conn.dst.port;
    if (host_header != req.end()) {
      splitHostPort(ssv(host_header->value()), ex.host, ex.port);
    }
    if (ex.host.empty()) ex.host = conn.dst.hostname.empty() ? conn.dst.ip : conn.dst.hostname;
    if (conn.tls && !conn.dst.hostname.empty() && ex.host != conn.dst.hostname) {
      // The Host header must name the host the TLS connection was made for.
      ex.host = conn.dst.hostname;
    }
  }
  if (ex.port == 0) ex.port = tls ? 443 : 80;
  ex.path = target.substr(0, target.find('?'));
  bool default_port = (tls && ex.port == 443) || (!tls && ex.port == 80);
  ex.url.reserve(ex.host.size() + ex.path.size() + 16);
  ex.url.append(tls ? "https://" : "http://").append(ex.host);
  if (!default_port) ex.url.append(1, ':').append(std::to_string(ex.port));
  ex.url.append(ex.path);
  ex.provider = llm::detectProvider(ex.host, ex.path);

  bool expects_continue = asciiEqualsIgnoreCase(ssv(req[http::field::expect]), "100-continue");
  bool upgrade = req.find(http::field::upgrade) != req.end();
  bool has_body = header_parser.content_length().value_or(0) > 0 || header_parser.chunked();
  std::string content_type = asciiLowerCopy(ssv(req[http::field::content_type]));
  bool json_body = content_type.find("json") != std::string::npos;
  bool inspect_body =
      has_body && (ex.provider != llm::Provider::kNone || json_body) &&
      header_parser.content_length().value_or(0) <= shared.options.max_buffered_body_bytes;

  auto idle = std::chrono::milliseconds(shared.options.idle_timeout_ms);
  boost::system::error_code ec;
  // "100 Continue" asks for the body. An inspected body is needed for the decision, so it is
  // asked for at once; a streamed one only once the request is allowed and its upstream dialled,
  // so a refused upload is answered before the client sends it.
  bool continue_pending = expects_continue && has_body;
  if (continue_pending && inspect_body) {
    continue_pending = false;
    co_await writeContinue(client, version, ec);
    if (ec) co_return Next::kClose;
  }

  // Buffered body for provider/MCP/JSON requests (bounded).
  // Fields the parser adds past these are a chunked body's trailers (counted only then).
  const size_t request_head_fields =
      header_parser.chunked() ? h2::fieldCount(header_parser.get().base()) : 0;
  std::optional<http::request_parser<http::string_body>> buffered;
  std::optional<http::request_parser<http::buffer_body>> streamed;
  if (inspect_body) {
    buffered.emplace(std::move(header_parser));
    buffered->body_limit(shared.options.max_buffered_body_bytes);
    beast::get_lowest_layer(client).expires_after(idle);
    co_await http::async_read(client, client_buffer, *buffered,
                              net::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == http::error::body_limit) {
        co_await respond(client, version, false, 413,
                         denyBody("request_too_large",
                                  fmt::format("request body exceeds {} bytes",
                                              shared.options.max_buffered_body_bytes),
                                  "", ex.host, ex.method, ex.path),
                         "application/json");
        co_await lingerBeforeClose(client);
      }
      co_return Next::kClose;
    }
  } else {
    streamed.emplace(std::move(header_parser));
    streamed->body_limit(kUnlimitedBody);
  }
  // A buffered chunked body's trailers, out of the head the parser merged them into; they are
  // forwarded as trailers. A streamed body's are relayed by relayRequestBody.
  std::vector<std::pair<std::string, std::string>> request_trailers;
  if (buffered && buffered->chunked()) {
    request_trailers = h2::takeTrailers(buffered->get().base(), request_head_fields);
  }
  auto& base_req = buffered ? buffered->get().base() : streamed->get().base();
  std::string_view body = buffered ? std::string_view(buffered->get().body()) : "";
  if (ex.provider != llm::Provider::kNone) {
    ex.summary = llm::summarizeRequest(ex.provider, ex.path, body);
  } else if (buffered && llm::looksLikeMcp(content_type, body)) {
    ex.mcp = llm::parseMcpRequest(body);
  }

  // Policy.
  config::RequestInfo info;
  info.gateway = conn.gateway_name;
  info.identity = conn.identity.get();
  info.host = ex.host;
  info.port = ex.port;
  info.tls = tls;
  info.method = ex.method;
  info.path = ex.path;
  info.provider = ex.provider;
  info.model = ex.summary.model;
  if (!ex.mcp.empty()) {
    info.mcp_method = ex.mcp.front().method;
    info.mcp_tool = ex.mcp.front().tool;
  }
  config::RequestDecision decision = conn.snapshot->decideRequest(info);
  ex.rule = decision.rule;
  ex.credential_warning = decision.credential_warning;
  bool body_pending = streamed && !streamed->is_done();
  auto refuse = [&](int status, std::string type, std::string message, std::string decision_name,
                    std::string retry_after, bool provider_shape) -> net::awaitable<Next> {
    std::vector<std::pair<std::string, std::string>> extra;
    if (!retry_after.empty()) extra.emplace_back("retry-after", std::move(retry_after));
    ex.status = status;
    ex.decision = std::move(decision_name);
    ex.reason = message;
    std::string payload = provider_shape && ex.provider != llm::Provider::kNone
                              ? llm::providerErrorBody(ex.provider, status, message)
                              : denyBody(type, message, ex.rule, ex.host, ex.method, ex.path);
    bool keep = keep_alive && !body_pending;
    bool written = co_await respond(client, version, keep, status, std::move(payload),
                                    "application/json", std::move(extra));
    emitHttp(conn, ex);
    if (written && body_pending) co_await lingerBeforeClose(client);
    co_return written&& keep ? Next::kContinue : Next::kClose;
  };
  if (decision.action == config::RequestDecision::Action::kDeny) {
    shared.counters.requests_denied.fetch_add(1, std::memory_order_relaxed);
    std::string message =
        !decision.deny_message.empty()
            ? decision.deny_message
            : fmt::format("egress denied by {}: {}", decision.rule, decision.reason);
    co_return co_await refuse(decision.deny_status, "clrk_egress_denied", message, "deny", "",
                              false);
  }
  // Rate limits.
  for (const auto& limit : decision.rate_limits) {
    auto verdict = shared.rate_limiter.acquire(rateKey(limit, conn, decision), limit.requests,
                                               limit.window, steady_clock::now());
    if (!verdict.allowed) {
      shared.counters.rate_limited.fetch_add(1, std::memory_order_relaxed);
      co_return co_await refuse(429, "rate_limited",
                                fmt::format("rate limit {} exceeded: {} requests per {} ms",
                                            limit.policy, limit.requests, limit.window.count()),
                                "rate_limited", retryAfterSeconds(verdict.retry_after), true);
    }
  }
  // MCP tool calls per execution (ToolPolicy maxCallsPerExecution): every tools/call of a
  // request counts, a JSON-RPC batch included; over the cap the request is refused.
  if (decision.tool_policy && decision.tool_policy->max_calls_per_execution > 0) {
    int64_t calls = std::count_if(ex.mcp.begin(), ex.mcp.end(), [](const llm::McpCall& call) {
      return call.method == "tools/call";
    });
    if (calls > 0) {
      const Identity* id = conn.identity.get();
      std::string key = "mcp|" + decision.rule + "|" +
                        (id && !id->execution_id.empty() ? id->execution_id : conn.client_ip);
      int64_t cap = decision.tool_policy->max_calls_per_execution;
      auto now = system_clock::now();
      if (shared.tool_calls.used(key, llm::BudgetWindow::kExecution, now) + calls > cap) {
        shared.counters.rate_limited.fetch_add(1, std::memory_order_relaxed);
        co_return co_await refuse(
            429, "mcp_call_limit",
            fmt::format("MCP tool call limit of rule {} reached: {} tools/call per execution",
                        decision.rule, cap),
            "rate_limited", "", false);
      }
      shared.tool_calls.consume(key, calls, llm::BudgetWindow::kExecution, now);
    }
  }
  // Token budgets.
  std::vector<std::pair<std::string, llm::BudgetWindow>> budget_keys;
  if (decision.budget) {
    const auto& budget = *decision.budget;
    const Identity* id = conn.identity.get();
    auto now = system_clock::now();
    if (budget.max_tokens_per_day > 0) {
      budget_keys.emplace_back(budget.key + "|day", llm::BudgetWindow::kDay);
      auto verdict = shared.budgets.check(budget_keys.back().first, budget.max_tokens_per_day,
                                          llm::BudgetWindow::kDay, now);
      if (!verdict.allowed) {
        shared.counters.budget_exceeded.fetch_add(1, std::memory_order_relaxed);
        co_return co_await refuse(429, "budget_exceeded",
                                  fmt::format("token budget {} exhausted: {} tokens per day",
                                              budget.key, budget.max_tokens_per_day),
                                  "budget_exceeded", retryAfterSeconds(verdict.retry_after), true);
      }
    }
    if (budget.max_tokens_per_execution > 0) {
      std::string exec = id && !id->execution_id.empty() ? id->execution_id : conn.client_ip;
      budget_keys.emplace_back(budget.key + "|exec|" + exec, llm::BudgetWindow::kExecution);
      auto verdict = shared.budgets.check(budget_keys.back().first, budget.max_tokens_per_execution,
                                          llm::BudgetWindow::kExecution, now);
      if (!verdict.allowed) {
        shared.counters.budget_exceeded.fetch_add(1, std::memory_order_relaxed);
        co_return co_await refuse(429, "budget_exceeded",
                                  fmt::format("token budget {} exhausted: {} tokens per execution",
                                              budget.key, budget.max_tokens_per_execution),
                                  "budget_exceeded", "", true);
      }
    }
  }

  // Attempts (fallback only when the whole body is in hand).
  std::vector<Attempt> attempts = planAttempts(decision, ex, tls, shared.ejections);
  // A fallback backend's outcome feeds the ejection table.
  auto outcome = [&](const Attempt& attempt, bool ok) {
    if (!decision.fallback || attempt.backend == nullptr) return;
    if (ok) {
      shared.ejections.succeeded(attempt.backend->name);
    } else {
      shared.ejections.failed(attempt.backend->name, decision.fallback->max_ejection_time,
                              EjectionTable::Clock::now());
    }
  };
  if (streamed && !streamed->is_done() && attempts.size() > 1) attempts.resize(1);
  std::vector<std::string> failures;
  std::optional<RequestBodyRelay> relay;  // a streamed body; stopped before its upstream goes
  for (size_t index = 0; index < attempts.size(); ++index) {
    const Attempt& attempt = attempts[index];
    ex.attempts = static_cast<int>(index + 1);
    // Build the upstream request head. A streamed request is never retried after its last
    // attempt (only buffered ones get the stale-connection retry below), so that attempt takes
    // the parsed head instead of copying it; the parser keeps reading the body without it.
    http::request_header<> head;
    if (streamed && index + 1 == attempts.size()) {
      head = std::move(base_req);
    } else {
      head = base_req;
    }
    stripHopByHop(head, upgrade);
    if (streamed ? !streamed->chunked() : request_trailers.empty()) {
      head.erase(http::field::trailer);  // announces trailers that cannot come
    }
    head.erase(http::field::expect);
    head.erase("Proxy-Authorization");
    head.version(11);
    std::string upstream_target = target;
    std::string upstream_body(body);
    if (attempt.backend) {
      ex.backend = attempt.backend->name;
      head.set(http::field::host,
               attempt.target.port == (attempt.target.tls ? 443 : 80)
                   ? attempt.target.host
                   : fmt::format("{}:{}", attempt.target.host, attempt.target.port));
      for (const auto& rewrite : attempt.backend->model_rewrites) {
        if (!ex.summary.model.empty() && llm::globMatch(rewrite.from_glob, ex.summary.model)) {
          if (auto rewritten = llm::rewriteModel(upstream_body, rewrite.to)) {
            upstream_body = std::move(*rewritten);
          } else if (auto path =
                         llm::rewriteModelInPath(ex.provider, upstream_target, rewrite.to)) {
            upstream_target = std::move(*path);
          }
          break;
        }
      }
      if (attempt.backend->ensure_stream_usage && buffered) {
        if (auto with_usage = llm::ensureStreamUsage(upstream_body)) {
          upstream_body = std::move(*with_usage);
        }
      }
    }
    FieldsHeaders headers(head);
    const config::Credential* credential = nullptr;
    if (attempt.backend && attempt.backend->credential) {
      credential = &*attempt.backend->credential;
    } else if (decision.credential) {
      credential = &*decision.credential;
    }
    if (credential) {
      filters::injectCredential(*credential, headers, upstream_target);
      ex.credential_policy = credential->policy;
    }
    filters::applyHeaderMutation(decision.request_headers, headers);
    filters::filterRequestTrailers(request_trailers, credential, decision.request_headers);
    if (observerNeeded(ex)) head.set(http::field::accept_encoding, "identity");
    head.target(bsv(upstream_target));

    std::string failure;
    auto upstream = co_await dial(conn, attempt.target, &failure, !upgrade);
    if (!upstream) {
      shared.counters.upstream_failures.fetch_add(1, std::memory_order_relaxed);
      outcome(attempt, false);
      failures.push_back(fmt::format(
          "{}: {}", attempt.backend ? attempt.backend->name : attempt.target.host, failure));
      continue;
    }
    // Send the request and read the response head.
    std::optional<http::response_parser<http::buffer_body>> parser;
    auto fresh_parser = [&] {
      parser.emplace();
      parser->header_limit(shared.options.max_header_bytes);
      parser->body_limit(kUnlimitedBody);
      if (ex.method == "HEAD") parser->skip(true);
    };
    fresh_parser();
    bool sent = false;
    bool got_head = false;
    ex.bytes_sent = 0;
    co_await std::visit(
        [&](auto& up) -> net::awaitable<void> {
          beast::get_lowest_layer(up).expires_after(idle);
          if (buffered) {
            http::request<http::string_body> out{std::move(head), std::move(upstream_body)};
            ex.bytes_sent = out.body().size();
            if (!request_trailers.empty()) {
              co_await writeWithTrailers(up, out, request_trailers, ec);
            } else {
              out.prepare_payload();
              if (out.body().empty() && ex.method != "POST" && ex.method != "PUT" &&
                  ex.method != "PATCH") {
                out.erase(http::field::content_length);
              }
              co_await http::async_write(up, out, net::redirect_error(use_awaitable, ec));
            }
          } else {
            if (continue_pending) {
              continue_pending = false;
              beast::get_lowest_layer(client).expires_after(idle);
              co_await writeContinue(client, version, ec);
              if (ec) co_return;
            }
            relay.emplace(up.get_executor());
            relay->message.base() = std::move(head);
            relay->serializer.emplace(relay->message);
            relay->message.body().data = nullptr;
            relay->message.body().more = !streamed->is_done();
            relay->relay_trailers = streamed->chunked() && relay->message.chunked();
            if (relay->relay_trailers) {
              relay->trailers_from = h2::fieldCount(streamed->get().base());
            }
            relay->credential = credential;
            relay->header_edits = &decision.request_headers;
            co_await http::async_write_header(up, *relay->serializer,
                                              net::redirect_error(use_awaitable, ec));
            if (ec) co_return;
            if (upgrade || streamed->is_done()) {
              // Nothing to overlap (no body left), or the connection may become a tunnel that
              // reads the client itself: relay the body first.
              co_await relayRequestBody(client, client_buffer, *streamed, up, *relay, ex.bytes_sent,
                                        idle);
              ec = relay->client_ec ? relay->client_ec : relay->upstream_ec;
            } else {
              relay->running = true;
              net::co_spawn(up.get_executor(),
                            relayRequestBody(client, client_buffer, *streamed, up, *relay,
                                             ex.bytes_sent, idle),
                            RequestBodyRelayDone{&*relay});
            }
          }
          if (ec) co_return;
          sent = true;
          // Skip interim 1xx responses (except 101).
          for (;;) {
            co_await http::async_read_header(up, upstream->buffer, *parser,
                                             net::redirect_error(use_awaitable, ec));
            if (ec) co_return;
            int code = parser->get().result_int();
            if (code >= 200 || code == 101) break;
            fresh_parser();
          }
          got_head = true;
        },
        upstream->stream);
    if (!got_head) {
      if (relay) co_await stopRequestBodyRelay(*relay, client, upstream->stream);
      shared.counters.upstream_failures.fetch_add(1, std::memory_order_relaxed);
      if (!upstream->reused) outcome(attempt, false);  // a stale pooled connection says nothing
      failures.push_back(fmt::format("{}: {} {}",
                                     attempt.backend ? attempt.backend->name : attempt.target.host,
                                     sent ? "no response:" : "send failed:", ec.message()));
      if (upstream->reused && buffered && index + 1 == attempts.size() && failures.size() == 1) {
        // A pooled connection the server had closed: retry once on a fresh one.
        attempts.push_back(attempt);
      }
      if (!buffered && sent) break;  // the body is gone: cannot retry
      continue;
    }
    ex.first_byte = steady_clock::now();
    ex.status = parser->get().result_int();
    outcome(attempt, !retriable(decision, ex.status));
    if (retriable(decision, ex.status) && index + 1 < attempts.size()) {
      if (relay) co_await stopRequestBodyRelay(*relay, client, upstream->stream);
      failures.push_back(fmt::format(
          "{}: HTTP {}", attempt.backend ? attempt.backend->name : attempt.target.host, ex.status));
      continue;  // the upstream connection is dropped with its unread body
    }
    // Commit to this response.
    bool reusable = false;
    bool client_keep_alive = keep_alive && !(streamed && !streamed->is_done());
    Next next = co_await std::visit(
        [&](auto& up) -> net::awaitable<Next> {
          co_return co_await relayResponse(conn, client, up, *upstream, *parser, decision, ex,
                                           version, client_keep_alive, upgrade, client_buffer,
                                           reusable);
        },
        upstream->stream);
    bool linger = false;
    if (relay) {
      co_await stopRequestBodyRelay(*relay, client, upstream->stream);
      if (relay->failed()) reusable = false;  // the upstream did not get the whole request
      if (relay->client_ec && next == Next::kContinue) next = Next::kClose;
      // Answered while the client was still sending: it may be sending yet.
      linger = relay->client_ec == net::error::operation_aborted && next == Next::kClose;
    }
    if (reusable && next != Next::kUpgraded) conn.loop.pool.give(std::move(upstream));
    // Budget accounting from real usage.
    if (ex.usage && ex.usage->total_tokens) {
      for (const auto& [key, window] : budget_keys) {
        shared.budgets.consume(key, *ex.usage->total_tokens, window, system_clock::now());
      }
    }
    emitHttp(conn, ex);
    if (linger) co_await lingerBeforeClose(client);
    co_return next;
  }
  // Every attempt failed.
  std::string message = "upstream unavailable: ";
  for (size_t i = 0; i < failures.size(); ++i) {
    if (i) message += "; ";
    message += failures[i];
  }
  ex.error_type = "upstream_unavailable";
  body_pending = streamed && !streamed->is_done();
  co_return co_await refuse(502, "upstream_unavailable", message, "allow", "", false);
}

template <class Stream>
net::awaitable<size_t> readMore(Stream& stream, beast::flat_buffer& buffer, size_t max,
                                boost::system::error_code& ec) {
  size_t n =
      co_await stream.async_read_some(buffer.prepare(max), net::redirect_error(use_awaitable, ec));
  buffer.commit(n);
  co_return n;
}

// Reads and serves requests on a client connection until it closes. `first` is a request head
// already read (explicit proxy), or null.
template <class Client>
net::awaitable<void> serveHttp(Connection& conn, Client& client, beast::flat_buffer& buffer) {
  Shared& shared = conn.shared;
  for (;;) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(shared.options.max_header_bytes);
    parser.body_limit(kUnlimitedBody);
    boost::system::error_code ec;
    // Slowloris bound: the whole head must arrive within header_timeout of the first byte;
    // an idle keep-alive connection waits at most idle_timeout for it to start.
    beast::get_lowest_layer(client).expires_after(std::chrono::milliseconds(
        buffer.size() > 0 ? shared.options.header_timeout_ms : shared.options.idle_timeout_ms));
    if (buffer.size() == 0) {
      co_await readMore(client, buffer, 4096, ec);
      if (ec) co_return;
      beast::get_lowest_layer(client).expires_after(
          std::chrono::milliseconds(shared.options.header_timeout_ms));
    }
    co_await http::async_read_header(client, buffer, parser,
                                     net::redirect_error(use_awaitable, ec));
    if (ec) {
      if (ec == http::error::end_of_stream || ec == net::error::eof ||
          ec == net::error::operation_aborted || ec == beast::error::timeout) {
        co_return;
      }
      int status = ec == http::error::header_limit ? 431 : 400;
      std::string message = status == 431 ? fmt::format("request header exceeds {} bytes",
                                                        shared.options.max_header_bytes)
                                          : fmt::format("malformed HTTP request: {}", ec.message());
      Exchange ex;
      ex.method = "?";
      ex.host = conn.dst.hostname.empty() ? conn.dst.ip : conn.dst.hostname;
      ex.port = conn.dst.port;
      ex.status = status;
      ex.decision = "reject";
      ex.reason = message;
      co_await respond(client, 11, false, status,
                       denyBody(status == 431 ? "header_too_large" : "bad_request", message, "",
                                ex.host, "", ""),
                       "application/json");
      emitHttp(conn, ex);
      co_return;
    }
    Next next = co_await serveRequest(conn, client, buffer, parser);
    if (next != Next::kContinue) co_return;
  }
}

// One HTTP/2 stream, bridged: the HTTP/1.1 chain reads its request and writes its response.
net::awaitable<void> serveBridgedStream(Connection& conn, h2::BridgeEnd& stream) {
  beast::flat_buffer buffer;
  co_await serveHttp(conn, stream, buffer);
}

// A stream the HTTP/2 layer refused before the chain saw it: recorded like a malformed request.
void recordRejectedStream(Connection& conn, int status, std::string_view reason,
                          std::string_view method, std::string_view authority,
                          std::string_view path) {
  Exchange ex;
  ex.method = method.empty() ? "?" : std::string(method);
  ex.host = conn.dst.hostname;
  ex.port = conn.dst.port;
  ex.path = std::string(path.substr(0, path.find('?')));
  ex.url =
      fmt::format("https://{}{}", authority.empty() ? ex.host : asciiLowerCopy(authority), ex.path);
  ex.status = status;
  ex.decision = "reject";
  ex.reason = std::string(reason);
  emitHttp(conn, ex);
}

// Serves an intercepted TLS connection whose client chose HTTP/2 (ALPN "h2").
net::awaitable<void> serveHttp2(Connection& conn, TlsStream& stream) {
  const ProxyOptions& options = conn.shared.options;
  conn.http2 = true;
  h2::ServerOptions h2_options;
  h2_options.max_concurrent_streams = options.http2_max_concurrent_streams;
  h2_options.max_header_bytes = options.max_header_bytes;
  h2_options.idle_timeout_ms = options.idle_timeout_ms;
  h2::ServerHooks hooks;
  hooks.serve = [&conn](h2::BridgeEnd& bridged) { return serveBridgedStream(conn, bridged); };
  hooks.rejected = [&conn](int status, std::string_view reason, std::string_view method,
                           std::string_view authority, std::string_view path) {
    recordRejectedStream(conn, status, reason, method, authority, path);
  };
  co_await h2::serveServer(stream, h2_options, std::move(hooks));
}

bool looksLikeHttp(std::string_view data) {
  size_t i = 0;
  while (i < data.size() && i < 16 && data[i] >= 'A' && data[i] <= 'Z') ++i;
  return i > 0 && i < data.size() && data[i] == ' ';
}

// Classifies the first bytes of a connection whose destination is known, asks the snapshot
// what to do, and does it: deny, passthrough, TLS interception or plaintext HTTP inspection.
net::awaitable<void> classifyAndServe(Connection& conn, beast::tcp_stream& stream,
                                      beast::flat_buffer& buffer) {
  Shared& shared = conn.shared;
  auto start = system_clock::now();
  auto started = steady_clock::now();
  boost::system::error_code ec;
  if (conn.dst.hostname == kMetadataHost) {
    // clrk's own endpoint, answered here: never forwarded, never subject to the policy. Plain
    // HTTP on port 80 only; nothing else of that name exists.
    if (conn.dst.port != kMetadataPort) {
      shared.counters.connections_denied.fetch_add(1, std::memory_order_relaxed);
      emitL4(conn, "deny", "clrk-metadata",
             fmt::format("{} serves plain HTTP on port {} only", kMetadataHost, kMetadataPort),
             start, started, 0, 0, "");
      co_return;
    }
    // A named caller: GCC 12 destroys aggregate temporaries in co_await arguments twice.
    MetadataCaller caller{conn.client_ip, conn.identity, conn.listener};
    co_await serveMetadata(shared, stream, buffer, caller, nullptr);
    co_return;
  }
  stream.expires_after(std::chrono::milliseconds(shared.options.header_timeout_ms));
  while (buffer.size() == 0) {
    co_await readMore(stream, buffer, 4096, ec);
    if (ec) co_return;  // closed before sending anything
  }
  config::ConnectionInfo info;
  info.gateway = conn.gateway_name;
  info.identity = conn.identity.get();
  info.dst_ip = conn.dst.ip;
  info.dst_port = conn.dst.port;
  tls::ClientHello hello;
  std::string sniff_error;
  auto bytes = [&] {
    auto data = buffer.data();
    return std::span<const uint8_t>(static_cast<const uint8_t*>(data.data()), data.size());
  };
  tls::SniffResult sniffed = tls::sniffClientHello(bytes(), &hello, &sniff_error);
  while (sniffed == tls::SniffResult::kNeedMore && buffer.size() < tls::kMaxSniffBytes) {
    co_await readMore(stream, buffer, tls::kMaxSniffBytes - buffer.size(), ec);
    if (ec) {
      emitL4(conn, "deny", "",
             fmt::format("connection closed during TLS ClientHello: {}", ec.message()), start,
             started, 0, 0, "");
      co_return;
    }
    sniffed = tls::sniffClientHello(bytes(), &hello, &sniff_error);
  }
  if (sniffed == tls::SniffResult::kMalformed || sniffed == tls::SniffResult::kNeedMore) {
    shared.counters.connections_denied.fetch_add(1, std::memory_order_relaxed);
    emitL4(
        conn, "deny", "",
        sniff_error.empty() ? "TLS ClientHello too large" : "bad TLS ClientHello: " + sniff_error,
        start, started, 0, 0, "");
    co_return;
  }
  info.is_tls = sniffed == tls::SniffResult::kOk;
  std::string_view head(static_cast<const char*>(buffer.data().data()), buffer.size());
  info.is_http = !info.is_tls && looksLikeHttp(head);
  if (info.is_tls && !hello.sni.empty()) conn.dst.hostname = hello.sni;
  info.hostname = conn.dst.hostname;
  config::ConnectionDecision decision = conn.snapshot->decideConnection(info);
  using Action = config::ConnectionDecision::Action;
  switch (decision.action) {
    case Action::kDeny: {
      shared.counters.connections_denied.fetch_add(1, std::memory_order_relaxed);
      if (info.is_http) {
        // Answer plaintext HTTP with a readable refusal.
        std::string message =
            fmt::format("egress denied by {}: {}", decision.rule, decision.reason);
        co_await respond(stream, 11, false, 403,
                         denyBody("clrk_egress_denied", message, decision.rule,
                                  info.hostname.empty() ? info.dst_ip : info.hostname, "", ""),
                         "application/json");
      }
      emitL4(conn, "deny", decision.rule, decision.reason, start, started, 0, 0, hello.sni);
      co_return;
    }
    case Action::kPassthrough: {
      DialTarget target{
          conn.dst.hostname.empty() ? conn.dst.ip : conn.dst.hostname, conn.dst.port, false, {}};
      // Dial the original IP unless it is a synthetic DNS address (then resolve the name).
      auto ip = dns::parseIpv4(conn.dst.ip);
      if (ip && !shared.names->inPool(*ip)) target.ip = conn.dst.ip;
      std::string failure;
      auto upstream = co_await dial(conn, target, &failure);
      if (!upstream) {
        shared.counters.upstream_failures.fetch_add(1, std::memory_order_relaxed);
        emitL4(conn, "allow", decision.rule, failure, start, started, 0, 0, hello.sni);
        co_return;
      }
      auto& up = std::get<beast::tcp_stream>(upstream->stream);
      uint64_t sent = buffer.size();
      co_await net::async_write(up, buffer.data(), net::redirect_error(use_awaitable, ec));
      buffer.consume(buffer.size());
      uint64_t received = 0;
      if (!ec) co_await splice(stream, up, sent, received, shared.options.idle_timeout_ms);
      emitL4(conn, "allow", decision.rule, "passthrough", start, started, sent, received,
             hello.sni);
      co_return;
    }
    case Action::kTerminate: {
      if (!info.is_tls) {
        emitL4(conn, "deny", decision.rule, "expected TLS on a Terminate listener", start, started,
               0, 0, "");
        co_return;
      }
      std::string leaf_host = conn.dst.hostname.empty() ? conn.dst.ip : conn.dst.hostname;
      if (leaf_host.empty()) {
        emitL4(conn, "deny", decision.rule, "TLS without SNI to an unknown destination", start,
               started, 0, 0, "");
        co_return;
      }
      auto context = shared.serverContext(conn.gateway, leaf_host);
      if (!context.ok()) {
        emitL4(conn, "deny", decision.rule, context.status().message(), start, started, 0, 0,
               hello.sni);
        co_return;
      }
      auto server_context = context.value();
      TlsStream tls_stream(std::move(stream), *server_context);
      beast::get_lowest_layer(tls_stream)
          .expires_after(std::chrono::milliseconds(shared.options.header_timeout_ms));
      size_t used = co_await tls_stream.async_handshake(
          net::ssl::stream_base::server, buffer.data(), net::redirect_error(use_awaitable, ec));
      buffer.consume(used);
      if (ec) {
        emitL4(conn, "deny", decision.rule,
               fmt::format("client TLS handshake failed: {}", ec.message()), start, started, 0, 0,
               hello.sni);
        co_return;
      }
      conn.tls = true;
      conn.dst.hostname = leaf_host;
      if (negotiatedH2(tls_stream)) {
        co_await serveHttp2(conn, tls_stream);
      } else {
        beast::flat_buffer tls_buffer;
        co_await serveHttp(conn, tls_stream, tls_buffer);
      }
      boost::system::error_code ignored;
      beast::get_lowest_layer(tls_stream).expires_after(std::chrono::seconds(1));
      co_await tls_stream.async_shutdown(net::redirect_error(use_awaitable, ignored));
      co_return;
    }
    case Action::kInspectHttp:
      co_await serveHttp(conn, stream, buffer);
      co_return;
  }
}

Connection makeConnection(Shared& shared, EventLoop& loop, const tcp::socket& socket,
                          std::string listener) {
  Connection conn{
      shared, loop,   shared.snapshots.current(), nullptr, {}, std::move(listener), {}, false,
      {},     nullptr};
  boost::system::error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (!ec) conn.client_ip = remote.address().to_string();
  conn.identity = shared.identities.lookup(conn.client_ip);
  if (conn.identity) conn.gateway_name = conn.identity->gateway;
  if (conn.snapshot) conn.gateway = conn.snapshot->gateway(conn.gateway_name);
  return conn;
}

struct ActiveGuard {
  Counters& counters;
  explicit ActiveGuard(Counters& c) : counters(c) {
    counters.connections_accepted.fetch_add(1, std::memory_order_relaxed);
    counters.connections_active.fetch_add(1, std::memory_order_relaxed);
  }
  ~ActiveGuard() { counters.connections_active.fetch_sub(1, std::memory_order_relaxed); }
};

}  // namespace

void setIdentityAttributes(telemetry::Record& record, const std::string& client_ip,
                           const Identity* identity) {
  namespace attr = telemetry::attr;
  telemetry::set(record, attr::kClientAddress, client_ip);
  if (identity == nullptr) return;
  const Identity& id = *identity;
  if (!id.namespace_name.empty()) telemetry::set(record, attr::kClrkNamespace, id.namespace_name);
  if (!id.agent.empty()) telemetry::set(record, attr::kClrkAgent, id.agent);
  if (!id.execution_id.empty()) telemetry::set(record, attr::kClrkExecutionId, id.execution_id);
  if (!id.request_id.empty()) telemetry::set(record, attr::kClrkRequestId, id.request_id);
  if (!id.sandbox_id.empty()) telemetry::set(record, attr::kClrkSandboxId, id.sandbox_id);
  for (const auto& [field, value] : id.caller) {
    telemetry::set(record, std::string(attr::kClrkIdentityPrefix) + field, value);
  }
  if (!id.caller.empty()) telemetry::set(record, attr::kClrkIdentityVerified, id.caller_verified);
}

net::awaitable<void> serveTransparent(Shared& shared, EventLoop& loop, tcp::socket socket) {
  ActiveGuard guard(shared.counters);
  Connection conn = makeConnection(shared, loop, socket, "transparent");
  if (!conn.snapshot) co_return;
  auto original = originalDestination(socket);
  if (!original) {
    // Not redirected by nftables: nothing to forward to.
    co_return;
  }
  conn.dst.ip = original->address().to_string();
  conn.dst.port = original->port();
  if (auto name = shared.names->nameFor(conn.dst.ip)) conn.dst.hostname = *name;
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  co_await classifyAndServe(conn, stream, buffer);
}

net::awaitable<void> serveExplicit(Shared& shared, EventLoop& loop, tcp::socket socket) {
  ActiveGuard guard(shared.counters);
  Connection conn = makeConnection(shared, loop, socket, "explicit");
  if (!conn.snapshot) co_return;
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  // The first request decides: CONNECT opens a tunnel, anything else is proxied HTTP.
  http::request_parser<http::empty_body> parser;
  parser.header_limit(shared.options.max_header_bytes);
  parser.body_limit(kUnlimitedBody);
  stream.expires_after(std::chrono::milliseconds(shared.options.header_timeout_ms));
  co_await http::async_read_header(stream, buffer, parser, net::redirect_error(use_awaitable, ec));
  if (ec) {
    if (ec == http::error::header_limit ||
        ec.category() == make_error_code(http::error::bad_target).category()) {
      co_await respond(stream, 11, false, ec == http::error::header_limit ? 431 : 400,
                       denyBody("bad_request", fmt::format("bad proxy request: {}", ec.message()),
                                "", "", "", ""),
                       "application/json");
    }
    co_return;
  }
  auto& req = parser.get();
  if (req.method() == http::verb::connect) {
    std::string host;
    uint16_t port = 0;
    splitHostPort(ssv(req.target()), host, port);
    if (host.empty() || port == 0) {
      co_await respond(stream, req.version(), false, 400,
                       denyBody("bad_request", "CONNECT target must be host:port", "", "",
                                "CONNECT", std::string(ssv(req.target()))),
                       "application/json");
      co_return;
    }
    if (isIpLiteral(host)) {
      conn.dst.ip = host;
    } else {
      conn.dst.hostname = host;
    }
    conn.dst.port = port;
    http::response<http::empty_body> ok{http::status::ok, req.version()};
    ok.reason("Connection Established");
    http::response_serializer<http::empty_body> serializer{ok};
    co_await http::async_write_header(stream, serializer, net::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    co_await classifyAndServe(conn, stream, buffer);
    co_return;
  }
  // Absolute-URI proxying (plain http://). The connection-level decision uses the first host.
  std::string host;
  uint16_t port = 0;
  bool tls = false;
  std::string origin;
  if (!parseAbsoluteTarget(ssv(req.target()), host, port, tls, origin) || tls) {
    co_await respond(
        stream, req.version(), false, 400,
        denyBody("bad_request",
                 "proxy requests need an absolute http:// URL (use CONNECT for "
                 "https)",
                 "", "", std::string(ssv(req.method_string())), std::string(ssv(req.target()))),
        "application/json");
    co_return;
  }
  conn.dst.hostname = isIpLiteral(host) ? "" : host;
  conn.dst.ip = isIpLiteral(host) ? host : "";
  conn.dst.port = port;
  if (host == kMetadataHost && port == kMetadataPort) {
    MetadataCaller caller{conn.client_ip, conn.identity, conn.listener};
    co_await serveMetadata(shared, stream, buffer, caller, &parser);
    co_return;
  }
  config::ConnectionInfo info;
  info.gateway = conn.gateway_name;
  info.identity = conn.identity.get();
  info.dst_ip = conn.dst.ip;
  info.dst_port = port;
  info.hostname = conn.dst.hostname;
  info.is_http = true;
  auto decision = conn.snapshot->decideConnection(info);
  if (decision.action == config::ConnectionDecision::Action::kDeny) {
    shared.counters.connections_denied.fetch_add(1, std::memory_order_relaxed);
    Exchange ex;
    ex.method = std::string(ssv(req.method_string()));
    ex.host = host;
    ex.port = port;
    ex.path = origin.substr(0, origin.find('?'));
    ex.url = fmt::format("http://{}:{}{}", host, port, ex.path);
    ex.status = 403;
    ex.decision = "deny";
    ex.rule = decision.rule;
    ex.reason = decision.reason;
    co_await respond(
        stream, req.version(), false, 403,
        denyBody("clrk_egress_denied",
                 fmt::format("egress denied by {}: {}", decision.rule, decision.reason),
                 decision.rule, host, ex.method, ex.path),
        "application/json");
    emitHttp(conn, ex);
    co_return;
  }
  Next next = co_await serveRequest(conn, stream, buffer, parser);
  if (next == Next::kContinue) co_await serveHttp(conn, stream, buffer);
}

}  // namespace clrk::egress::internal
