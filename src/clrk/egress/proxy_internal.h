// Internals shared by the data plane's translation units (not a public interface).
#pragma once

#include "clrk/base/striped_counter.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/dns/name_table.h"
#include "clrk/egress/h2/client.h"
#include "clrk/egress/identity.h"
#include "clrk/egress/llm/limits.h"
#include "clrk/egress/metadata.h"
#include "clrk/egress/proxy.h"
#include "clrk/egress/tls/leaf_cache.h"
#include "clrk/egress/tls/stream.h"
#include "clrk/telemetry/record.h"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>

#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>  // before Boost 1.74's awaitable.hpp, which uses std::exchange
#include <variant>
#include <vector>

namespace clrk::telemetry {
class Pipeline;
}

namespace clrk::egress::internal {

namespace net = boost::asio;
namespace beast = boost::beast;
using tcp = net::ip::tcp;
using TlsStream = tls::Stream;

// Striped: the event loops add to them on every request without sharing a cache line.
struct Counters {
  StripedCounter connections_accepted;
  StripedCounter connections_active;
  StripedCounter requests;
  StripedCounter requests_denied;
  StripedCounter connections_denied;
  StripedCounter rate_limited;
  StripedCounter budget_exceeded;
  StripedCounter upstream_failures;
  StripedCounter records_emitted;
  StripedCounter records_dropped;
  StripedCounter upstream_connections_reused;
};

// A connection to an upstream server, plain or TLS, with its read buffer.
struct Upstream {
  std::string key;  // pool key: "s|host|port" or "p|host|port"
  // A stream of a shared HTTP/2 connection (h2::ClientStream) is used once, never pooled.
  std::variant<beast::tcp_stream, TlsStream, h2::ClientStream> stream;
  std::shared_ptr<net::ssl::context> tls_context;  // keeps the SSL_CTX alive with the SSL
  beast::flat_buffer buffer;
  bool reused = false;
  std::chrono::steady_clock::time_point idle_since;

  explicit Upstream(beast::tcp_stream plain) : stream(std::move(plain)) {}
  explicit Upstream(h2::ClientStream multiplexed) : stream(std::move(multiplexed)) {}
  // Only for HTTP/1.1 connections (the pool's); throw std::bad_variant_access otherwise.
  tcp::socket& socket() {
    if (auto* plain = std::get_if<beast::tcp_stream>(&stream)) return plain->socket();
    return std::get<TlsStream>(stream).socket();
  }
  void expiresNever() {
    if (auto* plain = std::get_if<beast::tcp_stream>(&stream)) return plain->expires_never();
    std::get<TlsStream>(stream).expires_never();
  }
};

// Idle upstream connections of one event loop (only touched from that loop's thread).
class UpstreamPool {
 public:
  explicit UpstreamPool(size_t per_key, std::chrono::milliseconds max_idle)
      : per_key_(per_key), max_idle_(max_idle) {}
  std::unique_ptr<Upstream> take(const std::string& key);
  void give(std::unique_ptr<Upstream> upstream);
  size_t size() const;

 private:
  // Lists are kept when emptied (a keep-alive client takes and gives back the same connection
  // on every request: no node and deque block churn); empty ones go once this many keys exist.
  static constexpr size_t kMaxKeys = 1024;
  size_t per_key_;
  std::chrono::milliseconds max_idle_;
  std::unordered_map<std::string, std::deque<std::unique_ptr<Upstream>>> idle_;
};

struct EventLoop {
  net::io_context io{1};
  UpstreamPool pool;
  // HTTP/2 upstream connections by pool key (one in use per key; a full or draining one is
  // replaced and finishes its streams on its own).
  std::unordered_map<std::string, std::shared_ptr<h2::ClientConnection>> h2_upstreams;
  explicit EventLoop(const ProxyOptions& options)
      : pool(options.upstream_idle_pool_per_host,
             std::chrono::milliseconds(options.idle_timeout_ms)) {}
};

// Passive ejection of the backends of FallbackRoutingPolicy chains: a backend that failed (no
// connection, no response, or a retriable status) is tried last by later requests until its
// ejection ends. The ejection lasts 30 s (or maxEjectionTime when shorter) times its consecutive
// failures, at most maxEjectionTime; a success ends it and resets the count. While no backend is
// ejected, ejected() reads one atomic and takes no lock.
class EjectionTable {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kBase{30000};

  bool ejected(const std::string& backend, Clock::time_point now) const;
  void failed(const std::string& backend, std::chrono::milliseconds max_ejection,
              Clock::time_point now);
  void succeeded(const std::string& backend);
  size_t size() const;

 private:
  struct State {
    int failures = 0;
    Clock::time_point until{};
  };
  mutable std::mutex mutex_;
  std::unordered_map<std::string, State> states_;
  std::atomic<size_t> count_{0};  // states_.size()
};

// Proxy-wide state. Read-mostly; caches guarded by their own mutexes (cold paths only).
class Shared {
 public:
  Shared(ProxyOptions options, const config::SnapshotHolder& snapshots,
         const IdentityMap& identities, telemetry::Pipeline* telemetry, MetadataStore* metadata);

  const ProxyOptions options;
  const config::SnapshotHolder& snapshots;
  const IdentityMap& identities;
  telemetry::Pipeline* const telemetry;
  MetadataStore* const metadata;  // null: the metadata endpoint answers 404
  Counters counters;
  llm::RateLimiter rate_limiter;
  llm::TokenBudgets budgets;
  llm::TokenBudgets tool_calls;  // MCP tools/call per execution (ToolPolicy maxCallsPerExecution)
  EjectionTable ejections;
  std::unique_ptr<dns::NameTable> names;

  Status init();  // CA, upstream context, name table
  const tls::CertificateAuthority& defaultAuthority() const { return *default_ca_; }
  // Leaf contexts signed by the gateway's CA (or the default CA when it names none).
  Result<std::shared_ptr<net::ssl::context>> serverContext(const config::GatewaySettings* gateway,
                                                           const std::string& host);
  // Upstream client context trusting the system store, the proxy's extra CAs and the gateway's
  // upstreamTLS bundle.
  Result<std::shared_ptr<net::ssl::context>> upstreamContext(
      const config::GatewaySettings* gateway);
  // "ip:port" override for dialing host:port, if any.
  const std::string* dialOverride(const std::string& host, uint16_t port) const;
  uint64_t leafMints() const;
  void emit(telemetry::Record record);

 private:
  std::shared_ptr<const tls::CertificateAuthority> default_ca_;
  mutable std::mutex cache_mutex_;
  std::unordered_map<std::string, std::shared_ptr<tls::LeafCache>> leaf_caches_;  // by CA PEM
  std::unordered_map<std::string, std::shared_ptr<net::ssl::context>> upstream_contexts_;
  std::unordered_map<std::string, std::string> overrides_;
};

// Sets the client address and the identity's clrk.* attributes of a record.
void setIdentityAttributes(telemetry::Record& record, const std::string& client_ip,
                           const Identity* identity);

// Who called the metadata endpoint.
struct MetadataCaller {
  std::string client_ip;
  std::shared_ptr<const Identity> identity;  // null: not a sandbox of this worker
  std::string listener;                      // "transparent" | "explicit"
};

// Serves the metadata endpoint (metadata.h) on a plain HTTP connection until it closes, one
// telemetry record per request. `first` is a request head the caller already read (the explicit
// listener's absolute-URI request), or null.
net::awaitable<void> serveMetadata(Shared& shared, beast::tcp_stream& stream,
                                   beast::flat_buffer& buffer, const MetadataCaller& caller,
                                   beast::http::request_parser<beast::http::empty_body>* first);

// Serves one accepted connection to completion.
net::awaitable<void> serveTransparent(Shared& shared, EventLoop& loop, tcp::socket socket);
net::awaitable<void> serveExplicit(Shared& shared, EventLoop& loop, tcp::socket socket);

}  // namespace clrk::egress::internal
