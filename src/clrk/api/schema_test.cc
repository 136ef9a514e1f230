#include "clrk/api/schema.h"

#include "clrk/api/registry.h"

#include <gtest/gtest.h>

namespace clrk::api {
namespace {

TEST(SchemaTest, ObjCollectsRequiredInDeclarationOrder) {
  SchemaConstSharedPtr schema = obj({
      field("b", str().required()),
      field("a", i32()),
      field("c", boolean().required()),
  });
  ASSERT_EQ(schema->type, SchemaType::Object);
  ASSERT_EQ(schema->properties.size(), 3u);
  EXPECT_EQ(schema->properties[0].first, "b");
  EXPECT_EQ(schema->properties[1].first, "a");
  EXPECT_EQ(schema->required, (std::vector<std::string>{"b", "c"}));
  ASSERT_NE(schema->property("a"), nullptr);
  EXPECT_EQ(schema->property("a")->format, "int32");
  EXPECT_EQ(schema->property("zzz"), nullptr);
}

TEST(SchemaTest, BuildersSetTypesAndFormats) {
  EXPECT_EQ(i64().build()->format, "int64");
  EXPECT_EQ(quantity().build()->type, SchemaType::IntOrString);
  EXPECT_EQ(quantity().build()->format, "quantity");
  EXPECT_EQ(duration().build()->format, "duration");
  EXPECT_EQ(timestamp().build()->format, "date-time");
  EXPECT_TRUE(anyJson().build()->preserve_unknown_fields);
  SchemaConstSharedPtr map = mapOf(str());
  EXPECT_EQ(map->type, SchemaType::Object);
  ASSERT_TRUE(map->additional_properties);
  EXPECT_EQ(map->additional_properties->type, SchemaType::String);
  SchemaConstSharedPtr list = arr(i32());
  ASSERT_TRUE(list->items);
  EXPECT_EQ(list->items->type, SchemaType::Integer);
}

TEST(SchemaTest, ConditionsIsAListMapKeyedByType) {
  SchemaConstSharedPtr schema = conditions();
  EXPECT_EQ(schema->type, SchemaType::Array);
  EXPECT_EQ(schema->list_type, "map");
  EXPECT_EQ(schema->list_map_keys, (std::vector<std::string>{"type"}));
  ASSERT_TRUE(schema->items);
  EXPECT_EQ(schema->items->required, (std::vector<std::string>{"type", "status"}));
  EXPECT_EQ(schema->items->property("status")->enum_values.size(), 3u);
}

TEST(SchemaTest, LocalObjectReferenceRequiresName) {
  SchemaConstSharedPtr schema = localObjectReference();
  EXPECT_EQ(schema->required, (std::vector<std::string>{"name"}));
}

TEST(RegistryTest, BuiltinHasCoreAndClrkKinds) {
  const Registry& registry = Registry::builtin();
  ASSERT_NE(registry.byKind("clrk.apoxy.dev/v1alpha1", "TaskAgent"), nullptr);
  const ResourceType* ns = registry.byKind("v1", "Namespace");
  ASSERT_NE(ns, nullptr);
  EXPECT_FALSE(ns->namespaced);
  EXPECT_NE(registry.byKind("v1", "Secret"), nullptr);
  EXPECT_NE(registry.byKind("v1", "ConfigMap"), nullptr);
  EXPECT_NE(registry.byKind("v1", "Event"), nullptr);
  EXPECT_NE(registry.byKind("coordination.k8s.io/v1", "Lease"), nullptr);
  EXPECT_EQ(registry.byKind("v1", "TaskAgent"), nullptr);
  EXPECT_EQ(registry.byPlural("", "v1", "secrets")->kind, "Secret");
  EXPECT_EQ(registry.byPlural("coordination.k8s.io", "v1", "leases")->kind, "Lease");
  EXPECT_EQ(registry.byPlural("", "v1", "leases"), nullptr);
}

TEST(RegistryTest, ResolveAcceptsWhatCliUsersType) {
  const Registry& registry = Registry::builtin();
  for (const char* name :
       {"ta", "TA", "taskagent", "taskagents", "TaskAgent", "taskagents.clrk.apoxy.dev",
        "ta.clrk.apoxy.dev", "taskagents.v1alpha1.clrk.apoxy.dev"}) {
    const ResourceType* type = registry.resolve(name);
    ASSERT_NE(type, nullptr) << name;
    EXPECT_EQ(type->kind, "TaskAgent") << name;
  }
  EXPECT_EQ(registry.resolve("ns")->kind, "Namespace");
  EXPECT_EQ(registry.resolve("ev")->kind, "Event");
  EXPECT_EQ(registry.resolve("leases.coordination.k8s.io")->kind, "Lease");
  EXPECT_EQ(registry.resolve("secrets")->kind, "Secret");
  EXPECT_EQ(registry.resolve("taskagents.example.com"), nullptr);
  EXPECT_EQ(registry.resolve("nope"), nullptr);
  EXPECT_EQ(registry.resolve(""), nullptr);
}

TEST(RegistryTest, GroupVersionsPutCoreFirstWithoutDuplicates) {
  std::vector<std::string> gvs = Registry::builtin().groupVersions();
  ASSERT_FALSE(gvs.empty());
  EXPECT_EQ(gvs[0], "v1");
  EXPECT_EQ(std::count(gvs.begin(), gvs.end(), "clrk.apoxy.dev/v1alpha1"), 1);
  EXPECT_EQ(std::count(gvs.begin(), gvs.end(), "coordination.k8s.io/v1"), 1);
  EXPECT_EQ(std::count(gvs.begin(), gvs.end(), "v1"), 1);
}

TEST(RegistryTest, QualifiedNames) {
  const Registry& registry = Registry::builtin();
  EXPECT_EQ(registry.resolve("ta")->qualifiedName(), "taskagents.clrk.apoxy.dev");
  EXPECT_EQ(registry.resolve("ta")->apiVersion(), "clrk.apoxy.dev/v1alpha1");
  EXPECT_EQ(registry.resolve("secret")->qualifiedName(), "secrets");
  EXPECT_EQ(registry.resolve("secret")->apiVersion(), "v1");
}

}  // namespace
}  // namespace clrk::api
