#include "clrk/api/generate.h"

#include "clrk/api/codec.h"
#include "clrk/api/core_types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>

namespace clrk::api {
namespace {

using ::testing::HasSubstr;

ResourceType thingType() {
  ResourceType t;
  t.group = "clrk.apoxy.dev";
  t.version = "v1alpha1";
  t.kind = "Thing";
  t.list_kind = "ThingList";
  t.plural = "things";
  t.singular = "thing";
  t.short_names = {"th"};
  t.categories = {"clrk", "all"};
  t.has_status_subresource = true;
  t.printer_columns = {
      {"Image", "string", ".spec.image", "Image.", "", 0},
      {"Ready", "string", ".status.conditions[?(@.type==\"Ready\")].status", "", "", 1}};
  auto fields = objectEnvelope();
  fields.push_back(field(
      "spec",
      obj({
              field("image", str().required().doc("Image to run.")),
              field("cpu", quantity()),
              field("port", intOrString()),
              field("input", anyJson()),
              field("timeout", duration().defaultTo("100s")),
              field("template", obj({}).embeddedResource().preserveUnknownFields()),
              field("env", arr(obj({field("name", str().required())})).listType("map", {"name"})),
              field("labels", mapOf(str())),
          })
          .required()
          .doc("Desired state.")));
  fields.push_back(field("status", obj({field("conditions", conditions())})));
  t.schema = obj(std::move(fields)).doc("A thing.");
  return t;
}

// Structural schema rule: every node has a type unless int-or-string or preserve-unknown-fields.
void expectStructural(const Json& node, const std::string& path) {
  ASSERT_TRUE(node.is_object()) << path;
  bool exempt = node.value("x-kubernetes-int-or-string", false) ||
                node.value("x-kubernetes-preserve-unknown-fields", false);
  EXPECT_TRUE(node.contains("type") || exempt) << path << " has no type";
  if (node.contains("properties")) {
    for (auto it = node["properties"].begin(); it != node["properties"].end(); ++it) {
      expectStructural(it.value(), path + "." + it.key());
    }
  }
  if (node.value("x-kubernetes-list-type", "") == "map") {
    // Kubernetes requires list-map keys to be required or defaulted in the items.
    const Json& items = node["items"];
    for (const auto& key : node["x-kubernetes-list-map-keys"]) {
      bool required = items.contains("required") &&
                      std::find(items["required"].begin(), items["required"].end(), key) !=
                          items["required"].end();
      bool defaulted = items["properties"][key.get<std::string>()].contains("default");
      EXPECT_TRUE(required || defaulted) << path << ": list-map key " << key;
    }
  }
  if (node.contains("x-kubernetes-embedded-resource")) {
    EXPECT_EQ(node["type"], "object") << path;
  }
  if (node.contains("items")) expectStructural(node["items"], path + "[]");
  if (node.contains("additionalProperties")) {
    expectStructural(node["additionalProperties"], path + "{}");
  }
}

TEST(CrdTest, StructureNamesAndColumns) {
  Json crd = crdFor(thingType());
  EXPECT_EQ(crd["apiVersion"], "apiextensions.k8s.io/v1");
  EXPECT_EQ(crd["kind"], "CustomResourceDefinition");
  EXPECT_EQ(crd["metadata"]["name"], "things.clrk.apoxy.dev");
  EXPECT_EQ(crd["spec"]["group"], "clrk.apoxy.dev");
  EXPECT_EQ(crd["spec"]["scope"], "Namespaced");
  const Json& names = crd["spec"]["names"];
  EXPECT_EQ(names["kind"], "Thing");
  EXPECT_EQ(names["listKind"], "ThingList");
  EXPECT_EQ(names["plural"], "things");
  EXPECT_EQ(names["singular"], "thing");
  EXPECT_EQ(names["shortNames"], Json::array({"th"}));
  EXPECT_EQ(names["categories"], Json::array({"clrk", "all"}));
  ASSERT_EQ(crd["spec"]["versions"].size(), 1u);
  const Json& version = crd["spec"]["versions"][0];
  EXPECT_EQ(version["name"], "v1alpha1");
  EXPECT_EQ(version["served"], true);
  EXPECT_EQ(version["storage"], true);
  EXPECT_EQ(version["subresources"], Json::parse(R"({"status": {}})"));
  const Json& columns = version["additionalPrinterColumns"];
  ASSERT_EQ(columns.size(), 3u);
  EXPECT_EQ(columns[0]["jsonPath"], ".spec.image");
  EXPECT_EQ(columns[1]["priority"], 1);
  EXPECT_EQ(columns[2], Json::parse(R"({"name": "Age", "type": "date",
                                         "jsonPath": ".metadata.creationTimestamp"})"));
}

TEST(CrdTest, SchemaIsStructural) {
  Json crd = crdFor(thingType());
  const Json& schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
  expectStructural(schema, "");
  EXPECT_EQ(schema["properties"]["metadata"], Json::parse(R"({"type": "object"})"));
  EXPECT_EQ(schema["required"], Json::array({"spec"}));
  EXPECT_EQ(schema["description"], "A thing.");
  const Json& spec = schema["properties"]["spec"];
  EXPECT_EQ(spec["required"], Json::array({"image"}));
  EXPECT_EQ(spec["properties"]["image"]["description"], "Image to run.");
  EXPECT_EQ(spec["properties"]["cpu"]["x-kubernetes-int-or-string"], true);
  EXPECT_TRUE(spec["properties"]["cpu"].contains("pattern"));
  EXPECT_FALSE(spec["properties"]["cpu"].contains("format"));  // not a Kubernetes format
  EXPECT_EQ(spec["properties"]["port"]["x-kubernetes-int-or-string"], true);
  EXPECT_EQ(spec["properties"]["input"]["x-kubernetes-preserve-unknown-fields"], true);
  EXPECT_EQ(spec["properties"]["timeout"]["default"], "100s");
  EXPECT_EQ(spec["properties"]["timeout"]["format"], "duration");
  EXPECT_EQ(spec["properties"]["template"]["x-kubernetes-embedded-resource"], true);
  EXPECT_EQ(spec["properties"]["template"]["type"], "object");
  EXPECT_EQ(spec["properties"]["env"]["x-kubernetes-list-type"], "map");
  EXPECT_EQ(spec["properties"]["env"]["x-kubernetes-list-map-keys"], Json::array({"name"}));
  EXPECT_EQ(spec["properties"]["labels"]["additionalProperties"]["type"], "string");
  const Json& conditions = schema["properties"]["status"]["properties"]["conditions"];
  EXPECT_EQ(conditions["items"]["properties"]["status"]["enum"],
            Json::array({"True", "False", "Unknown"}));
}

TEST(CrdTest, EveryBuiltinClrkTypeIsStructural) {
  for (const auto& type : Registry::builtin().types()) {
    if (type.group != kGroup) continue;
    Json crd = crdFor(type);
    expectStructural(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], type.kind);
  }
}

TEST(CrdTest, YamlDecodesBackToTheCrd) {
  std::string yaml = crdYaml(thingType());
  EXPECT_THAT(yaml, HasSubstr("kind: CustomResourceDefinition\n"));
  auto docs = decodeManifests(yaml, "crd.yaml");
  ASSERT_TRUE(docs.ok()) << docs.status().message();
  ASSERT_EQ(docs->size(), 1u);
  EXPECT_EQ((*docs)[0].object, crdFor(thingType()));
}

TEST(OpenApiTest, ShapeKubectlNeeds) {
  Registry registry({thingType()});
  Json doc = openApiV3(registry, "clrk.apoxy.dev/v1alpha1");
  EXPECT_EQ(doc["openapi"], "3.0.0");
  const Json& schemas = doc["components"]["schemas"];
  ASSERT_TRUE(schemas.contains("dev.apoxy.clrk.v1alpha1.Thing"));
  ASSERT_TRUE(schemas.contains("dev.apoxy.clrk.v1alpha1.ThingList"));
  EXPECT_EQ(
      schemas["dev.apoxy.clrk.v1alpha1.Thing"]["x-kubernetes-group-version-kind"],
      Json::parse(R"([{"group": "clrk.apoxy.dev", "version": "v1alpha1", "kind": "Thing"}])"));
  const Json& paths = doc["paths"];
  const std::string item = "/apis/clrk.apoxy.dev/v1alpha1/namespaces/{namespace}/things/{name}";
  ASSERT_TRUE(paths.contains(item));
  ASSERT_TRUE(paths.contains("/apis/clrk.apoxy.dev/v1alpha1/namespaces/{namespace}/things"));
  ASSERT_TRUE(paths.contains("/apis/clrk.apoxy.dev/v1alpha1/things"));
  ASSERT_TRUE(paths.contains(item + "/status"));
  for (const char* verb : {"get", "put", "patch", "delete"}) {
    ASSERT_TRUE(paths[item].contains(verb)) << verb;
    EXPECT_EQ(paths[item][verb]["x-kubernetes-group-version-kind"]["kind"], "Thing");
  }
  auto declaresFieldValidation = [](const Json& op) {
    for (const auto& p : op["parameters"]) {
      if (p["name"] == "fieldValidation" && p["in"] == "query") return true;
    }
    return false;
  };
  EXPECT_TRUE(declaresFieldValidation(paths[item]["patch"]));
  EXPECT_TRUE(declaresFieldValidation(paths[item]["put"]));
  EXPECT_TRUE(declaresFieldValidation(
      paths["/apis/clrk.apoxy.dev/v1alpha1/namespaces/{namespace}/things"]["post"]));
  EXPECT_TRUE(
      paths[item]["patch"]["requestBody"]["content"].contains("application/merge-patch+json"));
  EXPECT_TRUE(
      paths[item]["patch"]["requestBody"]["content"].contains("application/apply-patch+yaml"));

  // Every $ref resolves.
  std::function<void(const Json&)> checkRefs = [&](const Json& node) {
    if (node.is_object()) {
      if (node.contains("$ref")) {
        std::string ref = node["$ref"];
        ASSERT_EQ(ref.rfind("#/components/schemas/", 0), 0u) << ref;
        EXPECT_TRUE(schemas.contains(ref.substr(21))) << ref;
      }
      for (const auto& child : node) checkRefs(child);
    } else if (node.is_array()) {
      for (const auto& child : node) checkRefs(child);
    }
  };
  checkRefs(doc);
}

TEST(OpenApiTest, CoreAndCoordinationNamesAndClusterScope) {
  const Registry& registry = Registry::builtin();
  Json core = openApiV3(registry, "v1");
  EXPECT_TRUE(core["components"]["schemas"].contains("io.k8s.api.core.v1.Secret"));
  EXPECT_TRUE(core["components"]["schemas"].contains("io.k8s.api.core.v1.Namespace"));
  EXPECT_TRUE(core["paths"].contains("/api/v1/namespaces/{namespace}/secrets/{name}"));
  EXPECT_TRUE(core["paths"].contains("/api/v1/namespaces/{name}"));
  EXPECT_TRUE(core["paths"].contains("/api/v1/namespaces"));
  EXPECT_TRUE(core["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"]["requestBody"]
                  ["content"]
                      .contains("application/strategic-merge-patch+json"));
  EXPECT_FALSE(core["components"]["schemas"].contains("dev.apoxy.clrk.v1alpha1.TaskAgent"));
  Json coordination = openApiV3(registry, "coordination.k8s.io/v1");
  EXPECT_TRUE(coordination["components"]["schemas"].contains("io.k8s.api.coordination.v1.Lease"));
  EXPECT_TRUE(coordination["paths"].contains(
      "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}"));
  Json clrk = openApiV3(registry, "clrk.apoxy.dev/v1alpha1");
  EXPECT_TRUE(clrk["components"]["schemas"].contains("dev.apoxy.clrk.v1alpha1.TaskAgent"));
  EXPECT_TRUE(openApiV3(registry, "nope/v1")["paths"].empty());
}

TEST(JsonPathTest, PrinterColumnPaths) {
  Json object = Json::parse(R"({
    "metadata": {"name": "x", "annotations": {"example.com/a": "dotted"}},
    "spec": {"a": {"b": 7}, "list": [10, 20, 30]},
    "status": {"conditions": [{"type": "Scheduled", "status": "True"},
                              {"type": "Ready", "status": "False", "n": 2}]}})");
  EXPECT_EQ(evalJsonPath(object, ".spec.a.b"), 7);
  EXPECT_EQ(evalJsonPath(object, "{.spec.a.b}"), 7);
  EXPECT_EQ(evalJsonPath(object, ".status.conditions[0].status"), "True");
  EXPECT_EQ(evalJsonPath(object, ".status.conditions[-1].type"), "Ready");
  EXPECT_EQ(evalJsonPath(object, ".status.conditions[?(@.type==\"Ready\")].status"), "False");
  EXPECT_EQ(evalJsonPath(object, ".status.conditions[?(@.type=='Ready')].status"), "False");
  EXPECT_EQ(evalJsonPath(object, ".status.conditions[?(@.n==2)].type"), "Ready");
  EXPECT_EQ(evalJsonPath(object, ".spec.list[*]"), Json::parse("[10, 20, 30]"));
  EXPECT_EQ(evalJsonPath(object, ".metadata.annotations.example\\.com/a"), "dotted");
  EXPECT_EQ(evalJsonPath(object, ".metadata.annotations['example.com/a']"), "dotted");
  EXPECT_TRUE(evalJsonPath(object, ".status.conditions[?(@.type==\"Gone\")].status").is_null());
  EXPECT_TRUE(evalJsonPath(object, ".spec.missing.deeper").is_null());
  EXPECT_TRUE(evalJsonPath(object, ".spec.list[9]").is_null());
  EXPECT_TRUE(evalJsonPath(object, ".spec.a.b.c").is_null());
  for (const char* junk : {"", ".", "[", "[?(", ".spec[", "[?(@.x==)]", "..", "[99999999999999]"}) {
    EXPECT_NO_THROW((void)evalJsonPath(object, junk)) << junk;
  }
  EXPECT_EQ(evalJsonPath(object, ""), object);
}

}  // namespace
}  // namespace clrk::api
