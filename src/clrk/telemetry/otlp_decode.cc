// Field numbers and JSON names are those listed at the top of otlp_encode.cc.
#include "clrk/telemetry/otlp_decode.h"

#include <nlohmann/json.hpp>

#include <charconv>
#include <cstring>
#include <limits>
#include <optional>

namespace clrk::telemetry {
namespace {

using Json = nlohmann::json;

constexpr std::string_view kStatusMessageKey = "clrk.status_message";
constexpr int kSeverityError = 17;

Result<std::chrono::system_clock::time_point> timeFromNanos(uint64_t nanos) {
  if (nanos > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return invalidArgument("time " + std::to_string(nanos) + " ns is out of range");
  }
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(static_cast<int64_t>(nanos))));
}

size_t attributeBytes(const std::string& key, const AttributeValue& value) {
  const auto* text = std::get_if<std::string>(&value);
  return key.size() + (text != nullptr ? text->size() : 0);
}

// Appends the resource attributes to each record that lacks the key (the encoder's mapping in
// reverse).
void mergeResource(std::span<Record> records, const std::vector<Attribute>& resource) {
  for (Record& record : records) {
    for (const Attribute& attribute : resource) {
      if (find(record, attribute.key) == nullptr) record.attributes.push_back(attribute);
    }
  }
}

// Log records carry the status message as an attribute.
void liftStatusMessage(Record& record) {
  for (auto it = record.attributes.begin(); it != record.attributes.end(); ++it) {
    if (it->key != kStatusMessageKey) continue;
    if (const auto* text = std::get_if<std::string>(&it->value)) {
      record.status_message = *text;
      record.attributes.erase(it);
    }
    return;
  }
}

std::string indexed(const std::string& path, std::string_view name, size_t index) {
  std::string out = path;
  if (!out.empty()) out += '.';
  out += name;
  out += '[';
  out += std::to_string(index);
  out += ']';
  return out;
}

std::string member(const std::string& path, std::string_view name) {
  return path.empty() ? std::string(name) : path + "." + std::string(name);
}

// ---------------------------------------------------------------------------------------------
// Protobuf

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  uint32_t wire = 0;
  uint64_t scalar = 0;     // kVarint, kFixed64, kFixed32
  std::string_view bytes;  // kLengthDelimited
  size_t offset = 0;       // of the tag in the whole body
  size_t value_offset = 0;
};

Status protoError(const std::string& path, size_t offset, std::string_view what) {
  return invalidArgument("otlp protobuf: " + (path.empty() ? std::string("request") : path) + ": " +
                         std::string(what) + " (at byte " + std::to_string(offset) + ")");
}

// Reads the fields of one message; `base` is the message's offset in the whole body.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, size_t base, std::string path)
      : data_(data), base_(base), path_(std::move(path)) {}

  const std::string& path() const { return path_; }

  // Reads the next field into `field`; false at the end of the message or on error (`status`).
  bool next(Field& field, Status& status) {
    if (pos_ >= data_.size()) return false;
    field = Field{};
    field.offset = base_ + pos_;
    uint64_t tag = 0;
    if (!varint(tag, status)) return false;
    if (tag >> 3 == 0 || tag >> 3 > (1u << 29) - 1) {
      status = protoError(path_, field.offset, "invalid field number " + std::to_string(tag >> 3));
      return false;
    }
    field.number = static_cast<uint32_t>(tag >> 3);
    field.wire = static_cast<uint32_t>(tag & 7);
    field.value_offset = base_ + pos_;
    switch (field.wire) {
      case kVarint:
        return varint(field.scalar, status);
      case kFixed64:
        return fixed(8, field, status);
      case kFixed32:
        return fixed(4, field, status);
      case kLengthDelimited: {
        uint64_t length = 0;
        if (!varint(length, status)) return false;
        size_t left = data_.size() - pos_;
        if (length > left) {
          status = protoError(fieldPath(field), base_ + pos_,
                              "length " + std::to_string(length) + " exceeds the " +
                                  std::to_string(left) + " bytes left in its parent");
          return false;
        }
        field.value_offset = base_ + pos_;
        field.bytes = data_.substr(pos_, static_cast<size_t>(length));
        pos_ += static_cast<size_t>(length);
        return true;
      }
      default:
        status = protoError(fieldPath(field), field.offset,
                            "unsupported wire type " + std::to_string(field.wire));
        return false;
    }
  }

  std::string fieldPath(const Field& field) const {
    return member(path_, "<field " + std::to_string(field.number) + ">");
  }

 private:
  bool varint(uint64_t& out, Status& status) {
    size_t start = pos_;
    out = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) {
        status = protoError(path_, base_ + start, "truncated varint");
        return false;
      }
      auto byte = static_cast<uint8_t>(data_[pos_++]);
      if (shift == 63 && byte > 1) {
        status = protoError(path_, base_ + start, "varint longer than 64 bits");
        return false;
      }
      out |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return true;
    }
    status = protoError(path_, base_ + start, "varint longer than 10 bytes");
    return false;
  }

  bool fixed(size_t width, Field& field, Status& status) {
    if (data_.size() - pos_ < width) {
      status = protoError(fieldPath(field), base_ + pos_,
                          "truncated fixed" + std::to_string(width * 8) + " value");
      return false;
    }
    for (size_t idx = 0; idx < width; ++idx) {
      field.scalar |= uint64_t{static_cast<uint8_t>(data_[pos_ + idx])} << (8 * idx);
    }
    pos_ += width;
    return true;
  }

  std::string_view data_;
  size_t base_;
  std::string path_;
  size_t pos_ = 0;
};

// Checks the wire type of a known field.
Status expectWire(const Field& field, const std::string& path, WireType want) {
  if (field.wire == want) return {};
  return protoError(path, field.offset,
                    "wire type " + std::to_string(field.wire) + ", want " + std::to_string(want));
}

Status readId(const Field& field, const std::string& path, std::span<uint8_t> out) {
  CLRK_RETURN_IF_ERROR(expectWire(field, path, kLengthDelimited));
  if (field.bytes.empty()) {
    std::fill(out.begin(), out.end(), uint8_t{0});
    return {};
  }
  if (field.bytes.size() != out.size()) {
    return protoError(
        path, field.value_offset,
        "want " + std::to_string(out.size()) + " bytes, got " + std::to_string(field.bytes.size()));
  }
  std::memcpy(out.data(), field.bytes.data(), out.size());
  return {};
}

Status readTime(const Field& field, const std::string& path,
                std::chrono::system_clock::time_point& out) {
  CLRK_RETURN_IF_ERROR(expectWire(field, path, kFixed64));
  auto time = timeFromNanos(field.scalar);
  if (!time.ok()) return protoError(path, field.value_offset, time.status().message());
  out = time.value();
  return {};
}

Status readString(const Field& field, const std::string& path, std::string& out) {
  CLRK_RETURN_IF_ERROR(expectWire(field, path, kLengthDelimited));
  out.assign(field.bytes);
  return {};
}

// AnyValue; `out` stays empty for kinds a Record cannot hold.
Status readAnyValue(std::string_view bytes, size_t base, const std::string& path,
                    std::optional<AttributeValue>& out) {
  ProtoReader reader(bytes, base, path);
  Field field;
  Status status;
  while (reader.next(field, status)) {
    switch (field.number) {
      case 1:
        CLRK_RETURN_IF_ERROR(expectWire(field, member(path, "string_value"), kLengthDelimited));
        out = std::string(field.bytes);
        break;
      case 2:
        CLRK_RETURN_IF_ERROR(expectWire(field, member(path, "bool_value"), kVarint));
        out = field.scalar != 0;
        break;
      case 3:
        CLRK_RETURN_IF_ERROR(expectWire(field, member(path, "int_value"), kVarint));
        out = static_cast<int64_t>(field.scalar);
        break;
      case 4: {
        CLRK_RETURN_IF_ERROR(expectWire(field, member(path, "double_value"), kFixed64));
        double value = 0;
        std::memcpy(&value, &field.scalar, sizeof value);
        out = value;
        break;
      }
      default:  // array, kvlist, bytes: no Record equivalent
        out.reset();
        break;
    }
  }
  return status;
}

struct AttributeList {
  std::vector<Attribute>* attributes;
  size_t seen = 0;
};

Status readKeyValue(const Field& parent, const std::string& path, AttributeList& list,
                    const OtlpDecodeLimits& limits) {
  CLRK_RETURN_IF_ERROR(expectWire(parent, path, kLengthDelimited));
  if (++list.seen > limits.max_attributes) {
    return protoError(path, parent.offset,
                      "more than " + std::to_string(limits.max_attributes) + " attributes");
  }
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  std::string key;
  std::optional<AttributeValue> value;
  Field field;
  Status status;
  while (reader.next(field, status)) {
    if (field.number == 1) {
      CLRK_RETURN_IF_ERROR(readString(field, member(path, "key"), key));
    } else if (field.number == 2) {
      std::string value_path = member(path, "value");
      CLRK_RETURN_IF_ERROR(expectWire(field, value_path, kLengthDelimited));
      CLRK_RETURN_IF_ERROR(readAnyValue(field.bytes, field.value_offset, value_path, value));
    }
  }
  CLRK_RETURN_IF_ERROR(status);
  if (!value) return {};
  if (size_t size = attributeBytes(key, *value); size > limits.max_attribute_bytes) {
    return protoError(path, parent.value_offset,
                      "attribute of " + std::to_string(size) + " bytes exceeds the limit of " +
                          std::to_string(limits.max_attribute_bytes));
  }
  auto existing = std::find_if(list.attributes->begin(), list.attributes->end(),
                               [&](const Attribute& attribute) { return attribute.key == key; });
  if (existing != list.attributes->end()) {
    existing->value = std::move(*value);
  } else {
    list.attributes->push_back(Attribute{std::move(key), std::move(*value)});
  }
  return {};
}

Status readResource(const Field& parent, const std::string& path,
                    std::vector<Attribute>& attributes, const OtlpDecodeLimits& limits) {
  CLRK_RETURN_IF_ERROR(expectWire(parent, path, kLengthDelimited));
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  AttributeList list{&attributes};
  Field field;
  Status status;
  while (reader.next(field, status)) {
    if (field.number == 1) {
      CLRK_RETURN_IF_ERROR(
          readKeyValue(field, indexed(path, "attributes", list.seen), list, limits));
    }
  }
  return status;
}

Status readSpanStatus(const Field& parent, const std::string& path, Record& record) {
  CLRK_RETURN_IF_ERROR(expectWire(parent, path, kLengthDelimited));
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  Field field;
  Status status;
  while (reader.next(field, status)) {
    if (field.number == 2) {
      CLRK_RETURN_IF_ERROR(readString(field, member(path, "message"), record.status_message));
    } else if (field.number == 3) {
      std::string code_path = member(path, "code");
      CLRK_RETURN_IF_ERROR(expectWire(field, code_path, kVarint));
      if (field.scalar > static_cast<uint64_t>(StatusCode::Error)) {
        return protoError(code_path, field.value_offset,
                          "unknown status code " + std::to_string(field.scalar));
      }
      record.status_code = static_cast<int>(field.scalar);
    }
  }
  return status;
}

// An unknown kind is kept as Unspecified rather than rejected (proto3 open enums).
Status readSpanKind(const Field& field, const std::string& path, Record& record) {
  CLRK_RETURN_IF_ERROR(expectWire(field, path, kVarint));
  record.kind = field.scalar <= static_cast<uint64_t>(SpanKind::Consumer)
                    ? static_cast<SpanKind>(field.scalar)
                    : SpanKind::Unspecified;
  return {};
}

Status readSpan(const Field& parent, const std::string& path, Record& record,
                const OtlpDecodeLimits& limits) {
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  AttributeList list{&record.attributes};
  Field field;
  Status status;
  while (reader.next(field, status)) {
    switch (field.number) {
      case 1:
        CLRK_RETURN_IF_ERROR(readId(field, member(path, "trace_id"), record.trace_id));
        break;
      case 2:
        CLRK_RETURN_IF_ERROR(readId(field, member(path, "span_id"), record.span_id));
        break;
      case 4:
        CLRK_RETURN_IF_ERROR(readId(field, member(path, "parent_span_id"), record.parent_span_id));
        break;
      case 5:
        CLRK_RETURN_IF_ERROR(readString(field, member(path, "name"), record.name));
        break;
      case 6:
        CLRK_RETURN_IF_ERROR(readSpanKind(field, member(path, "kind"), record));
        break;
      case 7:
        CLRK_RETURN_IF_ERROR(readTime(field, member(path, "start_time_unix_nano"), record.start));
        break;
      case 8:
        CLRK_RETURN_IF_ERROR(readTime(field, member(path, "end_time_unix_nano"), record.end));
        break;
      case 9:
        CLRK_RETURN_IF_ERROR(
            readKeyValue(field, indexed(path, "attributes", list.seen), list, limits));
        break;
      case 15:
        CLRK_RETURN_IF_ERROR(readSpanStatus(field, member(path, "status"), record));
        break;
      default:
        break;
    }
  }
  return status;
}

Status readLogRecord(const Field& parent, const std::string& path, Record& record,
                     const OtlpDecodeLimits& limits) {
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  AttributeList list{&record.attributes};
  Field field;
  Status status;
  while (reader.next(field, status)) {
    switch (field.number) {
      case 1:
        CLRK_RETURN_IF_ERROR(readTime(field, member(path, "time_unix_nano"), record.start));
        break;
      case 11:
        CLRK_RETURN_IF_ERROR(readTime(field, member(path, "observed_time_unix_nano"), record.end));
        break;
      case 2:
        CLRK_RETURN_IF_ERROR(expectWire(field, member(path, "severity_number"), kVarint));
        record.status_code =
            field.scalar >= kSeverityError ? static_cast<int>(StatusCode::Error) : 0;
        break;
      case 5: {
        std::string body_path = member(path, "body");
        CLRK_RETURN_IF_ERROR(expectWire(field, body_path, kLengthDelimited));
        std::optional<AttributeValue> body;
        CLRK_RETURN_IF_ERROR(readAnyValue(field.bytes, field.value_offset, body_path, body));
        const auto* text = body ? std::get_if<std::string>(&*body) : nullptr;
        record.name = text != nullptr ? *text : std::string();
        break;
      }
      case 6:
        CLRK_RETURN_IF_ERROR(
            readKeyValue(field, indexed(path, "attributes", list.seen), list, limits));
        break;
      case 9:
        CLRK_RETURN_IF_ERROR(readId(field, member(path, "trace_id"), record.trace_id));
        break;
      case 10:
        CLRK_RETURN_IF_ERROR(readId(field, member(path, "span_id"), record.span_id));
        break;
      default:
        break;
    }
  }
  CLRK_RETURN_IF_ERROR(status);
  liftStatusMessage(record);
  return {};
}

// The names and item reader of one signal.
struct ProtoSignal {
  std::string_view resource_items;  // "resource_spans"
  std::string_view scope_items;     // "scope_spans"
  std::string_view items;           // "spans"
  Status (*read_item)(const Field&, const std::string&, Record&, const OtlpDecodeLimits&);
};

Status readScopeItems(const Field& parent, const std::string& path, const ProtoSignal& signal,
                      std::vector<Record>& out, const OtlpDecodeLimits& limits) {
  CLRK_RETURN_IF_ERROR(expectWire(parent, path, kLengthDelimited));
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  Field field;
  Status status;
  size_t item_idx = 0;
  while (reader.next(field, status)) {
    if (field.number != 2) continue;
    std::string item_path = indexed(path, signal.items, item_idx++);
    CLRK_RETURN_IF_ERROR(expectWire(field, item_path, kLengthDelimited));
    if (out.size() >= limits.max_records) {
      return protoError(item_path, field.offset,
                        "more than " + std::to_string(limits.max_records) + " records");
    }
    out.emplace_back();
    CLRK_RETURN_IF_ERROR(signal.read_item(field, item_path, out.back(), limits));
  }
  return status;
}

Status readResourceItems(const Field& parent, const std::string& path, const ProtoSignal& signal,
                         std::vector<Record>& out, const OtlpDecodeLimits& limits) {
  CLRK_RETURN_IF_ERROR(expectWire(parent, path, kLengthDelimited));
  ProtoReader reader(parent.bytes, parent.value_offset, path);
  size_t first = out.size();
  std::vector<Attribute> resource;
  Field field;
  Status status;
  size_t scope_idx = 0;
  while (reader.next(field, status)) {
    if (field.number == 1) {
      CLRK_RETURN_IF_ERROR(readResource(field, member(path, "resource"), resource, limits));
    } else if (field.number == 2) {
      CLRK_RETURN_IF_ERROR(readScopeItems(field, indexed(path, signal.scope_items, scope_idx++),
                                          signal, out, limits));
    }
  }
  CLRK_RETURN_IF_ERROR(status);
  mergeResource(std::span<Record>(out).subspan(first), resource);
  return {};
}

Result<std::vector<Record>> decodeProtobuf(std::string_view body, const ProtoSignal& signal,
                                           const OtlpDecodeLimits& limits) {
  std::vector<Record> out;
  ProtoReader reader(body, 0, "");
  Field field;
  Status status;
  size_t resource_idx = 0;
  while (reader.next(field, status)) {
    if (field.number != 1) continue;
    CLRK_RETURN_IF_ERROR(readResourceItems(
        field, indexed("", signal.resource_items, resource_idx++), signal, out, limits));
  }
  CLRK_RETURN_IF_ERROR(status);
  return out;
}

constexpr ProtoSignal kProtoTraces{"resource_spans", "scope_spans", "spans", &readSpan};
constexpr ProtoSignal kProtoLogs{"resource_logs", "scope_logs", "log_records", &readLogRecord};

// ---------------------------------------------------------------------------------------------
// OTLP/JSON

Status jsonError(const std::string& path, std::string_view what) {
  return invalidArgument("otlp json: " + (path.empty() ? std::string("request") : path) + ": " +
                         std::string(what));
}

// The member `name` of `object`, or nullptr when absent or null.
const Json* jsonMember(const Json& object, std::string_view name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

// The array member `name` (nullptr when absent); an error when it is not an array.
Status jsonArray(const Json& object, const std::string& path, std::string_view name,
                 const Json*& out) {
  out = jsonMember(object, name);
  if (out != nullptr && !out->is_array()) return jsonError(member(path, name), "want an array");
  return {};
}

Status jsonObject(const Json& value, const std::string& path) {
  return value.is_object() ? Status() : jsonError(path, "want an object");
}

Status jsonString(const Json& object, const std::string& path, std::string_view name,
                  std::string& out) {
  const Json* value = jsonMember(object, name);
  if (value == nullptr) return {};
  if (!value->is_string()) return jsonError(member(path, name), "want a string");
  out = value->get_ref<const std::string&>();
  return {};
}

Status jsonId(const Json& object, const std::string& path, std::string_view name,
              std::span<uint8_t> out) {
  std::string hex;
  CLRK_RETURN_IF_ERROR(jsonString(object, path, name, hex));
  if (hex.empty()) return {};
  if (hex.size() != out.size() * 2) {
    return jsonError(member(path, name), "want " + std::to_string(out.size() * 2) +
                                             " hex digits, got " + std::to_string(hex.size()));
  }
  if (!fromHex(hex, out).ok()) return jsonError(member(path, name), "not hex");
  return {};
}

// A 64-bit integer as OTLP/JSON writes it (a decimal string) or as a JSON number.
template <typename Int>
Status jsonInteger(const Json& value, const std::string& path, Int& out) {
  if (value.is_string()) {
    const auto& text = value.get_ref<const std::string&>();
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
      return jsonError(path, "\"" + text.substr(0, 40) + "\" is not a 64-bit integer");
    }
    return {};
  }
  if (value.is_number_unsigned()) {
    auto number = value.get<uint64_t>();
    if (number > static_cast<uint64_t>(std::numeric_limits<Int>::max())) {
      return jsonError(path, "integer out of range");
    }
    out = static_cast<Int>(number);
    return {};
  }
  if (value.is_number_integer()) {
    auto number = value.get<int64_t>();
    if (number < 0 && std::is_unsigned_v<Int>) return jsonError(path, "integer out of range");
    out = static_cast<Int>(number);
    return {};
  }
  return jsonError(path, "want an integer");
}

Status jsonTime(const Json& object, const std::string& path, std::string_view name,
                std::chrono::system_clock::time_point& out) {
  const Json* value = jsonMember(object, name);
  if (value == nullptr) return {};
  uint64_t nanos = 0;
  CLRK_RETURN_IF_ERROR(jsonInteger(*value, member(path, name), nanos));
  auto time = timeFromNanos(nanos);
  if (!time.ok()) return jsonError(member(path, name), time.status().message());
  out = time.value();
  return {};
}

Status jsonAnyValue(const Json& value, const std::string& path,
                    std::optional<AttributeValue>& out) {
  CLRK_RETURN_IF_ERROR(jsonObject(value, path));
  if (const Json* text = jsonMember(value, "stringValue")) {
    if (!text->is_string()) return jsonError(member(path, "stringValue"), "want a string");
    out = text->get<std::string>();
  } else if (const Json* flag = jsonMember(value, "boolValue")) {
    if (!flag->is_boolean()) return jsonError(member(path, "boolValue"), "want a boolean");
    out = flag->get<bool>();
  } else if (const Json* number = jsonMember(value, "intValue")) {
    int64_t parsed = 0;
    CLRK_RETURN_IF_ERROR(jsonInteger(*number, member(path, "intValue"), parsed));
    out = parsed;
  } else if (const Json* real = jsonMember(value, "doubleValue")) {
    if (real->is_number()) {
      out = real->get<double>();
    } else if (real->is_string() && *real == "NaN") {
      out = std::numeric_limits<double>::quiet_NaN();
    } else if (real->is_string() && *real == "Infinity") {
      out = std::numeric_limits<double>::infinity();
    } else if (real->is_string() && *real == "-Infinity") {
      out = -std::numeric_limits<double>::infinity();
    } else {
      return jsonError(member(path, "doubleValue"), "want a number");
    }
  }
  return {};
}

Status jsonAttributes(const Json& object, const std::string& path,
                      std::vector<Attribute>& attributes, const OtlpDecodeLimits& limits) {
  const Json* list = nullptr;
  CLRK_RETURN_IF_ERROR(jsonArray(object, path, "attributes", list));
  if (list == nullptr) return {};
  if (list->size() > limits.max_attributes) {
    return jsonError(member(path, "attributes"),
                     "more than " + std::to_string(limits.max_attributes) + " attributes");
  }
  for (size_t attr_idx = 0; attr_idx < list->size(); ++attr_idx) {
    std::string kv_path = indexed(path, "attributes", attr_idx);
    const Json& kv = (*list)[attr_idx];
    CLRK_RETURN_IF_ERROR(jsonObject(kv, kv_path));
    std::string key;
    CLRK_RETURN_IF_ERROR(jsonString(kv, kv_path, "key", key));
    std::optional<AttributeValue> value;
    if (const Json* any = jsonMember(kv, "value")) {
      CLRK_RETURN_IF_ERROR(jsonAnyValue(*any, member(kv_path, "value"), value));
    }
    if (!value) continue;
    if (size_t size = attributeBytes(key, *value); size > limits.max_attribute_bytes) {
      return jsonError(kv_path, "attribute of " + std::to_string(size) +
                                    " bytes exceeds the limit of " +
                                    std::to_string(limits.max_attribute_bytes));
    }
    auto existing = std::find_if(attributes.begin(), attributes.end(),
                                 [&](const Attribute& attribute) { return attribute.key == key; });
    if (existing != attributes.end()) {
      existing->value = std::move(*value);
    } else {
      attributes.push_back(Attribute{std::move(key), std::move(*value)});
    }
  }
  return {};
}

Status jsonSpan(const Json& span, const std::string& path, Record& record,
                const OtlpDecodeLimits& limits) {
  CLRK_RETURN_IF_ERROR(jsonId(span, path, "traceId", record.trace_id));
  CLRK_RETURN_IF_ERROR(jsonId(span, path, "spanId", record.span_id));
  CLRK_RETURN_IF_ERROR(jsonId(span, path, "parentSpanId", record.parent_span_id));
  CLRK_RETURN_IF_ERROR(jsonString(span, path, "name", record.name));
  if (const Json* kind = jsonMember(span, "kind")) {
    // OTLP/JSON writes enums as integers; proto3 JSON also allows the value's name.
    static constexpr std::string_view kNames[] = {"SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL",
                                                  "SPAN_KIND_SERVER",      "SPAN_KIND_CLIENT",
                                                  "SPAN_KIND_PRODUCER",    "SPAN_KIND_CONSUMER"};
    int64_t value = -1;
    if (kind->is_string()) {
      for (size_t idx = 0; idx < std::size(kNames); ++idx) {
        if (kind->get_ref<const std::string&>() == kNames[idx]) value = static_cast<int64_t>(idx);
      }
    } else {
      CLRK_RETURN_IF_ERROR(jsonInteger(*kind, member(path, "kind"), value));
    }
    if (value < 0 || value > static_cast<int64_t>(SpanKind::Consumer)) {
      return jsonError(member(path, "kind"), "unknown span kind " + std::to_string(value));
    }
    record.kind = static_cast<SpanKind>(value);
  }
  CLRK_RETURN_IF_ERROR(jsonTime(span, path, "startTimeUnixNano", record.start));
  CLRK_RETURN_IF_ERROR(jsonTime(span, path, "endTimeUnixNano", record.end));
  CLRK_RETURN_IF_ERROR(jsonAttributes(span, path, record.attributes, limits));
  if (const Json* status = jsonMember(span, "status")) {
    std::string status_path = member(path, "status");
    CLRK_RETURN_IF_ERROR(jsonObject(*status, status_path));
    CLRK_RETURN_IF_ERROR(jsonString(*status, status_path, "message", record.status_message));
    if (const Json* code = jsonMember(*status, "code")) {
      int64_t value = 0;
      CLRK_RETURN_IF_ERROR(jsonInteger(*code, member(status_path, "code"), value));
      if (value < 0 || value > static_cast<int64_t>(StatusCode::Error)) {
        return jsonError(member(status_path, "code"),
                         "unknown status code " + std::to_string(value));
      }
      record.status_code = static_cast<int>(value);
    }
  }
  return {};
}

Status jsonLogRecord(const Json& log, const std::string& path, Record& record,
                     const OtlpDecodeLimits& limits) {
  CLRK_RETURN_IF_ERROR(jsonTime(log, path, "timeUnixNano", record.start));
  CLRK_RETURN_IF_ERROR(jsonTime(log, path, "observedTimeUnixNano", record.end));
  if (const Json* severity = jsonMember(log, "severityNumber")) {
    int64_t value = 0;
    CLRK_RETURN_IF_ERROR(jsonInteger(*severity, member(path, "severityNumber"), value));
    record.status_code = value >= kSeverityError ? static_cast<int>(StatusCode::Error) : 0;
  }
  if (const Json* body = jsonMember(log, "body")) {
    std::optional<AttributeValue> value;
    CLRK_RETURN_IF_ERROR(jsonAnyValue(*body, member(path, "body"), value));
    const auto* text = value ? std::get_if<std::string>(&*value) : nullptr;
    if (text != nullptr) record.name = *text;
  }
  CLRK_RETURN_IF_ERROR(jsonAttributes(log, path, record.attributes, limits));
  CLRK_RETURN_IF_ERROR(jsonId(log, path, "traceId", record.trace_id));
  CLRK_RETURN_IF_ERROR(jsonId(log, path, "spanId", record.span_id));
  liftStatusMessage(record);
  return {};
}

struct JsonSignal {
  std::string_view resource_items;  // "resourceSpans"
  std::string_view scope_items;     // "scopeSpans"
  std::string_view items;           // "spans"
  Status (*read_item)(const Json&, const std::string&, Record&, const OtlpDecodeLimits&);
};

constexpr JsonSignal kJsonTraces{"resourceSpans", "scopeSpans", "spans", &jsonSpan};
constexpr JsonSignal kJsonLogs{"resourceLogs", "scopeLogs", "logRecords", &jsonLogRecord};

Result<std::vector<Record>> decodeJsonTree(const Json& root, const JsonSignal& signal,
                                           const OtlpDecodeLimits& limits) {
  std::vector<Record> out;
  CLRK_RETURN_IF_ERROR(jsonObject(root, ""));
  const Json* resources = nullptr;
  CLRK_RETURN_IF_ERROR(jsonArray(root, "", signal.resource_items, resources));
  if (resources == nullptr) return out;
  for (size_t resource_idx = 0; resource_idx < resources->size(); ++resource_idx) {
    std::string resource_path = indexed("", signal.resource_items, resource_idx);
    const Json& resource_items = (*resources)[resource_idx];
    CLRK_RETURN_IF_ERROR(jsonObject(resource_items, resource_path));
    size_t first = out.size();
    std::vector<Attribute> resource_attributes;
    if (const Json* resource = jsonMember(resource_items, "resource")) {
      std::string path = member(resource_path, "resource");
      CLRK_RETURN_IF_ERROR(jsonObject(*resource, path));
      CLRK_RETURN_IF_ERROR(jsonAttributes(*resource, path, resource_attributes, limits));
    }
    const Json* scopes = nullptr;
    CLRK_RETURN_IF_ERROR(jsonArray(resource_items, resource_path, signal.scope_items, scopes));
    for (size_t scope_idx = 0; scopes != nullptr && scope_idx < scopes->size(); ++scope_idx) {
      std::string scope_path = indexed(resource_path, signal.scope_items, scope_idx);
      const Json& scope = (*scopes)[scope_idx];
      CLRK_RETURN_IF_ERROR(jsonObject(scope, scope_path));
      const Json* items = nullptr;
      CLRK_RETURN_IF_ERROR(jsonArray(scope, scope_path, signal.items, items));
      for (size_t item_idx = 0; items != nullptr && item_idx < items->size(); ++item_idx) {
        std::string item_path = indexed(scope_path, signal.items, item_idx);
        if (out.size() >= limits.max_records) {
          return jsonError(item_path,
                           "more than " + std::to_string(limits.max_records) + " records");
        }
        const Json& item = (*items)[item_idx];
        CLRK_RETURN_IF_ERROR(jsonObject(item, item_path));
        out.emplace_back();
        CLRK_RETURN_IF_ERROR(signal.read_item(item, item_path, out.back(), limits));
      }
    }
    mergeResource(std::span<Record>(out).subspan(first), resource_attributes);
  }
  return out;
}

Result<std::vector<Record>> decodeJson(std::string_view body, const JsonSignal& signal,
                                       const OtlpDecodeLimits& limits) {
  Json root;
  try {
    root = Json::parse(body);
  } catch (const Json::parse_error& e) {
    return invalidArgument("otlp json: invalid JSON at byte " + std::to_string(e.byte));
  } catch (const std::exception& e) {
    return invalidArgument(std::string("otlp json: invalid JSON: ") + e.what());
  }
  try {
    return decodeJsonTree(root, signal, limits);
  } catch (const std::exception& e) {  // not expected: every access is type-checked first
    return invalidArgument(std::string("otlp json: ") + e.what());
  }
}

}  // namespace

Result<std::vector<Record>> decodeTracesJson(std::string_view body,
                                             const OtlpDecodeLimits& limits) {
  return decodeJson(body, kJsonTraces, limits);
}

Result<std::vector<Record>> decodeTracesProtobuf(std::string_view body,
                                                 const OtlpDecodeLimits& limits) {
  return decodeProtobuf(body, kProtoTraces, limits);
}

Result<std::vector<Record>> decodeLogsJson(std::string_view body, const OtlpDecodeLimits& limits) {
  return decodeJson(body, kJsonLogs, limits);
}

Result<std::vector<Record>> decodeLogsProtobuf(std::string_view body,
                                               const OtlpDecodeLimits& limits) {
  return decodeProtobuf(body, kProtoLogs, limits);
}

Result<std::vector<Record>> decodeOtlp(OtlpSignal signal, OtlpEncoding encoding,
                                       std::string_view body, const OtlpDecodeLimits& limits) {
  bool json = encoding == OtlpEncoding::Json;
  if (signal == OtlpSignal::Traces) {
    return json ? decodeTracesJson(body, limits) : decodeTracesProtobuf(body, limits);
  }
  return json ? decodeLogsJson(body, limits) : decodeLogsProtobuf(body, limits);
}

std::string emptyExportResponse(OtlpEncoding encoding) {
  return encoding == OtlpEncoding::Json ? "{}" : "";
}

}  // namespace clrk::telemetry
