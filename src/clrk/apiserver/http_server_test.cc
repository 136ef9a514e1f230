#include "clrk/apiserver/http_server.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <openssl/ssl.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace clrk::apiserver {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr char kToken[] = "s3cret-token-value";

// The shared state of a fake watch: the test pushes events, the server's pump thread reads them.
struct FakeStreamState {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> events;
  bool ended = false;
  bool stopped = false;

  void push(std::string event) {
    std::lock_guard lock(mu);
    events.push_back(std::move(event));
    cv.notify_all();
  }
  void end() {
    std::lock_guard lock(mu);
    ended = true;
    cv.notify_all();
  }
  bool waitStopped(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, timeout, [this] { return stopped; });
  }
};

class FakeStream : public EventStream {
 public:
  explicit FakeStream(std::shared_ptr<FakeStreamState> state) : state_(std::move(state)) {}
  std::optional<std::vector<std::string>> next(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(state_->mu);
    state_->cv.wait_for(lock, timeout, [this] {
      return !state_->events.empty() || state_->ended || state_->stopped;
    });
    if (state_->stopped) return std::nullopt;
    if (!state_->events.empty()) {
      std::vector<std::string> out(state_->events.begin(), state_->events.end());
      state_->events.clear();
      return out;
    }
    if (state_->ended) return std::nullopt;
    return std::vector<std::string>{};
  }
  void stop() override {
    std::lock_guard lock(state_->mu);
    state_->stopped = true;
    state_->cv.notify_all();
  }

 private:
  std::shared_ptr<FakeStreamState> state_;
};

// Echoes the request as JSON; "/watch" opens a fake watch.
class Fixture {
 public:
  Response handle(const Request& request) {
    if (request.path == "/watch") {
      auto state = std::make_shared<FakeStreamState>();
      {
        std::lock_guard lock(mu_);
        streams_.push_back(state);
        cv_.notify_all();
      }
      Response response;
      response.stream = std::make_unique<FakeStream>(state);
      return response;
    }
    if (request.path == "/throw") throw std::runtime_error("boom");
    Json query = Json::array();
    for (const auto& [key, value] : request.query) query.push_back({key, value});
    Response response;
    response.body = Json{{"method", request.method},
                         {"path", request.path},
                         {"query", query},
                         {"user", request.user},
                         {"contentType", request.content_type},
                         {"accept", request.accept},
                         {"bodySize", request.body.size()}}
                        .dump();
    response.headers.emplace_back("X-Test", "yes");
    return response;
  }

  std::shared_ptr<FakeStreamState> waitStream(size_t index) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 5s, [&] { return streams_.size() > index; });
    return streams_.size() > index ? streams_[index] : nullptr;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<FakeStreamState>> streams_;
};

HttpServerOptions plainOptions() {
  HttpServerOptions options;
  options.tls = false;
  options.bearer_token = kToken;
  return options;
}

struct ServerUnderTest {
  Fixture fixture;
  HttpServerPtr server;
  ServerUnderTest(HttpServerOptions options) {  // NOLINT
    auto started = HttpServer::start(std::move(options),
                                     [this](const Request& r) { return fixture.handle(r); });
    EXPECT_TRUE(started.ok()) << started.status().toString();
    if (started.ok()) server = std::move(started.value());
  }
  uint16_t port() const { return server->port(); }
};

beast::tcp_stream connectPlain(uint16_t port, net::io_context& ioc) {
  beast::tcp_stream stream(ioc);
  stream.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
  stream.expires_after(10s);
  return stream;
}

template <class Stream>
http::response<http::string_body> roundTrip(Stream& stream, http::verb method,
                                            const std::string& target,
                                            const std::string& token = kToken,
                                            std::string body = "") {
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.prepare_payload();
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  return res;
}

http::response<http::string_body> plainGet(uint16_t port, const std::string& target,
                                           const std::string& token = kToken) {
  net::io_context ioc;
  auto stream = connectPlain(port, ioc);
  return roundTrip(stream, http::verb::get, target, token);
}

// Reads until the connection closes; returns everything received (raw bytes).
template <class SyncStream>
std::string readAll(SyncStream& stream) {
  std::string out;
  char buf[4096];
  beast::error_code ec;
  while (true) {
    size_t n = stream.read_some(net::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

TEST(PercentDecodeTest, Decodes) {
  std::string path;
  std::vector<std::pair<std::string, std::string>> query;
  ASSERT_TRUE(
      parseTarget("/api/v1/a%2Fb?fieldSelector=involvedObject.name%3Ddemo%2Cx%3Dy&x=a+b&flag&=v",
                  path, query)
          .ok());
  EXPECT_EQ(path, "/api/v1/a/b");
  ASSERT_EQ(query.size(), 4u);
  EXPECT_EQ(query[0].first, "fieldSelector");
  EXPECT_EQ(query[0].second, "involvedObject.name=demo,x=y");
  EXPECT_EQ(query[1].second, "a b");
  EXPECT_EQ(query[2].first, "flag");
  EXPECT_EQ(query[2].second, "");
  EXPECT_EQ(query[3].first, "");
  EXPECT_FALSE(parseTarget("/a%zz", path, query).ok());
  EXPECT_FALSE(parseTarget("/a%2", path, query).ok());
  EXPECT_FALSE(parseTarget("/a?x=%", path, query).ok());
  EXPECT_FALSE(parseTarget("http://host/a", path, query).ok());
}

TEST(HttpServerTest, RequiresToken) {
  ServerUnderTest t(plainOptions());
  ASSERT_TRUE(t.server);
  auto none = plainGet(t.port(), "/api/v1/namespaces", "");
  EXPECT_EQ(none.result_int(), 401);
  Json status = Json::parse(none.body());
  EXPECT_EQ(status["kind"], "Status");
  EXPECT_EQ(status["reason"], "Unauthorized");
  EXPECT_EQ(status["code"], 401);
  EXPECT_EQ(plainGet(t.port(), "/api/v1/namespaces", "wrong").result_int(), 401);
  EXPECT_EQ(plainGet(t.port(), "/api/v1/namespaces", std::string(kToken) + "x").result_int(), 401);

  auto ok = plainGet(t.port(), "/api/v1/namespaces?limit=500&labelSelector=a%3Db");
  ASSERT_EQ(ok.result_int(), 200);
  EXPECT_EQ(ok[http::field::content_type], "application/json");
  EXPECT_EQ(ok["X-Test"], "yes");
  Json echo = Json::parse(ok.body());
  EXPECT_EQ(echo["user"], "admin");
  EXPECT_EQ(echo["path"], "/api/v1/namespaces");
  EXPECT_EQ(echo["query"][1][1], "a=b");
}

TEST(HttpServerTest, HealthAndVersionAreAnonymous) {
  ServerUnderTest t(plainOptions());
  for (const char* path : {"/version", "/healthz", "/livez", "/readyz", "/readyz/ping"}) {
    auto res = plainGet(t.port(), path, "");
    EXPECT_EQ(res.result_int(), 200) << path;
    EXPECT_EQ(Json::parse(res.body())["user"], "system:anonymous") << path;
  }
  EXPECT_EQ(plainGet(t.port(), "/versionx", "").result_int(), 401);
  EXPECT_EQ(plainGet(t.port(), "/api", "").result_int(), 401);
}

TEST(HttpServerTest, KeepAliveServesSeveralRequests) {
  ServerUnderTest t(plainOptions());
  net::io_context ioc;
  auto stream = connectPlain(t.port(), ioc);
  for (int round = 0; round < 5; ++round) {
    auto res = roundTrip(stream, http::verb::post, "/x", kToken, R"({"a":1})");
    ASSERT_EQ(res.result_int(), 200);
    EXPECT_EQ(Json::parse(res.body())["bodySize"], 7);
  }
  EXPECT_EQ(t.server->connectionCountForTest(), 1u);
}

TEST(HttpServerTest, HandlerExceptionIs500) {
  ServerUnderTest t(plainOptions());
  auto res = plainGet(t.port(), "/throw");
  EXPECT_EQ(res.result_int(), 500);
  EXPECT_EQ(Json::parse(res.body())["reason"], "InternalError");
}

TEST(HttpServerTest, OversizedHeaderIs431) {
  HttpServerOptions options = plainOptions();
  options.max_header_bytes = 4096;
  ServerUnderTest t(options);
  net::io_context ioc;
  auto stream = connectPlain(t.port(), ioc);
  http::request<http::string_body> req{http::verb::get, "/x", 11};
  req.set(http::field::authorization, std::string("Bearer ") + kToken);
  req.set("X-Big", std::string(8000, 'a'));
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  EXPECT_EQ(res.result_int(), 431);
  EXPECT_EQ(Json::parse(res.body())["code"], 431);
}

TEST(HttpServerTest, OversizedBodyIs413) {
  ServerUnderTest t(plainOptions());  // default limit: 3 MiB
  net::io_context ioc;
  auto stream = connectPlain(t.port(), ioc);
  auto res = roundTrip(stream, http::verb::post, "/x", kToken, std::string(4 << 20, 'x'));
  EXPECT_EQ(res.result_int(), 413);
  EXPECT_EQ(Json::parse(res.body())["reason"], "RequestEntityTooLarge");
  // Just under the limit is fine.
  auto stream2 = connectPlain(t.port(), ioc);
  auto ok = roundTrip(stream2, http::verb::post, "/x", kToken, std::string(3 << 20, 'x'));
  EXPECT_EQ(ok.result_int(), 200);
}

TEST(HttpServerTest, GarbageDoesNotCrash) {
  ServerUnderTest t(plainOptions());
  const std::vector<std::string> inputs = {
      std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11),
      "GARBAGE GARBAGE GARBAGE\r\n\r\n",
      "GET /x HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
      "GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "GET /a%zz HTTP/1.1\r\nAuthorization: Bearer s3cret-token-value\r\n\r\n",
      std::string(100000, '\0'),
  };
  for (const std::string& input : inputs) {
    net::io_context ioc;
    auto stream = connectPlain(t.port(), ioc);
    beast::error_code ec;
    net::write(stream, net::buffer(input), ec);
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    std::string reply = readAll(stream);
    if (!reply.empty()) {
      EXPECT_TRUE(reply.starts_with("HTTP/1.1 4")) << reply;
    }
  }
  EXPECT_EQ(plainGet(t.port(), "/still-alive").result_int(), 200);
}

TEST(HttpServerTest, SlowClientTimesOut) {
  HttpServerOptions options = plainOptions();
  options.read_timeout = 300ms;
  ServerUnderTest t(options);
  net::io_context ioc;
  auto stream = connectPlain(t.port(), ioc);
  net::write(stream, net::buffer(std::string("GET /x HTTP/1.1\r\nHost: a\r\n")));
  auto started = std::chrono::steady_clock::now();
  std::string rest = readAll(stream);  // the server closes after the read timeout
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_TRUE(rest.empty());
}

TEST(HttpServerTest, ConnectionLimit) {
  HttpServerOptions options = plainOptions();
  options.max_connections = 2;
  ServerUnderTest t(options);
  net::io_context ioc;
  auto a = connectPlain(t.port(), ioc);
  auto b = connectPlain(t.port(), ioc);
  EXPECT_EQ(roundTrip(a, http::verb::get, "/a").result_int(), 200);
  EXPECT_EQ(roundTrip(b, http::verb::get, "/b").result_int(), 200);
  auto c = connectPlain(t.port(), ioc);
  beast::error_code ec;
  http::request<http::string_body> req{http::verb::get, "/c", 11};
  http::write(c, req, ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(c, buffer, res, ec);
  EXPECT_TRUE(ec) << "third connection should be closed";
}

// Reads the chunked watch response incrementally.
class WatchReader {
 public:
  explicit WatchReader(beast::tcp_stream& stream) : stream_(stream) {}
  void readHeader() {
    parser_.body_limit(boost::none);
    http::read_header(stream_, buffer_, parser_);
  }
  // The next event line, or "" when the stream ended.
  std::string nextLine() {
    while (true) {
      size_t nl = pending_.find('\n');
      if (nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return line;
      }
      if (parser_.is_done()) return "";
      char buf[4096];
      parser_.get().body().data = buf;
      parser_.get().body().size = sizeof(buf);
      beast::error_code ec;
      http::read_some(stream_, buffer_, parser_, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return "";
      pending_.append(buf, sizeof(buf) - parser_.get().body().size);
    }
  }
  http::response_parser<http::buffer_body>& parser() { return parser_; }

 private:
  beast::tcp_stream& stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  std::string pending_;
};

TEST(HttpServerTest, WatchStreamsEventsPromptly) {
  ServerUnderTest t(plainOptions());
  net::io_context ioc;
  auto stream = connectPlain(t.port(), ioc);
  http::request<http::empty_body> req{http::verb::get, "/watch", 11};
  req.set(http::field::authorization, std::string("Bearer ") + kToken);
  http::write(stream, req);
  WatchReader reader(stream);
  reader.readHeader();
  EXPECT_EQ(reader.parser().get().result_int(), 200);
  EXPECT_TRUE(reader.parser().get().chunked());
  auto state = t.fixture.waitStream(0);
  ASSERT_TRUE(state);
  EXPECT_EQ(t.server->watchCountForTest(), 1u);

  // Other requests are not blocked by the open watch.
  EXPECT_EQ(plainGet(t.port(), "/other").result_int(), 200);

  std::vector<double> latencies_ms;
  for (int idx = 0; idx < 20; ++idx) {
    auto sent = std::chrono::steady_clock::now();
    state->push(R"({"type":"ADDED","object":{"n":)" + std::to_string(idx) + "}}");
    std::string line = reader.nextLine();
    latencies_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - sent).count());
    EXPECT_EQ(Json::parse(line)["object"]["n"], idx);
  }
  std::sort(latencies_ms.begin(), latencies_ms.end());
  EXPECT_LT(latencies_ms.back(), 200.0);  // generous under sanitizers; typically < 1 ms

  state->end();
  EXPECT_EQ(reader.nextLine(), "");
  EXPECT_TRUE(reader.parser().is_done());
}

TEST(HttpServerTest, ClientDisconnectStopsWatch) {
  ServerUnderTest t(plainOptions());
  {
    net::io_context ioc;
    auto stream = connectPlain(t.port(), ioc);
    http::request<http::empty_body> req{http::verb::get, "/watch", 11};
    req.set(http::field::authorization, std::string("Bearer ") + kToken);
    http::write(stream, req);
    WatchReader reader(stream);
    reader.readHeader();
  }  // closes the socket
  auto state = t.fixture.waitStream(0);
  ASSERT_TRUE(state);
  EXPECT_TRUE(state->waitStopped(5s));
}

TEST(HttpServerTest, StopWithOpenWatchIsPrompt) {
  ServerUnderTest t(plainOptions());
  net::io_context ioc;
  auto stream = connectPlain(t.port(), ioc);
  http::request<http::empty_body> req{http::verb::get, "/watch", 11};
  req.set(http::field::authorization, std::string("Bearer ") + kToken);
  http::write(stream, req);
  WatchReader reader(stream);
  reader.readHeader();
  auto state = t.fixture.waitStream(0);
  ASSERT_TRUE(state);
  // An idle keep-alive connection as well.
  auto idle = connectPlain(t.port(), ioc);
  EXPECT_EQ(roundTrip(idle, http::verb::get, "/x").result_int(), 200);

  auto started = std::chrono::steady_clock::now();
  t.server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  EXPECT_TRUE(state->waitStopped(0ms));
  EXPECT_EQ(reader.nextLine(), "");
  t.server->stop();  // idempotent
}

// --- TLS -------------------------------------------------------------------------------------

struct TlsClient {
  net::io_context ioc;
  ssl::context ctx{ssl::context::tls_client};
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream;

  beast::error_code connect(uint16_t port, const std::string& ca_pem,
                            const CertKeyPem* client_cert = nullptr, const std::string& alpn = "") {
    ctx.add_certificate_authority(net::buffer(ca_pem));
    ctx.set_verify_mode(ssl::verify_peer);
    if (client_cert != nullptr) {
      ctx.use_certificate_chain(net::buffer(client_cert->cert_pem));
      ctx.use_private_key(net::buffer(client_cert->key_pem), ssl::context::pem);
    }
    if (!alpn.empty()) {
      SSL_CTX_set_alpn_protos(ctx.native_handle(),
                              reinterpret_cast<const unsigned char*>(alpn.data()),
                              static_cast<unsigned>(alpn.size()));
    }
    stream = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc, ctx);
    static char kHost[] = "localhost";
    SSL_ctrl(stream->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             kHost);
    stream->set_verify_callback(ssl::host_name_verification("localhost"));
    beast::get_lowest_layer(*stream).connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    beast::get_lowest_layer(*stream).expires_after(10s);
    beast::error_code ec;
    stream->handshake(ssl::stream_base::client, ec);
    return ec;
  }

  std::string negotiatedAlpn() {
    const unsigned char* data = nullptr;
    unsigned len = 0;
    SSL_get0_alpn_selected(stream->native_handle(), &data, &len);
    return std::string(reinterpret_cast<const char*>(data), len);
  }
};

class HttpServerTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = generateCa("test-ca");
    ASSERT_TRUE(ca.ok());
    ca_ = *ca;
    auto serving = issueServingCertificate(ca_, "srv");
    ASSERT_TRUE(serving.ok());
    HttpServerOptions options;
    options.serving = *serving;
    options.client_ca_pem = ca_.cert_pem;
    options.bearer_token = kToken;
    server_ = std::make_unique<ServerUnderTest>(options);
    ASSERT_TRUE(server_->server);
  }
  CertKeyPem ca_;
  std::unique_ptr<ServerUnderTest> server_;
};

TEST_F(HttpServerTlsTest, TokenOverTls) {
  TlsClient client;
  ASSERT_FALSE(client.connect(server_->port(), ca_.cert_pem, nullptr, "\x02h2\x08http/1.1"));
  EXPECT_EQ(client.negotiatedAlpn(), "http/1.1");
  EXPECT_EQ(SSL_version(client.stream->native_handle()) >= TLS1_2_VERSION, true);
  auto res = roundTrip(*client.stream, http::verb::get, "/api/v1/secrets");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(Json::parse(res.body())["user"], "admin");
  auto unauth = roundTrip(*client.stream, http::verb::get, "/api/v1/secrets", "nope");
  EXPECT_EQ(unauth.result_int(), 401);
}

TEST_F(HttpServerTlsTest, ClientCertificateAuthenticates) {
  auto cert = issueClientCertificate(ca_, "alice", "devs");
  ASSERT_TRUE(cert.ok());
  TlsClient client;
  ASSERT_FALSE(client.connect(server_->port(), ca_.cert_pem, &cert.value()));
  auto res = roundTrip(*client.stream, http::verb::get, "/apis/x/v1/things", "");
  EXPECT_EQ(res.result_int(), 200);
  EXPECT_EQ(Json::parse(res.body())["user"], "alice");
}

TEST_F(HttpServerTlsTest, ForeignClientCertificateIsUnauthenticated) {
  auto other_ca = generateCa("other");
  ASSERT_TRUE(other_ca.ok());
  auto cert = issueClientCertificate(*other_ca, "mallory");
  ASSERT_TRUE(cert.ok());
  TlsClient client;
  ASSERT_FALSE(client.connect(server_->port(), ca_.cert_pem, &cert.value()));
  auto res = roundTrip(*client.stream, http::verb::get, "/api/v1/secrets", "");
  EXPECT_EQ(res.result_int(), 401);
}

TEST_F(HttpServerTlsTest, UntrustedServerIsRejectedByClient) {
  auto other_ca = generateCa("other");
  ASSERT_TRUE(other_ca.ok());
  TlsClient client;
  EXPECT_TRUE(client.connect(server_->port(), other_ca->cert_pem));
  // The server survives the failed handshake.
  TlsClient good;
  ASSERT_FALSE(good.connect(server_->port(), ca_.cert_pem));
  EXPECT_EQ(roundTrip(*good.stream, http::verb::get, "/x").result_int(), 200);
}

TEST_F(HttpServerTlsTest, PlainHttpToTlsPortIsRefused) {
  net::io_context ioc;
  auto stream = connectPlain(server_->port(), ioc);
  beast::error_code ec;
  net::write(stream, net::buffer(std::string("GET / HTTP/1.1\r\n\r\n")), ec);
  std::string reply = readAll(stream);
  EXPECT_FALSE(reply.starts_with("HTTP/1.1 200"));
}

TEST(HttpServerStartTest, BadTlsMaterialFails) {
  HttpServerOptions options;
  options.serving = {"junk", "junk"};
  auto started = HttpServer::start(options, [](const Request&) { return Response{}; });
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.status().message().find("TLS"), std::string::npos);
}

TEST(HttpServerStartTest, PortInUseFails) {
  HttpServerOptions options = plainOptions();
  auto first = HttpServer::start(options, [](const Request&) { return Response{}; });
  ASSERT_TRUE(first.ok());
  options.port = (*first)->port();
  options.bind_address = "127.0.0.1";
  auto second = HttpServer::start(options, [](const Request&) { return Response{}; });
  // SO_REUSEADDR does not allow two listeners on one port.
  EXPECT_FALSE(second.ok());
}

}  // namespace
}  // namespace clrk::apiserver
