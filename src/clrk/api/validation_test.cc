#include "clrk/api/validation.h"

#include "clrk/api/core_types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::api {
namespace {

using ::testing::HasSubstr;

ResourceType widgetType() {
  ResourceType t;
  t.group = "test.clrk.dev";
  t.version = "v1";
  t.kind = "Widget";
  t.list_kind = "WidgetList";
  t.plural = "widgets";
  t.singular = "widget";
  auto fields = objectEnvelope();
  fields.push_back(field(
      "spec", obj({
                      field("image", str().required().minLength(1)),
                      field("replicas", i32().minimum(0).maximum(10).defaultTo(1)),
                      field("ratio", number()),
                      field("mode", str().oneOf({"fast", "slow"}).defaultTo("fast")),
                      field("timeout", duration().defaultTo("100s")),
                      field("startAt", timestamp()),
                      field("blob", str().format("byte")),
                      field("cpu", quantity()),
                      field("port", intOrString()),
                      field("code", str().pattern("^[A-Z]{3}$").maxLength(3)),
                      field("tags", arr(str()).maxItems(2).listType("set")),
                      field("env", arr(obj({field("name", str().required()),
                                            field("value", str().defaultTo("unset"))}))
                                       .listType("map", {"name"})),
                      field("labels", mapOf(obj({field("weight", i64().defaultTo(5))}))),
                      field("input", anyJson()),
                      field("note", str().nullable()),
                      field("template", obj({field("spec", obj({field("x", str())}))})
                                            .embeddedResource()
                                            .preserveUnknownFields()),
                      field("nested",
                            obj({field("deep", obj({field("leaf", boolean().defaultTo(true))}))})),
                  })
                  .required()));
  fields.push_back(field("status", obj({field("conditions", conditions())})));
  t.schema = obj(std::move(fields));
  return t;
}

Json validWidget() {
  return Json::parse(R"({
    "apiVersion": "test.clrk.dev/v1", "kind": "Widget",
    "metadata": {"name": "w1", "namespace": "default", "labels": {"app.kubernetes.io/name": "w"}},
    "spec": {"image": "busybox"}
  })");
}

std::vector<std::string> errorsOf(Json object, UnknownFields mode = UnknownFields::Reject) {
  std::vector<std::string> out;
  for (const auto& error : validateObject(widgetType(), object, mode)) {
    out.push_back(error.toString());
  }
  return out;
}

std::vector<std::string> specErrors(const Json& spec) {
  Json object = validWidget();
  object["spec"].update(spec);
  return errorsOf(object);
}

TEST(ValidationTest, ValidObjectHasNoErrors) {
  EXPECT_THAT(errorsOf(validWidget()), ::testing::IsEmpty());
  Json full = validWidget();
  full["spec"].update(Json::parse(R"({
    "replicas": 3, "ratio": 0.5, "mode": "slow", "timeout": "1h30m",
    "startAt": "2026-01-02T15:04:05Z", "blob": "aGVsbG8=", "cpu": "500m", "port": "http",
    "code": "ABC", "tags": ["a", "b"], "env": [{"name": "A"}, {"name": "B", "value": "x"}],
    "labels": {"x": {"weight": 2}}, "input": {"anything": [1, {"goes": null}]}, "note": null,
    "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "y"},
                 "extra": 1},
    "nested": {"deep": {"leaf": false}}
  })"));
  full["status"] = Json::parse(R"({"conditions": [{"type": "Ready", "status": "True"}]})");
  EXPECT_THAT(errorsOf(full), ::testing::IsEmpty());
}

TEST(ValidationTest, UnknownFieldsAreRejectedWithFullPath) {
  Json object = validWidget();
  object["spec"]["bogus"] = 1;
  object["spec"]["env"] = Json::parse(R"([{"name": "a"}, {"name": "b"}, {"name": "c", "x": 1}])");
  object["top"] = true;
  auto errors = errorsOf(object);
  EXPECT_THAT(errors, ::testing::UnorderedElementsAre("unknown field \"spec.bogus\"",
                                                      "unknown field \"spec.env[2].x\"",
                                                      "unknown field \"top\""));
  std::vector<FieldError> raw = validateObject(widgetType(), object);
  ASSERT_FALSE(raw.empty());
  EXPECT_EQ(raw[0].type, FieldErrorType::Unknown);
}

TEST(ValidationTest, DropPrunesUnknownFieldsLikeTheApiServer) {
  Json object = validWidget();
  object["spec"]["bogus"] = 1;
  object["spec"]["env"] = Json::parse(R"([{"name": "c", "x": 1}])");
  object["spec"]["input"] = Json::parse(R"({"kept": 1})");
  object["spec"]["template"] = Json::parse(R"({"apiVersion": "v1", "kind": "Pod", "kept": 2})");
  object["metadata"]["bogusMeta"] = "x";
  std::vector<FieldError> errors = validateObject(widgetType(), object, UnknownFields::Drop);
  EXPECT_TRUE(errors.empty()) << errors[0].toString();
  EXPECT_FALSE(object["spec"].contains("bogus"));
  EXPECT_FALSE(object["spec"]["env"][0].contains("x"));
  EXPECT_EQ(object["spec"]["input"]["kept"], 1);
  EXPECT_EQ(object["spec"]["template"]["kept"], 2);
  EXPECT_FALSE(object["metadata"].contains("bogusMeta"));
  EXPECT_EQ(object["spec"]["image"], "busybox");
}

TEST(ValidationTest, RequiredFields) {
  Json object = validWidget();
  object["spec"].erase("image");
  EXPECT_THAT(errorsOf(object), ::testing::ElementsAre("spec.image: Required value"));
  object.erase("spec");
  EXPECT_THAT(errorsOf(object), ::testing::ElementsAre("spec: Required value"));
  EXPECT_THAT(specErrors(Json::parse(R"({"env": [{"value": "x"}]})")),
              ::testing::ElementsAre("spec.env[0].name: Required value"));
}

TEST(ValidationTest, TypeMismatches) {
  auto errors = specErrors(Json::parse(R"({"replicas": "three"})"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("spec.replicas: Invalid value: \"three\": must be of type "
                                   "integer"));
  EXPECT_THAT(specErrors(Json::parse(R"({"image": 5})"))[0],
              HasSubstr("spec.image: Invalid value: 5: must be of type string"));
  EXPECT_THAT(specErrors(Json::parse(R"({"tags": "a"})"))[0], HasSubstr("of type array"));
  EXPECT_THAT(specErrors(Json::parse(R"({"nested": []})"))[0], HasSubstr("of type object"));
  EXPECT_THAT(specErrors(Json::parse(R"({"port": true})"))[0],
              HasSubstr("must be of type integer or string"));
  EXPECT_THAT(specErrors(Json::parse(R"({"image": null})"))[0],
              HasSubstr("spec.image: Invalid value: null"));
  std::vector<FieldError> raw;
  Json object = validWidget();
  object["spec"]["ratio"] = "x";
  raw = validateObject(widgetType(), object);
  ASSERT_EQ(raw.size(), 1u);
  EXPECT_EQ(raw[0].type, FieldErrorType::TypeMismatch);
  EXPECT_EQ(raw[0].path, "spec.ratio");
}

TEST(ValidationTest, IntegralFloatsAreIntegers) {
  Json object = validWidget();
  object["spec"]["replicas"] = 3.0;
  EXPECT_THAT(errorsOf(object), ::testing::IsEmpty());
  auto errors = specErrors(Json::parse(R"({"replicas": 3.5})"));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_THAT(errors[0], HasSubstr("spec.replicas: Invalid value: 3.5: must be of type integer"));
  EXPECT_THAT(specErrors(Json::parse(R"({"ratio": 2})")), ::testing::IsEmpty());
}

TEST(ValidationTest, EnumRangeLengthPattern) {
  EXPECT_THAT(specErrors(Json::parse(R"({"mode": "x"})")),
              ::testing::ElementsAre(
                  "spec.mode: Unsupported value: \"x\": supported values: \"fast\", \"slow\""));
  EXPECT_THAT(specErrors(Json::parse(R"({"replicas": -1})")),
              ::testing::ElementsAre(
                  "spec.replicas: Invalid value: -1: must be greater than or equal to 0"));
  EXPECT_THAT(
      specErrors(Json::parse(R"({"replicas": 11})")),
      ::testing::ElementsAre("spec.replicas: Invalid value: 11: must be less than or equal to 10"));
  EXPECT_THAT(
      specErrors(Json::parse(R"({"image": ""})")),
      ::testing::ElementsAre("spec.image: Invalid value: \"\": should be at least 1 chars long"));
  EXPECT_THAT(
      specErrors(Json::parse(R"({"code": "abc"})")),
      ::testing::ElementsAre("spec.code: Invalid value: \"abc\": should match '^[A-Z]{3}$'"));
  auto long_code = specErrors(Json::parse(R"({"code": "ABCD"})"));
  ASSERT_EQ(long_code.size(), 2u);
  EXPECT_EQ(long_code[0], "spec.code: Too long: may not be longer than 3");
  EXPECT_THAT(specErrors(Json::parse(R"({"tags": ["a", "b", "c"]})")),
              ::testing::Contains(HasSubstr("spec.tags: Too many: 3: must have at most 2 items")));
}

TEST(ValidationTest, ListTypeUniqueness) {
  EXPECT_THAT(specErrors(Json::parse(R"({"tags": ["a", "a"]})")),
              ::testing::ElementsAre("spec.tags[1]: Duplicate value: \"a\""));
  EXPECT_THAT(specErrors(Json::parse(R"({"env": [{"name": "A"}, {"name": "B"}, {"name": "A"}]})")),
              ::testing::ElementsAre("spec.env[2]: Duplicate value: {\"name\":\"A\"}"));
  Json object = validWidget();
  object["status"] = Json::parse(
      R"({"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "False"}]})");
  EXPECT_THAT(errorsOf(object), ::testing::ElementsAre(
                                    "status.conditions[1]: Duplicate value: {\"type\":\"Ready\"}"));
}

TEST(ValidationTest, Formats) {
  EXPECT_THAT(specErrors(Json::parse(R"({"timeout": "abc"})")),
              ::testing::ElementsAre(HasSubstr("spec.timeout: Invalid value: \"abc\": must be a "
                                               "duration")));
  EXPECT_THAT(specErrors(Json::parse(R"({"startAt": "yesterday"})")),
              ::testing::ElementsAre(HasSubstr("spec.startAt: Invalid value: \"yesterday\"")));
  for (const char* huge : {"99999999999999999999h", "9223372036854775807h", "1e309s", "-5s"}) {
    EXPECT_THAT(specErrors(Json{{"timeout", huge}}), ::testing::SizeIs(1)) << huge;
  }
  EXPECT_THAT(specErrors(Json::parse(R"({"startAt": "4052-01-02T03:04:05Z"})")),
              ::testing::IsEmpty());
  EXPECT_THAT(specErrors(Json::parse(R"({"startAt": "0001-01-01T00:00:00Z"})")),
              ::testing::IsEmpty());
  EXPECT_THAT(specErrors(Json::parse(R"({"startAt": "2026-13-02T03:04:05Z"})")),
              ::testing::SizeIs(1));
  EXPECT_THAT(specErrors(Json::parse(R"({"blob": "not base64!"})")),
              ::testing::ElementsAre(HasSubstr("must be base64-encoded")));
  EXPECT_THAT(specErrors(Json::parse(R"({"blob": "aGVsbG8"})")),
              ::testing::ElementsAre(HasSubstr("must be base64-encoded")));
  for (const char* good : {"1", "500m", "1Gi", "2.5", "1e3", "+1k", ".5"}) {
    EXPECT_THAT(specErrors(Json{{"cpu", good}}), ::testing::IsEmpty()) << good;
  }
  for (const char* bad : {"1GB", "abc", "", "1.2.3", "1e"}) {
    EXPECT_THAT(specErrors(Json{{"cpu", bad}}), ::testing::SizeIs(1)) << bad;
  }
  EXPECT_THAT(specErrors(Json{{"cpu", 2}}), ::testing::IsEmpty());
  EXPECT_THAT(specErrors(Json{{"cpu", 0.5}}), ::testing::IsEmpty());
  EXPECT_THAT(specErrors(Json::parse(R"({"replicas": 4294967296})")),
              ::testing::Contains(HasSubstr("must fit in a 32-bit signed integer")));
}

TEST(ValidationTest, EmbeddedResourceNeedsApiVersionAndKind) {
  auto errors = specErrors(Json::parse(R"({"template": {"spec": {"x": "y"}}})"));
  EXPECT_THAT(errors, ::testing::UnorderedElementsAre("spec.template.apiVersion: Required value",
                                                      "spec.template.kind: Required value"));
}

TEST(ValidationTest, EnvelopeMustMatchTheType) {
  Json object = validWidget();
  object["apiVersion"] = "test.clrk.dev/v2";
  object["kind"] = "Gadget";
  EXPECT_THAT(errorsOf(object),
              ::testing::UnorderedElementsAre(
                  "apiVersion: Invalid value: \"test.clrk.dev/v2\": must be \"test.clrk.dev/v1\"",
                  "kind: Invalid value: \"Gadget\": must be \"Widget\""));
  object.erase("apiVersion");
  EXPECT_THAT(errorsOf(object), ::testing::Contains("apiVersion: Required value"));
  EXPECT_THAT(errorsOf(Json::array()), ::testing::SizeIs(1));
  EXPECT_THAT(errorsOf(Json("str")), ::testing::SizeIs(1));
}

TEST(ValidationTest, MetadataNameRules) {
  Json object = validWidget();
  object["metadata"].erase("name");
  EXPECT_THAT(errorsOf(object),
              ::testing::ElementsAre("metadata.name: Required value: name or generateName is "
                                     "required"));
  object["metadata"]["generateName"] = "w-";
  EXPECT_THAT(errorsOf(object), ::testing::IsEmpty());
  object["metadata"]["name"] = "Bad_Name";
  EXPECT_THAT(errorsOf(object),
              ::testing::ElementsAre(HasSubstr(
                  "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")));
  object["metadata"]["name"] = "a.b-c.d";
  EXPECT_THAT(errorsOf(object), ::testing::IsEmpty());
  object["metadata"]["name"] = std::string(254, 'a');
  EXPECT_THAT(errorsOf(object), ::testing::SizeIs(1));
  object["metadata"]["name"] = "ok";
  object["metadata"]["namespace"] = "a.b";
  EXPECT_THAT(errorsOf(object),
              ::testing::ElementsAre(HasSubstr("metadata.namespace: Invalid value: \"a.b\"")));
  object["metadata"]["namespace"] = "default";
  object["metadata"]["creationTimestamp"] = nullptr;  // what kubectl --dry-run -o yaml writes
  EXPECT_THAT(errorsOf(object), ::testing::IsEmpty());
  object["metadata"]["bogus"] = 1;
  EXPECT_THAT(errorsOf(object), ::testing::ElementsAre("unknown field \"metadata.bogus\""));
}

TEST(ValidationTest, NamespaceNamesAreLabels) {
  const Registry& registry = Registry::builtin();
  const ResourceType* ns = registry.byKind("v1", "Namespace");
  ASSERT_NE(ns, nullptr);
  Json object = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "a.b"}}}};
  EXPECT_EQ(validateObject(*ns, object).size(), 1u);
  object["metadata"]["name"] = "team-a";
  EXPECT_TRUE(validateObject(*ns, object).empty());
}

TEST(ValidationTest, LabelsAndAnnotations) {
  Json object = validWidget();
  object["metadata"]["labels"] = Json::parse(R"({
    "app.kubernetes.io/name": "ok", "bad key!": "v", "example.com/": "v", "k": "bad value!",
    "long": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "num": 5
  })");
  auto errors = errorsOf(object);
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr("metadata.labels[bad key!]: Invalid value")));
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr("metadata.labels[example.com/]")));
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr(
                          "metadata.labels[k]: Invalid value: \"bad value!\": a valid label")));
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr("metadata.labels[long]: Invalid value")));
  EXPECT_THAT(errors, ::testing::Contains(HasSubstr(
                          "metadata.labels[num]: Invalid value: 5: must be of type string")));
  EXPECT_EQ(errors.size(), 5u);

  object = validWidget();
  object["metadata"]["annotations"] = {{"a", std::string(300 * 1024, 'x')}};
  EXPECT_THAT(errorsOf(object), ::testing::ElementsAre(HasSubstr(
                                    "metadata.annotations: Too long: must have at most 262144")));
  object["metadata"]["annotations"] = {{"kubectl.kubernetes.io/last-applied-configuration", "{}"}};
  EXPECT_THAT(errorsOf(object), ::testing::IsEmpty());
}

TEST(ValidationTest, DefaultsFillRecursively) {
  Json object = validWidget();
  object["spec"]["env"] = Json::parse(R"([{"name": "A"}, {"name": "B", "value": "b"}])");
  object["spec"]["labels"] = Json::parse(R"({"x": {}, "y": {"weight": 1}})");
  object["spec"]["nested"] = Json::object();
  object["spec"]["mode"] = nullptr;  // null of a non-nullable field: pruned, then defaulted
  applyDefaults(widgetType(), object);
  EXPECT_EQ(object["spec"]["replicas"], 1);
  EXPECT_EQ(object["spec"]["mode"], "fast");
  EXPECT_EQ(object["spec"]["timeout"], "100s");
  EXPECT_EQ(object["spec"]["env"][0]["value"], "unset");
  EXPECT_EQ(object["spec"]["env"][1]["value"], "b");
  EXPECT_EQ(object["spec"]["labels"]["x"]["weight"], 5);
  EXPECT_EQ(object["spec"]["labels"]["y"]["weight"], 1);
  EXPECT_FALSE(object["spec"]["nested"].contains("deep"));  // absent objects stay absent
  EXPECT_FALSE(object.contains("status"));
  EXPECT_THAT(errorsOf(object), ::testing::IsEmpty());
}

TEST(ValidationTest, SecretDataMustBeBase64) {
  const ResourceType* secret = Registry::builtin().byKind("v1", "Secret");
  ASSERT_NE(secret, nullptr);
  Json object = Json::parse(R"({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
    "type": "Opaque", "data": {"key": "aGVsbG8=", "bad": "???"}, "stringData": {"x": "plain"}})");
  auto errors = validateObject(*secret, object);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "data[bad]");
  EXPECT_THAT(errors[0].toString(), HasSubstr("must be base64-encoded"));
}

TEST(ValidationTest, NeverThrowsOnArbitraryJson) {
  Json deep = Json::object();
  Json* cursor = &deep;
  for (int i = 0; i < 500; ++i) cursor = &((*cursor)["input"] = Json::object());
  Json object = validWidget();
  object["spec"]["input"] = deep;
  object["spec"]["nested"] = deep;
  EXPECT_NO_THROW((void)errorsOf(object));
  Json bad_utf8 = validWidget();
  bad_utf8["spec"]["mode"] = std::string("\xff\xfe");
  bad_utf8["metadata"]["labels"] = {{std::string("\xff"), std::string("\xc3")}};
  std::vector<std::string> errors;
  EXPECT_NO_THROW(errors = errorsOf(bad_utf8));
  EXPECT_FALSE(errors.empty());
  EXPECT_NO_THROW(applyDefaults(widgetType(), bad_utf8));
}

}  // namespace
}  // namespace clrk::api
