#include "clrk/telemetry/record.h"

#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace clrk::telemetry {
namespace {

using Json = nlohmann::json;

constexpr char kHexDigits[] = "0123456789abcdef";

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <size_t N>
std::array<uint8_t, N> randomNonZero() {
  std::array<uint8_t, N> id{};
  while (true) {
    if (RAND_bytes(id.data(), static_cast<int>(N)) != 1) {
      // The CSPRNG failing is not survivable for key material, but ids only need to be
      // unique-ish: fall back to a clock-derived value rather than crash.
      auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      for (size_t idx = 0; idx < N; ++idx) id[idx] = static_cast<uint8_t>(now >> ((idx % 8) * 8));
    }
    for (uint8_t byte : id) {
      if (byte != 0) return id;
    }
  }
}

int64_t toNanos(std::chrono::system_clock::time_point tp) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}

std::chrono::system_clock::time_point fromNanos(int64_t nanos) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::nanoseconds(nanos)));
}

Status readId(const Json& object, const char* field, std::span<uint8_t> out) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return {};
  if (!it->is_string()) return invalidArgument(std::string(field) + ": expected a hex string");
  Status status = fromHex(it->get_ref<const std::string&>(), out);
  if (!status.ok()) return status.withContext(field);
  return {};
}

Status readTime(const Json& object, const char* field, std::chrono::system_clock::time_point& out) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return {};
  if (!it->is_number_integer())
    return invalidArgument(std::string(field) + ": expected an integer");
  out = fromNanos(it->get<int64_t>());
  return {};
}

// Appends `text` as a JSON string. Invalid UTF-8 (possible in URLs or names copied from
// traffic) becomes U+FFFD, as nlohmann's error_handler_t::replace does.
void appendJsonString(std::string& out, std::string_view text) {
  out += '"';
  size_t idx = 0;
  while (idx < text.size()) {
    auto byte = static_cast<unsigned char>(text[idx]);
    if (byte < 0x80) {
      switch (byte) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (byte < 0x20 || byte == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", byte);
            out += buf;
          } else {
            out += static_cast<char>(byte);
          }
      }
      ++idx;
      continue;
    }
    // Multi-byte sequence: validate per RFC 3629 (no overlongs, no surrogates, <= U+10FFFF).
    size_t length = 0;
    unsigned char low = 0x80;
    unsigned char high = 0xBF;
    if (byte >= 0xC2 && byte <= 0xDF) {
      length = 2;
    } else if (byte >= 0xE0 && byte <= 0xEF) {
      length = 3;
      if (byte == 0xE0) low = 0xA0;
      if (byte == 0xED) high = 0x9F;
    } else if (byte >= 0xF0 && byte <= 0xF4) {
      length = 4;
      if (byte == 0xF0) low = 0x90;
      if (byte == 0xF4) high = 0x8F;
    }
    bool valid = length != 0 && idx + length <= text.size();
    for (size_t k = 1; valid && k < length; ++k) {
      auto next = static_cast<unsigned char>(text[idx + k]);
      unsigned char lo = k == 1 ? low : 0x80;
      unsigned char hi = k == 1 ? high : 0xBF;
      if (next < lo || next > hi) valid = false;
    }
    if (valid) {
      out.append(text.substr(idx, length));
      idx += length;
    } else {
      out += "\xEF\xBF\xBD";
      ++idx;
    }
  }
  out += '"';
}

// Shortest round-trip form; JSON has no NaN/Inf, so those become null.
void appendJsonDouble(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  if (ec != std::errc()) {
    out += "null";
    return;
  }
  out.append(buf, end);
}

Result<Record> parseRecord(const Json& root) {
  if (!root.is_object()) return invalidArgument("record: expected a JSON object");
  Record record;
  if (auto it = root.find("name"); it != root.end()) {
    if (!it->is_string()) return invalidArgument("name: expected a string");
    record.name = it->get<std::string>();
  }
  CLRK_RETURN_IF_ERROR(readId(root, "traceId", record.trace_id));
  CLRK_RETURN_IF_ERROR(readId(root, "spanId", record.span_id));
  CLRK_RETURN_IF_ERROR(readId(root, "parentSpanId", record.parent_span_id));
  CLRK_RETURN_IF_ERROR(readTime(root, "startNs", record.start));
  CLRK_RETURN_IF_ERROR(readTime(root, "endNs", record.end));
  if (auto it = root.find("kind"); it != root.end()) {
    if (!it->is_number_integer()) return invalidArgument("kind: expected an integer");
    int64_t value = it->get<int64_t>();
    if (value < 0 || value > 5) return invalidArgument("kind: must be 0 to 5");
    record.kind = static_cast<SpanKind>(value);
  }
  if (auto it = root.find("status"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) return invalidArgument("status: expected an object");
    if (auto code = it->find("code"); code != it->end()) {
      if (!code->is_number_integer()) return invalidArgument("status.code: expected an integer");
      int64_t value = code->get<int64_t>();
      if (value < 0 || value > 2) return invalidArgument("status.code: must be 0, 1 or 2");
      record.status_code = static_cast<int>(value);
    }
    if (auto message = it->find("message"); message != it->end()) {
      if (!message->is_string()) return invalidArgument("status.message: expected a string");
      record.status_message = message->get<std::string>();
    }
  }
  if (auto it = root.find("attributes"); it != root.end() && !it->is_null()) {
    if (!it->is_array()) return invalidArgument("attributes: expected an array");
    size_t attr_idx = 0;
    for (const Json& item : *it) {
      std::string where = "attributes[" + std::to_string(attr_idx++) + "]";
      if (!item.is_object()) return invalidArgument(where + ": expected an object");
      auto key = item.find("k");
      if (key == item.end() || !key->is_string()) {
        return invalidArgument(where + ".k: expected a string");
      }
      AttributeValue value;
      if (auto s = item.find("s"); s != item.end() && s->is_string()) {
        value = s->get<std::string>();
      } else if (auto i = item.find("i"); i != item.end() && i->is_number_integer()) {
        value = i->get<int64_t>();
      } else if (auto d = item.find("d"); d != item.end() && (d->is_number() || d->is_null())) {
        value = d->is_null() ? 0.0 : d->get<double>();
      } else if (auto b = item.find("b"); b != item.end() && b->is_boolean()) {
        value = b->get<bool>();
      } else {
        return invalidArgument(where +
                               ": expected one of s (string), i (integer), d (number), "
                               "b (boolean)");
      }
      set(record, key->get_ref<const std::string&>(), std::move(value));
    }
  }
  return record;
}

}  // namespace

void set(Record& record, std::string_view key, AttributeValue value) {
  for (Attribute& attribute : record.attributes) {
    if (attribute.key == key) {
      attribute.value = std::move(value);
      return;
    }
  }
  record.attributes.push_back(Attribute{std::string(key), std::move(value)});
}

const AttributeValue* find(const Record& record, std::string_view key) {
  for (const Attribute& attribute : record.attributes) {
    if (attribute.key == key) return &attribute.value;
  }
  return nullptr;
}

const std::string* findString(const Record& record, std::string_view key) {
  const AttributeValue* value = find(record, key);
  return value == nullptr ? nullptr : std::get_if<std::string>(value);
}

std::optional<int64_t> findInt(const Record& record, std::string_view key) {
  const AttributeValue* value = find(record, key);
  if (value == nullptr) return std::nullopt;
  if (const int64_t* number = std::get_if<int64_t>(value)) return *number;
  return std::nullopt;
}

TraceId newTraceId() { return randomNonZero<16>(); }
SpanId newSpanId() { return randomNonZero<8>(); }

std::string toHex(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (uint8_t byte : bytes) {
    out.push_back(kHexDigits[byte >> 4]);
    out.push_back(kHexDigits[byte & 0xf]);
  }
  return out;
}

Status fromHex(std::string_view hex, std::span<uint8_t> out) {
  if (hex.size() != out.size() * 2) {
    return invalidArgument("expected " + std::to_string(out.size() * 2) + " hex digits, got " +
                           std::to_string(hex.size()));
  }
  for (size_t idx = 0; idx < out.size(); ++idx) {
    int high = hexValue(hex[2 * idx]);
    int low = hexValue(hex[2 * idx + 1]);
    if (high < 0 || low < 0) {
      return invalidArgument("invalid hex digit at offset " +
                             std::to_string(high < 0 ? 2 * idx : 2 * idx + 1));
    }
    out[idx] = static_cast<uint8_t>(high << 4 | low);
  }
  return {};
}

std::string toJson(const Record& record) {
  // Written by hand: this runs once per record on the spool writer thread, and building an
  // nlohmann::json tree first costs several times more.
  std::string out;
  out.reserve(256 + record.name.size() + record.attributes.size() * 48);
  out += "{\"name\":";
  appendJsonString(out, record.name);
  out += ",\"traceId\":\"";
  out += toHex(record.trace_id);
  out += "\",\"spanId\":\"";
  out += toHex(record.span_id);
  out += "\",\"parentSpanId\":\"";
  out += toHex(record.parent_span_id);
  out += "\",\"startNs\":";
  out += std::to_string(toNanos(record.start));
  out += ",\"endNs\":";
  out += std::to_string(toNanos(record.end));
  if (record.kind != SpanKind::Client) {
    out += ",\"kind\":";
    out += std::to_string(static_cast<int>(record.kind));
  }
  out += ",\"status\":{\"code\":";
  out += std::to_string(record.status_code);
  out += ",\"message\":";
  appendJsonString(out, record.status_message);
  out += "},\"attributes\":[";
  bool first = true;
  for (const Attribute& attribute : record.attributes) {
    if (!first) out += ',';
    first = false;
    out += "{\"k\":";
    appendJsonString(out, attribute.key);
    std::visit(
        [&out](const auto& value) {
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::string>) {
            out += ",\"s\":";
            appendJsonString(out, value);
          } else if constexpr (std::is_same_v<T, int64_t>) {
            out += ",\"i\":";
            out += std::to_string(value);
          } else if constexpr (std::is_same_v<T, double>) {
            out += ",\"d\":";
            appendJsonDouble(out, value);
          } else {
            out += value ? ",\"b\":true" : ",\"b\":false";
          }
        },
        attribute.value);
    out += '}';
  }
  out += "]}";
  return out;
}

Result<Record> recordFromJson(std::string_view json) {
  Json root = Json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return invalidArgument("record: invalid JSON");
  try {
    return parseRecord(root);
  } catch (const std::exception& e) {
    return invalidArgument(std::string("record: ") + e.what());
  }
}

}  // namespace clrk::telemetry
