// Record: one egress call (an HTTP request/response or an L4 connection) as a span-like value.
//
// A Record maps 1:1 onto an OTLP span (and an OTLP log record): trace/span ids, start/end time,
// status and typed attributes. Attribute names are the constants in attributes.h. Records are
// plain values; they are moved into the telemetry pipeline (pipeline.h), serialized in a binary
// form for its disk spool and to JSON for the local store.
// Thread model: plain values, no shared state; the free functions are thread-safe.
#pragma once

#include "clrk/base/status.h"

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace clrk::telemetry {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

struct Attribute {
  std::string key;
  AttributeValue value;
  bool operator==(const Attribute&) const = default;
};

// Span status codes, numbered as in OTLP (Status.StatusCode).
enum class StatusCode : int { Unset = 0, Ok = 1, Error = 2 };

// Span kinds, numbered as in OTLP (Span.SpanKind). Egress calls are Client spans; the
// controller-manager's invocation spans (trace_spans.h) are Server and Internal.
enum class SpanKind : int {
  Unspecified = 0,
  Internal = 1,
  Server = 2,
  Client = 3,
  Producer = 4,
  Consumer = 5
};

struct Record {
  // "POST api.openai.com /v1/chat/completions", "CONNECT example.com:443", "tcp 1.2.3.4:5432".
  std::string name;
  TraceId trace_id{};       // all zero = unset (the pipeline does not fill it in)
  SpanId span_id{};         // all zero = unset
  SpanId parent_span_id{};  // all zero = root span
  SpanKind kind = SpanKind::Client;
  std::chrono::system_clock::time_point start{};
  std::chrono::system_clock::time_point end{};
  int status_code = 0;                // StatusCode: 0 unset, 1 ok, 2 error
  std::string status_message;         // set with status_code 2
  std::vector<Attribute> attributes;  // keys unique (set() keeps them so)

  bool operator==(const Record&) const = default;
};

// Sets `key` to `value`, replacing an existing attribute of the same key (order kept).
void set(Record& record, std::string_view key, AttributeValue value);

// Appends `key` without looking for an existing attribute of that key: for emitters that set
// each key once. A repeated key is still merged as set() would when the pipeline normalizes the
// record (normalize() below).
void add(Record& record, std::string_view key, AttributeValue value);

// The value of `key`, or nullptr. The pointer is valid until `record` changes.
const AttributeValue* find(const Record& record, std::string_view key);

// Typed lookups: nullopt when absent or of another type.
const std::string* findString(const Record& record, std::string_view key);
std::optional<int64_t> findInt(const Record& record, std::string_view key);

// Random non-zero ids (OpenSSL CSPRNG, drawn from a per-thread block of its output), as OTLP
// requires.
TraceId newTraceId();
SpanId newSpanId();

// Lower-case hex of an id (32 / 16 characters) and its inverse (InvalidArgument on bad input).
std::string toHex(std::span<const uint8_t> bytes);
Status fromHex(std::string_view hex, std::span<uint8_t> out);

// Compact JSON used by the spool and the local store (not OTLP/JSON; see otlp_exporter.h):
// {"name":..,"traceId":"hex","spanId":"hex","parentSpanId":"hex","startNs":int,"endNs":int,
//  "status":{"code":int,"message":..},"attributes":[{"k":key,"s"|"i"|"d"|"b":value},...]},
// plus "kind":int when the kind is not Client.
// Times are nanoseconds since the Unix epoch. Doubles that are not finite are written as null
// and read back as 0 (JSON has no NaN/Inf).
std::string toJson(const Record& record);

// Parses toJson output. InvalidArgument naming the bad field on malformed input; never throws.
Result<Record> recordFromJson(std::string_view json);

// Makes `record` what a JSON round trip would give (recordFromJson(toJson(record))), without
// one: invalid UTF-8 in strings becomes U+FFFD, doubles that are not finite become 0, a repeated
// attribute key keeps its first position and its last value, and a status code or span kind out
// of range becomes Error / Unspecified. The pipeline applies it before spooling, so sinks see the
// same values whether a record reaches them from memory or from the spool.
void normalize(Record& record);

// Binary form used by the spool (pipeline.h): smaller and far cheaper to write and read than the
// JSON. Lossless for every Record, so binary round trips are exact (no normalization).
//   u8 kBinaryRecordTag | str name | 16 trace_id | 8 span_id | 8 parent_span_id | u8 kind |
//   i64 startNs | i64 endNs | u8 status code | str status message | varint attribute count |
//   per attribute: str key | u8 type (0 string, 1 int, 2 double, 3 bool) | value
// where str = varint length + bytes, varint = unsigned LEB128 (at most 10 bytes), i64 and double
// are 8 bytes little-endian (double as its IEEE-754 bits), bool is one byte 0 or 1. A JSON
// record never starts with kBinaryRecordTag, so a reader can tell the two apart by the first byte.
inline constexpr uint8_t kBinaryRecordTag = 0xB1;
void appendBinary(std::string& out, const Record& record);

// Parses appendBinary output (the whole of `data`). InvalidArgument naming the bad field on
// malformed or truncated input; never throws.
Result<Record> recordFromBinary(std::string_view data);

}  // namespace clrk::telemetry
