// The egress data plane: listeners, TLS interception, the HTTP filter chain and upstream
// forwarding. One Proxy serves every sandbox of a worker (transparent listener, fed by nftables
// REDIRECT) and clients outside sandboxes (explicit listener: HTTP CONNECT and absolute-URI
// requests). Configuration comes from a SnapshotHolder swapped by the owner; identities from an
// IdentityMap the worker fills.
//
// Threads: `threads` event loops, each connection lives on one of them; shared state (leaf cache,
// limits, snapshot, identities) is sharded or read-mostly. Nothing blocks an event loop.
#pragma once

#include "clrk/base/status.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/identity.h"
#include "clrk/egress/metadata.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clrk::telemetry {
class Pipeline;
}

namespace clrk::egress {

struct ProxyOptions {
  int threads = 2;
  // Listen addresses "ip:port" (port 0 = any); empty = listener off.
  std::string transparent_listen;  // connections redirected by nftables; SO_ORIGINAL_DST
  std::string explicit_listen;     // HTTP proxy: CONNECT host:port and absolute-URI requests
  std::string dns_listen;          // UDP DNS for sandboxes (synthetic addresses)
  std::string dns_pool = "198.18.0.0/15";

  // MITM CA used when a gateway's Terminate listener names no CA Secret. PEM.
  std::string default_ca_cert_pem;
  std::string default_ca_key_pem;
  // Extra PEM CAs trusted for upstream TLS (in addition to the system store and the gateway's
  // upstreamTLS bundle).
  std::string extra_upstream_ca_pem;
  // "host:port" -> "ip:port" dial overrides (e.g. api.openai.com:443 -> a local mock provider in
  // `clrk dev --mock-providers` and in tests). TLS to the upstream still verifies `host`.
  std::vector<std::pair<std::string, std::string>> upstream_overrides;

  // Limits (bad or slow clients never hold more than this).
  uint32_t max_header_bytes = 64 * 1024;
  uint32_t max_buffered_body_bytes = 8 * 1024 * 1024;  // provider/MCP request bodies inspected
  uint32_t header_timeout_ms = 30000;  // slowloris: whole request header within this
  uint32_t idle_timeout_ms = 120000;   // keep-alive idle / tunnel idle
  uint32_t connect_timeout_ms = 10000;
  uint32_t upstream_idle_pool_per_host = 256;  // per event loop; 16 starved 64 clients (bench)

  // HTTP/2 towards agents: intercepted TLS offers ALPN "h2" (else only "http/1.1"); each stream
  // goes through the same HTTP/1.1 filter chain (h2/server.h).
  bool http2 = true;
  uint32_t http2_max_concurrent_streams = 100;
  // HTTP/2 towards upstreams: upstream TLS offers ALPN "h2" before "http/1.1"; a server that picks
  // it gets one multiplexed connection per host and event loop (h2/client.h).
  bool http2_upstream = true;
};

// Counters for tests, `clrk status` and benchmarks.
struct ProxyStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_active = 0;
  uint64_t requests = 0;
  uint64_t requests_denied = 0;
  uint64_t connections_denied = 0;
  uint64_t rate_limited = 0;
  uint64_t budget_exceeded = 0;
  uint64_t upstream_failures = 0;
  uint64_t records_emitted = 0;
  uint64_t records_dropped = 0;
  uint64_t leaf_certificates_minted = 0;
  uint64_t upstream_connections_reused = 0;
};

class Proxy {
 public:
  // Starts listeners and event loop threads. `telemetry` may be null (records discarded);
  // `metadata` may be null (the metadata endpoint then answers 404 to everyone). Both must outlive
  // the Proxy, like `snapshots` and `identities`.
  static Result<std::unique_ptr<Proxy>> start(ProxyOptions options,
                                              const config::SnapshotHolder& snapshots,
                                              const IdentityMap& identities,
                                              telemetry::Pipeline* telemetry,
                                              MetadataStore* metadata = nullptr);
  virtual ~Proxy() = default;

  // Bound ports (0 when the listener is off).
  virtual uint16_t transparentPort() const = 0;
  virtual uint16_t explicitPort() const = 0;
  virtual uint16_t dnsPort() const = 0;
  // PEM of the default MITM CA certificate (what clients must trust).
  virtual std::string caCertificatePem() const = 0;
  virtual ProxyStats stats() const = 0;
  // Stops accepting, closes connections, joins threads. Idempotent; the destructor calls it.
  virtual void stop() = 0;
};

}  // namespace clrk::egress
