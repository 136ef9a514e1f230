#include "clrk/telemetry/record.h"

#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include <cmath>
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
  Json root = Json::object();
  root["name"] = record.name;
  root["traceId"] = toHex(record.trace_id);
  root["spanId"] = toHex(record.span_id);
  root["parentSpanId"] = toHex(record.parent_span_id);
  root["startNs"] = toNanos(record.start);
  root["endNs"] = toNanos(record.end);
  root["status"] = {{"code", record.status_code}, {"message", record.status_message}};
  Json attributes = Json::array();
  for (const Attribute& attribute : record.attributes) {
    Json item = {{"k", attribute.key}};
    std::visit(
        [&item](const auto& value) {
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::string>) {
            item["s"] = value;
          } else if constexpr (std::is_same_v<T, int64_t>) {
            item["i"] = value;
          } else if constexpr (std::is_same_v<T, double>) {
            if (std::isfinite(value)) {
              item["d"] = value;
            } else {
              item["d"] = nullptr;
            }
          } else {
            item["b"] = value;
          }
        },
        attribute.value);
    attributes.push_back(std::move(item));
  }
  root["attributes"] = std::move(attributes);
  // Invalid UTF-8 (possible in URLs or names copied from traffic) is replaced, not thrown on.
  return root.dump(-1, ' ', false, Json::error_handler_t::replace);
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
