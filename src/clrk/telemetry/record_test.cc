#include "clrk/telemetry/record.h"

#include "clrk/telemetry/attributes.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::telemetry {
namespace {

Record sampleRecord() {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.parent_span_id = newSpanId();
  record.start =
      std::chrono::system_clock::time_point(std::chrono::nanoseconds(1700000000123456789));
  record.end = record.start + std::chrono::milliseconds(250);
  record.status_code = 2;
  record.status_message = "upstream 502";
  set(record, attr::kGenAiSystem, std::string("openai"));
  set(record, attr::kGenAiUsageInputTokens, int64_t{12});
  set(record, attr::kGenAiUsageOutputTokens, int64_t{-3});
  set(record, attr::kClrkTtfbMs, 12.5);
  set(record, attr::kClrkStreaming, true);
  set(record, "clrk.unicode", std::string("h\u00e9llo \"quoted\"\n"));
  return record;
}

TEST(RecordTest, JsonRoundTripKeepsEveryField) {
  Record record = sampleRecord();
  std::string json = toJson(record);
  auto parsed = recordFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(*parsed, record);
  EXPECT_EQ(std::get<int64_t>(*find(*parsed, attr::kGenAiUsageInputTokens)), 12);
  EXPECT_EQ(std::get<bool>(*find(*parsed, attr::kClrkStreaming)), true);
}

TEST(RecordTest, SpanKindRoundTripsAndClientIsImplicit) {
  Record record = sampleRecord();
  EXPECT_EQ(toJson(record).find("\"kind\""), std::string::npos);  // Client: spool format as before
  record.kind = SpanKind::Server;
  auto parsed = recordFromJson(toJson(record));
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(parsed->kind, SpanKind::Server);
  EXPECT_FALSE(recordFromJson(R"({"kind":7})").ok());
}

TEST(RecordTest, LargeIntegersSurviveRoundTrip) {
  Record record;
  set(record, "big", std::numeric_limits<int64_t>::max());
  set(record, "small", std::numeric_limits<int64_t>::min());
  auto parsed = recordFromJson(toJson(record));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(findInt(*parsed, "big"), std::numeric_limits<int64_t>::max());
  EXPECT_EQ(findInt(*parsed, "small"), std::numeric_limits<int64_t>::min());
}

TEST(RecordTest, NonFiniteDoubleBecomesZero) {
  Record record;
  set(record, "nan", std::nan(""));
  auto parsed = recordFromJson(toJson(record));
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(std::get<double>(*find(*parsed, "nan")), 0.0);
}

TEST(RecordTest, SetReplacesAndFindReturnsNullWhenAbsent) {
  Record record;
  set(record, "a", int64_t{1});
  set(record, "b", std::string("x"));
  set(record, "a", int64_t{2});
  ASSERT_EQ(record.attributes.size(), 2u);
  EXPECT_EQ(record.attributes[0].key, "a");
  EXPECT_EQ(findInt(record, "a"), 2);
  EXPECT_EQ(find(record, "missing"), nullptr);
  EXPECT_EQ(findString(record, "a"), nullptr);  // wrong type
  ASSERT_NE(findString(record, "b"), nullptr);
  EXPECT_EQ(*findString(record, "b"), "x");
}

TEST(RecordTest, IdsAreRandomAndNonZero) {
  TraceId a = newTraceId();
  TraceId b = newTraceId();
  EXPECT_NE(a, b);
  EXPECT_NE(a, TraceId{});
  EXPECT_EQ(toHex(a).size(), 32u);
  SpanId s = newSpanId();
  EXPECT_NE(s, SpanId{});
  SpanId back{};
  ASSERT_TRUE(fromHex(toHex(s), back).ok());
  EXPECT_EQ(back, s);
}

TEST(RecordTest, IdsStayUniqueAcrossThreadsAndFork) {
  std::set<TraceId> seen;
  for (int round = 0; round < 5000; ++round) ASSERT_TRUE(seen.insert(newTraceId()).second);
  std::vector<TraceId> other(500);
  std::thread thread([&] {
    for (TraceId& id : other) id = newTraceId();
  });
  thread.join();
  for (const TraceId& id : other) ASSERT_TRUE(seen.insert(id).second);
  // A forked child must not repeat the ids its parent hands out next.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    TraceId id = newTraceId();
    ssize_t written = ::write(fds[1], id.data(), id.size());
    ::_exit(written == static_cast<ssize_t>(id.size()) ? 0 : 1);
  }
  TraceId in_parent = newTraceId();
  TraceId in_child{};
  ASSERT_EQ(::read(fds[0], in_child.data(), in_child.size()),
            static_cast<ssize_t>(in_child.size()));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_NE(in_child, in_parent);
  EXPECT_EQ(seen.count(in_child), 0u);
}

TEST(RecordTest, HexRejectsBadInput) {
  SpanId out{};
  EXPECT_FALSE(fromHex("abc", out).ok());
  EXPECT_FALSE(fromHex("zz00000000000000", out).ok());
  EXPECT_TRUE(fromHex("00112233445566FF", out).ok());
  EXPECT_EQ(out[7], 0xff);
}

TEST(RecordTest, MalformedJsonIsAnErrorNamingTheField) {
  EXPECT_FALSE(recordFromJson("").ok());
  EXPECT_FALSE(recordFromJson("{").ok());
  EXPECT_FALSE(recordFromJson("[]").ok());
  auto bad_id = recordFromJson(R"({"traceId":"xyz"})");
  ASSERT_FALSE(bad_id.ok());
  EXPECT_NE(bad_id.status().message().find("traceId"), std::string::npos);
  auto bad_attr = recordFromJson(R"({"attributes":[{"k":"a","q":1}]})");
  ASSERT_FALSE(bad_attr.ok());
  EXPECT_NE(bad_attr.status().message().find("attributes[0]"), std::string::npos);
  auto bad_time = recordFromJson(R"({"startNs":"yesterday"})");
  ASSERT_FALSE(bad_time.ok());
  EXPECT_NE(bad_time.status().message().find("startNs"), std::string::npos);
  auto bad_status = recordFromJson(R"({"status":{"code":7}})");
  EXPECT_FALSE(bad_status.ok());
  auto huge = recordFromJson(R"({"startNs":1e300})");
  EXPECT_FALSE(huge.ok());
}

TEST(RecordTest, InvalidUtf8IsReplacedNotThrown) {
  Record record;
  record.name = std::string("bad \xff\xfe name");
  std::string json = toJson(record);
  auto parsed = recordFromJson(json);
  ASSERT_TRUE(parsed.ok());
  EXPECT_NE(parsed->name, record.name);
  EXPECT_EQ(parsed->name.rfind("bad ", 0), 0u);
}

TEST(RecordTest, ArbitraryBytesAlwaysGiveValidJson) {
  std::mt19937 rng(42);
  for (int round = 0; round < 2000; ++round) {
    std::string bytes(rng() % 24, '\0');
    for (char& c : bytes) c = static_cast<char>(rng() % 256);
    Record record;
    record.name = bytes;
    set(record, bytes, bytes);
    set(record, "d", std::ldexp(static_cast<double>(rng()), static_cast<int>(rng() % 200) - 100));
    std::string json = toJson(record);
    // nlohmann's parser rejects invalid UTF-8 and bad escapes.
    auto parsed = nlohmann::json::parse(json, nullptr, false);
    ASSERT_FALSE(parsed.is_discarded()) << json;
    auto back = recordFromJson(json);
    ASSERT_TRUE(back.ok()) << back.status().toString();
    EXPECT_EQ(std::get<double>(*find(*back, "d")), std::get<double>(*find(record, "d")));
    // Valid UTF-8 comes back unchanged.
    auto reencoded =
        nlohmann::json(bytes).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (reencoded.find("\xEF\xBF\xBD") == std::string::npos) {
      EXPECT_EQ(back->name, bytes);
    }
  }
}

TEST(RecordTest, EscapesMatchJsonRules) {
  Record record;
  record.name = std::string("q\"b\\n\n\r\t\x01\x7f \u00e9\u4e2d\U0001F600", 20);
  auto back = recordFromJson(toJson(record));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->name, record.name);
  // Overlong encodings and surrogates are not valid UTF-8.
  record.name = "\xC0\xAF|\xED\xA0\x80|\xF4\x90\x80\x80";
  back = recordFromJson(toJson(record));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->name.find('\xC0'), std::string::npos);
  EXPECT_NE(back->name.find("\xEF\xBF\xBD|"), std::string::npos);
}

std::string binary(const Record& record) {
  std::string out;
  appendBinary(out, record);
  return out;
}

TEST(RecordTest, BinaryRoundTripIsExact) {
  Record record = sampleRecord();
  record.kind = SpanKind::Server;
  record.name = std::string("raw \xff\x00 bytes", 12);  // kept as is, unlike JSON
  set(record, "clrk.inf", std::numeric_limits<double>::infinity());
  set(record, "clrk.min", std::numeric_limits<int64_t>::min());
  set(record, "clrk.empty", std::string());
  std::string encoded = binary(record);
  EXPECT_EQ(static_cast<uint8_t>(encoded.front()), kBinaryRecordTag);
  EXPECT_LT(encoded.size(), toJson(record).size());
  auto decoded = recordFromBinary(encoded);
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  EXPECT_EQ(*decoded, record);
  EXPECT_EQ(recordFromBinary(binary(Record{})).value(), Record{});
}

TEST(RecordTest, BinaryAppendsAfterWhatIsThereWithLongFields) {
  Record record = sampleRecord();
  record.status_message = std::string(20000, 'm');  // a three-byte length
  for (int idx = 0; idx < 200; ++idx) {             // a two-byte attribute count
    add(record, "k" + std::to_string(idx), std::string(static_cast<size_t>(idx), 'v'));
  }
  add(record, "clrk.flag", false);
  std::string out = "prefix";
  appendBinary(out, record);
  ASSERT_EQ(out.substr(0, 6), "prefix");
  auto decoded = recordFromBinary(std::string_view(out).substr(6));
  ASSERT_TRUE(decoded.ok()) << decoded.status().toString();
  EXPECT_EQ(*decoded, record);
}

TEST(RecordTest, AddAppendsAndNormalizeMergesRepeatedKeys) {
  Record record;
  add(record, "a", int64_t{1});
  add(record, "b", std::string("x"));
  add(record, "a", int64_t{2});
  ASSERT_EQ(record.attributes.size(), 3u);
  normalize(record);
  ASSERT_EQ(record.attributes.size(), 2u);
  EXPECT_EQ(record.attributes[0].key, "a");
  EXPECT_EQ(findInt(record, "a"), 2);
  EXPECT_EQ(record.attributes[1].key, "b");
  // Keys that share a bucket of the repeat check but differ are all kept.
  Record distinct;
  for (int idx = 0; idx < 60; ++idx) add(distinct, "gen_ai.key." + std::to_string(idx), true);
  normalize(distinct);
  EXPECT_EQ(distinct.attributes.size(), 60u);
}

TEST(RecordTest, MalformedBinaryIsAnErrorNamingTheField) {
  std::string encoded = binary(sampleRecord());
  // Every strict prefix is truncated, and nothing may follow the record.
  for (size_t length = 0; length < encoded.size(); ++length) {
    EXPECT_FALSE(recordFromBinary(std::string_view(encoded).substr(0, length)).ok()) << length;
  }
  EXPECT_FALSE(recordFromBinary(encoded + '\0').ok());
  std::string bad_tag = encoded;
  bad_tag[0] = '{';
  auto status = recordFromBinary(bad_tag).status();
  EXPECT_NE(status.message().find("tag"), std::string::npos);
  Record record;
  record.name = "n";
  std::string bad_kind = binary(record);
  bad_kind[1 + 2 + 32] = 9;  // tag, name, ids, then the kind
  status = recordFromBinary(bad_kind).status();
  EXPECT_NE(status.message().find("kind"), std::string::npos) << status.toString();
  // An attribute count larger than the bytes left could hold.
  std::string many = binary(Record{});
  many.back() = '\x7f';
  status = recordFromBinary(many).status();
  EXPECT_NE(status.message().find("attributes"), std::string::npos) << status.toString();
}

TEST(RecordTest, NormalizeGivesWhatAJsonRoundTripGives) {
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; ++round) {
    Record record;
    auto bytes = [&rng] {
      std::string out(rng() % 12, '\0');
      for (char& c : out) c = static_cast<char>(rng() % 4 == 0 ? rng() % 256 : 'a' + rng() % 3);
      return out;
    };
    record.name = bytes();
    record.status_code = static_cast<int>(rng() % 3);
    record.status_message = bytes();
    for (int attr_idx = 0; attr_idx < 6; ++attr_idx) {
      switch (rng() % 4) {
        case 0:
          record.attributes.push_back({bytes(), bytes()});
          break;
        case 1:
          record.attributes.push_back({bytes(), static_cast<int64_t>(rng())});
          break;
        case 2:
          record.attributes.push_back(
              {bytes(), rng() % 5 == 0 ? std::numeric_limits<double>::quiet_NaN()
                                       : std::ldexp(static_cast<double>(rng()),
                                                    static_cast<int>(rng() % 80) - 40)});
          break;
        default:
          record.attributes.push_back({bytes(), rng() % 2 == 0});
      }
    }
    auto expected = recordFromJson(toJson(record));
    ASSERT_TRUE(expected.ok()) << expected.status().toString();
    normalize(record);
    EXPECT_EQ(record, *expected) << toJson(record);
  }
  // Out of range values JSON would refuse become valid ones.
  Record odd;
  odd.status_code = 7;
  odd.kind = static_cast<SpanKind>(42);
  normalize(odd);
  EXPECT_EQ(odd.status_code, 2);
  EXPECT_EQ(odd.kind, SpanKind::Unspecified);
  EXPECT_TRUE(recordFromJson(toJson(odd)).ok());
}

}  // namespace
}  // namespace clrk::telemetry
