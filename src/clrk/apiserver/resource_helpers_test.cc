#include "clrk/apiserver/label_selector.h"
#include "clrk/apiserver/managed_fields.h"
#include "clrk/apiserver/patch.h"
#include "clrk/apiserver/render.h"

#include <gtest/gtest.h>

namespace clrk::apiserver {
namespace {

using api::Json;

TEST(LabelSelectorTest, ParsesAndMatchesEveryOperator) {
  Json labels = {{"app", "web"}, {"tier", "front"}, {"count", "5"}};
  auto check = [&](const char* text) {
    auto selector = LabelSelector::parse(text);
    EXPECT_TRUE(selector.ok()) << text << ": " << selector.status().toString();
    return selector.ok() && selector->matches(labels);
  };
  EXPECT_TRUE(check("app=web"));
  EXPECT_TRUE(check("app==web"));
  EXPECT_FALSE(check("app!=web"));
  EXPECT_TRUE(check("missing!=x"));
  EXPECT_TRUE(check("app in (web, api)"));
  EXPECT_FALSE(check("app notin (web,api)"));
  EXPECT_TRUE(check("missing notin (web)"));
  EXPECT_FALSE(check("missing in (web)"));
  EXPECT_TRUE(check("tier"));
  EXPECT_FALSE(check("!tier"));
  EXPECT_TRUE(check("!canary"));
  EXPECT_TRUE(check("count>3,count<6"));
  EXPECT_TRUE(check("app=web, tier in (front,back), !canary"));
  EXPECT_FALSE(check("app=web,tier=back"));
  EXPECT_TRUE(check(""));
}

TEST(LabelSelectorTest, RejectsMalformedSelectors) {
  for (const char* text : {"app in web", "app=(", "=x", "a b", "app in (a", "app=x y", "app>z"}) {
    EXPECT_FALSE(LabelSelector::parse(text).ok()) << text;
  }
}

TEST(FieldSelectorTest, MatchesAndRejectsUnknownFields) {
  std::vector<std::string> allowed = {"metadata.name", "metadata.namespace", "involvedObject.kind"};
  auto selector = FieldSelector::parse("metadata.name=x,involvedObject.kind!=Pod", allowed);
  ASSERT_TRUE(selector.ok());
  Json object = {{"metadata", {{"name", "x"}}}, {"involvedObject", {{"kind", "TaskAgent"}}}};
  EXPECT_TRUE(selector->matches(object));
  object["involvedObject"]["kind"] = "Pod";
  EXPECT_FALSE(selector->matches(object));
  auto bad = FieldSelector::parse("spec.foo=x", allowed);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("\"spec.foo\" is not a known field selector"),
            std::string::npos);
}

TEST(RenderTest, SplicesResourceVersionIntoMetadata) {
  Json object = {{"apiVersion", "v1"},
                 {"kind", "Secret"},
                 {"data", {{"resourceVersion", "x"}}},
                 {"metadata",
                  {{"name", "a"},
                   {"annotations", {{"resourceVersion", "1"}}},
                   {"resourceVersion", "old"},
                   {"uid", "u"}}}};
  RenderedObject rendered = renderObject(object);
  Json parsed = Json::parse(rendered.withRevision(42));
  EXPECT_EQ(parsed["metadata"]["resourceVersion"], "42");
  EXPECT_EQ(parsed["metadata"]["annotations"]["resourceVersion"], "1");
  EXPECT_EQ(parsed["data"]["resourceVersion"], "x");
  parsed["metadata"]["resourceVersion"] = "old";
  EXPECT_EQ(parsed, object);
  Json bare = {{"kind", "X"}};
  EXPECT_EQ(Json::parse(renderObject(bare).withRevision(7))["metadata"]["resourceVersion"], "7");
}

TEST(PatchTest, MergeAndJsonPatch) {
  Json target = {{"spec", {{"a", 1}, {"b", 2}}}};
  ASSERT_TRUE(applyMergePatch(target, Json{{"spec", {{"a", nullptr}, {"c", 3}}}}).ok());
  EXPECT_EQ(target, (Json{{"spec", {{"b", 2}, {"c", 3}}}}));
  EXPECT_FALSE(applyMergePatch(target, Json::array()).ok());
  auto patched =
      applyJsonPatch(target, Json::parse(R"([{"op":"replace","path":"/spec/b","value":5}])"));
  ASSERT_TRUE(patched.ok());
  EXPECT_EQ((*patched)["spec"]["b"], 5);
  EXPECT_FALSE(
      applyJsonPatch(target, Json::parse(R"([{"op":"test","path":"/spec/b","value":9}])")).ok());
  EXPECT_FALSE(applyJsonPatch(target, Json::parse(R"([{"op":"remove","path":"/nope"}])")).ok());
  EXPECT_FALSE(applyJsonPatch(target, Json::parse(R"({"op":"add"})")).ok());
}

TEST(ManagedFieldsTest, FieldSetsLeavesAndPaths) {
  auto keyed = std::make_shared<api::Schema>();
  keyed->type = api::SchemaType::Array;
  keyed->list_type = "map";
  keyed->list_map_keys = {"name"};
  auto root = std::make_shared<api::Schema>();
  root->type = api::SchemaType::Object;
  auto spec = std::make_shared<api::Schema>();
  spec->type = api::SchemaType::Object;
  spec->properties = {{"env", keyed}};
  root->properties = {{"spec", spec}};
  Json object = {{"apiVersion", "v1"},
                 {"kind", "X"},
                 {"metadata", {{"name", "a"}, {"labels", {{"app", "web"}}}, {"uid", "u"}}},
                 {"spec", {{"env", {{{"name", "A"}, {"value", "1"}}}}, {"args", {"x", "y"}}}}};
  Json set = fieldSetOf(object, root.get());
  EXPECT_TRUE(set["f:metadata"]["f:labels"].contains("f:app"));
  EXPECT_FALSE(set["f:metadata"].contains("f:name"));
  EXPECT_TRUE(set["f:spec"]["f:env"].contains("k:{\"name\":\"A\"}"));
  EXPECT_TRUE(set["f:spec"]["f:args"].empty());
  auto leaves = fieldLeaves(set);
  EXPECT_EQ(leaves.size(), 4u);  // labels.app, env[A]., env[A].value, args
  FieldPath value_path = {"f:spec", "f:env", "k:{\"name\":\"A\"}", "f:value"};
  ASSERT_NE(valueAtPath(object, value_path), nullptr);
  EXPECT_EQ(*valueAtPath(object, value_path), "1");
  EXPECT_EQ(formatFieldPath(value_path), ".spec.env[name=\"A\"].value");
  EXPECT_TRUE(removeAtPath(object, {"f:spec", "f:env", "k:{\"name\":\"A\"}", "."}));
  EXPECT_TRUE(object["spec"]["env"].empty());
  removeFromSet(set, {"f:metadata", "f:labels", "f:app"});
  EXPECT_FALSE(set.contains("f:metadata"));
}

TEST(ManagedFieldsTest, RecordUpdateMovesOwnership) {
  Json old_object = {{"metadata", {{"name", "a"}}}, {"spec", {{"x", 1}, {"y", 2}}}};
  Json managed =
      recordUpdate(Json(), Json(), old_object, nullptr, {"alice", "Update", "v1", "", "t"});
  ASSERT_EQ(managed.size(), 1u);
  Json new_object = old_object;
  new_object["spec"]["x"] = 5;
  new_object["spec"].erase("y");
  managed =
      recordUpdate(managed, old_object, new_object, nullptr, {"bob", "Update", "v1", "", "t"});
  ASSERT_EQ(managed.size(), 1u);  // alice lost x (changed) and y (removed)
  EXPECT_EQ(managed[0]["manager"], "bob");
  EXPECT_TRUE(managed[0]["fieldsV1"]["f:spec"].contains("f:x"));
}

TEST(ApplyMergeTest, MergesKeyedListsAndReplacesAtomicOnes) {
  auto keyed = std::make_shared<api::Schema>();
  keyed->type = api::SchemaType::Array;
  keyed->list_type = "map";
  keyed->list_map_keys = {"name"};
  auto root = std::make_shared<api::Schema>();
  root->type = api::SchemaType::Object;
  root->properties = {{"env", keyed}};
  Json current = {{"env", {{{"name", "A"}, {"value", "1"}}, {{"name", "B"}, {"value", "2"}}}},
                  {"args", {"a"}},
                  {"keep", true}};
  Json applied = {{"env", {{{"name", "B"}, {"value", "3"}}}}, {"args", {"b"}}};
  Json merged = applyMerge(current, applied, root.get());
  EXPECT_EQ(merged["env"].size(), 2u);
  EXPECT_EQ(merged["env"][1]["value"], "3");
  EXPECT_EQ(merged["args"], Json::array({"b"}));
  EXPECT_EQ(merged["keep"], true);
}

}  // namespace
}  // namespace clrk::apiserver
