#include "clrk/apiserver/resource_handler.h"

#include "clrk/api/registry.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

namespace clrk::apiserver {
namespace {

using api::Json;
using namespace std::chrono_literals;

constexpr const char* kTaskAgents = "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents";
constexpr const char* kSecrets = "/api/v1/namespaces/default/secrets";
constexpr const char* kConfigMaps = "/api/v1/namespaces/default/configmaps";
constexpr const char* kNamespaces = "/api/v1/namespaces";
constexpr const char* kTableAccept =
    "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta."
    "k8s.io,application/json";

Json taskAgent(const std::string& name, const std::string& pool = "pool") {
  return {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
          {"kind", "TaskAgent"},
          {"metadata", {{"name", name}}},
          {"spec", {{"workerPoolRef", pool}, {"template", {{"spec", {{"image", "busybox"}}}}}}}};
}

Json configMap(const std::string& name, Json data = Json::object()) {
  return {{"apiVersion", "v1"},
          {"kind", "ConfigMap"},
          {"metadata", {{"name", name}}},
          {"data", std::move(data)}};
}

class ResourceHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override { startWith(storage::makeMemoryStorage()); }

  void startWith(storage::StoragePtr storage) {
    if (handler_) handler_->stop();
    handler_.reset();
    storage_ = std::move(storage);
    ResourceHandlerOptions options;
    options.bookmark_interval = 100ms;
    options.gc_resync_interval = 50ms;
    handler_ = makeResourceHandler(*storage_, api::Registry::builtin(), options);
    handler_->start();
  }

  void TearDown() override {
    if (handler_) handler_->stop();
  }

  Response call(const std::string& method, const std::string& path, const std::string& body = "",
                std::vector<std::pair<std::string, std::string>> query = {},
                const std::string& content_type = "application/json",
                const std::string& accept = "application/json") {
    Request request;
    request.method = method;
    request.path = path;
    request.query = std::move(query);
    request.content_type = content_type;
    request.accept = accept;
    request.body = body;
    request.user = "admin";
    return handler_->handle(request);
  }

  Json callJson(const std::string& method, const std::string& path, const Json& body,
                std::vector<std::pair<std::string, std::string>> query = {},
                const std::string& content_type = "application/json", int* status = nullptr) {
    Response response =
        call(method, path, body.is_null() ? "" : body.dump(), std::move(query), content_type);
    if (status != nullptr) *status = response.status;
    return Json::parse(response.body);
  }

  Json create(const std::string& collection, const Json& object,
              std::vector<std::pair<std::string, std::string>> query = {}) {
    Response response = call("POST", collection, object.dump(), std::move(query));
    EXPECT_EQ(response.status, 201) << response.body;
    return Json::parse(response.body);
  }

  Json get(const std::string& path, int* status = nullptr) {
    Response response = call("GET", path);
    if (status != nullptr) *status = response.status;
    return Json::parse(response.body);
  }

  static bool waitFor(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (condition()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return condition();
  }

  bool gone(const std::string& path) {
    return waitFor([&] { return call("GET", path).status == 404; });
  }

  // Reads watch events until `count` arrived or the stream ends/idles for `timeout`.
  static std::vector<Json> readEvents(EventStream& stream, size_t count,
                                      std::chrono::milliseconds timeout = 3000ms) {
    std::vector<Json> events;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (events.size() < count && std::chrono::steady_clock::now() < deadline) {
      auto batch = stream.next(100ms);
      if (!batch) break;
      for (const auto& line : *batch) events.push_back(Json::parse(line));
    }
    return events;
  }

  storage::StoragePtr storage_;
  ResourceHandlerPtr handler_;
};

// ---- create / get / list -----------------------------------------------------------------------

TEST_F(ResourceHandlerTest, CreateSetsServerFieldsAndDefaults) {
  Json created = create(kTaskAgents, taskAgent("a"));
  const Json& metadata = created["metadata"];
  EXPECT_EQ(metadata["namespace"], "default");
  EXPECT_EQ(metadata["generation"], 1);
  EXPECT_EQ(metadata["uid"].get<std::string>().size(), 36u);
  EXPECT_FALSE(metadata["creationTimestamp"].get<std::string>().empty());
  EXPECT_FALSE(metadata["resourceVersion"].get<std::string>().empty());
  EXPECT_EQ(created["spec"]["timeout"], "100s");  // schema default

  Json fetched = get(std::string(kTaskAgents) + "/a");
  EXPECT_EQ(fetched, created);
}

TEST_F(ResourceHandlerTest, ListReturnsTypedListWithResourceVersion) {
  create(kTaskAgents, taskAgent("a"));
  create(kTaskAgents, taskAgent("b"));
  Json list = get(kTaskAgents);
  EXPECT_EQ(list["kind"], "TaskAgentList");
  EXPECT_EQ(list["apiVersion"], "clrk.apoxy.dev/v1alpha1");
  ASSERT_EQ(list["items"].size(), 2u);
  EXPECT_EQ(list["items"][0]["metadata"]["name"], "a");
  EXPECT_FALSE(list["metadata"]["resourceVersion"].get<std::string>().empty());
  // All namespaces.
  Json all = get("/apis/clrk.apoxy.dev/v1alpha1/taskagents");
  EXPECT_EQ(all["items"].size(), 2u);
}

TEST_F(ResourceHandlerTest, ListPaginatesWithLimitAndContinue) {
  for (int idx = 0; idx < 5; ++idx) create(kConfigMaps, configMap("cm" + std::to_string(idx)));
  std::vector<std::string> names;
  std::string token;
  int pages = 0;
  do {
    std::vector<std::pair<std::string, std::string>> query = {{"limit", "2"}};
    if (!token.empty()) query.emplace_back("continue", token);
    Response response = call("GET", kConfigMaps, "", query);
    ASSERT_EQ(response.status, 200) << response.body;
    Json page = Json::parse(response.body);
    for (const auto& item : page["items"]) names.push_back(item["metadata"]["name"]);
    token = page["metadata"].value("continue", "");
    if (pages == 0) {
      EXPECT_EQ(page["metadata"]["remainingItemCount"], 3);
    }
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(names, (std::vector<std::string>{"cm0", "cm1", "cm2", "cm3", "cm4"}));
  EXPECT_EQ(call("GET", kConfigMaps, "", {{"continue", "garbage"}}).status, 400);
}

TEST_F(ResourceHandlerTest, GenerateNameAppendsRandomSuffix) {
  Json object = taskAgent("");
  object["metadata"] = {{"generateName", "job-"}};
  Json created = create(kTaskAgents, object);
  std::string name = created["metadata"]["name"];
  ASSERT_EQ(name.size(), 9u);
  EXPECT_EQ(name.rfind("job-", 0), 0u);
  for (char c : name.substr(4)) EXPECT_TRUE(std::islower(c) || std::isdigit(c)) << name;
}

TEST_F(ResourceHandlerTest, DryRunValidatesWithoutStoring) {
  Response response = call("POST", kTaskAgents, taskAgent("dry").dump(), {{"dryRun", "All"}});
  EXPECT_EQ(response.status, 201) << response.body;
  EXPECT_EQ(call("GET", std::string(kTaskAgents) + "/dry").status, 404);
  Json invalid = taskAgent("dry");
  invalid["spec"].erase("workerPoolRef");
  EXPECT_EQ(call("POST", kTaskAgents, invalid.dump(), {{"dryRun", "All"}}).status, 422);
}

// ---- errors
// --------------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, NotFoundAndAlreadyExistsUseRealMessages) {
  int status = 0;
  Json missing = get(std::string(kTaskAgents) + "/x", &status);
  EXPECT_EQ(status, 404);
  EXPECT_EQ(missing["kind"], "Status");
  EXPECT_EQ(missing["apiVersion"], "v1");
  EXPECT_EQ(missing["status"], "Failure");
  EXPECT_EQ(missing["reason"], "NotFound");
  EXPECT_EQ(missing["code"], 404);
  EXPECT_EQ(missing["message"], "taskagents.clrk.apoxy.dev \"x\" not found");
  EXPECT_EQ(missing["details"]["name"], "x");
  EXPECT_EQ(missing["details"]["group"], "clrk.apoxy.dev");
  EXPECT_EQ(missing["details"]["kind"], "taskagents");

  Json secret_missing = get(std::string(kSecrets) + "/s", &status);
  EXPECT_EQ(secret_missing["message"], "secrets \"s\" not found");

  create(kTaskAgents, taskAgent("a"));
  Json again = callJson("POST", kTaskAgents, taskAgent("a"), {}, "application/json", &status);
  EXPECT_EQ(status, 409);
  EXPECT_EQ(again["reason"], "AlreadyExists");
  EXPECT_EQ(again["message"], "taskagents.clrk.apoxy.dev \"a\" already exists");
}

TEST_F(ResourceHandlerTest, UnknownResourcesAndMethods) {
  EXPECT_EQ(call("GET", "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/widgets").status, 404);
  EXPECT_EQ(call("GET", "/apis/nope/v1/things").status, 404);
  EXPECT_EQ(call("GET", "/api/v1/namespaces/default/secrets/a/b/c").status, 404);
  EXPECT_EQ(call("GET", "/api/v1/namespaces/default/secrets/a/status").status, 404);
  EXPECT_EQ(call("POST", std::string(kTaskAgents) + "/a", "{}").status, 405);
  EXPECT_EQ(call("OPTIONS", kTaskAgents).status, 405);
  Json status = Json::parse(call("GET", "/apis/x/v1/y").body);
  EXPECT_EQ(status["reason"], "NotFound");
}

TEST_F(ResourceHandlerTest, NamespaceAndStatusPathsAreDisambiguated) {
  // /api/v1/namespaces/<name>/status addresses the Namespace's status subresource...
  Json ns_status = get("/api/v1/namespaces/default/status");
  EXPECT_EQ(ns_status["kind"], "Namespace");
  EXPECT_EQ(ns_status["status"]["phase"], "Active");
  // ...while /api/v1/namespaces/<ns>/secrets is the namespaced collection.
  EXPECT_EQ(get(kSecrets)["kind"], "SecretList");
  Json namespaces = get(kNamespaces);
  EXPECT_EQ(namespaces["kind"], "NamespaceList");
  ASSERT_GE(namespaces["items"].size(), 1u);
  EXPECT_EQ(namespaces["items"][0]["metadata"]["name"], "default");
}

TEST_F(ResourceHandlerTest, MalformedAndOversizedBodies) {
  Response response = call("POST", kTaskAgents, "{\"metadata\": {\"name\": x}}");
  EXPECT_EQ(response.status, 400);
  Json status = Json::parse(response.body);
  EXPECT_EQ(status["reason"], "BadRequest");
  EXPECT_NE(status["message"].get<std::string>().find("byte 23"), std::string::npos)
      << status["message"];

  EXPECT_EQ(call("POST", kTaskAgents, "[1,2]").status, 400);
  EXPECT_EQ(call("POST", kTaskAgents, "").status, 400);
  EXPECT_EQ(call("POST", kTaskAgents, std::string(500, '[')).status, 400);
  EXPECT_EQ(call("POST", kTaskAgents, std::string(4 << 20, ' ')).status, 413);
  EXPECT_EQ(call("POST", kTaskAgents, "{}", {}, "text/plain").status, 415);
  EXPECT_EQ(call("PATCH", std::string(kTaskAgents) + "/a", "{}", {}, "application/json").status,
            415);
  EXPECT_EQ(call("GET", kTaskAgents, "", {}, "", "application/vnd.kubernetes.protobuf").status,
            406);
  EXPECT_EQ(
      call("GET", kTaskAgents, "", {}, "", "application/vnd.kubernetes.protobuf,application/json")
          .status,
      200);
}

// The protobuf body kubectl v1.32 sends for `kubectl create secret generic s
// --from-literal=api-key=sk-1` (magic "k8s\0" + runtime.Unknown holding a v1 Secret).
TEST_F(ResourceHandlerTest, ProtobufBodiesFromKubectlAreDecodedAndAnsweredInJson) {
  constexpr unsigned char kSecret[] = {
      0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0c, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x06, 0x53,
      0x65, 0x63, 0x72, 0x65, 0x74, 0x12, 0x26, 0x0a, 0x11, 0x0a, 0x01, 0x73, 0x12,
      0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00,
      0x12, 0x0f, 0x0a, 0x07, 0x61, 0x70, 0x69, 0x2d, 0x6b, 0x65, 0x79, 0x12, 0x04,
      0x73, 0x6b, 0x2d, 0x31, 0x1a, 0x00, 0x1a, 0x00, 0x22, 0x00};
  std::string body(reinterpret_cast<const char*>(kSecret), sizeof(kSecret));
  const std::string protobuf = "application/vnd.kubernetes.protobuf";
  Response response = call("POST", kSecrets, body, {{"fieldManager", "kubectl-create"}}, protobuf,
                           "application/vnd.kubernetes.protobuf,application/json");
  ASSERT_EQ(response.status, 201) << response.body;
  EXPECT_EQ(response.content_type, "application/json");
  Json created = Json::parse(response.body);
  EXPECT_EQ(created["metadata"]["name"], "s");
  EXPECT_EQ(created["data"]["api-key"], "c2stMQ==");
  EXPECT_EQ(get(std::string(kSecrets) + "/s")["data"]["api-key"], "c2stMQ==");

  // Truncated bytes: 400 naming the offset. A kind the decoder does not know: 415.
  Response truncated = call("POST", kSecrets, body.substr(0, 30), {}, protobuf);
  EXPECT_EQ(truncated.status, 400);
  EXPECT_NE(Json::parse(truncated.body)["message"].get<std::string>().find("at byte"),
            std::string::npos)
      << truncated.body;
  std::string pod = body;
  pod.replace(12, 6, std::string("Pod\0\0\0", 6));  // keep lengths; kind becomes "Pod\0\0\0"
  EXPECT_EQ(call("POST", kSecrets, pod, {}, protobuf).status, 415);
}

TEST_F(ResourceHandlerTest, NeverCrashesOnHostileInput) {
  create(kTaskAgents, taskAgent("a"));
  const std::vector<std::string> bodies = {
      "",
      "null",
      "1",
      "\"s\"",
      "[]",
      "{}",
      "{\"metadata\":1}",
      "{\"metadata\":{\"name\":1}}",
      "{\"metadata\":{\"name\":\"a\",\"labels\":[1]}}",
      "{\"spec\":[]}",
      "{\"kind\":5}",
      "{\"apiVersion\":\"v2\"}",
      "\xff\xfe",
      "{\"metadata\":{\"finalizers\":\"x\"}}",
      "[{\"op\":\"move\",\"from\":\"/spec\",\"path\":\"/spec/x\"}]",
      "[{\"op\":1}]",
      "{\"metadata\":{\"name\":\"a\",\"ownerReferences\":{}}}",
      "{\"status\":7}",
      "{\"metadata\":{\"managedFields\":[1,{\"fieldsV1\":3}]}}"};
  const std::vector<std::string> types = {"application/json",
                                          "application/merge-patch+json",
                                          "application/json-patch+json",
                                          "application/strategic-merge-patch+json",
                                          "application/apply-patch+yaml",
                                          "application/yaml"};
  for (const auto& body : bodies) {
    for (const auto& type : types) {
      for (const char* method : {"POST", "PUT", "PATCH", "DELETE"}) {
        std::string path = std::string(kTaskAgents) + (std::string(method) == "POST" ? "" : "/a");
        Response response = call(method, path, body, {{"fieldManager", "fuzz"}}, type);
        EXPECT_LT(response.status, 500)
            << method << " " << type << " " << body << " -> " << response.body;
        if (std::string(method) != "DELETE" &&
            call("GET", path == kTaskAgents ? path + "/a" : path).status == 404) {
          create(kTaskAgents, taskAgent("a"));
        }
      }
    }
  }
}

// ---- validation
// ----------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, InvalidObjectsGet422WithCauses) {
  Json object = taskAgent("bad");
  object["spec"].erase("workerPoolRef");
  object["spec"]["maxConcurrent"] = -1;
  int status = 0;
  Json error = callJson("POST", kTaskAgents, object, {}, "application/json", &status);
  EXPECT_EQ(status, 422);
  EXPECT_EQ(error["reason"], "Invalid");
  std::string message = error["message"];
  EXPECT_EQ(message.rfind("TaskAgent.clrk.apoxy.dev \"bad\" is invalid: [", 0), 0u) << message;
  EXPECT_NE(message.find("spec.workerPoolRef: Required value"), std::string::npos) << message;
  EXPECT_EQ(error["details"]["kind"], "TaskAgent");
  bool found_required = false;
  for (const auto& cause : error["details"]["causes"]) {
    if (cause["field"] == "spec.workerPoolRef") {
      EXPECT_EQ(cause["reason"], "FieldValueRequired");
      found_required = true;
    }
  }
  EXPECT_TRUE(found_required) << error.dump();

  Json nameless = taskAgent("");
  nameless["metadata"] = Json::object();
  error = callJson("POST", kTaskAgents, nameless, {}, "application/json", &status);
  EXPECT_EQ(status, 422);
  EXPECT_EQ(error["details"]["causes"][0]["field"], "metadata.name");
}

TEST_F(ResourceHandlerTest, FieldValidationStrictWarnIgnore) {
  Json object = taskAgent("f");
  object["spec"]["bogus"] = 1;
  object["spec"]["other"] = true;
  Response strict = call("POST", kTaskAgents, object.dump(), {{"fieldValidation", "Strict"}});
  EXPECT_EQ(strict.status, 400);
  Json error = Json::parse(strict.body);
  EXPECT_EQ(error["reason"], "BadRequest");
  EXPECT_EQ(error["message"],
            "strict decoding error: unknown field \"spec.bogus\", unknown field \"spec.other\"");

  Response warn = call("POST", kTaskAgents, object.dump(), {{"fieldValidation", "Warn"}});
  ASSERT_EQ(warn.status, 201) << warn.body;
  EXPECT_FALSE(Json::parse(warn.body)["spec"].contains("bogus"));
  ASSERT_EQ(warn.headers.size(), 2u);
  EXPECT_EQ(warn.headers[0].first, "Warning");
  EXPECT_EQ(warn.headers[0].second, "299 - \"unknown field \\\"spec.bogus\\\"\"");

  object["metadata"]["name"] = "g";
  Response ignore = call("POST", kTaskAgents, object.dump(), {{"fieldValidation", "Ignore"}});
  ASSERT_EQ(ignore.status, 201);
  EXPECT_TRUE(ignore.headers.empty());
  EXPECT_FALSE(Json::parse(ignore.body)["spec"].contains("other"));
  EXPECT_EQ(call("POST", kTaskAgents, object.dump(), {{"fieldValidation", "Loud"}}).status, 400);
}

TEST_F(ResourceHandlerTest, NamespaceChecksOnCreate) {
  Json object = configMap("c");
  object["metadata"]["namespace"] = "other";
  Response mismatch = call("POST", kConfigMaps, object.dump());
  EXPECT_EQ(mismatch.status, 400);
  int status = 0;
  Json missing = callJson("POST", "/api/v1/namespaces/nope/configmaps", configMap("c"), {},
                          "application/json", &status);
  EXPECT_EQ(status, 404);
  EXPECT_EQ(missing["message"], "namespaces \"nope\" not found");
}

// ---- update ----------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, UpdateConflictsOnStaleResourceVersion) {
  Json created = create(kTaskAgents, taskAgent("x"));
  Json first = created;
  first["spec"]["workerPoolRef"] = "p2";
  int status = 0;
  Json updated =
      callJson("PUT", std::string(kTaskAgents) + "/x", first, {}, "application/json", &status);
  ASSERT_EQ(status, 200) << updated.dump();
  EXPECT_EQ(updated["metadata"]["generation"], 2);
  EXPECT_NE(updated["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);

  Json stale = created;  // still carries the old resourceVersion
  stale["spec"]["workerPoolRef"] = "p3";
  Json conflict =
      callJson("PUT", std::string(kTaskAgents) + "/x", stale, {}, "application/json", &status);
  EXPECT_EQ(status, 409);
  EXPECT_EQ(conflict["reason"], "Conflict");
  EXPECT_EQ(conflict["message"],
            "Operation cannot be fulfilled on taskagents.clrk.apoxy.dev \"x\": the object has "
            "been modified; please apply your changes to the latest version and try again");

  // Without a resourceVersion the update is unconditional.
  Json unconditional = updated;
  unconditional["metadata"].erase("resourceVersion");
  unconditional["spec"]["workerPoolRef"] = "p4";
  EXPECT_EQ(call("PUT", std::string(kTaskAgents) + "/x", unconditional.dump()).status, 200);
}

TEST_F(ResourceHandlerTest, UpdatePreservesImmutableMetadataAndBumpsGenerationOnlyForSpec) {
  Json created = create(kTaskAgents, taskAgent("x"));
  Json change = created;
  change["metadata"]["uid"] = "forged";
  change["metadata"]["creationTimestamp"] = "2000-01-01T00:00:00Z";
  change["metadata"]["labels"] = {{"a", "b"}};
  Json updated = callJson("PUT", std::string(kTaskAgents) + "/x", change);
  EXPECT_EQ(updated["metadata"]["uid"], created["metadata"]["uid"]);
  EXPECT_EQ(updated["metadata"]["creationTimestamp"], created["metadata"]["creationTimestamp"]);
  EXPECT_EQ(updated["metadata"]["labels"]["a"], "b");
  EXPECT_EQ(updated["metadata"]["generation"], 1);  // metadata-only change

  Json renamed = updated;
  renamed["metadata"]["name"] = "y";
  EXPECT_EQ(call("PUT", std::string(kTaskAgents) + "/x", renamed.dump()).status, 400);
  EXPECT_EQ(call("PUT", std::string(kTaskAgents) + "/missing", taskAgent("missing").dump()).status,
            404);

  // A no-op update does not write.
  Response noop = call("PUT", std::string(kTaskAgents) + "/x", updated.dump());
  EXPECT_EQ(Json::parse(noop.body)["metadata"]["resourceVersion"],
            updated["metadata"]["resourceVersion"]);
}

TEST_F(ResourceHandlerTest, StatusSubresourceSeparatesSpecAndStatus) {
  Json created = create(kTaskAgents, taskAgent("s"));
  std::string item = std::string(kTaskAgents) + "/s";
  // The main endpoint ignores status.
  Json with_status = created;
  with_status["status"] = {{"activeExecutions", 3}};
  Json updated = callJson("PUT", item, with_status);
  EXPECT_FALSE(updated.contains("status"));
  EXPECT_EQ(updated["metadata"]["generation"], 1);

  // /status ignores everything but status, and does not bump the generation.
  Json status_update = updated;
  status_update["status"] = {{"activeExecutions", 2}};
  status_update["spec"]["workerPoolRef"] = "ignored";
  int code = 0;
  Json after = callJson("PUT", item + "/status", status_update, {}, "application/json", &code);
  ASSERT_EQ(code, 200) << after.dump();
  EXPECT_EQ(after["status"]["activeExecutions"], 2);
  EXPECT_EQ(after["spec"]["workerPoolRef"], "pool");
  EXPECT_EQ(after["metadata"]["generation"], 1);

  // Status patch via merge patch on /status.
  Response patched = call("PATCH", item + "/status", R"({"status":{"activeExecutions":5}})", {},
                          "application/merge-patch+json");
  ASSERT_EQ(patched.status, 200) << patched.body;
  EXPECT_EQ(Json::parse(patched.body)["status"]["activeExecutions"], 5);

  // A spec change through the main endpoint bumps the generation and keeps the status.
  Response spec_patch =
      call("PATCH", item, R"({"spec":{"workerPoolRef":"p2"}})", {}, "application/merge-patch+json");
  Json spec_after = Json::parse(spec_patch.body);
  EXPECT_EQ(spec_after["metadata"]["generation"], 2);
  EXPECT_EQ(spec_after["status"]["activeExecutions"], 5);

  // Kinds without a status subresource have no /status path.
  create(kConfigMaps, configMap("c"));
  EXPECT_EQ(call("PUT", std::string(kConfigMaps) + "/c/status", configMap("c").dump()).status, 404);
}

// ---- patches ---------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, MergeJsonAndStrategicPatches) {
  create(kTaskAgents, taskAgent("p"));
  std::string item = std::string(kTaskAgents) + "/p";
  Response merge =
      call("PATCH", item, R"({"metadata":{"labels":{"a":"1"}},"spec":{"maxConcurrent":4}})", {},
           "application/merge-patch+json");
  ASSERT_EQ(merge.status, 200) << merge.body;
  Json merged = Json::parse(merge.body);
  EXPECT_EQ(merged["metadata"]["labels"]["a"], "1");
  EXPECT_EQ(merged["spec"]["maxConcurrent"], 4);
  EXPECT_EQ(merged["metadata"]["generation"], 2);

  Response json_patch = call("PATCH", item,
                             R"([{"op":"test","path":"/spec/maxConcurrent","value":4},)"
                             R"({"op":"replace","path":"/spec/maxConcurrent","value":7},)"
                             R"({"op":"remove","path":"/metadata/labels/a"}])",
                             {}, "application/json-patch+json");
  ASSERT_EQ(json_patch.status, 200) << json_patch.body;
  Json patched = Json::parse(json_patch.body);
  EXPECT_EQ(patched["spec"]["maxConcurrent"], 7);
  EXPECT_FALSE(patched["metadata"]["labels"].contains("a"));

  Response failed_test =
      call("PATCH", item, R"([{"op":"test","path":"/spec/maxConcurrent","value":1}])", {},
           "application/json-patch+json");
  EXPECT_EQ(failed_test.status, 422);

  Response strategic = call("PATCH", "/api/v1/namespaces/default/configmaps/c",
                            R"({"data":{"k":"v"}})", {}, "application/strategic-merge-patch+json");
  EXPECT_EQ(strategic.status, 404);
  create(kConfigMaps, configMap("c", {{"a", "1"}}));
  strategic = call("PATCH", std::string(kConfigMaps) + "/c", R"({"data":{"k":"v"}})", {},
                   "application/strategic-merge-patch+json");
  ASSERT_EQ(strategic.status, 200);
  EXPECT_EQ(Json::parse(strategic.body)["data"], (Json{{"a", "1"}, {"k", "v"}}));

  // A patch carrying a stale resourceVersion conflicts.
  Response stale = call("PATCH", item, R"({"metadata":{"resourceVersion":"1"}})", {},
                        "application/merge-patch+json");
  EXPECT_EQ(stale.status, 409);
  // Patched objects are validated.
  Response invalid =
      call("PATCH", item, R"({"spec":{"workerPoolRef":null}})", {}, "application/merge-patch+json");
  EXPECT_EQ(invalid.status, 422);
}

TEST_F(ResourceHandlerTest, ServerSideApplyCreatesMergesAndTracksOwnership) {
  std::string item = std::string(kTaskAgents) + "/ssa";
  Json applied = taskAgent("ssa");
  applied["metadata"]["labels"] = {{"team", "a"}, {"tier", "x"}};
  Response created = call("PATCH", item, applied.dump(), {{"fieldManager", "alice"}},
                          "application/apply-patch+yaml");
  ASSERT_EQ(created.status, 201) << created.body;
  Json object = Json::parse(created.body);
  ASSERT_EQ(object["metadata"]["managedFields"].size(), 1u);
  const Json& entry = object["metadata"]["managedFields"][0];
  EXPECT_EQ(entry["manager"], "alice");
  EXPECT_EQ(entry["operation"], "Apply");
  EXPECT_EQ(entry["fieldsType"], "FieldsV1");
  EXPECT_EQ(entry["apiVersion"], "clrk.apoxy.dev/v1alpha1");
  EXPECT_TRUE(entry["fieldsV1"]["f:spec"].contains("f:workerPoolRef"));
  EXPECT_TRUE(entry["fieldsV1"]["f:metadata"]["f:labels"].contains("f:team"));

  // Same manager re-applies without the "tier" label: the field it owned alone is removed.
  applied["metadata"]["labels"] = {{"team", "a"}};
  Response reapplied = call("PATCH", item, applied.dump(), {{"fieldManager", "alice"}},
                            "application/apply-patch+yaml");
  ASSERT_EQ(reapplied.status, 200) << reapplied.body;
  EXPECT_FALSE(Json::parse(reapplied.body)["metadata"]["labels"].contains("tier"));

  // Another manager changing alice's field conflicts...
  Json bob = {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
              {"kind", "TaskAgent"},
              {"metadata", {{"name", "ssa"}}},
              {"spec", {{"workerPoolRef", "bobs-pool"}}}};
  Response conflict = call("PATCH", item, bob.dump(), {{"fieldManager", "bob"}, {"force", "false"}},
                           "application/apply-patch+yaml");
  ASSERT_EQ(conflict.status, 409) << conflict.body;
  Json status = Json::parse(conflict.body);
  EXPECT_EQ(status["reason"], "Conflict");
  EXPECT_EQ(status["message"],
            "Apply failed with 1 conflict: conflict with \"alice\" using clrk.apoxy.dev/v1alpha1: "
            ".spec.workerPoolRef");
  EXPECT_EQ(status["details"]["causes"][0]["field"], ".spec.workerPoolRef");

  // ...applying the same value is shared ownership, not a conflict...
  bob["spec"]["workerPoolRef"] = "pool";
  EXPECT_EQ(
      call("PATCH", item, bob.dump(), {{"fieldManager", "bob"}}, "application/apply-patch+yaml")
          .status,
      200);
  // ...and force takes the field over.
  bob["spec"]["workerPoolRef"] = "bobs-pool";
  Response forced = call("PATCH", item, bob.dump(), {{"fieldManager", "bob"}, {"force", "true"}},
                         "application/apply-patch+yaml");
  ASSERT_EQ(forced.status, 200) << forced.body;
  Json after = Json::parse(forced.body);
  EXPECT_EQ(after["spec"]["workerPoolRef"], "bobs-pool");
  for (const auto& managed : after["metadata"]["managedFields"]) {
    if (managed["manager"] == "alice") {
      EXPECT_FALSE(managed["fieldsV1"]["f:spec"].contains("f:workerPoolRef"));
    }
  }

  // Updates by other clients take ownership and make later applies conflict.
  Response update = call("PATCH", item, R"({"metadata":{"labels":{"team":"b"}}})",
                         {{"fieldManager", "kubectl-edit"}}, "application/merge-patch+json");
  ASSERT_EQ(update.status, 200);
  applied["metadata"]["labels"] = {{"team", "c"}};
  Response edited_conflict = call("PATCH", item, applied.dump(), {{"fieldManager", "alice"}},
                                  "application/apply-patch+yaml");
  EXPECT_EQ(edited_conflict.status, 409);
  EXPECT_NE(Json::parse(edited_conflict.body)["message"].get<std::string>().find("kubectl-edit"),
            std::string::npos);

  // fieldManager is required; YAML bodies are accepted.
  EXPECT_EQ(call("PATCH", item, applied.dump(), {}, "application/apply-patch+yaml").status, 400);
  std::string yaml =
      "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fromyaml\ndata:\n  k: v\n";
  Response yaml_apply = call("PATCH", std::string(kConfigMaps) + "/fromyaml", yaml,
                             {{"fieldManager", "kubectl"}}, "application/apply-patch+yaml");
  ASSERT_EQ(yaml_apply.status, 201) << yaml_apply.body;
  EXPECT_EQ(Json::parse(yaml_apply.body)["data"]["k"], "v");
}

TEST_F(ResourceHandlerTest, NoOpApplyDoesNotWrite) {
  std::string item = std::string(kConfigMaps) + "/same";
  Json applied = configMap("same", {{"k", "v"}});
  Json first = Json::parse(
      call("PATCH", item, applied.dump(), {{"fieldManager", "m"}}, "application/apply-patch+yaml")
          .body);
  Json second = Json::parse(
      call("PATCH", item, applied.dump(), {{"fieldManager", "m"}}, "application/apply-patch+yaml")
          .body);
  EXPECT_EQ(first["metadata"]["resourceVersion"], second["metadata"]["resourceVersion"]);
}

// ---- secrets and configmaps ------------------------------------------------------------------

TEST_F(ResourceHandlerTest, SecretStringDataIsMergedIntoData) {
  Json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", {{"name", "s"}}},
                 {"data", {{"a", "YQ=="}}},
                 {"stringData", {{"b", "hello"}, {"c", "hi!"}}}};
  Json created = create(kSecrets, secret);
  EXPECT_FALSE(created.contains("stringData"));
  EXPECT_EQ(created["data"]["a"], "YQ==");
  EXPECT_EQ(created["data"]["b"], "aGVsbG8=");
  EXPECT_EQ(created["data"]["c"], "aGkh");
  EXPECT_EQ(created["type"], "Opaque");
}

TEST_F(ResourceHandlerTest, ImmutableSecretsAndConfigMapsRejectDataChanges) {
  Json cm = configMap("frozen", {{"k", "v"}});
  cm["immutable"] = true;
  create(kConfigMaps, cm);
  Response change = call("PATCH", std::string(kConfigMaps) + "/frozen", R"({"data":{"k":"w"}})", {},
                         "application/merge-patch+json");
  EXPECT_EQ(change.status, 422) << change.body;
  Response unfreeze = call("PATCH", std::string(kConfigMaps) + "/frozen", R"({"immutable":false})",
                           {}, "application/merge-patch+json");
  EXPECT_EQ(unfreeze.status, 422);
  Response labels =
      call("PATCH", std::string(kConfigMaps) + "/frozen", R"({"metadata":{"labels":{"x":"y"}}})",
           {}, "application/merge-patch+json");
  EXPECT_EQ(labels.status, 200);

  Json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", {{"name", "s"}}},
                 {"immutable", true},
                 {"data", {{"a", "YQ=="}}}};
  create(kSecrets, secret);
  Response secret_change =
      call("PATCH", std::string(kSecrets) + "/s", R"({"stringData":{"a":"new"}})", {},
           "application/merge-patch+json");
  EXPECT_EQ(secret_change.status, 422);
}

// ---- deletion, finalizers, garbage collection ------------------------------------------------

TEST_F(ResourceHandlerTest, DeleteReturnsObjectAndHonoursPreconditions) {
  Json created = create(kTaskAgents, taskAgent("d"));
  std::string item = std::string(kTaskAgents) + "/d";
  Response wrong_uid = call("DELETE", item, R"({"preconditions":{"uid":"nope"}})");
  EXPECT_EQ(wrong_uid.status, 409);
  Response wrong_rv = call("DELETE", item, R"({"preconditions":{"resourceVersion":"1"}})");
  EXPECT_EQ(wrong_rv.status, 409);
  Response deleted = call("DELETE", item, R"({"propagationPolicy":"Background"})");
  ASSERT_EQ(deleted.status, 200);
  EXPECT_EQ(Json::parse(deleted.body)["metadata"]["uid"], created["metadata"]["uid"]);
  EXPECT_EQ(call("GET", item).status, 404);
  EXPECT_EQ(call("DELETE", item).status, 404);
  EXPECT_EQ(call("DELETE", item, R"({"propagationPolicy":"Sideways"})").status, 400);
}

TEST_F(ResourceHandlerTest, FinalizersDeferDeletionUntilRemoved) {
  Json object = taskAgent("f");
  object["metadata"]["finalizers"] = {"example.com/cleanup"};
  create(kTaskAgents, object);
  std::string item = std::string(kTaskAgents) + "/f";
  Response deleted = call("DELETE", item);
  ASSERT_EQ(deleted.status, 200);
  Json marked = Json::parse(deleted.body);
  EXPECT_TRUE(marked["metadata"].contains("deletionTimestamp"));
  EXPECT_EQ(marked["metadata"]["deletionGracePeriodSeconds"], 0);
  Json still = get(item);
  EXPECT_TRUE(still["metadata"].contains("deletionTimestamp"));

  // New finalizers can't be added while deleting.
  Json add = still;
  add["metadata"]["finalizers"].push_back("another");
  EXPECT_EQ(call("PUT", item, add.dump()).status, 422);

  Json cleared = still;
  cleared["metadata"]["finalizers"] = Json::array();
  EXPECT_EQ(call("PUT", item, cleared.dump()).status, 200);
  EXPECT_EQ(call("GET", item).status, 404);
}

TEST_F(ResourceHandlerTest, GarbageCollectorDeletesDependentsInBackground) {
  Json owner = create(kTaskAgents, taskAgent("owner"));
  Json dependent = configMap("dep");
  dependent["metadata"]["ownerReferences"] = {{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                                               {"kind", "TaskAgent"},
                                               {"name", "owner"},
                                               {"uid", owner["metadata"]["uid"]}}};
  create(kConfigMaps, dependent);
  create(kConfigMaps, configMap("unrelated"));
  Response deleted =
      call("DELETE", std::string(kTaskAgents) + "/owner", R"({"propagationPolicy":"Background"})");
  ASSERT_EQ(deleted.status, 200);
  EXPECT_TRUE(gone(std::string(kConfigMaps) + "/dep"));
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/unrelated").status, 200);
}

TEST_F(ResourceHandlerTest, GarbageCollectorDeletesObjectsWithAbsentOwners) {
  Json dependent = configMap("orphaned");
  dependent["metadata"]["ownerReferences"] = {{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                                               {"kind", "TaskAgent"},
                                               {"name", "never"},
                                               {"uid", "00000000-0000-0000-0000-000000000000"}}};
  create(kConfigMaps, dependent);
  EXPECT_TRUE(gone(std::string(kConfigMaps) + "/orphaned"));
}

TEST_F(ResourceHandlerTest, ForegroundDeletionWaitsForBlockingDependents) {
  Json owner = create(kTaskAgents, taskAgent("fg"));
  Json dependent = configMap("fg-dep");
  dependent["metadata"]["ownerReferences"] = {{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                                               {"kind", "TaskAgent"},
                                               {"name", "fg"},
                                               {"uid", owner["metadata"]["uid"]},
                                               {"blockOwnerDeletion", true}}};
  dependent["metadata"]["finalizers"] = {"example.com/hold"};
  create(kConfigMaps, dependent);
  std::string owner_path = std::string(kTaskAgents) + "/fg";
  Response deleted = call("DELETE", owner_path, R"({"propagationPolicy":"Foreground"})");
  ASSERT_EQ(deleted.status, 202) << deleted.body;
  Json marked = Json::parse(deleted.body);
  EXPECT_NE(std::find(marked["metadata"]["finalizers"].begin(),
                      marked["metadata"]["finalizers"].end(), "foregroundDeletion"),
            marked["metadata"]["finalizers"].end());
  // The dependent is being deleted (held by its own finalizer) and the owner waits for it.
  std::string dep_path = std::string(kConfigMaps) + "/fg-dep";
  ASSERT_TRUE(waitFor([&] { return get(dep_path)["metadata"].contains("deletionTimestamp"); }));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(call("GET", owner_path).status, 200);
  // Releasing the dependent lets both go.
  EXPECT_EQ(call("PATCH", dep_path, R"({"metadata":{"finalizers":null}})", {},
                 "application/merge-patch+json")
                .status,
            200);
  EXPECT_TRUE(gone(dep_path));
  EXPECT_TRUE(gone(owner_path));
}

TEST_F(ResourceHandlerTest, OrphanDeletionKeepsDependentsAndDropsReferences) {
  Json owner = create(kTaskAgents, taskAgent("or"));
  Json dependent = configMap("or-dep");
  dependent["metadata"]["ownerReferences"] = {{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                                               {"kind", "TaskAgent"},
                                               {"name", "or"},
                                               {"uid", owner["metadata"]["uid"]}}};
  create(kConfigMaps, dependent);
  Response deleted =
      call("DELETE", std::string(kTaskAgents) + "/or", R"({"propagationPolicy":"Orphan"})");
  ASSERT_EQ(deleted.status, 200);
  EXPECT_TRUE(gone(std::string(kTaskAgents) + "/or"));
  std::this_thread::sleep_for(200ms);
  Json kept = get(std::string(kConfigMaps) + "/or-dep");
  EXPECT_EQ(kept["metadata"]["name"], "or-dep");
  EXPECT_FALSE(kept["metadata"].contains("ownerReferences"));
}

TEST_F(ResourceHandlerTest, NamespaceDeletionEmptiesThenRemovesNamespace) {
  create(kNamespaces,
         {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "team"}}}});
  Json ns = get("/api/v1/namespaces/team");
  EXPECT_EQ(ns["spec"]["finalizers"], Json::array({"kubernetes"}));
  EXPECT_EQ(ns["status"]["phase"], "Active");
  create("/api/v1/namespaces/team/configmaps", configMap("c1"));
  create("/apis/clrk.apoxy.dev/v1alpha1/namespaces/team/taskagents", taskAgent("t1"));
  Json held = configMap("held");
  held["metadata"]["finalizers"] = {"example.com/hold"};
  create("/api/v1/namespaces/team/configmaps", held);

  Response deleted = call("DELETE", "/api/v1/namespaces/team");
  ASSERT_EQ(deleted.status, 200);
  EXPECT_EQ(Json::parse(deleted.body)["status"]["phase"], "Terminating");

  int status = 0;
  Json forbidden = callJson("POST", "/api/v1/namespaces/team/configmaps", configMap("late"), {},
                            "application/json", &status);
  EXPECT_EQ(status, 403);
  EXPECT_EQ(forbidden["reason"], "Forbidden");
  EXPECT_NE(forbidden["message"].get<std::string>().find("because it is being terminated"),
            std::string::npos);

  EXPECT_TRUE(gone("/api/v1/namespaces/team/configmaps/c1"));
  EXPECT_TRUE(gone("/apis/clrk.apoxy.dev/v1alpha1/namespaces/team/taskagents/t1"));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(call("GET", "/api/v1/namespaces/team").status, 200);  // "held" blocks it
  EXPECT_EQ(call("PATCH", "/api/v1/namespaces/team/configmaps/held",
                 R"({"metadata":{"finalizers":null}})", {}, "application/merge-patch+json")
                .status,
            200);
  EXPECT_TRUE(gone("/api/v1/namespaces/team"));
}

TEST_F(ResourceHandlerTest, DeleteCollectionHonoursSelectors) {
  Json a = configMap("a");
  a["metadata"]["labels"] = {{"app", "x"}};
  Json b = configMap("b");
  b["metadata"]["labels"] = {{"app", "y"}};
  create(kConfigMaps, a);
  create(kConfigMaps, b);
  Response deleted = call("DELETE", kConfigMaps, "", {{"labelSelector", "app=x"}});
  ASSERT_EQ(deleted.status, 200) << deleted.body;
  Json list = Json::parse(deleted.body);
  EXPECT_EQ(list["kind"], "ConfigMapList");
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/a").status, 404);
  EXPECT_EQ(call("GET", std::string(kConfigMaps) + "/b").status, 200);
}

// ---- selectors -------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, ListFiltersByLabelAndFieldSelectors) {
  auto labelled = [&](const std::string& name, Json labels) {
    Json object = configMap(name);
    object["metadata"]["labels"] = std::move(labels);
    create(kConfigMaps, object);
  };
  labelled("web1", {{"app", "web"}, {"env", "prod"}});
  labelled("web2", {{"app", "web"}, {"env", "dev"}});
  labelled("db", {{"app", "db"}});
  auto names = [&](std::vector<std::pair<std::string, std::string>> query) {
    Response response = call("GET", kConfigMaps, "", std::move(query));
    EXPECT_EQ(response.status, 200) << response.body;
    std::vector<std::string> out;
    Json list = Json::parse(response.body);
    for (const auto& item : list["items"]) out.push_back(item["metadata"]["name"]);
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names({{"labelSelector", "app=web"}}), (Names{"web1", "web2"}));
  EXPECT_EQ(names({{"labelSelector", "app==web,env!=prod"}}), (Names{"web2"}));
  EXPECT_EQ(names({{"labelSelector", "env in (prod,qa)"}}), (Names{"web1"}));
  EXPECT_EQ(names({{"labelSelector", "env notin (prod)"}}), (Names{"db", "web2"}));
  EXPECT_EQ(names({{"labelSelector", "env"}}), (Names{"web1", "web2"}));
  EXPECT_EQ(names({{"labelSelector", "!env"}}), (Names{"db"}));
  EXPECT_EQ(names({{"fieldSelector", "metadata.name=db"}}), (Names{"db"}));
  EXPECT_EQ(names({{"fieldSelector", "metadata.namespace=default,metadata.name!=db"}}),
            (Names{"web1", "web2"}));
  // Limits apply to matching items.
  Json page = Json::parse(
      call("GET", kConfigMaps, "", {{"labelSelector", "app=web"}, {"limit", "1"}}).body);
  ASSERT_EQ(page["items"].size(), 1u);
  EXPECT_FALSE(page["metadata"].value("continue", "").empty());
  EXPECT_EQ(call("GET", kConfigMaps, "", {{"labelSelector", "app in web"}}).status, 400);
  Response bad_field = call("GET", kConfigMaps, "", {{"fieldSelector", "spec.x=1"}});
  EXPECT_EQ(bad_field.status, 400);
}

TEST_F(ResourceHandlerTest, EventsSupportInvolvedObjectFieldSelectors) {
  auto event = [&](const std::string& name, const std::string& object_name) {
    Json object = {
        {"apiVersion", "v1"},
        {"kind", "Event"},
        {"metadata", {{"name", name}}},
        {"involvedObject",
         {{"kind", "TaskAgent"}, {"name", object_name}, {"namespace", "default"}, {"uid", "u1"}}},
        {"reason", "Started"},
        {"message", "started"},
        {"type", "Normal"}};
    create("/api/v1/namespaces/default/events", object);
  };
  event("e1", "demo");
  event("e2", "other");
  Response response = call("GET", "/api/v1/namespaces/default/events", "",
                           {{"fieldSelector",
                             "involvedObject.name=demo,involvedObject.namespace=default,"
                             "involvedObject.kind=TaskAgent,involvedObject.uid=u1"},
                            {"limit", "500"}});
  ASSERT_EQ(response.status, 200) << response.body;
  Json list = Json::parse(response.body);
  EXPECT_EQ(list["kind"], "EventList");
  ASSERT_EQ(list["items"].size(), 1u);
  EXPECT_EQ(list["items"][0]["metadata"]["name"], "e1");
}

// ---- tables ----------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, TableOutputForListsAndItems) {
  create(kTaskAgents, taskAgent("t1"));
  Response response = call("GET", kTaskAgents, "", {}, "", kTableAccept);
  ASSERT_EQ(response.status, 200) << response.body;
  Json table = Json::parse(response.body);
  EXPECT_EQ(table["kind"], "Table");
  EXPECT_EQ(table["apiVersion"], "meta.k8s.io/v1");
  ASSERT_GE(table["columnDefinitions"].size(), 2u);
  EXPECT_EQ(table["columnDefinitions"][0]["name"], "Name");
  EXPECT_EQ(table["columnDefinitions"].back()["name"], "Age");
  bool has_image = false;
  size_t image_idx = 0;
  for (size_t idx = 0; idx < table["columnDefinitions"].size(); ++idx) {
    if (table["columnDefinitions"][idx]["name"] == "Image") {
      has_image = true;
      image_idx = idx;
    }
  }
  ASSERT_TRUE(has_image);
  ASSERT_EQ(table["rows"].size(), 1u);
  const Json& row = table["rows"][0];
  EXPECT_EQ(row["cells"][0], "t1");
  EXPECT_EQ(row["cells"][image_idx], "busybox");
  EXPECT_EQ(row["cells"].size(), table["columnDefinitions"].size());
  EXPECT_EQ(row["object"]["kind"], "PartialObjectMetadata");
  EXPECT_EQ(row["object"]["metadata"]["name"], "t1");
  EXPECT_FALSE(row["object"].contains("spec"));

  Json full = Json::parse(
      call("GET", kTaskAgents, "", {{"includeObject", "Object"}}, "", kTableAccept).body);
  EXPECT_EQ(full["rows"][0]["object"]["kind"], "TaskAgent");

  Json one =
      Json::parse(call("GET", std::string(kTaskAgents) + "/t1", "", {}, "", kTableAccept).body);
  EXPECT_EQ(one["kind"], "Table");
  EXPECT_EQ(one["rows"].size(), 1u);
}

TEST_F(ResourceHandlerTest, CoreKindsHaveTheirOwnColumns) {
  Json secret = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"metadata", {{"name", "s"}}},
                 {"data", {{"a", "YQ=="}, {"b", "Yg=="}}}};
  create(kSecrets, secret);
  Json table = Json::parse(call("GET", kSecrets, "", {}, "", kTableAccept).body);
  std::vector<std::string> columns;
  for (const auto& column : table["columnDefinitions"]) columns.push_back(column["name"]);
  EXPECT_EQ(columns, (std::vector<std::string>{"Name", "Type", "Data", "Age"}));
  EXPECT_EQ(table["rows"][0]["cells"][1], "Opaque");
  EXPECT_EQ(table["rows"][0]["cells"][2], 2);

  Json ns_table = Json::parse(call("GET", kNamespaces, "", {}, "", kTableAccept).body);
  EXPECT_EQ(ns_table["columnDefinitions"][1]["name"], "Status");
  EXPECT_EQ(ns_table["rows"][0]["cells"][1], "Active");
}

// ---- watch -----------------------------------------------------------------------------------

TEST_F(ResourceHandlerTest, WatchSendsInitialStateThenChanges) {
  create(kConfigMaps, configMap("before"));
  Response response = call("GET", kConfigMaps, "", {{"watch", "1"}});
  ASSERT_EQ(response.status, 200) << response.body;
  ASSERT_TRUE(response.stream);
  auto initial = readEvents(*response.stream, 1);
  ASSERT_EQ(initial.size(), 1u);
  EXPECT_EQ(initial[0]["type"], "ADDED");
  EXPECT_EQ(initial[0]["object"]["metadata"]["name"], "before");

  create(kConfigMaps, configMap("after"));
  call("PATCH", std::string(kConfigMaps) + "/after", R"({"data":{"k":"v"}})", {},
       "application/merge-patch+json");
  Response deleted = call("DELETE", std::string(kConfigMaps) + "/after");
  auto events = readEvents(*response.stream, 3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0]["type"], "ADDED");
  EXPECT_EQ(events[1]["type"], "MODIFIED");
  EXPECT_EQ(events[1]["object"]["data"]["k"], "v");
  EXPECT_EQ(events[2]["type"], "DELETED");
  EXPECT_GT(std::stoll(events[2]["object"]["metadata"]["resourceVersion"].get<std::string>()),
            std::stoll(events[1]["object"]["metadata"]["resourceVersion"].get<std::string>()));
  response.stream->stop();
  EXPECT_FALSE(response.stream->next(10ms).has_value());
}

TEST_F(ResourceHandlerTest, WatchReplaysFromResourceVersion) {
  Json first = create(kConfigMaps, configMap("c1"));
  create(kConfigMaps, configMap("c2"));
  create(kConfigMaps, configMap("c3"));
  Response response =
      call("GET", kConfigMaps, "",
           {{"watch", "true"}, {"resourceVersion", first["metadata"]["resourceVersion"]}});
  ASSERT_TRUE(response.stream);
  auto events = readEvents(*response.stream, 2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["object"]["metadata"]["name"], "c2");
  EXPECT_EQ(events[1]["object"]["metadata"]["name"], "c3");
  auto more = readEvents(*response.stream, 1, 300ms);
  EXPECT_TRUE(more.empty());
}

TEST_F(ResourceHandlerTest, WatchSendsBookmarks) {
  Json created = create(kConfigMaps, configMap("c1"));
  Response response = call("GET", kConfigMaps, "",
                           {{"watch", "1"},
                            {"allowWatchBookmarks", "true"},
                            {"resourceVersion", created["metadata"]["resourceVersion"]}});
  ASSERT_TRUE(response.stream);
  auto events = readEvents(*response.stream, 1, 2000ms);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["type"], "BOOKMARK");
  const Json& object = events[0]["object"];
  EXPECT_EQ(object["kind"], "ConfigMap");
  EXPECT_EQ(object["apiVersion"], "v1");
  EXPECT_EQ(object["metadata"].size(), 1u);
  EXPECT_EQ(object["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"]);
}

TEST_F(ResourceHandlerTest, WatchFromTooOldResourceVersionSendsExpired) {
  storage::MemoryOptions options;
  options.watch_history = 2;
  startWith(storage::makeMemoryStorage(options));
  for (int idx = 0; idx < 10; ++idx) create(kConfigMaps, configMap("c" + std::to_string(idx)));
  Response response = call("GET", kConfigMaps, "", {{"watch", "1"}, {"resourceVersion", "1"}});
  ASSERT_EQ(response.status, 200);
  ASSERT_TRUE(response.stream);
  auto events = readEvents(*response.stream, 5, 1000ms);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["type"], "ERROR");
  EXPECT_EQ(events[0]["object"]["kind"], "Status");
  EXPECT_EQ(events[0]["object"]["code"], 410);
  EXPECT_EQ(events[0]["object"]["reason"], "Expired");
  EXPECT_FALSE(response.stream->next(10ms).has_value());
}

TEST_F(ResourceHandlerTest, WatchWithSelectorSendsDeletedWhenObjectStopsMatching) {
  Json object = configMap("sel");
  object["metadata"]["labels"] = {{"app", "web"}};
  create(kConfigMaps, object);
  create(kConfigMaps, configMap("plain"));
  Response response = call("GET", kConfigMaps, "", {{"watch", "1"}, {"labelSelector", "app=web"}});
  ASSERT_TRUE(response.stream);
  auto initial = readEvents(*response.stream, 1);
  ASSERT_EQ(initial.size(), 1u);
  EXPECT_EQ(initial[0]["object"]["metadata"]["name"], "sel");

  std::string item = std::string(kConfigMaps) + "/sel";
  call("PATCH", item, R"({"metadata":{"labels":{"app":"db"}}})", {},
       "application/merge-patch+json");
  call("PATCH", std::string(kConfigMaps) + "/plain", R"({"data":{"x":"y"}})", {},
       "application/merge-patch+json");
  call("PATCH", item, R"({"metadata":{"labels":{"app":"web"}}})", {},
       "application/merge-patch+json");
  auto events = readEvents(*response.stream, 2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0]["type"], "DELETED");
  EXPECT_EQ(events[0]["object"]["metadata"]["labels"]["app"], "db");
  EXPECT_EQ(events[1]["type"], "ADDED");
  EXPECT_TRUE(readEvents(*response.stream, 1, 300ms).empty());  // "plain" never matched
}

TEST_F(ResourceHandlerTest, WatchEndsAfterTimeoutSeconds) {
  Response response = call("GET", kConfigMaps, "", {{"watch", "1"}, {"timeoutSeconds", "1"}});
  ASSERT_TRUE(response.stream);
  auto start = std::chrono::steady_clock::now();
  bool ended = false;
  while (std::chrono::steady_clock::now() - start < 5s) {
    if (!response.stream->next(200ms)) {
      ended = true;
      break;
    }
  }
  EXPECT_TRUE(ended);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(ResourceHandlerTest, StopEndsOpenWatches) {
  Response response = call("GET", kConfigMaps, "", {{"watch", "1"}});
  ASSERT_TRUE(response.stream);
  std::thread stopper([&] {
    std::this_thread::sleep_for(100ms);
    handler_->stop();
  });
  auto start = std::chrono::steady_clock::now();
  std::optional<std::vector<std::string>> batch;
  do {
    batch = response.stream->next(2000ms);
  } while (batch.has_value() && std::chrono::steady_clock::now() - start < 5s);
  stopper.join();
  EXPECT_FALSE(batch.has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST_F(ResourceHandlerTest, ConcurrentReadModifyWritesNeverLoseUpdates) {
  create(kConfigMaps, configMap("counter", {{"n", "0"}}));
  std::string item = std::string(kConfigMaps) + "/counter";
  constexpr int kThreads = 4;
  constexpr int kIncrements = 20;
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&] {
      for (int done = 0; done < kIncrements;) {
        Json current = Json::parse(call("GET", item).body);
        int value = std::stoi(current["data"]["n"].get<std::string>());
        current["data"]["n"] = std::to_string(value + 1);
        Response response = call("PUT", item, current.dump());
        if (response.status == 200) {
          ++done;
        } else {
          EXPECT_EQ(response.status, 409) << response.body;
          ++conflicts;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(get(item)["data"]["n"], std::to_string(kThreads * kIncrements));
}

TEST_F(ResourceHandlerTest, StartCreatesDefaultNamespaceIdempotently) {
  EXPECT_EQ(call("GET", "/api/v1/namespaces/default").status, 200);
  handler_->start();
  EXPECT_EQ(get(kNamespaces)["items"].size(), 1u);
}

}  // namespace
}  // namespace clrk::apiserver
