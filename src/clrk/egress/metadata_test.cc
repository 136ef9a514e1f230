// The metadata endpoint: MetadataStore's answers (isolation between sandboxes, the size limit,
// methods and paths), then the same through a real Proxy's explicit listener on loopback
// (absolute-URI requests, 413 before and while reading a body, nothing else reachable).
#include "clrk/egress/metadata.h"

#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/proxy.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace clrk::egress {
namespace {

using Json = nlohmann::json;
using ::testing::HasSubstr;

Identity identityOf(const std::string& execution_id) {
  Identity identity;
  identity.namespace_name = "default";
  identity.agent = "meta";
  identity.agent_kind = "TaskAgent";
  identity.execution_id = execution_id;
  return identity;
}

MetadataReply call(MetadataStore& store, const Identity* identity, std::string_view method,
                   std::string_view target, std::string_view body = "",
                   std::string_view content_type = "") {
  return store.handle(identity, MetadataRequest{method, target, content_type, body});
}

std::string errorType(const MetadataReply& reply) {
  Json body = Json::parse(reply.body, nullptr, false);
  if (body.is_discarded()) return "not JSON: " + reply.body;
  EXPECT_EQ(body["error"].value("code", 0), reply.status) << reply.body;
  return body["error"].value("type", "");
}

TEST(MetadataStoreTest, EachSandboxReadsOnlyItsOwnEvent) {
  MetadataStore store;
  store.add("exec-a", R"({"id":"a"})");
  store.add("exec-b", R"({"id":"b"})");
  Identity a = identityOf("exec-a"), b = identityOf("exec-b"), c = identityOf("exec-c");

  MetadataReply got_a = call(store, &a, "GET", "/event");
  EXPECT_EQ(got_a.status, 200);
  EXPECT_EQ(got_a.body, R"({"id":"a"})");
  EXPECT_EQ(got_a.content_type, "application/cloudevents+json; charset=utf-8");
  EXPECT_EQ(call(store, &b, "GET", "/event?fresh=1").body, R"({"id":"b"})");

  // A sandbox whose execution is not registered (delivery mode Stdin) and an address that is no
  // sandbox at all.
  MetadataReply stdin_mode = call(store, &c, "GET", "/event");
  EXPECT_EQ(stdin_mode.status, 404);
  EXPECT_EQ(errorType(stdin_mode), "not_found");
  EXPECT_THAT(stdin_mode.body, HasSubstr("exec-c"));
  MetadataReply stranger = call(store, nullptr, "GET", "/event");
  EXPECT_EQ(stranger.status, 403);
  EXPECT_EQ(errorType(stranger), "unknown_caller");
  Identity anonymous;
  EXPECT_EQ(call(store, &anonymous, "GET", "/event").status, 403);

  MetadataReply index = call(store, &a, "GET", "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(Json::parse(index.body)["event"], "/event");
}

TEST(MetadataStoreTest, ResponsesStayWithTheirExecutionAndTheLastPostWins) {
  MetadataStore store;
  store.add("exec-a", "{}");
  store.add("exec-b", "{}");
  Identity a = identityOf("exec-a"), b = identityOf("exec-b");

  MetadataReply first = call(store, &a, "POST", "/response", "a1", "text/plain");
  EXPECT_EQ(first.status, 200);
  EXPECT_EQ(Json::parse(first.body), Json({{"bytes", 2}, {"replaced", false}}));
  EXPECT_EQ(call(store, &b, "POST", "/response", R"({"b":1})", "application/json").status, 200);
  MetadataReply second = call(store, &a, "POST", "/response", "a-two", "text/markdown");
  EXPECT_EQ(Json::parse(second.body), Json({{"bytes", 5}, {"replaced", true}}));

  auto response_a = store.remove("exec-a");
  ASSERT_TRUE(response_a);
  EXPECT_EQ(response_a->body, "a-two");
  EXPECT_EQ(response_a->content_type, "text/markdown");
  EXPECT_EQ(response_a->posts, 2);
  auto response_b = store.remove("exec-b");
  ASSERT_TRUE(response_b);
  EXPECT_EQ(response_b->body, R"({"b":1})");
  EXPECT_EQ(response_b->content_type, "application/json");
  EXPECT_EQ(store.size(), 0u);

  // Removed: the event is gone and a late POST is refused rather than stored.
  EXPECT_FALSE(store.remove("exec-a"));
  EXPECT_EQ(call(store, &a, "GET", "/event").status, 404);
  EXPECT_EQ(call(store, &a, "POST", "/response", "late").status, 404);
  EXPECT_EQ(store.size(), 0u);

  // Registered without any POST: no response.
  store.add("exec-c", "{}");
  EXPECT_FALSE(store.remove("exec-c"));
}

TEST(MetadataStoreTest, ResponseSizeIsBounded) {
  MetadataStore store;
  store.add("exec-a", "{}");
  Identity a = identityOf("exec-a");
  std::string too_big(kMaxMetadataResponseBytes + 1, 'x');
  MetadataReply refused = call(store, &a, "POST", "/response", too_big);
  EXPECT_EQ(refused.status, 413);
  EXPECT_EQ(errorType(refused), "response_too_large");
  EXPECT_FALSE(store.remove("exec-a")) << "a refused body must not be stored";

  store.add("exec-a", "{}");
  std::string at_limit(kMaxMetadataResponseBytes, 'y');
  EXPECT_EQ(call(store, &a, "POST", "/response", at_limit).status, 200);
  auto kept = store.remove("exec-a");
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->body.size(), kMaxMetadataResponseBytes);
}

TEST(MetadataStoreTest, WrongMethodsAndUnknownPaths) {
  MetadataStore store;
  store.add("exec-a", "{}");
  Identity a = identityOf("exec-a");
  MetadataReply post_event = call(store, &a, "POST", "/event", "x");
  EXPECT_EQ(post_event.status, 405);
  EXPECT_EQ(errorType(post_event), "method_not_allowed");
  ASSERT_EQ(post_event.headers.size(), 1u);
  EXPECT_EQ(post_event.headers[0], std::make_pair(std::string("Allow"), std::string("GET")));
  MetadataReply get_response = call(store, &a, "GET", "/response");
  EXPECT_EQ(get_response.status, 405);
  EXPECT_EQ(get_response.headers.at(0).second, "POST");
  EXPECT_EQ(call(store, &a, "PUT", "/response", "x").status, 405);
  EXPECT_EQ(call(store, &a, "DELETE", "/event").status, 405);
  for (std::string_view path : {"/latest/meta-data/", "/event/", "/events", "/../event", ""}) {
    MetadataReply unknown = call(store, &a, "GET", path);
    EXPECT_EQ(unknown.status, 404) << path;
    EXPECT_EQ(errorType(unknown), "not_found") << path;
  }
  // Nothing of that was stored.
  EXPECT_FALSE(store.remove("exec-a"));
}

TEST(MetadataStoreTest, ContentTypesThatCouldSplitAHeaderAreDropped) {
  MetadataStore store;
  store.add("exec-a", "{}");
  Identity a = identityOf("exec-a");
  EXPECT_EQ(call(store, &a, "POST", "/response", "x", "text/plain\r\nSet-Cookie: a=b").status, 200);
  EXPECT_EQ(store.remove("exec-a")->content_type, "");
  store.add("exec-a", "{}");
  EXPECT_EQ(call(store, &a, "POST", "/response", "x", std::string(300, 'a')).status, 200);
  EXPECT_EQ(store.remove("exec-a")->content_type, "");
}

// ---------------------------------------------------------------------------------------------
// Through a Proxy: the explicit listener serves absolute-URI requests for the metadata host to
// the client identified by its address (127.0.0.1 here).

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
};

class MetadataProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    snapshots_.swap(config::compile({}, 1).snapshot);  // deny everything
    ProxyOptions options;
    options.threads = 1;
    options.explicit_listen = "127.0.0.1:0";
    auto proxy = Proxy::start(options, snapshots_, identities_, nullptr, &store_);
    ASSERT_TRUE(proxy.ok()) << proxy.status().toString();
    proxy_ = std::move(proxy).value();
    identities_.set("127.0.0.1", identityOf("exec-loop"));
    store_.add("exec-loop", R"({"specversion":"1.0","data":{"q":1}})");
  }
  void TearDown() override {
    if (proxy_) proxy_->stop();
  }

  // One request through the explicit listener (absolute-URI form).
  Reply send(http::verb method, const std::string& url, const std::string& body = "",
             bool chunked = false) {
    net::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(
        net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), proxy_->explicitPort()));
    stream.expires_after(std::chrono::seconds(20));
    http::request<http::string_body> request{method, url, 11};
    request.set(http::field::host, "metadata.clrk.internal");
    request.set(http::field::content_type, "text/plain");
    request.body() = body;
    if (chunked) {
      request.chunked(true);
    } else {
      request.prepare_payload();
    }
    beast::error_code ec;
    http::write(stream, request, ec);  // a refused body may reset the connection mid-write
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 << 20);
    http::read(stream, buffer, parser, ec);
    Reply reply;
    if (ec) {
      reply.body = "read error: " + ec.message();
      return reply;
    }
    reply.status = parser.get().result_int();
    reply.body = parser.get().body();
    reply.content_type = std::string(parser.get()[http::field::content_type]);
    return reply;
  }

  config::SnapshotHolder snapshots_;
  IdentityMap identities_;
  MetadataStore store_;
  std::unique_ptr<Proxy> proxy_;
};

TEST_F(MetadataProxyTest, ServesTheEventAndStoresTheResponse) {
  Reply event = send(http::verb::get, "http://metadata.clrk.internal/event");
  EXPECT_EQ(event.status, 200) << event.body;
  EXPECT_EQ(Json::parse(event.body, nullptr, false)["data"]["q"], 1) << event.body;
  EXPECT_THAT(event.content_type, HasSubstr("application/cloudevents+json"));

  Reply posted = send(http::verb::post, "http://metadata.clrk.internal/response", "the answer");
  EXPECT_EQ(posted.status, 200) << posted.body;
  Reply unknown = send(http::verb::get, "http://metadata.clrk.internal/latest/meta-data");
  EXPECT_EQ(unknown.status, 404) << unknown.body;
  EXPECT_EQ(Json::parse(unknown.body, nullptr, false)["error"]["type"], "not_found");
  Reply wrong = send(http::verb::put, "http://metadata.clrk.internal/response", "x");
  EXPECT_EQ(wrong.status, 405) << wrong.body;

  auto response = store_.remove("exec-loop");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->body, "the answer");
  EXPECT_EQ(response->content_type, "text/plain");
  EXPECT_GE(proxy_->stats().requests, 4u);
}

TEST_F(MetadataProxyTest, OversizedBodiesGet413WithOrWithoutContentLength) {
  std::string too_big(kMaxMetadataResponseBytes + 1024, 'z');
  Reply declared = send(http::verb::post, "http://metadata.clrk.internal/response", too_big);
  EXPECT_EQ(declared.status, 413) << declared.body;
  EXPECT_THAT(declared.body, HasSubstr("response_too_large"));
  Reply streamed =
      send(http::verb::post, "http://metadata.clrk.internal/response", too_big, /*chunked=*/true);
  EXPECT_EQ(streamed.status, 413) << streamed.body;
  EXPECT_FALSE(store_.remove("exec-loop")) << "nothing is stored from a refused body";
}

TEST_F(MetadataProxyTest, OtherHostsStayDeniedAndOtherCallersAreRefused) {
  // The policy still decides everything else: the snapshot here denies all.
  Reply elsewhere = send(http::verb::get, "http://metadata.example.com/event");
  EXPECT_EQ(elsewhere.status, 403) << elsewhere.body;
  // A port other than 80 is not the metadata endpoint either.
  Reply other_port = send(http::verb::get, "http://metadata.clrk.internal:8080/event");
  EXPECT_EQ(other_port.status, 403) << other_port.body;
  // Once the address is no sandbox's, the endpoint refuses.
  identities_.remove("127.0.0.1");
  Reply stranger = send(http::verb::get, "http://metadata.clrk.internal/event");
  EXPECT_EQ(stranger.status, 403) << stranger.body;
  EXPECT_THAT(stranger.body, HasSubstr("unknown_caller"));
}

}  // namespace
}  // namespace clrk::egress
