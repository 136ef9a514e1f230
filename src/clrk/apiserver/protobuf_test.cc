#include "clrk/apiserver/protobuf.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace clrk::apiserver {
namespace {

using Json = nlohmann::json;

// Bodies captured from the real kubectl v1.32 (`kubectl create ...` against a logging server).
// kubectl create secret generic s --from-literal=api-key=sk-1
constexpr unsigned char kKubectlSecret[] = {
    0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0c, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x06, 0x53, 0x65, 0x63, 0x72,
    0x65, 0x74, 0x12, 0x26, 0x0a, 0x11, 0x0a, 0x01, 0x73, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a,
    0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x0f, 0x0a, 0x07, 0x61, 0x70, 0x69, 0x2d, 0x6b,
    0x65, 0x79, 0x12, 0x04, 0x73, 0x6b, 0x2d, 0x31, 0x1a, 0x00, 0x1a, 0x00, 0x22, 0x00};
// kubectl create configmap c --from-literal=a=b --from-file=bin=<file holding ff 00 01>
constexpr unsigned char kKubectlConfigMap[] = {
    0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x43, 0x6f,
    0x6e, 0x66, 0x69, 0x67, 0x4d, 0x61, 0x70, 0x12, 0x27, 0x0a, 0x11, 0x0a, 0x01, 0x63,
    0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00,
    0x12, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x62, 0x1a, 0x0a, 0x0a, 0x03, 0x62, 0x69,
    0x6e, 0x12, 0x03, 0xff, 0x00, 0x01, 0x1a, 0x00, 0x22, 0x00};
// kubectl create namespace ns1
constexpr unsigned char kKubectlNamespace[] = {
    0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x4e, 0x61,
    0x6d, 0x65, 0x73, 0x70, 0x61, 0x63, 0x65, 0x12, 0x1b, 0x0a, 0x13, 0x0a, 0x03, 0x6e,
    0x73, 0x31, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00,
    0x42, 0x00, 0x12, 0x00, 0x1a, 0x02, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00};

template <size_t N>
std::string_view bytesOf(const unsigned char (&data)[N]) {
  return {reinterpret_cast<const char*>(data), N};
}

// A tiny protobuf encoder for building test inputs.
std::string varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
  return out;
}
std::string tag(uint32_t number, int wire_type) {
  return varint((static_cast<uint64_t>(number) << 3) | static_cast<uint64_t>(wire_type));
}
std::string bytesField(uint32_t number, std::string_view payload) {
  return tag(number, 2) + varint(payload.size()) + std::string(payload);
}
std::string varintField(uint32_t number, uint64_t value) { return tag(number, 0) + varint(value); }
std::string mapEntry(uint32_t number, std::string_view key, std::string_view value) {
  return bytesField(number, bytesField(1, key) + bytesField(2, value));
}
std::string envelope(std::string_view api_version, std::string_view kind, std::string_view raw) {
  return std::string(kKubernetesProtobufMagic) +
         bytesField(1, bytesField(1, api_version) + bytesField(2, kind)) + bytesField(2, raw) +
         bytesField(3, "") + bytesField(4, "");
}

Result<Json> decode(std::string_view body) {
  auto env = readProtobufEnvelope(body);
  if (!env.ok()) return env.status();
  return decodeProtobufObject(*env);
}

TEST(ProtobufTest, DecodesKubectlSecret) {
  auto object = decode(bytesOf(kKubectlSecret));
  ASSERT_TRUE(object.ok()) << object.status().toString();
  EXPECT_EQ(*object, Json::parse(R"({"apiVersion":"v1","kind":"Secret",
      "metadata":{"name":"s"},"data":{"api-key":"c2stMQ=="}})"));
}

TEST(ProtobufTest, DecodesKubectlConfigMapWithBinaryData) {
  auto object = decode(bytesOf(kKubectlConfigMap));
  ASSERT_TRUE(object.ok()) << object.status().toString();
  EXPECT_EQ(*object, Json::parse(R"({"apiVersion":"v1","kind":"ConfigMap",
      "metadata":{"name":"c"},"data":{"a":"b"},"binaryData":{"bin":"/wAB"}})"));
}

TEST(ProtobufTest, DecodesKubectlNamespace) {
  auto object = decode(bytesOf(kKubectlNamespace));
  ASSERT_TRUE(object.ok()) << object.status().toString();
  EXPECT_EQ(*object, Json::parse(R"({"apiVersion":"v1","kind":"Namespace",
      "metadata":{"name":"ns1"},"spec":{},"status":{}})"));
}

TEST(ProtobufTest, DecodesEveryObjectMetaField) {
  std::string owner = bytesField(1, "WorkerPool") + bytesField(3, "pool") + bytesField(4, "u-1") +
                      bytesField(5, "clrk.dev/v1alpha1") + varintField(6, 1) + varintField(7, 0);
  std::string meta =
      bytesField(1, "n") + bytesField(2, "gen-") + bytesField(3, "team") + bytesField(4, "/x") +
      bytesField(5, "uid-9") + bytesField(6, "42") + varintField(7, 3) +
      bytesField(8, varintField(1, 1700000000) + varintField(2, 5)) +
      bytesField(9, varintField(1, static_cast<uint64_t>(-1))) +
      varintField(10, static_cast<uint64_t>(int64_t{-30})) + mapEntry(11, "app", "web") +
      mapEntry(11, "tier", "") + mapEntry(12, "note", "hi") + bytesField(13, owner) +
      bytesField(14, "a/b") + bytesField(14, "c/d") + bytesField(17, bytesField(1, "kubectl")) +
      tag(99, 5) + std::string("\x01\x02\x03\x04", 4) + tag(98, 1) + std::string(8, '\x7f');
  std::string raw = bytesField(1, meta) + mapEntry(2, "k", std::string("\x00\xff", 2)) +
                    bytesField(3, "kubernetes.io/tls") + mapEntry(4, "plain", "text") +
                    varintField(5, 1);
  auto object = decode(envelope("v1", "Secret", raw));
  ASSERT_TRUE(object.ok()) << object.status().toString();
  EXPECT_EQ(*object, Json::parse(R"({"apiVersion":"v1","kind":"Secret",
      "metadata":{"name":"n","generateName":"gen-","namespace":"team","selfLink":"/x",
        "uid":"uid-9","resourceVersion":"42","generation":3,
        "creationTimestamp":"2023-11-14T22:13:20Z","deletionTimestamp":"1969-12-31T23:59:59Z",
        "deletionGracePeriodSeconds":-30,"labels":{"app":"web","tier":""},
        "annotations":{"note":"hi"},
        "ownerReferences":[{"kind":"WorkerPool","name":"pool","uid":"u-1",
          "apiVersion":"clrk.dev/v1alpha1","controller":true,"blockOwnerDeletion":false}],
        "finalizers":["a/b","c/d"]},
      "data":{"k":"AP8="},"type":"kubernetes.io/tls","stringData":{"plain":"text"},
      "immutable":true})"));
}

TEST(ProtobufTest, DecodesDeleteOptions) {
  std::string raw = varintField(1, 0) + bytesField(2, bytesField(1, "u") + bytesField(2, "7")) +
                    bytesField(4, "Foreground") + bytesField(5, "All");
  auto object = decode(envelope("meta.k8s.io/v1", "DeleteOptions", raw));
  ASSERT_TRUE(object.ok()) << object.status().toString();
  EXPECT_EQ(*object, Json::parse(R"({"apiVersion":"meta.k8s.io/v1","kind":"DeleteOptions",
      "gracePeriodSeconds":0,"preconditions":{"uid":"u","resourceVersion":"7"},
      "propagationPolicy":"Foreground","dryRun":["All"]})"));
}

TEST(ProtobufTest, TimestampsAtTheEdgesOfTheRange) {
  auto at = [](int64_t seconds) {
    std::string meta =
        bytesField(1, "x") + bytesField(8, varintField(1, static_cast<uint64_t>(seconds)));
    return decode(envelope("v1", "ConfigMap", bytesField(1, meta)));
  };
  auto first = at(-62135596800);
  ASSERT_TRUE(first.ok()) << first.status().toString();
  EXPECT_EQ((*first)["metadata"]["creationTimestamp"], "0001-01-01T00:00:00Z");
  auto last = at(253402300799);
  ASSERT_TRUE(last.ok()) << last.status().toString();
  EXPECT_EQ((*last)["metadata"]["creationTimestamp"], "9999-12-31T23:59:59Z");
  auto leap = at(951782400);  // 2000-02-29
  ASSERT_TRUE(leap.ok());
  EXPECT_EQ((*leap)["metadata"]["creationTimestamp"], "2000-02-29T00:00:00Z");
  EXPECT_FALSE(at(253402300800).ok());
  EXPECT_FALSE(at(-62135596801).ok());
  EXPECT_FALSE(at(INT64_MIN).ok());
}

TEST(ProtobufTest, KindsItCannotDecodeAreReportedAsSuch) {
  EXPECT_TRUE(isDecodableProtobufKind("v1", "Secret"));
  EXPECT_TRUE(isDecodableProtobufKind("v1", "ConfigMap"));
  EXPECT_TRUE(isDecodableProtobufKind("v1", "Namespace"));
  EXPECT_FALSE(isDecodableProtobufKind("v1", "Pod"));
  EXPECT_FALSE(isDecodableProtobufKind("apps/v1", "Secret"));
  auto env = readProtobufEnvelope(envelope("v1", "Pod", ""));
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(env->kind, "Pod");
  EXPECT_FALSE(decodeProtobufObject(*env).ok());
}

void expectError(std::string_view body, std::string_view fragment) {
  auto object = decode(body);
  ASSERT_FALSE(object.ok()) << object->dump();
  EXPECT_EQ(object.status().code(), Code::InvalidArgument);
  EXPECT_NE(object.status().message().find(fragment), std::string::npos)
      << object.status().message();
}

TEST(ProtobufTest, MalformedInputNamesTheOffset) {
  std::string magic(kKubernetesProtobufMagic);
  expectError("", "missing the \"k8s\\0\" prefix at byte 0");
  expectError("{\"kind\":\"Secret\"}", "missing the");
  expectError(magic + "\x0a\x05\x0a", "runs past the end of the message at byte 6");
  expectError(magic + "\x0a", "truncated varint at byte 5");
  expectError(magic + "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", "overflows 64 bits");
  expectError(magic + std::string("\x00\x01", 2), "invalid field number 0 at byte 4");
  expectError(magic + "\x0b", "unsupported wire type 3 at byte 4");
  expectError(magic + "\x0d\x01\x02", "truncated fixed-width field at byte 5");
  expectError(magic + bytesField(1, bytesField(2, "Secret")), "carries no object");
  expectError(magic + bytesField(2, "") + bytesField(3, "gzip"), "contentEncoding \"gzip\"");
  // Errors inside the object carry absolute offsets.
  std::string body = envelope("v1", "Secret", bytesField(1, "\x0a\x09"));
  expectError(body, "runs past the end of the message at byte " + std::to_string(body.size() - 4));
  expectError(envelope("v1", "Secret", varintField(1, 3)), "field 1 (metadata)");
  expectError(envelope("v1", "Secret", bytesField(1, bytesField(1, "\xc3\x28"))), "name at byte");
  expectError(envelope("v1", "Secret", bytesField(1, bytesField(1, "\xed\xa0\x80"))),
              "not valid UTF-8");
  expectError(envelope("v1", "ConfigMap", mapEntry(2, "k", "\xff")), "not valid UTF-8");
}

TEST(ProtobufTest, EveryTruncationOfARealBodyFailsCleanly) {
  std::string_view full = bytesOf(kKubectlConfigMap);
  for (size_t size = 0; size < full.size(); ++size) {
    auto object = decode(full.substr(0, size));
    if (object.ok()) {
      EXPECT_TRUE(object->is_object());
    }
  }
}

TEST(ProtobufTest, OversizedBodiesAreRejectedUpFront) {
  std::string body(kMaxProtobufBodyBytes + 1, '\0');
  body.replace(0, 4, kKubernetesProtobufMagic);
  expectError(body, "exceed the limit");
}

}  // namespace
}  // namespace clrk::apiserver
