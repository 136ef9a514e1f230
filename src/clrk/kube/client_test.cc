#include "clrk/kube/client.h"

#include "clrk/kube/fake_server_for_test.h"

#include <gtest/gtest.h>

#include <thread>

namespace clrk::kube {
namespace {

api::ResourceType taskAgentType() {
  api::ResourceType type;
  type.group = "clrk.apoxy.dev";
  type.version = "v1alpha1";
  type.kind = "TaskAgent";
  type.plural = "taskagents";
  type.namespaced = true;
  type.has_status_subresource = true;
  return type;
}

api::ResourceType namespaceType() {
  api::ResourceType type;
  type.version = "v1";
  type.kind = "Namespace";
  type.plural = "namespaces";
  type.namespaced = false;
  return type;
}

ClientPtr makeClient(const testing::FakeServer& server, std::string token = "test-token") {
  RestConfig config;
  config.server = server.url();
  config.token = std::move(token);
  auto client = Client::create(config);
  EXPECT_TRUE(client.ok()) << client.status().toString();
  return *client;
}

TEST(StatusMapping, MapsKubernetesStatusBodies) {
  Status nf = statusFromResponse(
      404,
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"taskagents.clrk.apoxy.dev \"x\" not found","reason":"NotFound","code":404})");
  EXPECT_EQ(nf.code(), Code::NotFound);
  EXPECT_EQ(nf.message(), "taskagents.clrk.apoxy.dev \"x\" not found");
  EXPECT_EQ(
      statusFromResponse(409, R"({"kind":"Status","reason":"AlreadyExists","code":409})").code(),
      Code::AlreadyExists);
  EXPECT_EQ(statusFromResponse(409, R"({"kind":"Status","reason":"Conflict","code":409})").code(),
            Code::Conflict);
  EXPECT_EQ(statusFromResponse(410, R"({"kind":"Status","reason":"Expired","code":410})").code(),
            Code::Gone);
  EXPECT_EQ(statusFromResponse(422, R"({"kind":"Status","reason":"Invalid","message":"m"})").code(),
            Code::InvalidArgument);
  EXPECT_EQ(statusFromResponse(401, "Unauthorized").code(), Code::Unauthenticated);
  EXPECT_EQ(statusFromResponse(403, "{}").code(), Code::Forbidden);
  EXPECT_EQ(statusFromResponse(503, "").code(), Code::Unavailable);
  EXPECT_EQ(statusFromResponse(504, "").code(), Code::Timeout);
  Status plain = statusFromResponse(500, "boom\n");
  EXPECT_EQ(plain.code(), Code::Internal);
  EXPECT_EQ(plain.message(), "the server returned HTTP 500: boom");
}

TEST(Client, ResourcePaths) {
  EXPECT_EQ(Client::resourcePath(taskAgentType(), "default", "echo"),
            "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents/echo");
  EXPECT_EQ(Client::resourcePath(taskAgentType(), ""), "/apis/clrk.apoxy.dev/v1alpha1/taskagents");
  EXPECT_EQ(Client::resourcePath(namespaceType(), "ignored", "ns1"), "/api/v1/namespaces/ns1");
  EXPECT_EQ(urlEncode("app=a,b c"), "app%3Da%2Cb%20c");
}

TEST(Client, RejectsBadServerUrls) {
  RestConfig config;
  config.server = "ftp://x";
  EXPECT_FALSE(Client::create(config).ok());
  config.server = "https://host:port";
  EXPECT_FALSE(Client::create(config).ok());
  config.server = "https://127.0.0.1:6443";
  config.ca_pem = "not a certificate";
  auto bad_ca = Client::create(config);
  ASSERT_FALSE(bad_ca.ok());
  EXPECT_NE(bad_ca.status().message().find("certificate authority"), std::string::npos);
}

TEST(Client, CrudAgainstFakeServerReusesConnection) {
  testing::FakeServer server;
  auto client = makeClient(server);
  auto type = taskAgentType();
  Json object = {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                 {"kind", "TaskAgent"},
                 {"metadata", {{"name", "echo"}, {"namespace", "default"}}},
                 {"spec", {{"image", "a"}}}};

  auto missing = client->get(type, "default", "echo");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::NotFound);
  EXPECT_EQ(missing.status().message(), "taskagents.clrk.apoxy.dev \"echo\" not found");

  auto created = client->create(type, "default", object);
  ASSERT_TRUE(created.ok()) << created.status().toString();
  std::string rv = (*created)["metadata"]["resourceVersion"];

  auto again = client->create(type, "default", object);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), Code::AlreadyExists);

  auto got = client->get(type, "default", "echo");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ((*got)["spec"]["image"], "a");

  Json changed = *got;
  changed["spec"]["image"] = "b";
  auto updated = client->update(type, changed);
  ASSERT_TRUE(updated.ok()) << updated.status().toString();
  EXPECT_NE((*updated)["metadata"]["resourceVersion"], rv);
  auto stale = client->update(type, changed);  // old resourceVersion
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), Code::Conflict);

  auto patched =
      client->patch(type, "default", "echo", PatchType::MergePatch, R"({"spec":{"image":"c"}})");
  ASSERT_TRUE(patched.ok()) << patched.status().toString();
  EXPECT_EQ((*patched)["spec"]["image"], "c");

  auto applied = client->patch(type, "default", "other", PatchType::ApplyPatch,
                               R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"TaskAgent",
                                   "metadata":{"name":"other"},"spec":{"image":"x"}})",
                               {"clrk", true});
  ASSERT_TRUE(applied.ok()) << applied.status().toString();
  EXPECT_EQ((*applied)["metadata"]["name"], "other");

  auto listed = client->list(type, "default");
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ((*listed)["items"].size(), 2u);
  auto all = client->list(type, "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ((*all)["items"].size(), 2u);

  auto removed = client->remove(type, "default", "echo");
  ASSERT_TRUE(removed.ok()) << removed.status().toString();
  EXPECT_EQ(client->get(type, "default", "echo").status().code(), Code::NotFound);

  // Every request above went over one keep-alive connection.
  EXPECT_EQ(server.connectionsAccepted(), 1);
  EXPECT_GE(server.requestCount(), 10);

  auto no_ns = client->get(type, "", "echo");
  ASSERT_FALSE(no_ns.ok());
  EXPECT_EQ(no_ns.status().code(), Code::InvalidArgument);
}

TEST(Client, BadTokenIsUnauthenticated) {
  testing::FakeServer server;
  auto client = makeClient(server, "wrong");
  auto result = client->get(taskAgentType(), "default", "x");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Code::Unauthenticated);
}

TEST(Client, ConnectionRefusedIsUnavailable) {
  uint16_t port;
  {
    testing::FakeServer server;
    port = static_cast<uint16_t>(std::stoi(server.url().substr(server.url().rfind(':') + 1)));
  }
  RestConfig config;
  config.server = "http://127.0.0.1:" + std::to_string(port);
  auto client = Client::create(config);
  ASSERT_TRUE(client.ok());
  auto result = (*client)->get(taskAgentType(), "default", "x");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), Code::Unavailable);
  EXPECT_NE(result.status().message().find("127.0.0.1"), std::string::npos);
}

TEST(Client, ConcurrentRequests) {
  testing::FakeServer server;
  auto client = makeClient(server);
  auto type = taskAgentType();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        Json object = {{"metadata", {{"name", "a" + std::to_string(t) + "-" + std::to_string(i)}}}};
        if (client->create(type, "default", object).ok()) ++ok;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 40);
  EXPECT_LE(server.connectionsAccepted(), 4 + 4);
}

}  // namespace
}  // namespace clrk::kube
