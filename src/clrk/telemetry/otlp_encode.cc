// OTLP encoders: ExportTraceServiceRequest / ExportLogsServiceRequest as OTLP/JSON and as binary
// protobuf, written by hand (no protobuf library).
//
// Field numbers (opentelemetry-proto v1; wire types: 0 varint, 1 fixed64, 2 length-delimited,
// 5 fixed32):
//   collector.trace.v1.ExportTraceServiceRequest  1: repeated ResourceSpans resource_spans
//   collector.logs.v1.ExportLogsServiceRequest    1: repeated ResourceLogs resource_logs
//   trace.v1.ResourceSpans   1: Resource resource   2: repeated ScopeSpans scope_spans
//                            3: string schema_url
//   trace.v1.ScopeSpans      1: InstrumentationScope scope   2: repeated Span spans
//                            3: string schema_url
//   trace.v1.Span            1: bytes trace_id   2: bytes span_id   3: string trace_state
//                            4: bytes parent_span_id   5: string name   6: SpanKind kind (enum)
//                            7: fixed64 start_time_unix_nano   8: fixed64 end_time_unix_nano
//                            9: repeated KeyValue attributes   10: uint32 dropped_attributes_count
//                            11: events  12: dropped_events_count  13: links
//                            14: dropped_links_count  15: Status status  16: fixed32 flags
//   trace.v1.Status          2: string message   3: StatusCode code (enum; 1 is reserved)
//   trace.v1.Span.SpanKind   1 internal, 2 server, 3 client (Record::kind; egress calls: client)
//   logs.v1.ResourceLogs     1: Resource resource   2: repeated ScopeLogs scope_logs
//                            3: string schema_url
//   logs.v1.ScopeLogs        1: InstrumentationScope scope   2: repeated LogRecord log_records
//                            3: string schema_url
//   logs.v1.LogRecord        1: fixed64 time_unix_nano   11: fixed64 observed_time_unix_nano
//                            2: SeverityNumber severity_number (enum; INFO 9, ERROR 17)
//                            3: string severity_text   5: AnyValue body
//                            6: repeated KeyValue attributes   7: uint32 dropped_attributes_count
//                            8: fixed32 flags   9: bytes trace_id   10: bytes span_id
//   resource.v1.Resource     1: repeated KeyValue attributes   2: uint32 dropped_attributes_count
//   common.v1.InstrumentationScope  1: string name   2: string version
//                                   3: repeated KeyValue attributes
//   common.v1.KeyValue       1: string key   2: AnyValue value
//   common.v1.AnyValue       oneof: 1 string_value  2 bool_value  3 int64 int_value
//                            4 double double_value  5 array_value  6 kvlist_value  7 bytes_value
#include "clrk/telemetry/otlp_exporter.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>

namespace clrk::telemetry {
namespace {

using Json = nlohmann::json;

uint64_t unixNanos(std::chrono::system_clock::time_point tp) {
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
  return nanos < 0 ? 0 : static_cast<uint64_t>(nanos);
}

bool isZero(std::span<const uint8_t> bytes) {
  for (uint8_t byte : bytes) {
    if (byte != 0) return false;
  }
  return true;
}

constexpr int kSeverityInfo = 9;
constexpr int kSeverityError = 17;

// ---------------------------------------------------------------------------------------------
// Protobuf

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

class ProtoWriter {
 public:
  void varint(uint64_t value) {
    while (value >= 0x80) {
      out_.push_back(static_cast<char>((value & 0x7f) | 0x80));
      value >>= 7;
    }
    out_.push_back(static_cast<char>(value));
  }
  void tag(uint32_t field, WireType type) { varint(uint64_t{field} << 3 | type); }
  void fieldVarint(uint32_t field, uint64_t value) {
    tag(field, kVarint);
    varint(value);
  }
  void fieldFixed64(uint32_t field, uint64_t value) {
    tag(field, kFixed64);
    for (int shift = 0; shift < 64; shift += 8) out_.push_back(static_cast<char>(value >> shift));
  }
  void fieldDouble(uint32_t field, double value) {
    uint64_t bits = 0;
    std::memcpy(&bits, &value, sizeof bits);
    fieldFixed64(field, bits);
  }
  void fieldBytes(uint32_t field, std::string_view bytes) {
    tag(field, kLengthDelimited);
    varint(bytes.size());
    out_.append(bytes);
  }
  void fieldBytes(uint32_t field, std::span<const uint8_t> bytes) {
    fieldBytes(field, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  }
  // Writes the embedded message produced by `fill(ProtoWriter&)` as field `field`.
  template <typename F>
  void message(uint32_t field, F&& fill) {
    ProtoWriter child;
    fill(child);
    fieldBytes(field, child.out_);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

void writeAnyValue(ProtoWriter& w, const AttributeValue& value) {
  std::visit(
      [&w](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          w.fieldBytes(1, std::string_view(v));
        } else if constexpr (std::is_same_v<T, bool>) {
          w.fieldVarint(2, v ? 1 : 0);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          w.fieldVarint(3, static_cast<uint64_t>(v));  // int64: two's complement, 10 bytes if < 0
        } else {
          w.fieldDouble(4, v);
        }
      },
      value);
}

void writeKeyValues(ProtoWriter& w, uint32_t field, const std::vector<Attribute>& attributes) {
  for (const Attribute& attribute : attributes) {
    w.message(field, [&](ProtoWriter& kv) {
      kv.fieldBytes(1, std::string_view(attribute.key));
      kv.message(2, [&](ProtoWriter& any) { writeAnyValue(any, attribute.value); });
    });
  }
}

void writeResource(ProtoWriter& w, const OtlpResource& resource) {
  w.message(1, [&](ProtoWriter& r) { writeKeyValues(r, 1, resource.attributes); });
}

void writeScope(ProtoWriter& w, const OtlpResource& resource) {
  w.message(1, [&](ProtoWriter& scope) {
    if (!resource.scope_name.empty()) scope.fieldBytes(1, std::string_view(resource.scope_name));
    if (!resource.scope_version.empty()) {
      scope.fieldBytes(2, std::string_view(resource.scope_version));
    }
  });
}

void writeSpan(ProtoWriter& w, const Record& record) {
  w.fieldBytes(1, std::span<const uint8_t>(record.trace_id));
  w.fieldBytes(2, std::span<const uint8_t>(record.span_id));
  if (!isZero(record.parent_span_id)) {
    w.fieldBytes(4, std::span<const uint8_t>(record.parent_span_id));
  }
  if (!record.name.empty()) w.fieldBytes(5, std::string_view(record.name));
  w.fieldVarint(6, static_cast<uint64_t>(record.kind));
  w.fieldFixed64(7, unixNanos(record.start));
  w.fieldFixed64(8, unixNanos(record.end));
  writeKeyValues(w, 9, record.attributes);
  if (record.status_code != 0 || !record.status_message.empty()) {
    w.message(15, [&](ProtoWriter& status) {
      if (!record.status_message.empty()) {
        status.fieldBytes(2, std::string_view(record.status_message));
      }
      if (record.status_code != 0) {
        status.fieldVarint(3, static_cast<uint64_t>(record.status_code));
      }
    });
  }
}

void writeLogRecord(ProtoWriter& w, const Record& record) {
  bool error = record.status_code == static_cast<int>(StatusCode::Error);
  w.fieldFixed64(1, unixNanos(record.start));
  w.fieldVarint(2, error ? kSeverityError : kSeverityInfo);
  w.fieldBytes(3, std::string_view(error ? "ERROR" : "INFO"));
  w.message(5, [&](ProtoWriter& body) { body.fieldBytes(1, std::string_view(record.name)); });
  writeKeyValues(w, 6, record.attributes);
  if (!record.status_message.empty()) {
    w.message(6, [&](ProtoWriter& kv) {
      kv.fieldBytes(1, std::string_view("clrk.status_message"));
      kv.message(
          2, [&](ProtoWriter& any) { any.fieldBytes(1, std::string_view(record.status_message)); });
    });
  }
  w.fieldBytes(9, std::span<const uint8_t>(record.trace_id));
  w.fieldBytes(10, std::span<const uint8_t>(record.span_id));
  w.fieldFixed64(11, unixNanos(record.end));
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON

Json anyValueJson(const AttributeValue& value) {
  return std::visit(
      [](const auto& v) -> Json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return {{"stringValue", v}};
        } else if constexpr (std::is_same_v<T, bool>) {
          return {{"boolValue", v}};
        } else if constexpr (std::is_same_v<T, int64_t>) {
          return {{"intValue", std::to_string(v)}};  // 64-bit integers are JSON strings
        } else {
          if (std::isnan(v)) return {{"doubleValue", "NaN"}};
          if (std::isinf(v)) return {{"doubleValue", v > 0 ? "Infinity" : "-Infinity"}};
          return {{"doubleValue", v}};
        }
      },
      value);
}

Json keyValuesJson(const std::vector<Attribute>& attributes) {
  Json out = Json::array();
  for (const Attribute& attribute : attributes) {
    out.push_back({{"key", attribute.key}, {"value", anyValueJson(attribute.value)}});
  }
  return out;
}

Json resourceJson(const OtlpResource& resource) {
  return {{"attributes", keyValuesJson(resource.attributes)}};
}

Json scopeJson(const OtlpResource& resource) {
  Json scope = Json::object();
  if (!resource.scope_name.empty()) scope["name"] = resource.scope_name;
  if (!resource.scope_version.empty()) scope["version"] = resource.scope_version;
  return scope;
}

std::string dumpJson(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace

std::string encodeTracesProtobuf(const OtlpResource& resource, std::span<const Record> records) {
  ProtoWriter request;
  request.message(1, [&](ProtoWriter& resource_spans) {
    writeResource(resource_spans, resource);
    resource_spans.message(2, [&](ProtoWriter& scope_spans) {
      writeScope(scope_spans, resource);
      for (const Record& record : records) {
        scope_spans.message(2, [&](ProtoWriter& span) { writeSpan(span, record); });
      }
    });
  });
  return request.take();
}

std::string encodeLogsProtobuf(const OtlpResource& resource, std::span<const Record> records) {
  ProtoWriter request;
  request.message(1, [&](ProtoWriter& resource_logs) {
    writeResource(resource_logs, resource);
    resource_logs.message(2, [&](ProtoWriter& scope_logs) {
      writeScope(scope_logs, resource);
      for (const Record& record : records) {
        scope_logs.message(2, [&](ProtoWriter& log) { writeLogRecord(log, record); });
      }
    });
  });
  return request.take();
}

std::string encodeTracesJson(const OtlpResource& resource, std::span<const Record> records) {
  Json spans = Json::array();
  for (const Record& record : records) {
    Json span = {
        {"traceId", toHex(record.trace_id)},
        {"spanId", toHex(record.span_id)},
        {"name", record.name},
        {"kind", static_cast<int>(record.kind)},
        {"startTimeUnixNano", std::to_string(unixNanos(record.start))},
        {"endTimeUnixNano", std::to_string(unixNanos(record.end))},
        {"attributes", keyValuesJson(record.attributes)},
    };
    if (!isZero(record.parent_span_id)) span["parentSpanId"] = toHex(record.parent_span_id);
    if (record.status_code != 0 || !record.status_message.empty()) {
      Json status = Json::object();
      if (record.status_code != 0) status["code"] = record.status_code;
      if (!record.status_message.empty()) status["message"] = record.status_message;
      span["status"] = std::move(status);
    }
    spans.push_back(std::move(span));
  }
  Json request = {{"resourceSpans",
                   Json::array({{{"resource", resourceJson(resource)},
                                 {"scopeSpans", Json::array({{{"scope", scopeJson(resource)},
                                                              {"spans", std::move(spans)}}})}}})}};
  return dumpJson(request);
}

std::string encodeLogsJson(const OtlpResource& resource, std::span<const Record> records) {
  Json logs = Json::array();
  for (const Record& record : records) {
    bool error = record.status_code == static_cast<int>(StatusCode::Error);
    Json attributes = keyValuesJson(record.attributes);
    if (!record.status_message.empty()) {
      attributes.push_back(
          {{"key", "clrk.status_message"}, {"value", {{"stringValue", record.status_message}}}});
    }
    logs.push_back({
        {"timeUnixNano", std::to_string(unixNanos(record.start))},
        {"observedTimeUnixNano", std::to_string(unixNanos(record.end))},
        {"severityNumber", error ? kSeverityError : kSeverityInfo},
        {"severityText", error ? "ERROR" : "INFO"},
        {"body", {{"stringValue", record.name}}},
        {"attributes", std::move(attributes)},
        {"traceId", toHex(record.trace_id)},
        {"spanId", toHex(record.span_id)},
    });
  }
  Json request = {
      {"resourceLogs",
       Json::array({{{"resource", resourceJson(resource)},
                     {"scopeLogs", Json::array({{{"scope", scopeJson(resource)},
                                                 {"logRecords", std::move(logs)}}})}}})}};
  return dumpJson(request);
}

}  // namespace clrk::telemetry
