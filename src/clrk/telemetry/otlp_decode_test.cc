#include "clrk/telemetry/otlp_decode.h"

#include "clrk/telemetry/attributes.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace clrk::telemetry {
namespace {

using ::testing::HasSubstr;

Record fullRecord() {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.parent_span_id = newSpanId();
  record.start =
      std::chrono::system_clock::time_point(std::chrono::nanoseconds(1700000000123456789));
  record.end = record.start + std::chrono::milliseconds(250);
  record.status_code = static_cast<int>(StatusCode::Error);
  record.status_message = "upstream 502";
  set(record, attr::kClrkNamespace, std::string("team-a"));
  set(record, attr::kClrkAgent, std::string("summarizer"));
  set(record, attr::kClrkExecutionId, std::string("e-42"));
  set(record, attr::kGenAiUsageInputTokens, int64_t{12});
  set(record, "clrk.test.negative", std::numeric_limits<int64_t>::min());
  set(record, attr::kClrkTtfbMs, 12.5);
  set(record, attr::kClrkStreaming, true);
  set(record, "clrk.test.false", false);
  set(record, "clrk.unicode", std::string("h\u00e9llo \"quoted\"\n"));
  set(record, "clrk.empty", std::string());
  return record;
}

Record plainRecord() {
  Record record;
  record.name = "CONNECT example.com:443";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.start = std::chrono::system_clock::time_point(std::chrono::nanoseconds(1));
  record.end = std::chrono::system_clock::time_point(std::chrono::nanoseconds(2));
  set(record, attr::kClrkLayer, std::string("l4"));
  set(record, "service.name", std::string("own-service"));  // wins over the resource's
  return record;
}

OtlpResource sampleResource() {
  OtlpResource resource;
  resource.attributes = {Attribute{"service.name", std::string("clrk-egress")},
                         Attribute{"clrk.worker", std::string("w1")},
                         Attribute{"clrk.worker.pid", int64_t{77}}};
  resource.scope_name = "clrk.egress";
  resource.scope_version = "0.1.0";
  return resource;
}

// What the decoder gives back for `records` sent with sampleResource().
std::vector<Record> withResource(std::vector<Record> records) {
  for (Record& record : records) {
    for (const Attribute& attribute : sampleResource().attributes) {
      if (find(record, attribute.key) == nullptr) record.attributes.push_back(attribute);
    }
  }
  return records;
}

TEST(OtlpDecodeTest, TracesProtobufRoundTripKeepsEveryField) {
  Record ok = plainRecord();
  ok.status_code = static_cast<int>(StatusCode::Ok);
  ok.kind = SpanKind::Server;  // spans keep their kind (egress calls: Client)
  std::vector<Record> records = {fullRecord(), plainRecord(), ok};
  auto decoded = decodeTracesProtobuf(encodeTracesProtobuf(sampleResource(), records));
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  EXPECT_EQ(*decoded, withResource(records));
}

TEST(OtlpDecodeTest, TracesJsonRoundTripKeepsEveryField) {
  Record ok = plainRecord();
  ok.status_code = static_cast<int>(StatusCode::Ok);
  ok.kind = SpanKind::Server;  // spans keep their kind (egress calls: Client)
  std::vector<Record> records = {fullRecord(), plainRecord(), ok};
  auto decoded = decodeTracesJson(encodeTracesJson(sampleResource(), records));
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  EXPECT_EQ(*decoded, withResource(records));
}

TEST(OtlpDecodeTest, SpanKindAsIntegerOrName) {
  auto decoded = decodeTracesJson(R"({"resourceSpans":[{"scopeSpans":[{"spans":[
      {"kind":2},{"kind":"SPAN_KIND_INTERNAL"},{}]}]}]})");
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  ASSERT_EQ(decoded->size(), 3u);
  EXPECT_EQ((*decoded)[0].kind, SpanKind::Server);
  EXPECT_EQ((*decoded)[1].kind, SpanKind::Internal);
  EXPECT_EQ((*decoded)[2].kind, SpanKind::Client);  // absent: what a Record defaults to
  auto bad = decodeTracesJson(R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":9}]}]}]})");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("kind"));
}

// Logs carry no parent span id and no "ok" status (see otlp_decode.h).
TEST(OtlpDecodeTest, LogsRoundTripKeepsWhatLogsCarry) {
  Record error = fullRecord();
  error.parent_span_id = {};
  Record plain = plainRecord();
  std::vector<Record> records = {error, plain};
  std::vector<Record> expected = withResource(records);
  for (auto encoding : {OtlpEncoding::Json, OtlpEncoding::Protobuf}) {
    std::string body = encoding == OtlpEncoding::Json
                           ? encodeLogsJson(sampleResource(), records)
                           : encodeLogsProtobuf(sampleResource(), records);
    auto decoded = decodeOtlp(OtlpSignal::Logs, encoding, body);
    ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
    EXPECT_EQ(*decoded, expected);
  }
}

TEST(OtlpDecodeTest, NonFiniteDoublesRoundTrip) {
  Record record = plainRecord();
  set(record, "nan", std::numeric_limits<double>::quiet_NaN());
  set(record, "inf", std::numeric_limits<double>::infinity());
  set(record, "ninf", -std::numeric_limits<double>::infinity());
  for (auto encoding : {OtlpEncoding::Json, OtlpEncoding::Protobuf}) {
    std::string body = encoding == OtlpEncoding::Json ? encodeTracesJson({}, {&record, 1})
                                                      : encodeTracesProtobuf({}, {&record, 1});
    auto decoded = decodeOtlp(OtlpSignal::Traces, encoding, body);
    ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
    ASSERT_EQ(decoded->size(), 1u);
    const auto* nan = std::get_if<double>(find((*decoded)[0], "nan"));
    ASSERT_NE(nan, nullptr);
    EXPECT_TRUE(std::isnan(*nan));
    EXPECT_EQ(std::get<double>(*find((*decoded)[0], "inf")),
              std::numeric_limits<double>::infinity());
    EXPECT_EQ(std::get<double>(*find((*decoded)[0], "ninf")),
              -std::numeric_limits<double>::infinity());
  }
}

TEST(OtlpDecodeTest, EmptyRequestsHaveNoRecords) {
  auto proto = decodeTracesProtobuf("");
  ASSERT_TRUE(proto.ok());
  EXPECT_TRUE(proto->empty());
  auto json = decodeTracesJson("{}");
  ASSERT_TRUE(json.ok());
  EXPECT_TRUE(json->empty());
  EXPECT_EQ(emptyExportResponse(OtlpEncoding::Json), "{}");
  EXPECT_EQ(emptyExportResponse(OtlpEncoding::Protobuf), "");
}

// ---------------------------------------------------------------------------------------------
// Hand-built protobuf for malformed inputs.

std::string varint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
  return out;
}

std::string lengthDelimited(uint32_t field, std::string_view bytes) {
  return varint(uint64_t{field} << 3 | 2) + varint(bytes.size()) + std::string(bytes);
}

// ExportTraceServiceRequest{resource_spans{scope_spans{spans{span}}}}.
std::string wrapSpan(const std::string& span) {
  return lengthDelimited(1, lengthDelimited(2, lengthDelimited(2, span)));
}

TEST(OtlpDecodeTest, UnknownFieldsAreSkipped) {
  std::string unknown = varint(99 << 3 | 0) + varint(300) +          // varint
                        varint(98 << 3 | 5) + std::string(4, 'x') +  // fixed32
                        varint(97 << 3 | 1) + std::string(8, 'y') +  // fixed64
                        lengthDelimited(96, "zzz");
  std::string span = unknown + lengthDelimited(5, "name") + unknown;
  std::string body =
      unknown + lengthDelimited(1, unknown + lengthDelimited(2, lengthDelimited(2, span)));
  auto decoded = decodeTracesProtobuf(body);
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ((*decoded)[0].name, "name");
}

TEST(OtlpDecodeTest, UnsupportedAttributeValuesAreSkipped) {
  std::string kv_array = lengthDelimited(1, "list") + lengthDelimited(2, lengthDelimited(5, ""));
  std::string kv_string = lengthDelimited(1, "k") + lengthDelimited(2, lengthDelimited(1, "v"));
  auto decoded =
      decodeTracesProtobuf(wrapSpan(lengthDelimited(9, kv_array) + lengthDelimited(9, kv_string)));
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  ASSERT_EQ(decoded->size(), 1u);
  EXPECT_EQ((*decoded)[0].attributes, (std::vector<Attribute>{{"k", std::string("v")}}));

  auto json = decodeTracesJson(R"({"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[
      {"key":"list","value":{"arrayValue":{"values":[]}}},{"key":"k","value":{"intValue":7}}]}]}]}]})");
  ASSERT_TRUE(json.ok()) << json.status().toString();
  EXPECT_EQ((*json)[0].attributes, (std::vector<Attribute>{{"k", int64_t{7}}}));
}

TEST(OtlpDecodeTest, MalformedProtobufNamesPathAndOffset) {
  // A trace id of 3 bytes: tag at byte 6 (3 nested headers of 2 bytes), value at byte 8.
  auto bad_id = decodeTracesProtobuf(wrapSpan(lengthDelimited(1, "abc")));
  ASSERT_FALSE(bad_id.ok());
  EXPECT_EQ(bad_id.status().code(), Code::InvalidArgument);
  EXPECT_EQ(bad_id.status().message(),
            "otlp protobuf: resource_spans[0].scope_spans[0].spans[0].trace_id: want 16 bytes, "
            "got 3 (at byte 8)");

  // A nested length larger than its parent.
  std::string span = lengthDelimited(5, "name");
  std::string scope = lengthDelimited(2, span);
  scope[1] = static_cast<char>(span.size() + 5);
  auto too_long = decodeTracesProtobuf(lengthDelimited(1, lengthDelimited(2, scope)));
  ASSERT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.status().message(),
              HasSubstr("resource_spans[0].scope_spans[0].<field 2>: length 11 exceeds the 6 "
                        "bytes left in its parent (at byte 6)"));

  // Wrong wire type for a known field.
  auto wrong_wire = decodeTracesProtobuf(wrapSpan(varint(5 << 3 | 0) + varint(1)));
  ASSERT_FALSE(wrong_wire.ok());
  EXPECT_THAT(wrong_wire.status().message(),
              HasSubstr("spans[0].name: wire type 0, want 2 (at byte 6)"));

  // A varint of 11 bytes.
  auto long_varint = decodeTracesProtobuf(std::string(11, '\xff'));
  ASSERT_FALSE(long_varint.ok());
  EXPECT_THAT(long_varint.status().message(),
              HasSubstr("otlp protobuf: request: varint longer than 64 bits (at byte 0)"));

  // A truncated varint, a group, a truncated fixed64, field number 0.
  EXPECT_THAT(decodeTracesProtobuf("\x0a\x80").status().message(),
              HasSubstr("truncated varint (at byte 1)"));
  EXPECT_THAT(decodeTracesProtobuf(varint(1 << 3 | 3)).status().message(),
              HasSubstr("unsupported wire type 3"));
  EXPECT_THAT(decodeTracesProtobuf(wrapSpan(varint(7 << 3 | 1) + "abc")).status().message(),
              HasSubstr("truncated fixed64 value"));
  EXPECT_THAT(decodeTracesProtobuf(std::string("\x00\x00", 2)).status().message(),
              HasSubstr("invalid field number 0"));

  // Status code outside the enum; a time past int64 nanoseconds.
  EXPECT_THAT(decodeTracesProtobuf(wrapSpan(lengthDelimited(15, varint(3 << 3) + varint(9))))
                  .status()
                  .message(),
              HasSubstr("spans[0].status.code: unknown status code 9"));
  EXPECT_THAT(decodeTracesProtobuf(wrapSpan(varint(7 << 3 | 1) + std::string(8, '\xff')))
                  .status()
                  .message(),
              HasSubstr("spans[0].start_time_unix_nano: time 18446744073709551615 ns is out of "
                        "range"));
}

TEST(OtlpDecodeTest, EveryTruncationFailsCleanly) {
  std::vector<Record> records = {fullRecord(), plainRecord()};
  std::string body = encodeTracesProtobuf(sampleResource(), records);
  size_t failures = 0;
  for (size_t size = 0; size < body.size(); ++size) {
    auto decoded = decodeTracesProtobuf(std::string_view(body).substr(0, size));
    if (!decoded.ok()) {
      EXPECT_EQ(decoded.status().code(), Code::InvalidArgument);
      EXPECT_THAT(decoded.status().message(), HasSubstr("(at byte "));
      ++failures;
    }
  }
  // Only the empty prefix and prefixes ending between top-level messages parse (one
  // resource_spans here): every other cut is an error.
  EXPECT_EQ(failures, body.size() - 1);

  std::string json = encodeTracesJson(sampleResource(), records);
  for (size_t size = 0; size < json.size(); ++size) {
    auto decoded = decodeTracesJson(std::string_view(json).substr(0, size));
    ASSERT_FALSE(decoded.ok());
    EXPECT_THAT(decoded.status().message(), HasSubstr("otlp json: invalid JSON at byte"));
  }
}

TEST(OtlpDecodeTest, MalformedJsonNamesPath) {
  auto decode = [](std::string_view span) {
    return decodeTracesJson(R"({"resourceSpans":[{"scopeSpans":[{"spans":[)" + std::string(span) +
                            "]}]}]}")
        .status()
        .message();
  };
  EXPECT_EQ(
      decode(R"({"traceId":"abc"})"),
      "otlp json: resourceSpans[0].scopeSpans[0].spans[0].traceId: want 32 hex digits, got 3");
  EXPECT_THAT(decode(R"({"spanId":"zzzzzzzzzzzzzzzz"})"), HasSubstr("spans[0].spanId: not hex"));
  EXPECT_THAT(decode(R"({"name":5})"), HasSubstr("spans[0].name: want a string"));
  EXPECT_THAT(decode(R"({"startTimeUnixNano":"12x"})"),
              HasSubstr("spans[0].startTimeUnixNano: \"12x\" is not a 64-bit integer"));
  EXPECT_THAT(decode(R"({"endTimeUnixNano":-1})"),
              HasSubstr("spans[0].endTimeUnixNano: integer out of range"));
  EXPECT_THAT(decode(R"({"attributes":[{"key":"k","value":{"intValue":"1.5"}}]})"),
              HasSubstr("spans[0].attributes[0].value.intValue: \"1.5\" is not a 64-bit integer"));
  EXPECT_THAT(decode(R"({"attributes":[{"key":"k","value":{"doubleValue":"x"}}]})"),
              HasSubstr("attributes[0].value.doubleValue: want a number"));
  EXPECT_THAT(decode(R"({"attributes":{}})"), HasSubstr("spans[0].attributes: want an array"));
  EXPECT_THAT(decode(R"({"status":{"code":9}})"),
              HasSubstr("spans[0].status.code: unknown status code 9"));
  EXPECT_THAT(decode("7"), HasSubstr("spans[0]: want an object"));
  EXPECT_EQ(decodeTracesJson("[]").status().message(), "otlp json: request: want an object");
  EXPECT_EQ(decodeTracesJson(R"({"resourceSpans":[} )").status().message(),
            "otlp json: invalid JSON at byte 19");
}

TEST(OtlpDecodeTest, LimitsAreEnforced) {
  std::vector<Record> records = {fullRecord(), plainRecord(), plainRecord()};
  for (auto encoding : {OtlpEncoding::Json, OtlpEncoding::Protobuf}) {
    std::string body = encoding == OtlpEncoding::Json ? encodeTracesJson({}, records)
                                                      : encodeTracesProtobuf({}, records);
    auto too_many = decodeOtlp(OtlpSignal::Traces, encoding, body, {.max_records = 2});
    ASSERT_FALSE(too_many.ok());
    EXPECT_THAT(too_many.status().message(), HasSubstr("[2]: more than 2 records"));
    EXPECT_TRUE(decodeOtlp(OtlpSignal::Traces, encoding, body, {.max_records = 3}).ok());

    auto attributes = decodeOtlp(OtlpSignal::Traces, encoding, body, {.max_attributes = 3});
    ASSERT_FALSE(attributes.ok());
    EXPECT_THAT(attributes.status().message(), HasSubstr("more than 3 attributes"));
    EXPECT_THAT(attributes.status().message(), HasSubstr("spans[0].attributes"));

    // "clrk.unicode" + its value is the largest attribute: 12 + 16 bytes.
    auto big = decodeOtlp(OtlpSignal::Traces, encoding, body, {.max_attribute_bytes = 27});
    ASSERT_FALSE(big.ok());
    EXPECT_THAT(big.status().message(), HasSubstr("attribute of 28 bytes exceeds the limit of 27"));
    EXPECT_TRUE(decodeOtlp(OtlpSignal::Traces, encoding, body, {.max_attribute_bytes = 28}).ok());
  }
}

// The fuzzer's well-formed seeds decode (first byte: bit 0 logs, bit 1 JSON).
TEST(OtlpDecodeTest, SeedCorpusDecodes) {
  const char* source = std::getenv("CLRK_SOURCE_DIR");
  if (source == nullptr) GTEST_SKIP() << "CLRK_SOURCE_DIR not set (run through ctest)";
  std::filesystem::path dir =
      std::filesystem::path(source) / "src/clrk/telemetry/otlp_decode_fuzz_corpus";
  for (const char* name : {"traces.pb", "logs.pb", "traces.json", "logs.json"}) {
    std::ifstream in(dir / name, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_FALSE(bytes.empty()) << name;
    auto signal = (bytes[0] & 1) != 0 ? OtlpSignal::Logs : OtlpSignal::Traces;
    auto encoding = (bytes[0] & 2) != 0 ? OtlpEncoding::Json : OtlpEncoding::Protobuf;
    auto decoded = decodeOtlp(signal, encoding, std::string_view(bytes).substr(1));
    ASSERT_TRUE(decoded.ok()) << name << ": " << decoded.status().toString();
    EXPECT_FALSE(decoded->empty()) << name;
  }
}

}  // namespace
}  // namespace clrk::telemetry
