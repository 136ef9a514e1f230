#include "clrk/api/codec.h"

#include "clrk/api/core_types.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::api {
namespace {

using ::testing::HasSubstr;

ResourceType gadgetType() {
  ResourceType t;
  t.group = "test.clrk.dev";
  t.version = "v1";
  t.kind = "Gadget";
  t.list_kind = "GadgetList";
  t.plural = "gadgets";
  t.singular = "gadget";
  auto fields = objectEnvelope();
  fields.push_back(field(
      "spec",
      obj({
              field("image", str().required()),
              field("timeout", duration().defaultTo("100s")),
              field("env", arr(obj({field("name", str().required()), field("value", str())}))),
          })
          .required()));
  t.schema = obj(std::move(fields));
  return t;
}

const Registry& testRegistry() {
  static const Registry registry({gadgetType()});
  return registry;
}

std::vector<Document> decodeOk(std::string_view text) {
  auto result = decodeManifests(text, "test.yaml");
  EXPECT_TRUE(result.ok()) << result.status().message();
  return result.ok() ? std::move(result).value() : std::vector<Document>{};
}

std::string decodeError(std::string_view text) {
  auto result = decodeManifests(text, "bad.yaml");
  EXPECT_FALSE(result.ok());
  if (result.ok()) return {};
  EXPECT_EQ(result.status().code(), Code::InvalidArgument);
  return result.status().message();
}

TEST(DecodeTest, MultiDocumentYamlSkipsEmptyDocuments) {
  auto docs = decodeOk(R"(---
apiVersion: v1
kind: ConfigMap
metadata: {name: a}
---
---
# only a comment
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: b
)");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].object["metadata"]["name"], "a");
  EXPECT_EQ(docs[0].index, 0);
  EXPECT_EQ(docs[0].line, 2);
  EXPECT_EQ(docs[1].object["metadata"]["name"], "b");
  EXPECT_EQ(docs[1].index, 3);
  EXPECT_EQ(docs[1].source, "test.yaml");
  EXPECT_TRUE(decodeOk("").empty());
  EXPECT_TRUE(decodeOk("---\n").empty());
  EXPECT_TRUE(decodeOk("---\n---\n...\n").empty());
}

TEST(DecodeTest, ScalarsMapToJsonTypesLikeKubernetes) {
  auto docs = decodeOk(R"(
a: true
b: False
c: null
d: ~
e:
f: 42
g: -7
h: 0x1f
i: 0o17
j: 1.5
k: 1e3
l: "42"
m: 'true'
n: yes
o: !!str 12
p: 12345678901234567890
q: 123456789012345678901234567890
r: .inf
s: 1.0
t: "multi\nline"
)");
  ASSERT_EQ(docs.size(), 1u);
  const Json& o = docs[0].object;
  EXPECT_EQ(o["a"], true);
  EXPECT_EQ(o["b"], false);
  EXPECT_TRUE(o["c"].is_null());
  EXPECT_TRUE(o["d"].is_null());
  EXPECT_TRUE(o["e"].is_null());
  EXPECT_TRUE(o["f"].is_number_integer());
  EXPECT_EQ(o["f"], 42);
  EXPECT_EQ(o["g"], -7);
  EXPECT_EQ(o["h"], 31);
  EXPECT_EQ(o["i"], 15);
  EXPECT_TRUE(o["j"].is_number_float());
  EXPECT_EQ(o["k"], 1000.0);
  EXPECT_EQ(o["l"], "42");
  EXPECT_EQ(o["m"], "true");
  EXPECT_EQ(o["n"], "yes");  // YAML 1.2: only true/false are booleans
  EXPECT_EQ(o["o"], "12");
  EXPECT_TRUE(o["p"].is_number_unsigned());
  EXPECT_TRUE(o["q"].is_number_float());
  EXPECT_EQ(o["r"], ".inf");
  EXPECT_TRUE(o["s"].is_number_float());
  EXPECT_EQ(o["t"], "multi\nline");
}

TEST(DecodeTest, JsonInputIsYaml) {
  auto docs = decodeOk(R"({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j"},
    "data": {"x": "1", "n": 1, "u": "\u00e9"}})");
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].object["data"]["x"], "1");
  EXPECT_EQ(docs[0].object["data"]["n"], 1);
  EXPECT_EQ(docs[0].object["data"]["u"], "\xc3\xa9");
}

TEST(DecodeTest, ListKindsExpandIntoItems) {
  auto docs = decodeOk(R"(apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: one
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: two
    bogus: 1
)");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0].object["metadata"]["name"], "one");
  EXPECT_EQ(docs[1].object["metadata"]["name"], "two");
  EXPECT_EQ(docs[0].line, 4);
  EXPECT_EQ(docs[1].line, 8);
  // Line numbers are rebased onto the item.
  ASSERT_TRUE(docs[1].field_lines.count("metadata.bogus"));
  EXPECT_EQ(docs[1].field_lines.at("metadata.bogus"), 12);
}

TEST(DecodeTest, AnchorsAliasesAndMergeKeys) {
  auto docs = decodeOk(R"(
defaults: &defaults
  image: busybox
  timeout: 5s
one:
  <<: *defaults
  timeout: 10s
list: [&x 1, *x, *x]
)");
  ASSERT_EQ(docs.size(), 1u);
  const Json& o = docs[0].object;
  EXPECT_EQ(o["one"]["image"], "busybox");
  EXPECT_EQ(o["one"]["timeout"], "10s");
  EXPECT_EQ(o["list"], Json::parse("[1,1,1]"));
}

TEST(DecodeTest, AliasBombsAreBounded) {
  std::string bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n";
  for (char c = 'b'; c <= 'k'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) bomb += std::string(i ? "," : "") + "*" + static_cast<char>(c - 1);
    bomb += "]\n";
  }
  EXPECT_THAT(decodeError(bomb), HasSubstr("document too large"));
}

TEST(DecodeTest, DuplicateKeysAreErrorsNamingTheKey) {
  std::string error =
      decodeError("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n");
  EXPECT_THAT(error, HasSubstr("bad.yaml: document 1: line 5"));
  EXPECT_THAT(error, HasSubstr("duplicate key \"name\""));
}

TEST(DecodeTest, SyntaxErrorsNameDocumentLineAndColumn) {
  std::string error = decodeError("a: 1\n---\nb: [1, 2\n");
  EXPECT_THAT(error, HasSubstr("bad.yaml: document 2: line"));
  error = decodeError("apiVersion: v1\nkind: ConfigMap\nmetadata:\n\tname: tabbed\n");
  EXPECT_THAT(error, HasSubstr("bad.yaml: document 1: line"));
  EXPECT_THAT(error, HasSubstr("tabs"));
  EXPECT_THAT(decodeError("key: [a\n  b: c: d\n"), HasSubstr("bad.yaml: document 1"));
}

TEST(DecodeTest, StrayCommaAfterTopLevelFlowValueIsAnErrorNotAHang) {
  // yaml-cpp 0.7 alone loops forever on these.
  for (const char* text : {"{\"\"},", "[1],\nb: 2", "\"x\",", "[1]\n,", "{a: 1} ,",
                           "{\"a\": \"x\"},\n \"b\": {\"k\": \"T\",e\": \"d\"n}_s:k,"}) {
    EXPECT_THAT(decodeError(text), HasSubstr("bad.yaml: document")) << text;
  }
  EXPECT_EQ(decodeOk("a: 1\n---\n---\nb: 2\n---\n").size(), 2u);
}

TEST(DecodeTest, InvalidUtf8IsRejectedWithItsLine) {
  EXPECT_THAT(decodeError("a: 1\nb: \xff\xfe\n"),
              HasSubstr("bad.yaml: line 2: input is not valid UTF-8"));
  EXPECT_THAT(decodeError("a: \xc3"), HasSubstr("not valid UTF-8"));
  EXPECT_THAT(decodeError("a: \xed\xa0\x80\n"), HasSubstr("not valid UTF-8"));  // surrogate
  EXPECT_EQ(decodeOk("a: \"caf\xc3\xa9 \xf0\x9f\x98\x80\"\n").size(), 1u);
}

TEST(DecodeTest, NonMappingDocumentsAreRejected) {
  EXPECT_THAT(decodeError("- a\n- b\n"), HasSubstr("expected a mapping"));
  EXPECT_THAT(decodeError("just a string\n"), HasSubstr("expected a mapping"));
  EXPECT_THAT(decodeError("? [a, b]\n: c\n"), HasSubstr("mapping keys must be strings"));
}

TEST(DecodeTest, InputBounds) {
  EXPECT_THAT(decodeError(std::string(16 * 1024 * 1024 + 1, ' ')), HasSubstr("16 MiB"));
  std::string deep = "a: " + std::string(150, '[') + std::string(150, ']') + "\n";
  EXPECT_THAT(decodeError(deep), HasSubstr("nesting deeper than 100"));
  std::string very_deep(100000, '[');
  EXPECT_FALSE(decodeManifests(very_deep, "x").ok());
  std::string ok = "a: " + std::string(90, '[') + std::string(90, ']') + "\n";
  EXPECT_EQ(decodeOk(ok).size(), 1u);
}

TEST(CheckDocumentTest, AcceptsValidAndAppliesDefaults) {
  auto docs = decodeOk(R"(apiVersion: test.clrk.dev/v1
kind: Gadget
metadata:
  name: g
spec:
  image: busybox
)");
  ASSERT_EQ(docs.size(), 1u);
  Status status = checkDocument(testRegistry(), docs[0]);
  EXPECT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(docs[0].object["spec"]["timeout"], "100s");
}

TEST(CheckDocumentTest, ReportsEveryErrorWithLines) {
  auto docs = decodeOk(R"(apiVersion: test.clrk.dev/v1
kind: Gadget
metadata:
  name: echo
---
apiVersion: test.clrk.dev/v1
kind: Gadget
metadata:
  name: echo
  labels:
    "bad key!": x
spec:
  timeout: abc
  bogus: 1
  env:
  - name: a
  - value: b
)");
  ASSERT_EQ(docs.size(), 2u);
  Status first = checkDocument(testRegistry(), docs[0]);
  EXPECT_EQ(first.message(),
            "test.yaml: document 1 (Gadget \"echo\"): line 1: spec: Required value");
  Status second = checkDocument(testRegistry(), docs[1]);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.code(), Code::InvalidArgument);
  const std::string& message = second.message();
  EXPECT_THAT(message, HasSubstr("test.yaml: document 2 (Gadget \"echo\"): line 13: spec.timeout: "
                                 "Invalid value: \"abc\": must be a duration"));
  EXPECT_THAT(message, HasSubstr("test.yaml: document 2 (Gadget \"echo\"): line 14: unknown field "
                                 "\"spec.bogus\""));
  EXPECT_THAT(message, HasSubstr("line 17: spec.env[1].name: Required value"));
  EXPECT_THAT(message, HasSubstr("line 12: spec.image: Required value"));
  EXPECT_THAT(message, HasSubstr("line 11: metadata.labels[bad key!]: Invalid value"));
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 4);
}

TEST(CheckDocumentTest, UnknownKindsAndMissingTypeInfo) {
  auto docs = decodeOk("apiVersion: clrk.apoxy.dev/v1alpha1\nkind: Foo\nmetadata: {name: x}\n");
  Status status = checkDocument(testRegistry(), docs[0]);
  EXPECT_THAT(status.message(),
              HasSubstr("no kind \"Foo\" is registered for version \"clrk.apoxy.dev/v1alpha1\""));
  docs = decodeOk("apiVersion: test.clrk.dev/v2\nkind: Gadget\nmetadata: {name: x}\n");
  EXPECT_THAT(checkDocument(testRegistry(), docs[0]).message(),
              HasSubstr("(did you mean apiVersion \"test.clrk.dev/v1\"?)"));
  docs = decodeOk("metadata: {name: x}\n");
  EXPECT_THAT(checkDocument(testRegistry(), docs[0]).message(),
              HasSubstr("apiVersion and kind are required"));
}

TEST(CheckDocumentTest, BuiltinCoreKinds) {
  auto docs = decodeOk(R"(apiVersion: v1
kind: Secret
metadata: {name: openai, namespace: default}
type: Opaque
data: {key: c2stdGVzdA==}
stringData: {plain: hello}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: kube-system}
spec: {holderIdentity: a, leaseDurationSeconds: 15, renewTime: "2026-11-25T03:56:34.123456Z"}
---
apiVersion: v1
kind: Event
metadata: {name: demo.1, namespace: default}
involvedObject: {kind: TaskAgent, name: demo, namespace: default}
reason: Started
message: hi
type: Normal
count: 1
source: {component: clrk}
firstTimestamp: "2026-11-25T03:56:34Z"
reportingComponent: clrk
)");
  ASSERT_EQ(docs.size(), 3u);
  for (auto& doc : docs) {
    Status status = checkDocument(Registry::builtin(), doc);
    EXPECT_TRUE(status.ok()) << status.message();
  }
}

TEST(ToYamlTest, RendersBlockStyleAndQuotesAmbiguousStrings) {
  Json value = Json::parse(R"({"apiVersion": "v1", "kind": "ConfigMap",
    "metadata": {"name": "x", "labels": {}},
    "data": {"t": "true", "n": "123", "e": "", "s": "plain text", "c": "a: b", "h": "#x",
             "ml": "one\ntwo", "y": "yes", "null": null, "f": 1.5, "i": 3, "b": false},
    "list": [1, "two", {"a": 1, "b": [ ]}, [3, 4], {}]})");
  std::string yaml = toYaml(value);
  EXPECT_THAT(yaml, HasSubstr("apiVersion: v1\ndata:\n  b: false\n"));
  EXPECT_THAT(yaml, HasSubstr("\nkind: ConfigMap\n"));
  EXPECT_THAT(yaml, HasSubstr("  t: \"true\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  \"n\": \"123\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  e: \"\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  s: plain text\n"));
  EXPECT_THAT(yaml, HasSubstr("  c: \"a: b\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  ml: \"one\\ntwo\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  \"y\": \"yes\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  \"null\": null\n"));
  EXPECT_THAT(yaml, HasSubstr("  labels: {}\n"));
  EXPECT_THAT(yaml, HasSubstr("list:\n- 1\n- two\n- a: 1\n  b: []\n-\n  - 3\n  - 4\n- {}\n"));
  value["long"] = {{std::string(2000, 'k'), {{"a", 1}}}};
  value["list"].push_back({{std::string(1500, 'q'), "v"}, {"b", 2}});
  yaml = toYaml(value);
  // What toYaml renders decodes back to the same JSON.
  auto docs = decodeOk(yaml);
  ASSERT_EQ(docs.size(), 1u);
  EXPECT_EQ(docs[0].object, value);
}

}  // namespace
}  // namespace clrk::api
