#include "clrk/egress/tls/leaf_cache.h"

#include "clrk/egress/tls/tls_util.h"

#include <boost/asio/ssl/context.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <future>
#include <list>
#include <mutex>
#include <unordered_map>

namespace clrk::egress::tls {
namespace {

using ContextPtr = std::shared_ptr<boost::asio::ssl::context>;
using ContextResult = Result<ContextPtr>;

constexpr size_t kShards = 16;
// Below this capacity a single shard keeps the LRU exact (and size() <= capacity strict).
constexpr size_t kMinShardedCapacity = 256;
constexpr long kLeafLifetimeSeconds = 7L * 24 * 3600;
constexpr long kBackdateSeconds = 3600;
constexpr long kSessionCacheSize = 256;

// Server cipher suites for TLS 1.2 (the leaf key is ECDSA); TLS 1.3 uses OpenSSL's defaults.
constexpr const char* kServerCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305";

struct Leaf {
  X509Ptr cert;
  PkeyPtr key;
};

// `hosts` is not empty; the first one is the subject CN, all of them are SANs.
Result<Leaf> mintLeaf(const CertificateAuthority& ca, const std::vector<HostName>& hosts) {
  const HostName& host = hosts.front();
  ERR_clear_error();
  CLRK_ASSIGN_OR_RETURN(PkeyPtr key, generateP256Key());
  X509Ptr cert(X509_new());
  if (!cert) return internalError(opensslError("X509_new"));
  if (X509_set_version(cert.get(), 2) != 1) return internalError(opensslError("X509 version"));
  CLRK_RETURN_IF_ERROR(setRandomSerial(cert.get()));
  X509_NAME* name = X509_get_subject_name(cert.get());
  // CN is limited to 64 bytes (X.520); longer names rely on the SAN alone, as clients do anyway.
  if (host.name.size() <= 64 &&
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>(host.name.c_str()), -1, -1,
                                 0) != 1) {
    return internalError(opensslError("leaf common name"));
  }
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(ca.cert())) != 1) {
    return internalError(opensslError("leaf issuer"));
  }
  const std::time_t now = std::time(nullptr);
  const std::time_t ca_end = std::chrono::system_clock::to_time_t(ca.notAfter());
  const std::time_t not_after = std::min<std::time_t>(now + kLeafLifetimeSeconds, ca_end);
  if (not_after <= now) return internalError("the CA certificate has expired; cannot mint leaves");
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()), now - kBackdateSeconds) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()), not_after) == nullptr) {
    return internalError(opensslError("leaf validity"));
  }
  if (X509_set_pubkey(cert.get(), key.get()) != 1) return internalError(opensslError("pubkey"));
  // Names were validated: only [a-z0-9._-] or IP literals, so no ',' can inject entries.
  std::string san;
  for (const HostName& each : hosts) {
    if (!san.empty()) san += ",";
    san += (each.is_ip ? "IP:" : "DNS:") + each.name;
  }
  CLRK_RETURN_IF_ERROR(addCertExtension(cert.get(), ca.cert(), NID_subject_alt_name, san.c_str()));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), ca.cert(), NID_basic_constraints, "critical,CA:FALSE"));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), ca.cert(), NID_key_usage, "critical,digitalSignature"));
  CLRK_RETURN_IF_ERROR(addCertExtension(cert.get(), ca.cert(), NID_ext_key_usage, "serverAuth"));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), ca.cert(), NID_authority_key_identifier, "keyid"));
  if (X509_sign(cert.get(), ca.key(), EVP_sha256()) <= 0) {
    return internalError(opensslError("signing the leaf certificate"));
  }
  return Leaf{std::move(cert), std::move(key)};
}

// ALPN: walk the client's wire-format list and pick `want` if offered.
bool findProtocol(const unsigned char* in, unsigned int inlen, std::string_view want,
                  const unsigned char** out, unsigned char* outlen) {
  unsigned int pos = 0;
  while (pos < inlen) {
    const unsigned int len = in[pos];
    if (len == 0 || len > inlen - pos - 1) return false;  // malformed: stop
    if (std::string_view(reinterpret_cast<const char*>(in + pos + 1), len) == want) {
      *out = in + pos + 1;
      *outlen = static_cast<unsigned char>(len);
      return true;
    }
    pos += 1 + len;
  }
  return false;
}

int selectAlpnHttp1(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                    unsigned int inlen, void*) {
  if (findProtocol(in, inlen, "http/1.1", out, outlen)) return SSL_TLSEXT_ERR_OK;
  return SSL_TLSEXT_ERR_NOACK;
}

int selectAlpnH2(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                 const unsigned char* in, unsigned int inlen, void* arg) {
  if (findProtocol(in, inlen, "h2", out, outlen)) return SSL_TLSEXT_ERR_OK;
  return selectAlpnHttp1(ssl, out, outlen, in, inlen, arg);
}

ContextResult makeServerContext(const CertificateAuthority& ca, const Leaf& leaf, bool offer_h2) {
  ContextPtr context;
  try {
    context = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  } catch (const std::exception& e) {
    return internalError(std::string("creating a TLS server context: ") + e.what());
  }
  SSL_CTX* ctx = context->native_handle();
  ERR_clear_error();
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kServerCiphers) != 1 ||
      SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1) {
    return internalError(opensslError("configuring the TLS server context"));
  }
  if (SSL_CTX_use_certificate(ctx, leaf.cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, leaf.key.get()) != 1 ||
      SSL_CTX_add1_chain_cert(ctx, ca.cert()) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
    return internalError(opensslError("installing the leaf certificate"));
  }
  // Idle connections give their ~34 KiB of record buffers back (the 64 KiB per idle MITM
  // connection budget covers both TLS ends).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_sess_set_cache_size(ctx, kSessionCacheSize);
  static const unsigned char kSessionIdContext[] = "clrk-egress";
  SSL_CTX_set_session_id_context(ctx, kSessionIdContext, sizeof(kSessionIdContext) - 1);
  SSL_CTX_set_alpn_select_cb(ctx, offer_h2 ? selectAlpnH2 : selectAlpnHttp1, nullptr);
  return context;
}

}  // namespace

struct LeafCache::Shard {
  struct Entry {
    std::string host;
    std::shared_future<ContextResult> context;
  };
  mutable std::mutex mutex;
  std::list<Entry> lru;  // front = most recently used
  std::unordered_map<std::string, std::list<Entry>::iterator> index;
};

LeafCache::LeafCache(std::shared_ptr<const CertificateAuthority> ca, size_t capacity)
    : LeafCache(std::move(ca), capacity, Options{}) {}

LeafCache::LeafCache(std::shared_ptr<const CertificateAuthority> ca, size_t capacity,
                     Options options)
    : ca_(std::move(ca)), options_(options) {
  capacity = std::max<size_t>(capacity, 1);
  shard_count_ = capacity >= kMinShardedCapacity ? kShards : 1;
  per_shard_capacity_ = capacity / shard_count_;
  shards_ = std::make_unique<Shard[]>(shard_count_);
}

LeafCache::~LeafCache() = default;

Result<std::shared_ptr<boost::asio::ssl::context>> LeafCache::serverContext(std::string_view host) {
  if (!ca_) return internalError("leaf cache has no certificate authority");
  CLRK_ASSIGN_OR_RETURN(HostName name, normalizeHost(host));
  Shard& shard = shards_[std::hash<std::string>{}(name.name) % shard_count_];
  std::promise<ContextResult> promise;
  std::shared_future<ContextResult> future;
  {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.index.find(name.name);
    if (it != shard.index.end()) {
      shard.lru.splice(shard.lru.begin(), shard.lru, it->second);
      future = it->second->context;
    } else {
      shard.lru.push_front({name.name, promise.get_future().share()});
      shard.index.emplace(name.name, shard.lru.begin());
      while (shard.lru.size() > per_shard_capacity_) {
        shard.index.erase(shard.lru.back().host);
        shard.lru.pop_back();
      }
    }
  }
  if (future.valid()) return future.get();  // cached, or minted right now by another thread

  // This thread mints; concurrent callers for the same host wait on the shared future.
  ContextResult result = internalError("minting did not run");
  Result<Leaf> leaf = mintLeaf(*ca_, {name});
  if (leaf.ok()) {
    result = makeServerContext(*ca_, leaf.value(), options_.offer_h2);
  } else {
    result = leaf.status().withContext("minting a certificate for " + name.name);
  }
  if (result.ok()) mints_.fetch_add(1, std::memory_order_relaxed);
  promise.set_value(result);
  if (!result.ok()) {  // do not cache failures: the next request retries
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.index.find(name.name);
    if (it != shard.index.end()) {
      const auto& ready = it->second->context;
      if (ready.wait_for(std::chrono::seconds(0)) == std::future_status::ready &&
          !ready.get().ok()) {
        shard.lru.erase(it->second);
        shard.index.erase(it);
      }
    }
  }
  return result;
}

size_t LeafCache::size() const {
  size_t total = 0;
  for (size_t i = 0; i < shard_count_; ++i) {
    std::lock_guard<std::mutex> lock(shards_[i].mutex);
    total += shards_[i].lru.size();
  }
  return total;
}

uint64_t LeafCache::mints() const { return mints_.load(std::memory_order_relaxed); }

Result<MintedLeaf> mintLeafPem(const CertificateAuthority& ca, std::string_view host) {
  return mintLeafPem(ca, std::vector<std::string>{std::string(host)});
}

Result<MintedLeaf> mintLeafPem(const CertificateAuthority& ca,
                               const std::vector<std::string>& hosts) {
  if (hosts.empty()) return invalidArgument("a leaf needs at least one host name");
  std::vector<HostName> names;
  for (const std::string& host : hosts) {
    CLRK_ASSIGN_OR_RETURN(HostName name, normalizeHost(host));
    names.push_back(std::move(name));
  }
  CLRK_ASSIGN_OR_RETURN(Leaf leaf, mintLeaf(ca, names));
  BioPtr cert_bio(BIO_new(BIO_s_mem()));
  BioPtr key_bio(BIO_new(BIO_s_mem()));
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), leaf.cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), leaf.key.get(), nullptr, nullptr, 0, nullptr,
                               nullptr) != 1) {
    return internalError(opensslError("writing the leaf PEM"));
  }
  return MintedLeaf{bioString(cert_bio.get()), bioString(key_bio.get())};
}

}  // namespace clrk::egress::tls
