#include "clrk/egress/tls/leaf_cache.h"

#include "clrk/egress/tls/test_util.h"

#include <boost/asio/ssl/context.hpp>
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>
#include <vector>

namespace clrk::egress::tls {
namespace {

using testing::parseCert;

std::shared_ptr<const CertificateAuthority> makeCa(
    std::chrono::hours validity = std::chrono::hours(24 * 365)) {
  auto ca = CertificateAuthority::generate("leaf cache test CA", validity);
  EXPECT_TRUE(ca.ok()) << ca.status().toString();
  return ca.ok() ? ca.value() : nullptr;
}

X509* leafOf(const std::shared_ptr<boost::asio::ssl::context>& ctx) {
  return SSL_CTX_get0_certificate(ctx->native_handle());
}

// Verifies `leaf` against `ca` the way a client would: chain, purpose and host (or IP).
int verifyLeaf(X509* leaf, const CertificateAuthority& ca, const std::string& host,
               bool ip = false) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca.cert());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (ip) {
    X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }
  const int ok = X509_verify_cert(ctx);
  const int err = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return ok == 1 ? X509_V_OK : (err == X509_V_OK ? -1 : err);
}

std::vector<std::string> sanNames(X509* cert, int type) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type != type) continue;
    const ASN1_STRING* s = type == GEN_DNS ? gn->d.dNSName : gn->d.iPAddress;
    names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(sans);
  return names;
}

// "prefix<n>suffix", built with append: GCC 12 -O3 warns falsely (-Wrestrict) on
// "literal" + std::string.
std::string numbered(const char* prefix, int n, const char* suffix) {
  std::string out = prefix;
  out.append(std::to_string(n)).append(suffix);
  return out;
}

TEST(LeafCacheTest, MintsOnceAndCaches) {
  LeafCache cache(makeCa());
  auto first = cache.serverContext("api.openai.com");
  ASSERT_TRUE(first.ok()) << first.status().toString();
  EXPECT_EQ(cache.mints(), 1u);
  EXPECT_EQ(cache.size(), 1u);
  auto again = cache.serverContext("API.OpenAI.com.");  // same host, normalised
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->get(), first->get());
  EXPECT_EQ(cache.mints(), 1u);
  auto other = cache.serverContext("api.anthropic.com");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->get(), first->get());
  EXPECT_EQ(cache.mints(), 2u);
  EXPECT_EQ(cache.size(), 2u);
}

TEST(LeafCacheTest, RejectsInvalidHosts) {
  LeafCache cache(makeCa());
  for (std::string_view host :
       {std::string_view(""), std::string_view("a b"), std::string_view("a,DNS:evil.com"),
        std::string_view("a..b"), std::string_view("x\0y", 3), std::string_view("[notip]")}) {
    auto r = cache.serverContext(host);
    ASSERT_FALSE(r.ok()) << host;
    EXPECT_EQ(r.status().code(), Code::InvalidArgument);
  }
  EXPECT_EQ(cache.mints(), 0u);
  EXPECT_EQ(cache.size(), 0u);
}

TEST(LeafCacheTest, LeafVerifiesAgainstTheCa) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(ctx.ok());
  X509* leaf = leafOf(*ctx);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(verifyLeaf(leaf, *ca, "api.openai.com"), X509_V_OK);
  EXPECT_EQ(verifyLeaf(leaf, *ca, "api.anthropic.com"), X509_V_ERR_HOSTNAME_MISMATCH);
  // Does not verify against another CA.
  auto other = makeCa();
  EXPECT_NE(verifyLeaf(leaf, *other, "api.openai.com"), X509_V_OK);

  EXPECT_EQ(sanNames(leaf, GEN_DNS), std::vector<std::string>{"api.openai.com"});
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof(cn));
  EXPECT_STREQ(cn, "api.openai.com");
  EXPECT_EQ(X509_check_ca(leaf), 0);
  EXPECT_NE(X509_get_extended_key_usage(leaf) & XKU_SSL_SERVER, 0u);
  EXPECT_EQ(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
  EVP_PKEY* key = X509_get0_pubkey(leaf);
  EXPECT_EQ(EVP_PKEY_get_base_id(key), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(key), 256);
  // Validity: now-1h .. now+7d.
  const time_t now = time(nullptr);
  int day = 0, sec = 0;
  ASSERT_EQ(ASN1_TIME_diff(&day, &sec, nullptr, X509_get0_notAfter(leaf)), 1);
  const long after = day * 86400L + sec;
  EXPECT_GT(after, 7 * 86400L - 60);
  EXPECT_LE(after, 7 * 86400L);
  ASSERT_EQ(ASN1_TIME_diff(&day, &sec, nullptr, X509_get0_notBefore(leaf)), 1);
  const long before = day * 86400L + sec;
  EXPECT_GE(before, -3600L - 60);
  EXPECT_LE(before, -3600L + 60);
  (void)now;

  // The chain sent is leaf + CA.
  STACK_OF(X509)* chain = nullptr;
  ASSERT_EQ(SSL_CTX_get0_chain_certs((*ctx)->native_handle(), &chain), 1);
  ASSERT_EQ(sk_X509_num(chain), 1);
  EXPECT_EQ(X509_cmp(sk_X509_value(chain, 0), ca->cert()), 0);
}

TEST(LeafCacheTest, IpLiteralGetsIpSan) {
  auto ca = makeCa();
  LeafCache cache(ca);
  for (const char* ip : {"10.1.2.3", "::1", "[2001:db8::1]"}) {
    SCOPED_TRACE(ip);
    auto ctx = cache.serverContext(ip);
    ASSERT_TRUE(ctx.ok()) << ctx.status().toString();
    X509* leaf = leafOf(*ctx);
    EXPECT_TRUE(sanNames(leaf, GEN_DNS).empty());
    ASSERT_EQ(sanNames(leaf, GEN_IPADD).size(), 1u);
    std::string bare = ip;
    if (bare.front() == '[') bare = bare.substr(1, bare.size() - 2);
    EXPECT_EQ(verifyLeaf(leaf, *ca, bare, /*ip=*/true), X509_V_OK);
    EXPECT_EQ(verifyLeaf(leaf, *ca, "10.9.9.9", /*ip=*/true), X509_V_ERR_IP_ADDRESS_MISMATCH);
  }
}

TEST(LeafCacheTest, LongHostHasSanButNoCn) {
  auto ca = makeCa();
  LeafCache cache(ca);
  const std::string host = std::string(63, 'a') + "." + std::string(40, 'b') + ".example.com";
  auto ctx = cache.serverContext(host);
  ASSERT_TRUE(ctx.ok()) << ctx.status().toString();
  X509* leaf = leafOf(*ctx);
  EXPECT_EQ(X509_NAME_get_index_by_NID(X509_get_subject_name(leaf), NID_commonName, -1), -1);
  EXPECT_EQ(verifyLeaf(leaf, *ca, host), X509_V_OK);
}

TEST(LeafCacheTest, LeafNeverOutlivesTheCa) {
  auto ca = makeCa(std::chrono::hours(48));
  ASSERT_NE(ca, nullptr);
  auto minted = mintLeafPem(*ca, "short.example");
  ASSERT_TRUE(minted.ok());
  auto leaf = parseCert(minted->cert_pem);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(ASN1_TIME_compare(X509_get0_notAfter(leaf.get()), X509_get0_notAfter(ca->cert())), 0);
  // Two mints of the same host get different serials and keys.
  auto second = mintLeafPem(*ca, "short.example");
  ASSERT_TRUE(second.ok());
  auto leaf2 = parseCert(second->cert_pem);
  EXPECT_NE(
      ASN1_INTEGER_cmp(X509_get0_serialNumber(leaf.get()), X509_get0_serialNumber(leaf2.get())), 0);
  EXPECT_NE(minted->key_pem, second->key_pem);
}

TEST(LeafCacheTest, OneLeafForSeveralHosts) {
  auto ca = makeCa();
  ASSERT_NE(ca, nullptr);
  auto minted =
      mintLeafPem(*ca, std::vector<std::string>{"API.openai.com.", "mcp.mock.test", "127.0.0.1"});
  ASSERT_TRUE(minted.ok()) << minted.status().toString();
  auto leaf = parseCert(minted->cert_pem);
  ASSERT_NE(leaf, nullptr);
  EXPECT_EQ(sanNames(leaf.get(), GEN_DNS),
            (std::vector<std::string>{"api.openai.com", "mcp.mock.test"}));
  EXPECT_EQ(verifyLeaf(leaf.get(), *ca, "api.openai.com"), X509_V_OK);
  EXPECT_EQ(verifyLeaf(leaf.get(), *ca, "mcp.mock.test"), X509_V_OK);
  EXPECT_EQ(verifyLeaf(leaf.get(), *ca, "127.0.0.1", /*ip=*/true), X509_V_OK);
  EXPECT_NE(verifyLeaf(leaf.get(), *ca, "api.anthropic.com"), X509_V_OK);

  EXPECT_FALSE(mintLeafPem(*ca, std::vector<std::string>{}).ok());
  EXPECT_FALSE(mintLeafPem(*ca, std::vector<std::string>{"ok.test", "bad,DNS:evil.test"}).ok());
}

TEST(LeafCacheTest, LruEviction) {
  LeafCache cache(makeCa(), 3);
  ASSERT_TRUE(cache.serverContext("a.test").ok());
  ASSERT_TRUE(cache.serverContext("b.test").ok());
  auto c = cache.serverContext("c.test");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(cache.serverContext("a.test").ok());  // a is now most recent; b is the oldest
  EXPECT_EQ(cache.mints(), 3u);
  ASSERT_TRUE(cache.serverContext("d.test").ok());  // evicts b
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.mints(), 4u);
  ASSERT_TRUE(cache.serverContext("a.test").ok());  // still cached
  ASSERT_TRUE(cache.serverContext("c.test").ok());
  EXPECT_EQ(cache.mints(), 4u);
  ASSERT_TRUE(cache.serverContext("b.test").ok());  // was evicted: minted again, evicts d
  EXPECT_EQ(cache.mints(), 5u);
  ASSERT_TRUE(cache.serverContext("d.test").ok());
  EXPECT_EQ(cache.mints(), 6u);
  EXPECT_EQ(cache.size(), 3u);
  // An evicted context stays usable by whoever holds it.
  EXPECT_NE(leafOf(*c), nullptr);
}

TEST(LeafCacheTest, ShardedCapacityIsBounded) {
  LeafCache cache(makeCa(), 256);
  for (int i = 0; i < 600; ++i) {
    ASSERT_TRUE(cache.serverContext(numbered("h", i, ".test")).ok());
  }
  EXPECT_LE(cache.size(), 256u);
  EXPECT_GE(cache.size(), 200u);  // each of the 16 shards is near its 16-entry share
  EXPECT_EQ(cache.mints(), 600u);
}

TEST(LeafCacheTest, ConcurrentFirstRequestsMintOnce) {
  LeafCache cache(makeCa());
  constexpr int kHosts = 40;
  constexpr int kThreads = 8;
  std::vector<std::string> hosts;
  for (int i = 0; i < kHosts; ++i) hosts.push_back(numbered("svc", i, ".example.com"));
  std::vector<std::vector<boost::asio::ssl::context*>> seen(kThreads);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int> order(kHosts);
      for (int i = 0; i < kHosts; ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), std::mt19937(static_cast<unsigned>(t)));
      seen[t].resize(kHosts);
      for (int round = 0; round < 3; ++round) {
        for (int i : order) {
          auto r = cache.serverContext(hosts[i]);
          if (!r.ok()) {
            ++failures;
            continue;
          }
          seen[t][i] = r->get();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(cache.mints(), static_cast<uint64_t>(kHosts));
  EXPECT_EQ(cache.size(), static_cast<size_t>(kHosts));
  for (int t = 1; t < kThreads; ++t) EXPECT_EQ(seen[t], seen[0]);
}

TEST(LeafCacheTest, SameHostRaceMintsOnce) {
  LeafCache cache(makeCa());
  constexpr int kThreads = 8;
  for (int round = 0; round < 5; ++round) {
    const std::string host = numbered("race", round, ".example.com");
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<boost::asio::ssl::context*> got(kThreads, nullptr);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ++ready;
        while (!go.load()) std::this_thread::yield();
        auto r = cache.serverContext(host);
        if (r.ok()) got[t] = r->get();
      });
    }
    while (ready.load() < kThreads) std::this_thread::yield();
    go = true;
    for (auto& th : threads) th.join();
    EXPECT_EQ(cache.mints(), static_cast<uint64_t>(round + 1));
    for (int t = 0; t < kThreads; ++t) {
      EXPECT_NE(got[t], nullptr);
      EXPECT_EQ(got[t], got[0]);
    }
  }
}

}  // namespace
}  // namespace clrk::egress::tls
