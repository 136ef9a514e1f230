// LeafCache: mints MITM leaf certificates on demand and caches a ready server SSL context per host.
//
// For a host (DNS name, or an IP literal which becomes an IP SAN) it mints an ECDSA P-256 leaf:
// SAN + CN = host, EKU serverAuth, random 128-bit serial, valid from now-1h to
// min(now+7d, CA notAfter), signed SHA-256 by the CA. Each leaf gets its own fresh key.
// The returned context serves leaf + CA certificate as the chain, TLS 1.2+, AEAD ciphers with
// forward secrecy, a server session cache, and an ALPN select callback that picks "http/1.1"
// when the client offers it ("h2" first when Options::offer_h2 and offered); otherwise no ALPN
// is negotiated (the handshake still succeeds).
//
// Thread-safe: 16 shards, each an LRU under its own mutex (capacity split evenly across shards;
// a capacity below 256 uses one exact LRU). Concurrent first requests for the same host mint
// once (the others wait for that mint); a failed mint is not cached.
// The contexts are shared_ptr: an evicted context lives on while connections still use it.
#pragma once

#include "clrk/base/status.h"
#include "clrk/egress/tls/authority.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio::ssl {
class context;
}

namespace clrk::egress::tls {

class LeafCache {
 public:
  struct Options {
    bool offer_h2 = false;  // when true the ALPN callback prefers "h2" over "http/1.1"
  };

  explicit LeafCache(std::shared_ptr<const CertificateAuthority> ca, size_t capacity = 4096);
  LeafCache(std::shared_ptr<const CertificateAuthority> ca, size_t capacity, Options options);
  ~LeafCache();
  LeafCache(const LeafCache&) = delete;
  LeafCache& operator=(const LeafCache&) = delete;

  // The server context for `host` (case-insensitive, trailing dot ignored), minting it on first
  // use. InvalidArgument when host is empty or not a valid host name / IP literal; Internal when
  // OpenSSL fails. Never throws.
  Result<std::shared_ptr<boost::asio::ssl::context>> serverContext(std::string_view host);

  size_t size() const;     // contexts cached now (<= capacity)
  uint64_t mints() const;  // leaves minted since construction (cache misses that succeeded)
  const CertificateAuthority& authority() const { return *ca_; }

 private:
  struct Shard;
  std::shared_ptr<const CertificateAuthority> ca_;
  Options options_;
  std::unique_ptr<Shard[]> shards_;
  size_t shard_count_ = 1;
  size_t per_shard_capacity_ = 1;
  std::atomic<uint64_t> mints_{0};
};

// Mints one leaf for `host` and returns (certificate PEM, key PEM). Exposed for tests and for the
// standalone CLI; LeafCache uses the same code path.
struct MintedLeaf {
  std::string cert_pem;
  std::string key_pem;
};
Result<MintedLeaf> mintLeafPem(const CertificateAuthority& ca, std::string_view host);
// One leaf valid for every name in `hosts` (SANs; the first is also the CN), for servers that
// answer several hosts on one port (`clrk dev up --mock-providers`). InvalidArgument when `hosts`
// is empty or a name is not a valid host.
Result<MintedLeaf> mintLeafPem(const CertificateAuthority& ca,
                               const std::vector<std::string>& hosts);

}  // namespace clrk::egress::tls
