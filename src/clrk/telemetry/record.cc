#include "clrk/telemetry/record.h"

#include "clrk/base/utf8.h"

#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bitset>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <pthread.h>

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

std::atomic<uint64_t> fork_generation{0};

void afterFork() { fork_generation.fetch_add(1, std::memory_order_relaxed); }

// Fills `out` from a per-thread block of CSPRNG output: one RAND_bytes call per kBlockBytes
// instead of one per id (each call costs about a microsecond in locking and DRBG overhead). A
// forked child starts a new block, so parent and child never hand out the same ids.
void randomBytes(std::span<uint8_t> out) {
  constexpr size_t kBlockBytes = 1024;
  struct Block {
    std::array<uint8_t, kBlockBytes> bytes{};
    size_t used = kBlockBytes;
    uint64_t generation = 0;
  };
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, afterFork);
    return true;
  }();
  (void)registered;
  thread_local Block block;
  uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  if (block.used + out.size() > block.bytes.size() || block.generation != generation) {
    if (RAND_bytes(block.bytes.data(), static_cast<int>(block.bytes.size())) != 1) {
      // The CSPRNG failing is not survivable for key material, but ids only need to be
      // unique-ish: fall back to a clock-derived value rather than crash.
      auto now = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
      for (size_t idx = 0; idx < out.size(); ++idx) {
        out[idx] = static_cast<uint8_t>(now >> ((idx % 8) * 8));
      }
      return;
    }
    block.used = 0;
    block.generation = generation;
  }
  std::memcpy(out.data(), block.bytes.data() + block.used, out.size());
  block.used += out.size();
}

template <size_t N>
std::array<uint8_t, N> randomNonZero() {
  std::array<uint8_t, N> id{};
  while (true) {
    randomBytes(id);
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

// Replaces invalid UTF-8 in `text` with U+FFFD, byte by byte, as appendJsonString does.
void sanitizeUtf8(std::string& text) {
  // ASCII, the common case, is checked 8 bytes at a time.
  size_t idx = 0;
  for (; idx + 8 <= text.size(); idx += 8) {
    uint64_t word = 0;
    std::memcpy(&word, text.data() + idx, sizeof word);
    if ((word & 0x8080808080808080ull) != 0) break;
  }
  while (idx < text.size() && static_cast<unsigned char>(text[idx]) < 0x80) ++idx;
  if (idx == text.size()) return;
  std::string out(text, 0, idx);
  bool changed = false;
  while (idx < text.size()) {
    if (static_cast<unsigned char>(text[idx]) < 0x80) {
      out += text[idx++];
      continue;
    }
    size_t length = utf8SequenceLength(text, idx);
    if (length != 0) {
      out.append(text, idx, length);
      idx += length;
    } else {
      out += "\xEF\xBF\xBD";
      changed = true;
      ++idx;
    }
  }
  if (changed) text = std::move(out);
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
    size_t length = utf8SequenceLength(text, idx);
    bool valid = length != 0;
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

size_t varintSize(uint64_t value) {
  size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    ++size;
  }
  return size;
}

// Writes appendBinary's fields into room made for them beforehand (no capacity checks per byte).
class BinaryWriter {
 public:
  explicit BinaryWriter(char* at) : at_(at) {}
  char* at() const { return at_; }

  void byte(uint8_t value) { *at_++ = static_cast<char>(value); }
  void bytes(const void* data, size_t size) {
    std::memcpy(at_, data, size);
    at_ += size;
  }
  void varint(uint64_t value) {
    while (value >= 0x80) {
      byte(static_cast<uint8_t>(value) | 0x80);
      value >>= 7;
    }
    byte(static_cast<uint8_t>(value));
  }
  void fixed64(uint64_t value) {
    for (int idx = 0; idx < 8; ++idx) byte(static_cast<uint8_t>(value >> (8 * idx)));
  }
  void string(std::string_view text) {
    varint(text.size());
    bytes(text.data(), text.size());
  }

 private:
  char* at_;
};

size_t stringSize(std::string_view text) { return varintSize(text.size()) + text.size(); }

// Reads appendBinary fields from a byte range; every getter fails (false) past the end.
class BinaryReader {
 public:
  explicit BinaryReader(std::string_view data) : data_(data) {}

  size_t remaining() const { return data_.size() - pos_; }
  size_t offset() const { return pos_; }

  bool byte(uint8_t& out) {
    if (remaining() < 1) return false;
    out = static_cast<uint8_t>(data_[pos_++]);
    return true;
  }
  bool varint(uint64_t& out) {
    out = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      uint8_t next = 0;
      if (!byte(next)) return false;
      if (shift == 63 && next > 1) return false;  // over 64 bits
      out |= static_cast<uint64_t>(next & 0x7f) << shift;
      if ((next & 0x80) == 0) return true;
    }
    return false;
  }
  bool fixed64(uint64_t& out) {
    if (remaining() < 8) return false;
    out = 0;
    for (int idx = 7; idx >= 0; --idx) {
      out = out << 8 | static_cast<uint8_t>(data_[pos_ + static_cast<size_t>(idx)]);
    }
    pos_ += 8;
    return true;
  }
  bool bytes(std::span<uint8_t> out) {
    if (remaining() < out.size()) return false;
    std::memcpy(out.data(), data_.data() + pos_, out.size());
    pos_ += out.size();
    return true;
  }
  bool string(std::string& out) {
    uint64_t length = 0;
    if (!varint(length) || length > remaining()) return false;
    out.assign(data_.data() + pos_, static_cast<size_t>(length));
    pos_ += static_cast<size_t>(length);
    return true;
  }

 private:
  std::string_view data_;
  size_t pos_ = 0;
};

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

void add(Record& record, std::string_view key, AttributeValue value) {
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

namespace {

// False when no two keys of `attributes` can be equal: keys are bucketed by a cheap hash and
// only keys sharing a bucket are compared (normalize runs for every spooled record).
bool mayRepeatKeys(const std::vector<Attribute>& attributes) {
  constexpr size_t kMaxChecked = 64;
  if (attributes.size() > kMaxChecked) return true;
  std::array<uint8_t, kMaxChecked> bucket_of{};
  std::bitset<256> used;
  for (size_t idx = 0; idx < attributes.size(); ++idx) {
    const std::string& key = attributes[idx].key;
    size_t hash = key.size() * 131;
    if (!key.empty()) {
      hash += static_cast<unsigned char>(key.front()) * 31u +
              static_cast<unsigned char>(key[key.size() / 2]) * 7u +
              static_cast<unsigned char>(key.back());
    }
    auto bucket = static_cast<uint8_t>(hash ^ (hash >> 8));
    if (used.test(bucket)) {
      for (size_t earlier = 0; earlier < idx; ++earlier) {
        if (bucket_of[earlier] == bucket && attributes[earlier].key == key) return true;
      }
    }
    used.set(bucket);
    bucket_of[idx] = bucket;
  }
  return false;
}

}  // namespace

void normalize(Record& record) {
  sanitizeUtf8(record.name);
  sanitizeUtf8(record.status_message);
  if (record.status_code < 0 || record.status_code > 2) record.status_code = 2;
  auto kind = static_cast<int>(record.kind);
  if (kind < 0 || kind > 5) record.kind = SpanKind::Unspecified;
  for (Attribute& attribute : record.attributes) {
    sanitizeUtf8(attribute.key);
    if (auto* text = std::get_if<std::string>(&attribute.value)) {
      sanitizeUtf8(*text);
    } else if (auto* number = std::get_if<double>(&attribute.value)) {
      if (!std::isfinite(*number)) *number = 0.0;
    }
  }
  // Repeated keys (only possible when attributes were pushed without set()): keep the first
  // position and the last value, as set() does when the JSON is read back.
  auto& attributes = record.attributes;
  if (!mayRepeatKeys(attributes)) return;
  for (size_t attr_idx = 1; attr_idx < attributes.size(); ++attr_idx) {
    for (size_t earlier_idx = 0; earlier_idx < attr_idx; ++earlier_idx) {
      if (attributes[earlier_idx].key == attributes[attr_idx].key) {
        attributes[earlier_idx].value = std::move(attributes[attr_idx].value);
        attributes.erase(attributes.begin() + static_cast<std::ptrdiff_t>(attr_idx));
        --attr_idx;
        break;
      }
    }
  }
}

void appendBinary(std::string& out, const Record& record) {
  size_t size = 1 + stringSize(record.name) + record.trace_id.size() + record.span_id.size() +
                record.parent_span_id.size() + 1 + 8 + 8 + 1 + stringSize(record.status_message) +
                varintSize(record.attributes.size());
  for (const Attribute& attribute : record.attributes) {
    size += stringSize(attribute.key) + 1;
    if (const auto* text = std::get_if<std::string>(&attribute.value)) {
      size += stringSize(*text);
    } else {
      size += std::holds_alternative<bool>(attribute.value) ? 1 : 8;
    }
  }
  size_t start = out.size();
  out.resize(start + size);
  BinaryWriter writer(out.data() + start);
  writer.byte(kBinaryRecordTag);
  writer.string(record.name);
  writer.bytes(record.trace_id.data(), record.trace_id.size());
  writer.bytes(record.span_id.data(), record.span_id.size());
  writer.bytes(record.parent_span_id.data(), record.parent_span_id.size());
  writer.byte(static_cast<uint8_t>(record.kind));
  writer.fixed64(static_cast<uint64_t>(toNanos(record.start)));
  writer.fixed64(static_cast<uint64_t>(toNanos(record.end)));
  writer.byte(static_cast<uint8_t>(record.status_code));
  writer.string(record.status_message);
  writer.varint(record.attributes.size());
  for (const Attribute& attribute : record.attributes) {
    writer.string(attribute.key);
    std::visit(
        [&writer](const auto& value) {
          using T = std::decay_t<decltype(value)>;
          if constexpr (std::is_same_v<T, std::string>) {
            writer.byte(0);
            writer.string(value);
          } else if constexpr (std::is_same_v<T, int64_t>) {
            writer.byte(1);
            writer.fixed64(static_cast<uint64_t>(value));
          } else if constexpr (std::is_same_v<T, double>) {
            uint64_t bits = 0;
            std::memcpy(&bits, &value, sizeof bits);
            writer.byte(2);
            writer.fixed64(bits);
          } else {
            writer.byte(3);
            writer.byte(value ? 1 : 0);
          }
        },
        attribute.value);
  }
  assert(writer.at() == out.data() + out.size());  // the sizing above is exact
}

Result<Record> recordFromBinary(std::string_view data) {
  BinaryReader in(data);
  Record record;
  auto bad = [&in](std::string_view field) {
    return invalidArgument("record: bad or truncated " + std::string(field) + " at byte " +
                           std::to_string(in.offset()));
  };
  uint8_t tag = 0;
  if (!in.byte(tag) || tag != kBinaryRecordTag) return bad("tag");
  if (!in.string(record.name)) return bad("name");
  if (!in.bytes(record.trace_id)) return bad("traceId");
  if (!in.bytes(record.span_id)) return bad("spanId");
  if (!in.bytes(record.parent_span_id)) return bad("parentSpanId");
  uint8_t kind = 0;
  if (!in.byte(kind) || kind > 5) return bad("kind");
  record.kind = static_cast<SpanKind>(kind);
  uint64_t start = 0;
  uint64_t end = 0;
  if (!in.fixed64(start)) return bad("startNs");
  if (!in.fixed64(end)) return bad("endNs");
  record.start = fromNanos(static_cast<int64_t>(start));
  record.end = fromNanos(static_cast<int64_t>(end));
  uint8_t status = 0;
  if (!in.byte(status) || status > 2) return bad("status.code");
  record.status_code = status;
  if (!in.string(record.status_message)) return bad("status.message");
  uint64_t count = 0;
  // Each attribute takes at least 3 bytes (empty key, type, one value byte).
  if (!in.varint(count) || count > in.remaining() / 3) return bad("attributes");
  record.attributes.reserve(static_cast<size_t>(std::min<uint64_t>(count, 64)));
  for (uint64_t attr_idx = 0; attr_idx < count; ++attr_idx) {
    Attribute& attribute = record.attributes.emplace_back();
    if (!in.string(attribute.key)) return bad("attribute key");
    uint8_t type = 0;
    if (!in.byte(type)) return bad("attribute type");
    switch (type) {
      case 0: {
        std::string text;
        if (!in.string(text)) return bad("attribute string");
        attribute.value = std::move(text);
        break;
      }
      case 1: {
        uint64_t bits = 0;
        if (!in.fixed64(bits)) return bad("attribute int");
        attribute.value = static_cast<int64_t>(bits);
        break;
      }
      case 2: {
        uint64_t bits = 0;
        if (!in.fixed64(bits)) return bad("attribute double");
        double number = 0;
        std::memcpy(&number, &bits, sizeof number);
        attribute.value = number;
        break;
      }
      case 3: {
        uint8_t flag = 0;
        if (!in.byte(flag) || flag > 1) return bad("attribute bool");
        attribute.value = flag == 1;
        break;
      }
      default:
        return bad("attribute type");
    }
  }
  if (in.remaining() != 0) return bad("end (trailing bytes)");
  return record;
}

}  // namespace clrk::telemetry
