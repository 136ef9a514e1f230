#include "clrk/apiserver/discovery.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace clrk::apiserver {
namespace {

using Json = nlohmann::json;

Request makeRequest(std::string method, std::string path) {
  Request request;
  request.method = std::move(method);
  request.path = std::move(path);
  return request;
}

class DiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto built = Discovery::build(api::Registry::builtin());
    ASSERT_TRUE(built.ok()) << built.status().toString();
    discovery_ = std::move(built.value());
    discovery_->setServerAddress("127.0.0.1:6443");
  }

  Json get(const std::string& path, int want_status = 200) {
    Request request;
    request.method = "GET";
    request.path = path;
    auto response = discovery_->serve(request);
    EXPECT_TRUE(response.has_value()) << path;
    if (!response) return nullptr;
    EXPECT_EQ(response->status, want_status) << path;
    EXPECT_EQ(response->content_type, "application/json") << path;
    return Json::parse(response->body);
  }

  static const Json* findResource(const Json& list, const std::string& name) {
    for (const Json& resource : list["resources"]) {
      if (resource["name"] == name) return &resource;
    }
    return nullptr;
  }

  DiscoveryPtr discovery_;
};

TEST_F(DiscoveryTest, Version) {
  Json version = get("/version");
  EXPECT_EQ(version["major"], "1");
  EXPECT_EQ(version["minor"], "32");
  EXPECT_EQ(version["gitVersion"], "v1.32.0-clrk");
  EXPECT_EQ(version["platform"], "linux/amd64");
}

TEST_F(DiscoveryTest, Health) {
  for (const char* path : {"/healthz", "/livez", "/readyz", "/readyz/ping"}) {
    Request request = makeRequest("GET", path);
    auto response = discovery_->serve(request);
    ASSERT_TRUE(response) << path;
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "ok");
  }
}

TEST_F(DiscoveryTest, CoreVersions) {
  Json api = get("/api");
  EXPECT_EQ(api["kind"], "APIVersions");
  EXPECT_EQ(api["versions"], Json::array({"v1"}));
  EXPECT_EQ(api["serverAddressByClientCIDRs"][0]["serverAddress"], "127.0.0.1:6443");
}

TEST_F(DiscoveryTest, GroupList) {
  Json apis = get("/apis");
  EXPECT_EQ(apis["kind"], "APIGroupList");
  bool found_clrk = false;
  for (const Json& group : apis["groups"]) {
    EXPECT_NE(group["name"], "");  // the core group is not listed under /apis
    if (group["name"] == "clrk.apoxy.dev") {
      found_clrk = true;
      EXPECT_EQ(group["preferredVersion"]["groupVersion"], "clrk.apoxy.dev/v1alpha1");
      EXPECT_EQ(group["versions"][0]["version"], "v1alpha1");
    }
  }
  EXPECT_TRUE(found_clrk) << apis.dump();
  Json group = get("/apis/clrk.apoxy.dev");
  EXPECT_EQ(group["kind"], "APIGroup");
  EXPECT_EQ(group["name"], "clrk.apoxy.dev");
}

TEST_F(DiscoveryTest, AggregatedAcceptStillGetsPlainList) {
  Request request = makeRequest("GET", "/apis");
  request.accept =
      "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
  auto response = discovery_->serve(request);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->content_type, "application/json");
  EXPECT_EQ(Json::parse(response->body)["kind"], "APIGroupList");
}

TEST_F(DiscoveryTest, ResourceLists) {
  Json core = get("/api/v1");
  EXPECT_EQ(core["kind"], "APIResourceList");
  EXPECT_EQ(core["groupVersion"], "v1");
  const Json* namespaces = findResource(core, "namespaces");
  ASSERT_TRUE(namespaces);
  EXPECT_EQ((*namespaces)["namespaced"], false);
  EXPECT_EQ((*namespaces)["kind"], "Namespace");
  const Json* secrets = findResource(core, "secrets");
  ASSERT_TRUE(secrets);
  EXPECT_EQ((*secrets)["namespaced"], true);
  EXPECT_EQ((*secrets)["singularName"], "secret");
  EXPECT_FALSE((*secrets)["storageVersionHash"].get<std::string>().empty());

  Json clrk = get("/apis/clrk.apoxy.dev/v1alpha1/");  // trailing slash tolerated
  const Json* ta = findResource(clrk, "taskagents");
  ASSERT_TRUE(ta) << clrk.dump();
  EXPECT_EQ((*ta)["kind"], "TaskAgent");
  EXPECT_EQ((*ta)["namespaced"], true);
  EXPECT_NE(std::find((*ta)["shortNames"].begin(), (*ta)["shortNames"].end(), "ta"),
            (*ta)["shortNames"].end());
  for (const char* verb : {"create", "get", "list", "watch", "patch", "delete"}) {
    EXPECT_NE(std::find((*ta)["verbs"].begin(), (*ta)["verbs"].end(), verb), (*ta)["verbs"].end())
        << verb;
  }
  for (const api::ResourceType& type : api::Registry::builtin().types()) {
    if (type.apiVersion() != "clrk.apoxy.dev/v1alpha1") continue;
    EXPECT_TRUE(findResource(clrk, type.plural)) << type.plural;
    EXPECT_EQ(findResource(clrk, type.plural + "/status") != nullptr, type.has_status_subresource)
        << type.plural;
  }
  if (const Json* status = findResource(clrk, "taskagents/status")) {
    EXPECT_EQ((*status)["verbs"], Json::array({"get", "patch", "update"}));
  }
}

TEST_F(DiscoveryTest, OpenApiIndexAndDocuments) {
  Json index = get("/openapi/v3");
  ASSERT_TRUE(index["paths"].contains("api/v1")) << index.dump();
  ASSERT_TRUE(index["paths"].contains("apis/clrk.apoxy.dev/v1alpha1"));
  std::string url = index["paths"]["apis/clrk.apoxy.dev/v1alpha1"]["serverRelativeURL"];
  ASSERT_TRUE(url.starts_with("/openapi/v3/apis/clrk.apoxy.dev/v1alpha1?hash=")) << url;

  // The hash is stable: a second build gives the same URL.
  auto again = Discovery::build(api::Registry::builtin());
  ASSERT_TRUE(again.ok());
  Request index_request = makeRequest("GET", "/openapi/v3");
  EXPECT_EQ(Json::parse((*again)->serve(index_request)->body), index);

  Json doc = get("/openapi/v3/apis/clrk.apoxy.dev/v1alpha1");
  ASSERT_TRUE(doc["components"]["schemas"].contains("dev.apoxy.clrk.v1alpha1.TaskAgent"));
  bool has_patch = false;
  for (const auto& [path, item] : doc["paths"].items()) {
    if (path.find("/taskagents/{name}") != std::string::npos && item.contains("patch")) {
      has_patch = true;
    }
  }
  EXPECT_TRUE(has_patch);
  Json core_doc = get("/openapi/v3/api/v1");
  EXPECT_TRUE(core_doc.contains("components"));

  get("/openapi/v2", 404);
  get("/openapi/v3/apis/nope/v1", 404);
}

TEST_F(DiscoveryTest, NonDiscoveryPathsAreNotServed) {
  for (const char* path : {"/api/v1/namespaces", "/apis/clrk.apoxy.dev/v1alpha1/taskagents",
                           "/apis/unknown.group/v1", "/metrics", "/"}) {
    Request request = makeRequest("GET", path);
    EXPECT_FALSE(discovery_->serve(request).has_value()) << path;
  }
  Request post = makeRequest("POST", "/apis");
  auto response = discovery_->serve(post);
  ASSERT_TRUE(response);
  EXPECT_EQ(response->status, 405);
}

TEST(IsResourcePathTest, Classifies) {
  EXPECT_TRUE(Discovery::isResourcePath("/api/v1/namespaces"));
  EXPECT_TRUE(Discovery::isResourcePath("/api/v1/namespaces/default/secrets/x"));
  EXPECT_TRUE(Discovery::isResourcePath("/apis/clrk.apoxy.dev/v1alpha1/taskagents"));
  EXPECT_FALSE(Discovery::isResourcePath("/api/v1"));
  EXPECT_FALSE(Discovery::isResourcePath("/api/v1/"));
  EXPECT_FALSE(Discovery::isResourcePath("/apis/clrk.apoxy.dev/v1alpha1"));
  EXPECT_FALSE(Discovery::isResourcePath("/apis/clrk.apoxy.dev/v1alpha1/"));
  EXPECT_FALSE(Discovery::isResourcePath("/apis/clrk.apoxy.dev"));
  EXPECT_FALSE(Discovery::isResourcePath("/apis//v1/x"));
  EXPECT_FALSE(Discovery::isResourcePath("/version"));
}

}  // namespace
}  // namespace clrk::apiserver
