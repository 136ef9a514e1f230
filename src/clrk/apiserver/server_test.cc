#include "clrk/apiserver/server.h"

#include "clrk/apiserver/pki.h"
#include "clrk/base/files.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace clrk::apiserver {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
namespace fs = std::filesystem;
using tcp = boost::asio::ip::tcp;
using Json = nlohmann::json;
using namespace std::chrono_literals;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "clrk-server-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A blocking HTTPS (or HTTP) client that trusts the server's CA and keeps its connection alive.
class Client {
 public:
  Client(const Server& server, bool tls, std::string token) : token_(std::move(token)), tls_(tls) {
    tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), server.port());
    if (tls) {
      ctx_.add_certificate_authority(net::buffer(server.caCertificatePem()));
      ctx_.set_verify_mode(ssl::verify_peer);
      tls_stream_ = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(ioc_, ctx_);
      tls_stream_->set_verify_callback(ssl::host_name_verification("127.0.0.1"));
      beast::get_lowest_layer(*tls_stream_).connect(endpoint);
      beast::get_lowest_layer(*tls_stream_).expires_after(20s);
      tls_stream_->handshake(ssl::stream_base::client);
    } else {
      plain_stream_ = std::make_unique<beast::tcp_stream>(ioc_);
      plain_stream_->connect(endpoint);
      plain_stream_->expires_after(20s);
    }
  }

  http::response<http::string_body> request(http::verb method, const std::string& target,
                                            const std::string& body = "",
                                            const std::string& content_type = "application/json") {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::accept, "application/json");
    if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
    if (!body.empty()) {
      req.set(http::field::content_type, content_type);
      req.body() = body;
    }
    req.prepare_payload();
    http::response<http::string_body> res;
    if (tls_) {
      http::write(*tls_stream_, req);
      http::read(*tls_stream_, buffer_, res);
    } else {
      http::write(*plain_stream_, req);
      http::read(*plain_stream_, buffer_, res);
    }
    return res;
  }

  Json json(http::verb method, const std::string& target, int want_status,
            const std::string& body = "") {
    auto res = request(method, target, body);
    EXPECT_EQ(res.result_int(), want_status) << target << ": " << res.body();
    try {
      return Json::parse(res.body());
    } catch (const std::exception&) {
      ADD_FAILURE() << target << " did not return JSON: " << res.body();
      return nullptr;
    }
  }

  // Starts a watch (TLS only) and returns after the response header arrived.
  void startWatch(const std::string& target) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::authorization, "Bearer " + token_);
    http::write(*tls_stream_, req);
    parser_.body_limit(boost::none);
    http::read_header(*tls_stream_, buffer_, parser_);
  }
  int watchStatus() { return parser_.get().result_int(); }

  // The next event line; "" when the stream ended or failed.
  std::string nextLine() {
    while (true) {
      size_t nl = pending_.find('\n');
      if (nl != std::string::npos) {
        std::string line = pending_.substr(0, nl);
        pending_.erase(0, nl + 1);
        return line;
      }
      if (parser_.is_done()) return "";
      char buf[8192];
      parser_.get().body().data = buf;
      parser_.get().body().size = sizeof(buf);
      beast::error_code ec;
      http::read_some(*tls_stream_, buffer_, parser_, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return "";
      pending_.append(buf, sizeof(buf) - parser_.get().body().size);
    }
  }

 private:
  std::string token_;
  bool tls_;
  net::io_context ioc_;
  ssl::context ctx_{ssl::context::tls_client};
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> tls_stream_;
  std::unique_ptr<beast::tcp_stream> plain_stream_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  std::string pending_;
};

ServerPtr startServer(const fs::path& dir, bool tls, bool in_memory = true) {
  ServerOptions options;
  options.state_dir = dir;
  options.in_memory = in_memory;
  options.tls = tls;
  ServerPtr server = makeServer(options);
  Status status = server->start();
  EXPECT_TRUE(status.ok()) << status.toString();
  return status.ok() ? std::move(server) : nullptr;
}

const char kNamespace[] = R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"t1"}})";
const char kConfigMap[] =
    R"({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm1","namespace":"t1"},)"
    R"("data":{"k":"v"}})";

TEST(ServerTest, StateDirLayout) {
  TempDir tmp;
  fs::path dir = tmp.path() / "state";
  auto server = startServer(dir, true, /*in_memory=*/false);
  ASSERT_TRUE(server);
  struct stat st {};
  ASSERT_EQ(::stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const char* file : {"pki/ca.crt", "pki/ca.key", "pki/apiserver.crt", "pki/apiserver.key",
                           "token", "state.db"}) {
    EXPECT_TRUE(fs::exists(dir / file)) << file;
  }
  EXPECT_TRUE(server->url().starts_with("https://127.0.0.1:"));
  EXPECT_EQ(server->url(), "https://127.0.0.1:" + std::to_string(server->port()));
  EXPECT_EQ(server->token().size(), 64u);
  std::string token = server->token();
  std::string ca = server->caCertificatePem();
  server->stop();

  // A restart reuses the CA, token and data.
  auto again = startServer(dir, true, /*in_memory=*/false);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->token(), token);
  EXPECT_EQ(again->caCertificatePem(), ca);
}

TEST(ServerTest, AuthenticationOverTls) {
  TempDir tmp;
  auto server = startServer(tmp.path(), true);
  ASSERT_TRUE(server);
  Client anonymous(*server, true, "");
  EXPECT_EQ(anonymous.request(http::verb::get, "/api/v1/namespaces").result_int(), 401);
  EXPECT_EQ(anonymous.request(http::verb::get, "/apis").result_int(), 401);
  auto version = anonymous.request(http::verb::get, "/version?timeout=5s");
  EXPECT_EQ(version.result_int(), 200);
  EXPECT_EQ(Json::parse(version.body())["minor"], "32");
  EXPECT_EQ(anonymous.request(http::verb::get, "/healthz").body(), "ok");

  Client wrong(*server, true, "0123");
  Json status = wrong.json(http::verb::get, "/api/v1/namespaces", 401);
  EXPECT_EQ(status["reason"], "Unauthorized");

  Client good(*server, true, server->token());
  EXPECT_EQ(good.json(http::verb::get, "/api/v1/namespaces", 200)["kind"], "NamespaceList");
}

TEST(ServerTest, ClientCertificateAuthentication) {
  TempDir tmp;
  auto server = startServer(tmp.path(), true);
  ASSERT_TRUE(server);
  auto ca_key = readFile(tmp.path() / "pki" / "ca.key");
  ASSERT_TRUE(ca_key.ok());
  auto cert = issueClientCertificate({server->caCertificatePem(), *ca_key}, "alice", "devs");
  ASSERT_TRUE(cert.ok());

  net::io_context ioc;
  ssl::context ctx{ssl::context::tls_client};
  ctx.add_certificate_authority(net::buffer(server->caCertificatePem()));
  ctx.set_verify_mode(ssl::verify_peer);
  ctx.use_certificate_chain(net::buffer(cert->cert_pem));
  ctx.use_private_key(net::buffer(cert->key_pem), ssl::context::pem);
  beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
  beast::get_lowest_layer(stream).connect(
      tcp::endpoint(net::ip::make_address("127.0.0.1"), server->port()));
  stream.handshake(ssl::stream_base::client);
  http::request<http::empty_body> req{http::verb::get, "/api/v1/namespaces", 11};
  http::write(stream, req);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res);
  EXPECT_EQ(res.result_int(), 200) << res.body();
}

TEST(ServerTest, DiscoveryAndOpenApi) {
  TempDir tmp;
  auto server = startServer(tmp.path(), false);
  ASSERT_TRUE(server);
  Client client(*server, false, server->token());
  Json api = client.json(http::verb::get, "/api", 200);
  EXPECT_EQ(api["serverAddressByClientCIDRs"][0]["serverAddress"],
            "127.0.0.1:" + std::to_string(server->port()));
  Json apis = client.json(http::verb::get, "/apis", 200);
  EXPECT_EQ(apis["kind"], "APIGroupList");
  Json list = client.json(http::verb::get, "/apis/clrk.apoxy.dev/v1alpha1", 200);
  EXPECT_EQ(list["kind"], "APIResourceList");
  Json index = client.json(http::verb::get, "/openapi/v3", 200);
  std::string url = index["paths"]["apis/clrk.apoxy.dev/v1alpha1"]["serverRelativeURL"];
  Json doc = client.json(http::verb::get, url, 200);
  EXPECT_TRUE(doc["components"]["schemas"].contains("dev.apoxy.clrk.v1alpha1.TaskAgent"));
  EXPECT_EQ(client.json(http::verb::get, "/openapi/v2", 404)["reason"], "NotFound");
  EXPECT_EQ(client.json(http::verb::get, "/nothing/here", 404)["kind"], "Status");
}

TEST(ServerTest, CrudRoundTrip) {
  TempDir tmp;
  auto server = startServer(tmp.path(), true);
  ASSERT_TRUE(server);
  Client client(*server, true, server->token());
  client.json(http::verb::post, "/api/v1/namespaces", 201, kNamespace);
  Json created = client.json(http::verb::post, "/api/v1/namespaces/t1/configmaps", 201, kConfigMap);
  EXPECT_FALSE(created["metadata"]["resourceVersion"].get<std::string>().empty());
  Json got = client.json(http::verb::get, "/api/v1/namespaces/t1/configmaps/cm1", 200);
  EXPECT_EQ(got["data"]["k"], "v");
  auto patched = client.request(http::verb::patch, "/api/v1/namespaces/t1/configmaps/cm1",
                                R"({"data":{"k":"v2"}})", "application/merge-patch+json");
  EXPECT_EQ(patched.result_int(), 200) << patched.body();
  EXPECT_EQ(Json::parse(patched.body())["data"]["k"], "v2");
  client.json(http::verb::delete_, "/api/v1/namespaces/t1/configmaps/cm1", 200);
  Json gone = client.json(http::verb::get, "/api/v1/namespaces/t1/configmaps/cm1", 404);
  EXPECT_EQ(gone["reason"], "NotFound");
}

TEST(ServerTest, WatchSeesCreateFromAnotherConnection) {
  TempDir tmp;
  auto server = startServer(tmp.path(), true);
  ASSERT_TRUE(server);
  Client writer(*server, true, server->token());
  writer.json(http::verb::post, "/api/v1/namespaces", 201, kNamespace);
  Client watcher(*server, true, server->token());
  watcher.startWatch("/api/v1/namespaces/t1/configmaps?watch=true");
  ASSERT_EQ(watcher.watchStatus(), 200);

  auto sent = std::chrono::steady_clock::now();
  writer.json(http::verb::post, "/api/v1/namespaces/t1/configmaps", 201, kConfigMap);
  std::string line = watcher.nextLine();
  auto latency = std::chrono::steady_clock::now() - sent;
  ASSERT_FALSE(line.empty());
  Json event = Json::parse(line);
  EXPECT_EQ(event["type"], "ADDED");
  EXPECT_EQ(event["object"]["metadata"]["name"], "cm1");
  EXPECT_LT(latency, 2s);
}

TEST(ServerTest, StopWithOpenWatchIsPrompt) {
  TempDir tmp;
  auto server = startServer(tmp.path(), true);
  ASSERT_TRUE(server);
  Client watcher(*server, true, server->token());
  watcher.startWatch("/api/v1/namespaces?watch=1");
  ASSERT_EQ(watcher.watchStatus(), 200);
  auto started = std::chrono::steady_clock::now();
  server->stop();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  // The stream ends (final chunk or closed connection).
  while (!watcher.nextLine().empty()) {
  }
  server->stop();  // idempotent
}

TEST(ServerTest, BadStateDirFails) {
  TempDir tmp;
  ASSERT_TRUE(writeFileAtomic(tmp.path() / "file", "x").ok());
  ServerOptions options;
  options.state_dir = tmp.path() / "file" / "sub";
  auto server = makeServer(options);
  Status status = server->start();
  EXPECT_FALSE(status.ok());
  server->stop();
}

}  // namespace
}  // namespace clrk::apiserver
