#include "clrk/egress/tls/upstream.h"

#include "clrk/egress/tls/leaf_cache.h"
#include "clrk/egress/tls/test_util.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

namespace clrk::egress::tls {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using ContextPtr = std::shared_ptr<asio::ssl::context>;

// A one-connection-at-a-time TLS server on 127.0.0.1:0 that answers "ok" to one HTTP request
// per connection. Serves `connections` connections, then stops; every call has a deadline.
class TinyTlsServer {
 public:
  TinyTlsServer(ContextPtr context, int connections)
      : context_(std::move(context)),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, connections] { run(connections); });
  }
  ~TinyTlsServer() {
    // A blocking accept() is not woken by close() from another thread: connect until the
    // server thread notices the stop flag (it serves at most `connections` anyway).
    stop_ = true;
    while (!finished_) {
      asio::io_context io;
      tcp::socket poke(io);
      boost::system::error_code ec;
      poke.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (thread_.joinable()) thread_.join();
  }
  uint16_t port() const { return port_; }
  // ALPN protocols the server selected, one per completed handshake.
  std::vector<std::string> alpn() {
    std::lock_guard<std::mutex> lock(mutex_);
    return alpn_;
  }

 private:
  void run(int connections) {
    serve(connections);
    finished_ = true;
  }

  void serve(int connections) {
    for (int i = 0; i < connections; ++i) {
      boost::system::error_code ec;
      tcp::socket socket(io_);
      acceptor_.accept(socket, ec);
      if (ec || stop_) return;
      timeval tv{5, 0};
      setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
      asio::ssl::stream<tcp::socket> stream(std::move(socket), *context_);
      stream.handshake(asio::ssl::stream_base::server, ec);
      if (ec) continue;
      const unsigned char* proto = nullptr;
      unsigned int len = 0;
      SSL_get0_alpn_selected(stream.native_handle(), &proto, &len);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        alpn_.emplace_back(reinterpret_cast<const char*>(proto), len);
      }
      asio::streambuf buf(16 * 1024);
      asio::read_until(stream, buf, "\r\n\r\n", ec);
      if (ec) continue;
      const std::string response =
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
      asio::write(stream, asio::buffer(response), ec);
      stream.shutdown(ec);
    }
  }

  ContextPtr context_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> alpn_;
};

struct ClientOutcome {
  bool ok = false;
  std::string error;
  std::string reason;
  std::string alpn;
  std::string body;
  bool reused = false;
};

ClientOutcome connectClient(const ContextPtr& context, uint16_t port, const std::string& host,
                            bool offer_h2 = false, int max_version = 0) {
  ClientOutcome out;
  asio::io_context io;
  asio::ssl::stream<tcp::socket> stream(io, *context);
  Status prepared = prepareUpstreamSsl(stream.native_handle(), host, offer_h2);
  if (!prepared.ok()) {
    out.error = prepared.toString();
    return out;
  }
  if (max_version != 0) SSL_set_max_proto_version(stream.native_handle(), max_version);
  boost::system::error_code ec;
  stream.lowest_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) {
    out.error = "connect: " + ec.message();
    return out;
  }
  timeval tv{5, 0};
  setsockopt(stream.lowest_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  stream.handshake(asio::ssl::stream_base::client, ec);
  out.reason = verifyFailureReason(stream.native_handle());
  if (ec) {
    out.error = "handshake: " + ec.message();
    return out;
  }
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(stream.native_handle(), &proto, &len);
  out.alpn.assign(reinterpret_cast<const char*>(proto), len);
  out.reused = SSL_session_reused(stream.native_handle()) == 1;
  asio::write(stream, asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), ec);
  asio::streambuf buf;
  asio::read(stream, buf, ec);  // until close
  out.body.assign(asio::buffers_begin(buf.data()), asio::buffers_end(buf.data()));
  out.ok = true;
  return out;
}

std::shared_ptr<const CertificateAuthority> makeCa() {
  auto ca = CertificateAuthority::generate("upstream test CA", std::chrono::hours(24));
  EXPECT_TRUE(ca.ok());
  return ca.value();
}

TEST(UpstreamTest, HandshakeWithMintedLeafAndExtraTrust) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 1);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok()) << client_ctx.status().toString();
  ClientOutcome out = connectClient(*client_ctx, server.port(), "api.openai.com");
  ASSERT_TRUE(out.ok) << out.error << " / " << out.reason;
  EXPECT_EQ(out.reason, "");
  EXPECT_EQ(out.alpn, "http/1.1");
  EXPECT_NE(out.body.find("\r\n\r\nok"), std::string::npos) << out.body;
}

TEST(UpstreamTest, WrongHostFailsWithReason) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 1);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok());
  ClientOutcome out = connectClient(*client_ctx, server.port(), "api.anthropic.com");
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.error.find("handshake"), std::string::npos) << out.error;
  EXPECT_NE(out.reason.find("certificate verify failed: hostname mismatch for host "
                            "api.anthropic.com (certificate is for api.openai.com)"),
            std::string::npos)
      << out.reason;
}

TEST(UpstreamTest, UntrustedCaFails) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 2);
  auto system_only = makeUpstreamContext("");
  ASSERT_TRUE(system_only.ok()) << system_only.status().toString();
  ClientOutcome out = connectClient(*system_only, server.port(), "api.openai.com");
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.reason.find("certificate verify failed: self-signed certificate in certificate "
                            "chain for host api.openai.com"),
            std::string::npos)
      << out.reason;
  // Trusting some other CA does not help either.
  auto other = makeUpstreamContext(makeCa()->certPem());
  ASSERT_TRUE(other.ok());
  out = connectClient(*other, server.port(), "api.openai.com");
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.reason.find("certificate verify failed"), std::string::npos) << out.reason;
}

TEST(UpstreamTest, IpLiteralAndH2) {
  auto ca = makeCa();
  LeafCache cache(ca, 16, LeafCache::Options{.offer_h2 = true});
  auto server_ctx = cache.serverContext("127.0.0.1");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 2);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok());
  ClientOutcome out = connectClient(*client_ctx, server.port(), "127.0.0.1", /*offer_h2=*/true);
  ASSERT_TRUE(out.ok) << out.error << " / " << out.reason;
  EXPECT_EQ(out.alpn, "h2");
  out = connectClient(*client_ctx, server.port(), "127.0.0.2");
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.reason.find("IP address mismatch for host 127.0.0.2 (certificate is for "
                            "127.0.0.1)"),
            std::string::npos)
      << out.reason;
}

TEST(UpstreamTest, NoAlpnWhenClientOffersNone) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 1);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok());
  // Raw client: only h2 offered, which this (h1-only) cache does not select: no ALPN, still OK.
  asio::io_context io;
  asio::ssl::stream<tcp::socket> stream(io, **client_ctx);
  ASSERT_TRUE(prepareUpstreamSsl(stream.native_handle(), "api.openai.com").ok());
  static const unsigned char kH2[] = "\x02h2";
  ASSERT_EQ(SSL_set_alpn_protos(stream.native_handle(), kH2, 3), 0);
  boost::system::error_code ec;
  stream.lowest_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()),
                                ec);
  ASSERT_FALSE(ec);
  stream.handshake(asio::ssl::stream_base::client, ec);
  ASSERT_FALSE(ec) << ec.message();
  const unsigned char* proto = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(stream.native_handle(), &proto, &len);
  EXPECT_EQ(len, 0u);
  asio::write(stream, asio::buffer(std::string("GET / HTTP/1.1\r\n\r\n")), ec);
  asio::streambuf buf;
  asio::read(stream, buf, ec);
}

TEST(UpstreamTest, ResumesVerifiedSessionsPerHost) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 5);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok());
  // A failed verification stores nothing: the retry fails again (no resumption around it).
  ClientOutcome out = connectClient(*client_ctx, server.port(), "api.anthropic.com");
  EXPECT_FALSE(out.ok);
  out = connectClient(*client_ctx, server.port(), "api.anthropic.com");
  EXPECT_FALSE(out.ok);
  EXPECT_NE(out.reason.find("hostname mismatch"), std::string::npos) << out.reason;

  out = connectClient(*client_ctx, server.port(), "api.openai.com");
  ASSERT_TRUE(out.ok) << out.error << " / " << out.reason;
  EXPECT_FALSE(out.reused);
  out = connectClient(*client_ctx, server.port(), "api.openai.com");
  ASSERT_TRUE(out.ok) << out.error << " / " << out.reason;
  EXPECT_TRUE(out.reused);
  EXPECT_EQ(out.reason, "");
  EXPECT_NE(out.body.find("\r\n\r\nok"), std::string::npos);
  // The session for api.openai.com is not offered to another host on the same server.
  out = connectClient(*client_ctx, server.port(), "api.anthropic.com");
  EXPECT_FALSE(out.ok);
  EXPECT_FALSE(out.reused);
}

// The MITM server context speaks TLS 1.2+ only: a TLS 1.1 client is refused, the same client
// allowed TLS 1.2 gets through (control).
TEST(UpstreamTest, ServerRefusesTls11) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 2);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok());
  for (int max_version : {TLS1_1_VERSION, TLS1_2_VERSION}) {
    asio::io_context io;
    asio::ssl::stream<tcp::socket> stream(io, **client_ctx);
    SSL* ssl = stream.native_handle();
    ASSERT_TRUE(prepareUpstreamSsl(ssl, "api.openai.com").ok());
    SSL_set_security_level(ssl, 0);
    ASSERT_EQ(SSL_set_min_proto_version(ssl, TLS1_VERSION), 1);
    ASSERT_EQ(SSL_set_max_proto_version(ssl, max_version), 1);
    ASSERT_EQ(SSL_set_cipher_list(ssl, "ALL:@SECLEVEL=0"), 1);
    boost::system::error_code ec;
    stream.lowest_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()),
                                  ec);
    ASSERT_FALSE(ec);
    stream.handshake(asio::ssl::stream_base::client, ec);
    if (max_version == TLS1_1_VERSION) {
      EXPECT_TRUE(ec) << "TLS 1.1 handshake unexpectedly succeeded";
    } else {
      ASSERT_FALSE(ec) << ec.message();
      EXPECT_STREQ(SSL_get_version(ssl), "TLSv1.2");
      asio::write(stream, asio::buffer(std::string("GET / HTTP/1.1\r\n\r\n")), ec);
      asio::streambuf buf;
      asio::read(stream, buf, ec);
    }
  }
}

TEST(UpstreamTest, ResumesTls12SessionsRepeatedly) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 3);
  auto client_ctx = makeUpstreamContext(ca->certPem());
  ASSERT_TRUE(client_ctx.ok());
  for (int i = 0; i < 3; ++i) {
    ClientOutcome out =
        connectClient(*client_ctx, server.port(), "api.openai.com", false, TLS1_2_VERSION);
    ASSERT_TRUE(out.ok) << out.error << " / " << out.reason;
    EXPECT_EQ(out.reused, i > 0) << "connection " << i;
  }
}

TEST(UpstreamTest, BadArguments) {
  auto bad =
      makeUpstreamContext("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::InvalidArgument);
  EXPECT_NE(bad.status().message().find("extra trust PEM"), std::string::npos);
  EXPECT_FALSE(makeUpstreamContext("garbage").ok());
  auto ca = makeCa();
  // Valid then invalid: reported, not silently half-loaded.
  EXPECT_FALSE(makeUpstreamContext(ca->certPem() + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                                                   "CERTIFICATE-----\n")
                   .ok());
  auto ctx = makeUpstreamContext(ca->certPem() + "\n" + makeCa()->certPem());
  ASSERT_TRUE(ctx.ok()) << ctx.status().toString();
  SSL* ssl = SSL_new((*ctx)->native_handle());
  EXPECT_FALSE(prepareUpstreamSsl(ssl, "").ok());
  EXPECT_FALSE(prepareUpstreamSsl(ssl, "bad host").ok());
  EXPECT_FALSE(prepareUpstreamSsl(nullptr, "a.com").ok());
  EXPECT_EQ(verifyFailureReason(ssl), "");
  EXPECT_EQ(verifyFailureReason(nullptr), "");
  SSL_free(ssl);
}

// A real client: curl trusts only our CA (--cacert) and reaches the server through --resolve.
TEST(UpstreamTest, CurlTrustsMintedLeaf) {
  auto ca = makeCa();
  LeafCache cache(ca);
  auto server_ctx = cache.serverContext("api.openai.com");
  ASSERT_TRUE(server_ctx.ok());
  TinyTlsServer server(*server_ctx, 2);
  testing::TempDir dir;
  const std::string ca_file = (dir.path() / "ca.pem").string();
  testing::writeText(ca_file, ca->certPem());
  const std::string port = std::to_string(server.port());
  std::string output;
  const int rc = testing::runCommand("curl -sS --max-time 10 --http1.1 --cacert " + ca_file +
                                         " --resolve api.openai.com:" + port +
                                         ":127.0.0.1 https://api.openai.com:" + port + "/v1/models",
                                     &output);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_EQ(output, "ok");
  // Without our CA (only the system store), curl refuses.
  output.clear();
  const int rc2 = testing::runCommand(
      "curl -sS --max-time 10 --cacert /etc/ssl/certs/ca-certificates.crt --resolve "
      "api.openai.com:" +
          port + ":127.0.0.1 https://api.openai.com:" + port + "/",
      &output);
  EXPECT_EQ(rc2, 60) << output;  // CURLE_PEER_FAILED_VERIFICATION
  EXPECT_EQ(server.alpn(), std::vector<std::string>{"http/1.1"});
}

}  // namespace
}  // namespace clrk::egress::tls
