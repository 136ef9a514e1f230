// Micro-benchmarks for the MITM TLS pieces: sniffing, minting, cache hits and full handshakes.
#include "clrk/egress/tls/client_hello.h"
#include "clrk/egress/tls/leaf_cache.h"
#include "clrk/egress/tls/upstream.h"

#include <benchmark/benchmark.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <malloc.h>

namespace clrk::egress::tls {
namespace {

std::vector<uint8_t> seed(const char* name) {
  std::ifstream in(
      std::filesystem::path(__FILE__).parent_path() / "client_hello_fuzz_corpus" / name,
      std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Built with append: GCC 12 -O3 warns falsely (-Wrestrict) on "literal" + std::string.
std::string hostName(uint64_t i, const char* suffix) {
  std::string host = "h";
  host.append(std::to_string(i)).append(suffix);
  return host;
}

std::shared_ptr<const CertificateAuthority> benchCa() {
  static auto ca = CertificateAuthority::generate("bench CA", std::chrono::hours(24)).value();
  return ca;
}

void BM_SniffClientHello(benchmark::State& state) {
  const std::vector<uint8_t> bytes = seed("curl_h2");
  ClientHello hello;
  for (auto _ : state) {
    benchmark::DoNotOptimize(sniffClientHello(bytes, &hello, nullptr));
  }
}
BENCHMARK(BM_SniffClientHello);

void BM_MintLeafContext(benchmark::State& state) {
  LeafCache cache(benchCa(), 1 << 20);
  uint64_t i = 0;
  for (auto _ : state) {
    auto ctx = cache.serverContext(hostName(i++, ".example.com"));
    benchmark::DoNotOptimize(ctx);
  }
}
BENCHMARK(BM_MintLeafContext)->Unit(benchmark::kMicrosecond);

void BM_MintLeafPemOnly(benchmark::State& state) {
  uint64_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(mintLeafPem(*benchCa(), hostName(i++, ".test")));
}
BENCHMARK(BM_MintLeafPemOnly)->Unit(benchmark::kMicrosecond);

void BM_P256KeyGen(benchmark::State& state) {
  for (auto _ : state) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    benchmark::DoNotOptimize(key);
    EVP_PKEY_free(key);
  }
}
BENCHMARK(BM_P256KeyGen)->Unit(benchmark::kMicrosecond);

void BM_NewServerContextOnly(benchmark::State& state) {
  for (auto _ : state) {
    boost::asio::ssl::context ctx(boost::asio::ssl::context::tls_server);
    benchmark::DoNotOptimize(ctx.native_handle());
  }
}
BENCHMARK(BM_NewServerContextOnly)->Unit(benchmark::kMicrosecond);

// Heap bytes held per cached host (leaf, key, SSL_CTX), from malloc statistics.
void BM_BytesPerCachedHost(benchmark::State& state) {
  constexpr int kHosts = 500;
  for (auto _ : state) {
    const size_t before = mallinfo2().uordblks;
    LeafCache cache(benchCa(), 1 << 20);
    for (int i = 0; i < kHosts; ++i)
      (void)cache.serverContext(hostName(static_cast<uint64_t>(i), ".mem"));
    const size_t after = mallinfo2().uordblks;
    state.counters["bytes_per_host"] = static_cast<double>(after - before) / kHosts;
  }
}
BENCHMARK(BM_BytesPerCachedHost)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_CacheHit(benchmark::State& state) {
  static LeafCache* cache = nullptr;
  if (state.thread_index() == 0) {
    cache = new LeafCache(benchCa());
    for (int i = 0; i < 64; ++i)
      (void)cache->serverContext(hostName(static_cast<uint64_t>(i), ".test"));
  }
  int i = state.thread_index();
  const std::vector<std::string> hosts = [] {
    std::vector<std::string> v;
    for (int h = 0; h < 64; ++h) v.push_back(hostName(static_cast<uint64_t>(h), ".test"));
    return v;
  }();
  for (auto _ : state) {
    auto ctx = cache->serverContext(hosts[static_cast<size_t>(i++) % hosts.size()]);
    benchmark::DoNotOptimize(ctx);
  }
  if (state.thread_index() == 0) {
    delete cache;
    cache = nullptr;
  }
}
BENCHMARK(BM_CacheHit)->Threads(1)->Threads(4);

// One full TLS handshake (both sides' CPU) over an in-memory BIO pair: MITM leaf server vs a
// verifying client. `resume` reuses the client's previous session.
void handshakeBench(benchmark::State& state, bool resume) {
  LeafCache cache(benchCa());
  auto server_ctx = cache.serverContext("api.openai.com").value();
  auto client_ctx = makeUpstreamContext(benchCa()->certPem()).value();
  SSL_SESSION* session = nullptr;
  int64_t reused = 0;
  for (auto _ : state) {
    SSL* server = SSL_new(server_ctx->native_handle());
    SSL* client = SSL_new(client_ctx->native_handle());
    (void)prepareUpstreamSsl(client, "api.openai.com");
    // prepareUpstreamSsl offers the context's stored session; measure our own choice instead.
    SSL_set_session(client, resume ? session : nullptr);
    BIO* server_bio = nullptr;
    BIO* client_bio = nullptr;
    BIO_new_bio_pair(&server_bio, 0, &client_bio, 0);
    SSL_set_bio(server, server_bio, server_bio);
    SSL_set_bio(client, client_bio, client_bio);
    SSL_set_accept_state(server);
    SSL_set_connect_state(client);
    bool server_done = false;
    bool client_done = false;
    for (int step = 0; step < 20 && !(server_done && client_done); ++step) {
      if (!client_done) client_done = SSL_do_handshake(client) == 1;
      if (!server_done) server_done = SSL_do_handshake(server) == 1;
    }
    // TLS 1.3 tickets arrive after the handshake: read once so the client sees them.
    char byte;
    SSL_read(client, &byte, 1);
    if (!(server_done && client_done)) state.SkipWithError("handshake did not complete");
    if (SSL_session_reused(client) == 1) ++reused;
    if (resume) {
      if (session != nullptr) SSL_SESSION_free(session);
      session = SSL_get1_session(client);
    }
    // Without a close_notify OpenSSL marks the session bad on SSL_free (no resumption).
    SSL_set_shutdown(client, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_set_shutdown(server, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(client);
    SSL_free(server);
  }
  if (session != nullptr) SSL_SESSION_free(session);
  state.counters["reused"] =
      benchmark::Counter(static_cast<double>(reused), benchmark::Counter::kAvgIterations);
}
void BM_FullHandshake(benchmark::State& state) { handshakeBench(state, false); }
void BM_ResumedHandshake(benchmark::State& state) { handshakeBench(state, true); }
BENCHMARK(BM_FullHandshake)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_ResumedHandshake)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace clrk::egress::tls

namespace clrk::egress::tls {
namespace {

// Heap bytes held by one idle, handshaked TLS connection end (server SSL + client SSL + BIO pair
// halved), after one small request/response each way. This is what an idle MITM connection
// costs twice over (agent side + upstream side).
void BM_BytesPerIdleConnection(benchmark::State& state) {
  constexpr int kConns = 200;
  LeafCache cache(benchCa());
  auto server_ctx = cache.serverContext("api.openai.com").value();
  auto client_ctx = makeUpstreamContext(benchCa()->certPem()).value();
  for (auto _ : state) {
    std::vector<std::pair<SSL*, SSL*>> conns;
    const size_t before = mallinfo2().uordblks;
    for (int i = 0; i < kConns; ++i) {
      SSL* server = SSL_new(server_ctx->native_handle());
      SSL* client = SSL_new(client_ctx->native_handle());
      (void)prepareUpstreamSsl(client, "api.openai.com");
      BIO* server_bio = nullptr;
      BIO* client_bio = nullptr;
      BIO_new_bio_pair(&server_bio, 4096, &client_bio, 4096);
      SSL_set_bio(server, server_bio, server_bio);
      SSL_set_bio(client, client_bio, client_bio);
      SSL_set_accept_state(server);
      SSL_set_connect_state(client);
      bool done = false;
      for (int step = 0; step < 20 && !done; ++step) {
        const bool c = SSL_do_handshake(client) == 1;
        const bool s = SSL_do_handshake(server) == 1;
        done = c && s;
      }
      char buf[64];
      SSL_write(client, "GET / HTTP/1.1\r\n\r\n", 18);
      SSL_read(server, buf, sizeof(buf));
      SSL_write(server, "HTTP/1.1 200 OK\r\n\r\n", 19);
      SSL_read(client, buf, sizeof(buf));
      SSL_read(server, buf, 0);
      conns.emplace_back(server, client);
    }
    const size_t after = mallinfo2().uordblks;
    state.counters["bytes_per_tls_end"] = static_cast<double>(after - before) / (2.0 * kConns);
    for (auto& [server, client] : conns) {
      SSL_free(server);
      SSL_free(client);
    }
  }
}
BENCHMARK(BM_BytesPerIdleConnection)->Iterations(1)->Unit(benchmark::kMillisecond);

// What a boost::asio::ssl::stream adds on top of the SSL itself, before any I/O: its engine's
// two 17 KiB record buffers (stream_core) plus SSL_new. Its internal BIO pair then allocates
// 2 x 17 KiB more on first use, and keeps them.
void BM_BytesPerAsioSslStream(benchmark::State& state) {
  constexpr int kStreams = 200;
  LeafCache cache(benchCa());
  auto server_ctx = cache.serverContext("api.openai.com").value();
  boost::asio::io_context io;
  for (auto _ : state) {
    std::vector<std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>> streams;
    const size_t before = mallinfo2().uordblks;
    for (int i = 0; i < kStreams; ++i) {
      streams.push_back(std::make_unique<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>(
          io, *server_ctx));
    }
    const size_t after = mallinfo2().uordblks;
    state.counters["bytes_per_stream"] = static_cast<double>(after - before) / kStreams;
  }
}
BENCHMARK(BM_BytesPerAsioSslStream)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace clrk::egress::tls

BENCHMARK_MAIN();
