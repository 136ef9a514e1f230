#include "clrk/api/v1alpha1/types.h"

#include "clrk/api/codec.h"
#include "clrk/api/generate.h"
#include "clrk/api/registry.h"
#include "clrk/api/validation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace clrk::api::v1alpha1 {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::filesystem::path testdataDir() {
  if (const char* root = std::getenv("CLRK_SOURCE_DIR")) {
    auto dir = std::filesystem::path(root) / "src/clrk/api/v1alpha1/testdata";
    if (std::filesystem::is_directory(dir)) return dir;
  }
  return std::filesystem::path(__FILE__).parent_path() / "testdata";
}

std::string readText(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

const ResourceType& kindOf(const std::string& kind) {
  static const std::vector<ResourceType> all = types();
  for (const auto& type : all) {
    if (type.kind == kind) return type;
  }
  ADD_FAILURE() << "no kind " << kind;
  return all.front();
}

// Follows a printer-column JSONPath (".spec.a.b", ".status.conditions[?(...)].status", ".x[0]")
// through the schema; returns the schema reached or nullptr when a step is not declared.
const Schema* resolveJsonPath(const Schema* schema, const std::string& path) {
  size_t i = 0;
  while (schema != nullptr && i < path.size()) {
    if (path[i] == '.') {
      size_t end = i + 1;
      while (end < path.size() && path[end] != '.' && path[end] != '[') ++end;
      std::string name = path.substr(i + 1, end - i - 1);
      if (name.empty()) return nullptr;
      if (schema->type != SchemaType::Object) return nullptr;
      schema = schema->property(name);
      i = end;
    } else if (path[i] == '[') {
      // Any index or filter selects an element of an array.
      int depth = 0;
      size_t end = i;
      for (; end < path.size(); ++end) {
        if (path[end] == '[') ++depth;
        if (path[end] == ']' && --depth == 0) break;
      }
      if (end == path.size() || schema->type != SchemaType::Array) return nullptr;
      schema = schema->items.get();
      i = end + 1;
    } else {
      return nullptr;
    }
  }
  return schema;
}

// Calls `visit(path, schema)` for every node of the tree.
template <typename Visit>
void walk(const Schema& schema, const std::string& path, Visit& visit) {
  visit(path, schema);
  for (const auto& [name, child] : schema.properties) walk(*child, path + "." + name, visit);
  if (schema.items) walk(*schema.items, path + "[]", visit);
  if (schema.additional_properties) walk(*schema.additional_properties, path + "{}", visit);
}

// ---- Structure ---------------------------------------------------------------------------

TEST(V1alpha1TypesTest, DeclaresEveryKindOfTheGroupTaskAgentFirst) {
  std::vector<std::string> kinds;
  for (const auto& type : types()) kinds.push_back(type.kind);
  EXPECT_THAT(
      kinds, ElementsAreArray({"TaskAgent", "DaemonAgent", "AgentSandboxRevision", "WorkerPool",
                               "EgressGateway", "EgressL4Route", "MCPRoute", "AIProviderRoute",
                               "Backend", "CredentialInjectionPolicy", "FallbackRoutingPolicy",
                               "RateLimitPolicy", "LoggingPolicy", "EgressDenyPolicy", "Invocation",
                               "SandboxState", "CLRKConfig"}));
}

TEST(V1alpha1TypesTest, NamesMatchTheReference) {
  struct Expected {
    std::string plural;
    std::string short_name;
    bool status_subresource;
  };
  const std::map<std::string, Expected> expected = {
      {"TaskAgent", {"taskagents", "ta", true}},
      {"DaemonAgent", {"daemonagents", "da", true}},
      {"AgentSandboxRevision", {"agentsandboxrevisions", "asr", true}},
      {"WorkerPool", {"workerpools", "wp", true}},
      {"EgressGateway", {"egressgateways", "egw", true}},
      {"EgressL4Route", {"egressl4routes", "el4r", true}},
      {"MCPRoute", {"mcproutes", "mcpr", true}},
      {"AIProviderRoute", {"aiproviderroutes", "aipr", true}},
      {"Backend", {"backends", "be", true}},
      {"CredentialInjectionPolicy", {"credentialinjectionpolicies", "cip", true}},
      {"FallbackRoutingPolicy", {"fallbackroutingpolicies", "frp", true}},
      {"RateLimitPolicy", {"ratelimitpolicies", "rlp", false}},
      {"LoggingPolicy", {"loggingpolicies", "lp", false}},
      {"EgressDenyPolicy", {"egressdenypolicies", "edp", true}},
      {"Invocation", {"invocations", "inv", false}},
      {"SandboxState", {"sandboxstates", "ss", true}},
      {"CLRKConfig", {"clrkconfigs", "cc", true}},
  };
  for (const auto& type : types()) {
    SCOPED_TRACE(type.kind);
    auto it = expected.find(type.kind);
    ASSERT_NE(it, expected.end());
    EXPECT_EQ(type.group, "clrk.apoxy.dev");
    EXPECT_EQ(type.version, "v1alpha1");
    EXPECT_EQ(type.apiVersion(), "clrk.apoxy.dev/v1alpha1");
    EXPECT_EQ(type.list_kind, type.kind + "List");
    EXPECT_EQ(type.plural, it->second.plural);
    std::string lower = type.kind;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(type.singular, lower);
    EXPECT_THAT(type.short_names, ElementsAreArray({it->second.short_name}));
    EXPECT_TRUE(type.namespaced);
    EXPECT_EQ(type.has_status_subresource, it->second.status_subresource);
    EXPECT_TRUE(type.categories.empty());
  }
}

TEST(V1alpha1TypesTest, NamesAndShortNamesAreUniqueAcrossTheRegistry) {
  std::set<std::string> seen;
  for (const auto& type : Registry::builtin().types()) {
    for (const std::string& name : {type.kind, type.plural, type.singular}) {
      std::string key = type.group + "/" + name;
      EXPECT_TRUE(seen.insert(key).second) << "duplicate " << key;
    }
    for (const auto& s : type.short_names) {
      EXPECT_TRUE(seen.insert("short/" + s).second) << "duplicate short name " << s;
    }
  }
  EXPECT_EQ(Registry::builtin().resolve("ta"),
            Registry::builtin().byKind("clrk.apoxy.dev/v1alpha1", "TaskAgent"));
  ASSERT_NE(Registry::builtin().resolve("egw"), nullptr);
  EXPECT_EQ(Registry::builtin().resolve("egw")->kind, "EgressGateway");
}

TEST(V1alpha1TypesTest, EveryKindHasAnObjectSchemaWithRequiredSpec) {
  for (const auto& type : types()) {
    SCOPED_TRACE(type.kind);
    ASSERT_NE(type.schema, nullptr);
    EXPECT_EQ(type.schema->type, SchemaType::Object);
    EXPECT_FALSE(type.schema->description.empty());
    for (const char* name : {"apiVersion", "kind", "metadata", "spec"}) {
      EXPECT_NE(type.schema->property(name), nullptr) << name;
    }
    EXPECT_THAT(type.schema->required, ::testing::Contains("spec"));
    EXPECT_EQ(type.schema->property("spec")->type, SchemaType::Object);
    EXPECT_EQ(type.schema->property("status") != nullptr,
              type.kind != "RateLimitPolicy" && type.kind != "LoggingPolicy");
  }
}

TEST(V1alpha1TypesTest, PrinterColumnsPointIntoDeclaredFields) {
  const std::set<std::string> column_types = {"string", "integer", "number", "boolean", "date"};
  for (const auto& type : types()) {
    SCOPED_TRACE(type.kind);
    std::set<std::string> names;
    for (const auto& column : type.printer_columns) {
      SCOPED_TRACE(column.name);
      EXPECT_NE(column.name, "Name");
      EXPECT_NE(column.name, "Age");
      EXPECT_TRUE(names.insert(column.name).second);
      EXPECT_TRUE(column_types.count(column.type));
      EXPECT_FALSE(column.description.empty());
      const Schema* target = resolveJsonPath(type.schema.get(), column.json_path);
      ASSERT_NE(target, nullptr) << column.json_path;
      if (column.type == "integer") {
        EXPECT_EQ(target->type, SchemaType::Integer);
      }
      if (column.type == "date") {
        EXPECT_EQ(target->format, "date-time");
      }
      if (column.type == "string") {
        EXPECT_EQ(target->type, SchemaType::String);
      }
    }
  }
}

TEST(V1alpha1TypesTest, TaskAgentColumnsMatchTheReference) {
  const auto& type = kindOf("TaskAgent");
  std::vector<std::string> got;
  for (const auto& c : type.printer_columns) got.push_back(c.name + "=" + c.json_path);
  EXPECT_THAT(got,
              ElementsAreArray({"Image=.spec.template.spec.image", "Pool=.spec.workerPoolRef",
                                "Latest Ready=.status.latestReadyRevisionName",
                                "Active=.status.activeExecutions", "Warm=.status.warmSandboxes",
                                "Schedule=.spec.schedule", "Last Run=.status.lastScheduleTime"}));
}

TEST(V1alpha1TypesTest, SchemasAreWellFormed) {
  for (const auto& type : types()) {
    SCOPED_TRACE(type.kind);
    auto visit = [&](const std::string& path, const Schema& schema) {
      SCOPED_TRACE(path);
      // Every required name is a declared property.
      for (const auto& name : schema.required) EXPECT_NE(schema.property(name), nullptr) << name;
      // Every declared property is documented (kubectl explain shows it).
      for (const auto& [name, child] : schema.properties) {
        EXPECT_FALSE(child->description.empty()) << path << "." << name << " has no doc";
      }
      EXPECT_EQ(schema.items != nullptr, schema.type == SchemaType::Array);
      // Defaults have the field's type and satisfy its enum.
      if (schema.default_value) {
        const Json& value = *schema.default_value;
        switch (schema.type) {
          case SchemaType::String:
            EXPECT_TRUE(value.is_string());
            break;
          case SchemaType::Integer:
            EXPECT_TRUE(value.is_number_integer());
            break;
          case SchemaType::Boolean:
            EXPECT_TRUE(value.is_boolean());
            break;
          default:
            break;
        }
        if (!schema.enum_values.empty()) {
          EXPECT_THAT(schema.enum_values, ::testing::Contains(value));
        }
        if (schema.minimum && value.is_number()) {
          EXPECT_GE(value.get<double>(), *schema.minimum);
        }
        if (schema.maximum && value.is_number()) {
          EXPECT_LE(value.get<double>(), *schema.maximum);
        }
      }
    };
    walk(*type.schema, "", visit);
  }
}

TEST(V1alpha1TypesTest, DeclaresTheReferenceDefaults) {
  struct Case {
    std::string kind;
    std::string path;
    Json value;
  };
  const std::vector<Case> cases = {
      {"TaskAgent", ".spec.timeout", "100s"},
      {"TaskAgent", ".spec.warmPoolSize", 0},
      {"TaskAgent", ".spec.delivery.mode", "Stdin"},
      {"DaemonAgent", ".spec.restartPolicy", "Always"},
      {"WorkerPool", ".spec.replicas", 1},
      {"WorkerPool", ".spec.template.imagePullPolicy", "IfNotPresent"},
      {"WorkerPool", ".spec.template.serviceAccountName", "clrk-worker"},
      {"EgressGateway", ".spec.defaultPolicy", "deny-all"},
      {"EgressGateway", ".spec.listeners[].tls.mode", "Passthrough"},
      {"EgressGateway", ".spec.dns.lookupFamily", "V4Preferred"},
      {"EgressGateway", ".spec.otlp.captureBody.maxBytes", 65536},
      {"MCPRoute", ".spec.rules[].filters[].toolPolicy.rateLimits[].scope", "PerAgent"},
      {"Backend", ".spec.type", "Upstream"},
      {"Backend", ".spec.upstream.port", 443},
      {"CredentialInjectionPolicy", ".spec.secretKey", "token"},
      {"RateLimitPolicy", ".spec.scope", "PerAgent"},
      {"EgressDenyPolicy", ".spec.denyResponse.statusCode", 403},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.kind + c.path);
    const Schema* schema = resolveJsonPath(kindOf(c.kind).schema.get(), c.path);
    ASSERT_NE(schema, nullptr);
    ASSERT_TRUE(schema->default_value.has_value());
    EXPECT_EQ(*schema->default_value, c.value);
  }
}

TEST(V1alpha1TypesTest, RequiredFieldsMatchTheReference) {
  auto required = [](const std::string& kind, const std::string& path) {
    const Schema* schema = resolveJsonPath(kindOf(kind).schema.get(), path);
    EXPECT_NE(schema, nullptr) << kind << path;
    return schema == nullptr ? std::vector<std::string>{} : schema->required;
  };
  using ::testing::UnorderedElementsAreArray;
  EXPECT_THAT(required("TaskAgent", ".spec"),
              UnorderedElementsAreArray({"template", "workerPoolRef"}));
  EXPECT_THAT(required("TaskAgent", ".spec.template"), UnorderedElementsAreArray({"spec"}));
  EXPECT_THAT(required("TaskAgent", ".spec.template.spec"), UnorderedElementsAreArray({"image"}));
  EXPECT_THAT(required("DaemonAgent", ".spec"),
              UnorderedElementsAreArray({"template", "workerPoolRef"}));
  EXPECT_THAT(required("WorkerPool", ".spec"), UnorderedElementsAreArray({"template"}));
  EXPECT_THAT(required("EgressGateway", ".spec"),
              UnorderedElementsAreArray({"defaultPolicy", "listeners"}));
  EXPECT_THAT(required("EgressGateway", ".spec.listeners[]"),
              UnorderedElementsAreArray({"name", "protocol"}));
  EXPECT_THAT(required("AIProviderRoute", ".spec"),
              UnorderedElementsAreArray({"parentRefs", "rules"}));
  EXPECT_THAT(required("AIProviderRoute", ".spec.rules[].matches[]"),
              UnorderedElementsAreArray({"provider"}));
  EXPECT_THAT(required("CredentialInjectionPolicy", ".spec"),
              UnorderedElementsAreArray({"targetRefs", "secretRef", "target"}));
  EXPECT_THAT(required("Backend", ".spec"), UnorderedElementsAreArray({"type", "schema"}));
  EXPECT_THAT(required("RateLimitPolicy", ".spec"),
              UnorderedElementsAreArray({"requests", "window"}));
  EXPECT_THAT(required("Invocation", ".spec"), UnorderedElementsAreArray({"parentRef", "trigger"}));
  EXPECT_THAT(required("EgressL4Route", ".spec.parentRefs[]"), UnorderedElementsAreArray({"name"}));
}

TEST(V1alpha1TypesTest, ScheduleInputKeepsArbitraryJson) {
  const Schema* schema = resolveJsonPath(kindOf("TaskAgent").schema.get(), ".spec.scheduleInput");
  ASSERT_NE(schema, nullptr);
  EXPECT_TRUE(schema->preserve_unknown_fields);
}

// ---- Decoding and validation of manifests (needs the schema engine) -----------------------

// Decodes `yaml` and runs checkDocument on each document; returns one message per failure.
std::vector<std::string> check(const std::string& yaml, std::vector<Document>* out = nullptr) {
  std::vector<std::string> failures;
  auto documents = decodeManifests(yaml, "test.yaml");
  if (!documents.ok()) return {documents.status().toString()};
  for (auto& document : *documents) {
    Status status = checkDocument(Registry::builtin(), document);
    if (!status.ok()) failures.push_back(status.toString());
  }
  if (out != nullptr) *out = std::move(*documents);
  return failures;
}

TEST(V1alpha1ManifestsTest, ReferenceExampleShapesValidate) {
  int files = 0;
  std::set<std::string> kinds_seen;
  for (const auto& entry : std::filesystem::directory_iterator(testdataDir())) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    SCOPED_TRACE(entry.path().filename().string());
    std::vector<Document> documents;
    EXPECT_THAT(check(readText(entry.path()), &documents), ::testing::IsEmpty());
    EXPECT_FALSE(documents.empty());
    for (const auto& d : documents) kinds_seen.insert(d.object.value("kind", ""));
  }
  EXPECT_GE(files, 9);
  // Together the fixtures exercise every kind.
  for (const auto& type : types()) EXPECT_TRUE(kinds_seen.count(type.kind)) << type.kind;
}

TEST(V1alpha1ManifestsTest, MinimalTaskAgentGetsDefaults) {
  std::vector<Document> documents;
  ASSERT_THAT(check(R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata: {name: echo}
spec:
  workerPoolRef: default-workers
  template:
    spec:
      image: busybox
  delivery: {}
)",
                    &documents),
              ::testing::IsEmpty());
  ASSERT_EQ(documents.size(), 1u);
  const Json& spec = documents[0].object["spec"];
  EXPECT_EQ(spec["timeout"], "100s");
  EXPECT_EQ(spec["warmPoolSize"], 0);
  EXPECT_EQ(spec["delivery"]["mode"], "Stdin");
  EXPECT_FALSE(spec.contains("state"));  // absent optional parents are not created
}

TEST(V1alpha1ManifestsTest, OtherKindsGetDefaults) {
  std::vector<Document> documents;
  ASSERT_THAT(check(R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: egw}
spec:
  listeners:
    - {name: egress, protocol: TLS, tls: {}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: WorkerPool
metadata: {name: default}
spec:
  template: {image: clrk/worker:latest}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: Backend
metadata: {name: be}
spec:
  schema: {name: openai}
  upstream: {host: api.openai.com}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: DaemonAgent
metadata: {name: da}
spec:
  workerPoolRef: default
  template: {spec: {image: busybox}}
)",
                    &documents),
              ::testing::IsEmpty());
  ASSERT_EQ(documents.size(), 4u);
  EXPECT_EQ(documents[0].object["spec"]["defaultPolicy"], "deny-all");
  EXPECT_EQ(documents[0].object["spec"]["listeners"][0]["tls"]["mode"], "Passthrough");
  EXPECT_EQ(documents[1].object["spec"]["replicas"], 1);
  EXPECT_EQ(documents[1].object["spec"]["template"]["serviceAccountName"], "clrk-worker");
  EXPECT_EQ(documents[2].object["spec"]["type"], "Upstream");
  EXPECT_EQ(documents[2].object["spec"]["upstream"]["port"], 443);
  EXPECT_EQ(documents[3].object["spec"]["restartPolicy"], "Always");
}

TEST(V1alpha1ManifestsTest, PrinterColumnsShowFixtureValues) {
  // Value of `column_name` for the first `kind` object of fixture `file`, after defaulting.
  auto cell = [](const std::string& file, const std::string& kind,
                 const std::string& column_name) -> Json {
    std::vector<Document> documents;
    EXPECT_THAT(check(readText(testdataDir() / file), &documents), ::testing::IsEmpty());
    for (const auto& d : documents) {
      if (d.object.value("kind", "") != kind) continue;
      for (const auto& column : kindOf(kind).printer_columns) {
        if (column.name == column_name) return evalJsonPath(d.object, column.json_path);
      }
      ADD_FAILURE() << kind << " has no column " << column_name;
      return nullptr;
    }
    ADD_FAILURE() << file << " has no " << kind;
    return nullptr;
  };
  EXPECT_EQ(cell("cron-bot.yaml", "TaskAgent", "Image"), "docker.io/library/busybox:1.36");
  EXPECT_EQ(cell("cron-bot.yaml", "TaskAgent", "Schedule"), "*/1 * * * *");
  EXPECT_EQ(cell("cron-bot.yaml", "TaskAgent", "Pool"), "default");
  EXPECT_EQ(cell("echo-bot.yaml", "DaemonAgent", "Image"), "docker.io/curlimages/curl:8.10.1");
  EXPECT_EQ(cell("system-kinds.yaml", "AgentSandboxRevision", "Ready"), "True");
  EXPECT_EQ(cell("system-kinds.yaml", "AgentSandboxRevision", "Ready Workers"), 1);
  EXPECT_EQ(cell("echo-bot.yaml", "WorkerPool", "Replicas"), 1);
  EXPECT_EQ(cell("echo-bot.yaml", "EgressGateway", "Policy"), "allow-all");
  EXPECT_EQ(cell("fallback-router.yaml", "Backend", "Schema"), "anthropic");
  EXPECT_EQ(cell("echo-bot.yaml", "CredentialInjectionPolicy", "Target"), "Header");
  EXPECT_EQ(cell("policies.yaml", "RateLimitPolicy", "Scope"), "PerAgent");  // defaulted
  EXPECT_EQ(cell("system-kinds.yaml", "Invocation", "ParentName"), "jq-bot");
  EXPECT_EQ(cell("system-kinds.yaml", "CLRKConfig", "Email"), "ops@example.com");
}

TEST(V1alpha1ManifestsTest, CrdsCarryNamesColumnsAndSubresources) {
  for (const auto& type : types()) {
    SCOPED_TRACE(type.kind);
    Json crd = crdFor(type);
    EXPECT_EQ(crd["metadata"]["name"], type.plural + ".clrk.apoxy.dev");
    EXPECT_EQ(crd["spec"]["scope"], "Namespaced");
    EXPECT_EQ(crd["spec"]["names"]["shortNames"], Json(type.short_names));
    const Json& version = crd["spec"]["versions"][0];
    EXPECT_EQ(version.contains("subresources"), type.has_status_subresource);
    EXPECT_EQ(version["additionalPrinterColumns"].size(), type.printer_columns.size() + 1);
    EXPECT_TRUE(version["schema"]["openAPIV3Schema"]["properties"].contains("spec"));
    EXPECT_FALSE(crdYaml(type).empty());
  }
}

// Walks a fixture object alongside its schema and calls `leaf(path, pointer)` for every scalar
// value and `node(path, pointer)` for every object validated field by field (not maps, not
// free-form JSON). Paths use the validator's notation ("spec.env[0].name").
struct FixtureWalker {
  std::vector<std::pair<std::string, Json::json_pointer>> leaves;
  std::vector<std::pair<std::string, Json::json_pointer>> strict_objects;

  void walkValue(const Schema& schema, const Json& value, const std::string& path,
                 const Json::json_pointer& pointer) {
    if (schema.preserve_unknown_fields || schema.type == SchemaType::Any) return;
    if (value.is_object() && schema.type == SchemaType::Object) {
      if (schema.additional_properties) {
        for (const auto& [key, child] : value.items()) {
          walkValue(*schema.additional_properties, child, path + "[" + key + "]", pointer / key);
        }
        return;
      }
      strict_objects.emplace_back(path, pointer);
      for (const auto& [key, child] : value.items()) {
        const Schema* child_schema = schema.property(key);
        if (child_schema == nullptr) continue;
        walkValue(*child_schema, child, path.empty() ? key : path + "." + key, pointer / key);
      }
    } else if (value.is_array() && schema.items) {
      for (size_t i = 0; i < value.size(); ++i) {
        walkValue(*schema.items, value[i], path + "[" + std::to_string(i) + "]", pointer / i);
      }
    } else if (!value.is_structured()) {
      leaves.emplace_back(path, pointer);
    }
  }
};

bool hasErrorAt(const std::vector<FieldError>& errors, const std::string& path) {
  for (const auto& error : errors) {
    if (error.path == path) return true;
  }
  return false;
}

TEST(V1alpha1ManifestsTest, EveryFixtureFieldIsTypeCheckedAndEveryObjectIsStrict) {
  int leaves_checked = 0;
  int objects_checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testdataDir())) {
    if (entry.path().extension() != ".yaml") continue;
    std::vector<Document> documents;
    ASSERT_THAT(check(readText(entry.path()), &documents), ::testing::IsEmpty());
    for (const auto& document : documents) {
      const std::string kind = document.object.value("kind", "");
      SCOPED_TRACE(entry.path().filename().string() + " " + kind);
      const ResourceType& type = kindOf(kind);
      FixtureWalker walker;
      walker.walkValue(*type.schema->property("spec"), document.object["spec"], "spec",
                       Json::json_pointer("/spec"));
      for (const auto& [path, pointer] : walker.leaves) {
        Json mutated = document.object;
        mutated[pointer] = Json::array({Json::array()});  // no scalar field accepts this
        auto errors = validateObject(type, mutated);
        EXPECT_TRUE(hasErrorAt(errors, path)) << "a nested array at " << path << " was accepted";
        ++leaves_checked;
      }
      for (const auto& [path, pointer] : walker.strict_objects) {
        Json mutated = document.object;
        mutated[pointer]["notAField"] = 1;
        auto errors = validateObject(type, mutated);
        EXPECT_TRUE(hasErrorAt(errors, path + ".notAField")) << "unknown field under " << path;
        ++objects_checked;
      }
    }
  }
  EXPECT_GT(leaves_checked, 150);
  EXPECT_GT(objects_checked, 80);
}

struct Mistake {
  std::string name;
  std::string yaml;
  std::string expected;  // substring of the error
};

class V1alpha1MistakesTest : public ::testing::TestWithParam<Mistake> {};

TEST_P(V1alpha1MistakesTest, IsRejectedNamingTheField) {
  auto failures = check(GetParam().yaml);
  ASSERT_EQ(failures.size(), 1u) << GetParam().name;
  EXPECT_THAT(failures[0], HasSubstr(GetParam().expected));
}

std::string taskAgent(const std::string& spec_lines) {
  return "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\nmetadata: {name: t}\nspec:\n" +
         spec_lines;
}

const std::string kTemplate = "  template: {spec: {image: busybox}}\n";

INSTANTIATE_TEST_SUITE_P(
    Mistakes, V1alpha1MistakesTest,
    ::testing::Values(
        Mistake{"UnknownSpecField",
                taskAgent("  workerPoolRef: p\n" + kTemplate + "  timeoutSeconds: 30\n"),
                "spec.timeoutSeconds"},
        Mistake{"WrongEnum",
                taskAgent("  workerPoolRef: p\n" + kTemplate + "  delivery: {mode: Carrier}\n"),
                "spec.delivery.mode"},
        Mistake{"MissingWorkerPoolRef", taskAgent(kTemplate), "spec.workerPoolRef"},
        Mistake{"MissingImage", taskAgent("  workerPoolRef: p\n  template: {spec: {}}\n"),
                "spec.template.spec.image"},
        Mistake{"ImageWithScheme",
                taskAgent("  workerPoolRef: p\n  template: {spec: {image: 'https://x/y'}}\n"),
                "spec.template.spec.image"},
        Mistake{"BadTimeout", taskAgent("  workerPoolRef: p\n" + kTemplate + "  timeout: soon\n"),
                "spec.timeout"},
        Mistake{"NegativeMaxConcurrent",
                taskAgent("  workerPoolRef: p\n" + kTemplate + "  maxConcurrent: -1\n"),
                "spec.maxConcurrent"},
        Mistake{"StringForInteger",
                taskAgent("  workerPoolRef: p\n" + kTemplate + "  warmPoolSize: many\n"),
                "spec.warmPoolSize"},
        Mistake{"MissingSpec",
                "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: TaskAgent\n"
                "metadata: {name: t}\n",
                "spec"},
        Mistake{"NoListeners",
                "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: EgressGateway\nmetadata: {name: g}\n"
                "spec: {listeners: []}\n",
                "spec.listeners"},
        Mistake{"BadListenerProtocol",
                "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: EgressGateway\nmetadata: {name: g}\n"
                "spec: {listeners: [{name: l, protocol: QUIC}]}\n",
                "spec.listeners[0].protocol"},
        Mistake{"OldCredentialPolicyShape",
                "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: CredentialInjectionPolicy\n"
                "metadata: {name: c}\nspec:\n  targetRefs: [{group: clrk.apoxy.dev, kind: "
                "AIProviderRoute, name: r}]\n  secretRef: {name: s}\n  target: Cookie\n",
                "spec.target"},
        Mistake{"BackendPortOutOfRange",
                "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: Backend\nmetadata: {name: b}\n"
                "spec: {schema: {name: openai}, upstream: {host: h, port: 70000}}\n",
                "spec.upstream.port"},
        Mistake{"UnknownMatchField",
                "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: AIProviderRoute\nmetadata: {name: r}\n"
                "spec:\n  parentRefs: [{name: g}]\n  rules: [{matches: [{provider: openai, "
                "model: gpt}]}]\n",
                "spec.rules[0].matches[0].model"}),
    [](const ::testing::TestParamInfo<Mistake>& param_info) { return param_info.param.name; });

}  // namespace
}  // namespace clrk::api::v1alpha1
