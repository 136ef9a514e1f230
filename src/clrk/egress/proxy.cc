// Proxy: event loops, listeners, the DNS server and proxy-wide caches.
#include "clrk/egress/proxy.h"

#include "clrk/base/log.h"
#include "clrk/egress/dns/server.h"
#include "clrk/egress/proxy_internal.h"
#include "clrk/egress/tls/authority.h"
#include "clrk/egress/tls/upstream.h"
#include "clrk/telemetry/pipeline.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <thread>

namespace clrk::egress {
namespace internal {

std::unique_ptr<Upstream> UpstreamPool::take(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  auto now = std::chrono::steady_clock::now();
  while (!list.empty()) {
    auto upstream = std::move(list.back());
    list.pop_back();
    if (now - upstream->idle_since > max_idle_) continue;  // stale: dropped (closed)
    // A server that closed the idle connection makes it readable (EOF): skip those.
    auto& socket = upstream->socket();
    char probe;
    ssize_t n = ::recv(socket.native_handle(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) continue;
    if (n > 0 && upstream->buffer.size() == 0 &&
        std::holds_alternative<beast::tcp_stream>(upstream->stream)) {
      continue;  // unsolicited bytes on a plain connection: not reusable
    }
    return upstream;  // an emptied list stays: it is refilled by give(), usually at once
  }
  return nullptr;
}

void UpstreamPool::give(std::unique_ptr<Upstream> upstream) {
  auto it = idle_.find(upstream->key);
  if (it == idle_.end()) {
    if (idle_.size() >= kMaxKeys) {
      std::erase_if(idle_, [](const auto& entry) { return entry.second.empty(); });
    }
    it = idle_.emplace(upstream->key, std::deque<std::unique_ptr<Upstream>>()).first;
  }
  auto& list = it->second;
  upstream->idle_since = std::chrono::steady_clock::now();
  upstream->expiresNever();
  if (list.size() >= per_key_) list.pop_front();
  list.push_back(std::move(upstream));
}

size_t UpstreamPool::size() const {
  size_t total = 0;
  for (const auto& [key, list] : idle_) total += list.size();
  return total;
}

bool EjectionTable::ejected(const std::string& backend, Clock::time_point now) const {
  if (count_.load(std::memory_order_acquire) == 0) return false;
  std::lock_guard lock(mutex_);
  auto it = states_.find(backend);
  return it != states_.end() && now < it->second.until;
}

void EjectionTable::failed(const std::string& backend, std::chrono::milliseconds max_ejection,
                           Clock::time_point now) {
  std::lock_guard lock(mutex_);
  State& state = states_[backend];
  count_.store(states_.size(), std::memory_order_release);
  state.failures = std::min(state.failures + 1, 1000);
  auto base = std::min(kBase, max_ejection);
  state.until = now + std::min(max_ejection, base * state.failures);
}

void EjectionTable::succeeded(const std::string& backend) {
  if (count_.load(std::memory_order_acquire) == 0) return;
  std::lock_guard lock(mutex_);
  states_.erase(backend);
  count_.store(states_.size(), std::memory_order_release);
}

size_t EjectionTable::size() const {
  std::lock_guard lock(mutex_);
  return states_.size();
}

Shared::Shared(ProxyOptions opts, const config::SnapshotHolder& holder, const IdentityMap& ids,
               telemetry::Pipeline* pipeline, MetadataStore* metadata_store)
    : options(std::move(opts)),
      snapshots(holder),
      identities(ids),
      telemetry(pipeline),
      metadata(metadata_store) {}

Status Shared::init() {
  if (!options.default_ca_cert_pem.empty()) {
    auto ca =
        tls::CertificateAuthority::fromPem(options.default_ca_cert_pem, options.default_ca_key_pem);
    if (!ca.ok()) return ca.status().withContext("default MITM CA");
    default_ca_ = ca.value();
  } else {
    auto ca = tls::CertificateAuthority::generate("clrk egress CA", std::chrono::hours(24 * 365));
    if (!ca.ok()) return ca.status().withContext("generating the MITM CA");
    default_ca_ = ca.value();
  }
  dns::NameTable::Options name_options;
  name_options.cidr = options.dns_pool;
  auto table = dns::NameTable::create(name_options);
  if (!table.ok()) return table.status().withContext("dns_pool");
  names = std::move(table).value();
  for (const auto& [from, to] : options.upstream_overrides) {
    if (to.rfind(':') == std::string::npos) {
      return invalidArgument(
          fmt::format("upstream override {}={}: want host:port=ip:port", from, to));
    }
    overrides_[from] = to;
  }
  auto upstream = upstreamContext(nullptr);
  if (!upstream.ok()) return upstream.status();
  return {};
}

Result<std::shared_ptr<net::ssl::context>> Shared::serverContext(
    const config::GatewaySettings* gateway, const std::string& host) {
  std::shared_ptr<tls::LeafCache> cache;
  std::string key = gateway && !gateway->ca_cert_pem.empty() ? gateway->ca_cert_pem : "";
  {
    std::lock_guard lock(cache_mutex_);
    auto it = leaf_caches_.find(key);
    if (it != leaf_caches_.end()) cache = it->second;
  }
  if (!cache) {
    std::shared_ptr<const tls::CertificateAuthority> ca = default_ca_;
    if (!key.empty()) {
      auto loaded = tls::CertificateAuthority::fromPem(gateway->ca_cert_pem, gateway->ca_key_pem);
      if (!loaded.ok()) {
        return loaded.status().withContext(fmt::format("gateway {} CA", gateway->name));
      }
      ca = loaded.value();
    }
    std::lock_guard lock(cache_mutex_);
    auto [it, inserted] = leaf_caches_.emplace(key, nullptr);
    if (inserted) {
      it->second =
          std::make_shared<tls::LeafCache>(ca, 4096, tls::LeafCache::Options{options.http2});
    }
    cache = it->second;
  }
  return cache->serverContext(host);
}

Result<std::shared_ptr<net::ssl::context>> Shared::upstreamContext(
    const config::GatewaySettings* gateway) {
  std::string trust = options.extra_upstream_ca_pem;
  if (gateway && !gateway->extra_trust_pem.empty()) {
    trust += "\n";
    trust += gateway->extra_trust_pem;
  }
  std::lock_guard lock(cache_mutex_);
  auto it = upstream_contexts_.find(trust);
  if (it != upstream_contexts_.end()) return it->second;
  auto context = tls::makeUpstreamContext(trust);
  if (!context.ok()) return context.status().withContext("upstream TLS trust");
  upstream_contexts_.emplace(trust, context.value());
  return context.value();
}

const std::string* Shared::dialOverride(const std::string& host, uint16_t port) const {
  if (overrides_.empty()) return nullptr;
  auto it = overrides_.find(fmt::format("{}:{}", host, port));
  return it == overrides_.end() ? nullptr : &it->second;
}

uint64_t Shared::leafMints() const {
  std::lock_guard lock(cache_mutex_);
  uint64_t total = 0;
  for (const auto& [key, cache] : leaf_caches_) total += cache->mints();
  return total;
}

void Shared::emit(telemetry::Record record) {
  if (!telemetry) return;
  if (telemetry->emit(std::move(record))) {
    counters.records_emitted.fetch_add(1, std::memory_order_relaxed);
  } else {
    counters.records_dropped.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace internal

namespace {

using internal::EventLoop;
using internal::net::ip::tcp;
namespace net = boost::asio;

Result<tcp::endpoint> parseListen(const std::string& text, std::string_view what) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return invalidArgument(fmt::format("{} {:?}: want ip:port", what, text));
  }
  boost::system::error_code ec;
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  auto address = net::ip::make_address(host, ec);
  if (ec) return invalidArgument(fmt::format("{} {:?}: bad IP address", what, text));
  int port = 0;
  try {
    port = std::stoi(text.substr(colon + 1));
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535)
    return invalidArgument(fmt::format("{} {:?}: bad port", what, text));
  return tcp::endpoint(address, static_cast<uint16_t>(port));
}

class ProxyImpl final : public Proxy {
 public:
  ProxyImpl(ProxyOptions options, const config::SnapshotHolder& snapshots,
            const IdentityMap& identities, telemetry::Pipeline* telemetry, MetadataStore* metadata)
      : shared_(std::move(options), snapshots, identities, telemetry, metadata) {}

  ~ProxyImpl() override { stop(); }

  Status start() {
    CLRK_RETURN_IF_ERROR(shared_.init());
    int threads = std::max(1, shared_.options.threads);
    for (int i = 0; i < threads; ++i)
      loops_.push_back(std::make_unique<EventLoop>(shared_.options));
    if (!shared_.options.transparent_listen.empty()) {
      CLRK_ASSIGN_OR_RETURN(auto endpoint,
                            parseListen(shared_.options.transparent_listen, "transparent_listen"));
      CLRK_ASSIGN_OR_RETURN(transparent_port_, listen(endpoint, /*transparent=*/true));
    }
    if (!shared_.options.explicit_listen.empty()) {
      CLRK_ASSIGN_OR_RETURN(auto endpoint,
                            parseListen(shared_.options.explicit_listen, "explicit_listen"));
      CLRK_ASSIGN_OR_RETURN(explicit_port_, listen(endpoint, /*transparent=*/false));
    }
    if (!shared_.options.dns_listen.empty()) {
      CLRK_ASSIGN_OR_RETURN(auto endpoint, parseListen(shared_.options.dns_listen, "dns_listen"));
      auto policy = [](const std::string&, const std::string&) {
        // Every name gets a synthetic address so the connection that follows is attributed to
        // the name; the connection itself is then allowed or denied by the snapshot.
        return dns::Answer::kSynthetic;
      };
      auto server = dns::DnsServer::start(
          loops_[0]->io, net::ip::udp::endpoint(endpoint.address(), endpoint.port()),
          *shared_.names, policy);
      if (!server.ok()) return server.status().withContext("dns_listen");
      dns_ = std::move(server).value();
      dns_port_ = dns_->port();
    }
    for (auto& loop : loops_) {
      work_.push_back(net::make_work_guard(loop->io));
      threads_.emplace_back([io = &loop->io] { io->run(); });
    }
    return {};
  }

  uint16_t transparentPort() const override { return transparent_port_; }
  uint16_t explicitPort() const override { return explicit_port_; }
  uint16_t dnsPort() const override { return dns_port_; }
  std::string caCertificatePem() const override { return shared_.defaultAuthority().certPem(); }

  ProxyStats stats() const override {
    const auto& c = shared_.counters;
    ProxyStats stats;
    stats.connections_accepted = c.connections_accepted.load();
    stats.connections_active = c.connections_active.load();
    stats.requests = c.requests.load();
    stats.requests_denied = c.requests_denied.load();
    stats.connections_denied = c.connections_denied.load();
    stats.rate_limited = c.rate_limited.load();
    stats.budget_exceeded = c.budget_exceeded.load();
    stats.upstream_failures = c.upstream_failures.load();
    stats.records_emitted = c.records_emitted.load();
    stats.records_dropped = c.records_dropped.load();
    stats.leaf_certificates_minted = shared_.leafMints();
    stats.upstream_connections_reused = c.upstream_connections_reused.load();
    return stats;
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    if (dns_) {
      net::post(loops_[0]->io, [this] { dns_.reset(); });
    }
    for (auto& acceptor : acceptors_) {
      net::post(acceptor->get_executor(), [a = acceptor.get()] {
        boost::system::error_code ec;
        a->close(ec);
      });
    }
    work_.clear();
    for (auto& loop : loops_) loop->io.stop();
    for (auto& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
    dns_.reset();
    acceptors_.clear();
    // Destroy pending coroutines (and their sockets) while the loops still exist.
    for (auto& loop : loops_) {
      loop->pool = internal::UpstreamPool(0, std::chrono::milliseconds(0));
    }
    loops_.clear();
  }

 private:
  Result<uint16_t> listen(const tcp::endpoint& endpoint, bool transparent) {
    auto acceptor = std::make_unique<tcp::acceptor>(loops_[0]->io);
    boost::system::error_code ec;
    acceptor->open(endpoint.protocol(), ec);
    if (!ec) acceptor->set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor->bind(endpoint, ec);
    if (!ec) acceptor->listen(4096, ec);
    if (ec) {
      return Status(Code::Unavailable,
                    fmt::format("cannot listen on {}:{}: {}", endpoint.address().to_string(),
                                endpoint.port(), ec.message()));
    }
    uint16_t port = acceptor->local_endpoint().port();
    net::co_spawn(loops_[0]->io, acceptLoop(*acceptor, transparent), net::detached);
    acceptors_.push_back(std::move(acceptor));
    return port;
  }

  net::awaitable<void> acceptLoop(tcp::acceptor& acceptor, bool transparent) {
    size_t next = 0;
    for (;;) {
      EventLoop& loop = *loops_[next++ % loops_.size()];
      boost::system::error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(loop.io, net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor.is_open()) co_return;
        // EMFILE and friends: back off briefly instead of spinning.
        net::steady_timer timer(co_await net::this_coro::executor);
        timer.expires_after(std::chrono::milliseconds(50));
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        continue;
      }
      auto serve = transparent ? internal::serveTransparent : internal::serveExplicit;
      net::co_spawn(loop.io, serve(shared_, loop, std::move(socket)), [](std::exception_ptr error) {
        if (!error) return;
        try {
          std::rethrow_exception(error);
        } catch (const std::exception& e) {
          logger("egress")->error("connection handler failed: {}", e.what());
        }
      });
    }
  }

  internal::Shared shared_;
  std::vector<std::unique_ptr<EventLoop>> loops_;
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  std::unique_ptr<dns::DnsServer> dns_;
  uint16_t transparent_port_ = 0;
  uint16_t explicit_port_ = 0;
  uint16_t dns_port_ = 0;
  std::atomic<bool> stopped_{false};
};

}  // namespace

Result<std::unique_ptr<Proxy>> Proxy::start(ProxyOptions options,
                                            const config::SnapshotHolder& snapshots,
                                            const IdentityMap& identities,
                                            telemetry::Pipeline* telemetry,
                                            MetadataStore* metadata) {
  auto proxy =
      std::make_unique<ProxyImpl>(std::move(options), snapshots, identities, telemetry, metadata);
  CLRK_RETURN_IF_ERROR(proxy->start());
  return std::unique_ptr<Proxy>(std::move(proxy));
}

}  // namespace clrk::egress
