#include "clrk/apiserver/protobuf.h"

#include "clrk/base/base64.h"

#include <array>
#include <cstdio>
#include <utility>

namespace clrk::apiserver {
namespace {

using Json = nlohmann::json;

// Strict UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool validUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length = 0;
    uint32_t point = 0;
    if ((c & 0xe0) == 0xc0) {
      length = 2;
      point = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      length = 3;
      point = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      length = 4;
      point = c & 0x07;
    } else {
      return false;
    }
    if (text.size() - i < length) return false;
    for (size_t k = 1; k < length; ++k) {
      auto next = static_cast<uint8_t>(text[i + k]);
      if ((next & 0xc0) != 0x80) return false;
      point = (point << 6) | (next & 0x3f);
    }
    static constexpr std::array<uint32_t, 5> kMin{0, 0, 0x80, 0x800, 0x10000};
    if (point < kMin[length] || point > 0x10ffff || (point >= 0xd800 && point <= 0xdfff)) {
      return false;
    }
    i += length;
  }
  return true;
}

Status checkUtf8(std::string_view text, size_t offset, std::string_view what) {
  if (validUtf8(text)) return Status{};
  return invalidArgument("protobuf body: " + std::string(what) + " at byte " +
                         std::to_string(offset) + " is not valid UTF-8");
}

// Drops the null members left by fields that JSON would omit (empty strings, zero values).
void pruneNulls(Json* value) {
  if (value->is_object()) {
    for (auto it = value->begin(); it != value->end();) {
      if (it->is_null()) {
        it = value->erase(it);
      } else {
        pruneNulls(&*it);
        ++it;
      }
    }
  } else if (value->is_array()) {
    for (Json& item : *value) pruneNulls(&item);
  }
}

// Days since 1970-01-01 to a proleptic Gregorian civil date.
void civilFromDays(int64_t days, int64_t* year, unsigned* month, unsigned* day) {
  days += 719468;
  int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  auto doe = static_cast<unsigned>(days - era * 146097);
  unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  unsigned mp = (5 * doy + 2) / 153;
  *day = doy - (153 * mp + 2) / 5 + 1;
  *month = mp < 10 ? mp + 3 : mp - 9;
  *year = static_cast<int64_t>(yoe) + era * 400 + (*month <= 2 ? 1 : 0);
}

// Seconds of 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z since the Unix epoch.
constexpr int64_t kMinSeconds = -62135596800;
constexpr int64_t kEndSeconds = 253402300800;

std::string_view fieldName(const WireField& field) {
  switch (field.type) {
    case WireType::Varint:
      return "varint";
    case WireType::Fixed64:
      return "fixed64";
    case WireType::Bytes:
      return "length-delimited";
    case WireType::Fixed32:
      return "fixed32";
  }
  return "unknown";
}

class Decoder {
 public:
  static Status expect(const WireField& field, WireType type, std::string_view what) {
    if (field.type == type) return Status{};
    return invalidArgument("protobuf body: field " + std::to_string(field.number) + " (" +
                           std::string(what) + ") at byte " + std::to_string(field.offset) +
                           " has wire type " + std::string(fieldName(field)));
  }

  static Status string(const WireField& field, std::string_view what, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, what));
    CLRK_RETURN_IF_ERROR(checkUtf8(field.bytes, field.bytes_offset, what));
    if (!field.bytes.empty()) *out = std::string(field.bytes);  // JSON omits empty strings
    return Status{};
  }

  static Status stringList(const WireField& field, std::string_view what, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, what));
    CLRK_RETURN_IF_ERROR(checkUtf8(field.bytes, field.bytes_offset, what));
    if (!out->is_array()) *out = Json::array();
    out->push_back(std::string(field.bytes));
    return Status{};
  }

  static Status int64Field(const WireField& field, std::string_view what, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Varint, what));
    *out = static_cast<int64_t>(field.varint);
    return Status{};
  }

  // An int64 that JSON omits when zero (ObjectMeta.generation).
  static Status int64OmitZero(const WireField& field, std::string_view what, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Varint, what));
    if (field.varint != 0) *out = static_cast<int64_t>(field.varint);
    return Status{};
  }

  static Status boolField(const WireField& field, std::string_view what, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Varint, what));
    *out = field.varint != 0;
    return Status{};
  }

  // A map<string, string|bytes> entry: 1 key, 2 value.
  static Status mapEntry(const WireField& field, std::string_view what, bool bytes_value,
                         Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, what));
    WireReader reader(field.bytes, field.bytes_offset);
    std::string key;
    std::string value;
    while (!reader.done()) {
      WireField entry;
      CLRK_RETURN_IF_ERROR(reader.next(&entry));
      if (entry.number == 1) {
        CLRK_RETURN_IF_ERROR(expect(entry, WireType::Bytes, "map key"));
        CLRK_RETURN_IF_ERROR(checkUtf8(entry.bytes, entry.bytes_offset, "map key"));
        key = entry.bytes;
      } else if (entry.number == 2) {
        CLRK_RETURN_IF_ERROR(expect(entry, WireType::Bytes, "map value"));
        if (!bytes_value) CLRK_RETURN_IF_ERROR(checkUtf8(entry.bytes, entry.bytes_offset, what));
        value = entry.bytes;
      }
    }
    if (!out->is_object()) *out = Json::object();
    (*out)[key] = bytes_value ? base64Encode(value) : value;
    return Status{};
  }

  // meta/v1 Time: 1 seconds, 2 nanos. The zero message is the zero time (omitted in JSON).
  static Status time(const WireField& field, std::string_view what, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, what));
    WireReader reader(field.bytes, field.bytes_offset);
    int64_t seconds = 0;
    while (!reader.done()) {
      WireField part;
      CLRK_RETURN_IF_ERROR(reader.next(&part));
      if (part.number == 1) {
        CLRK_RETURN_IF_ERROR(expect(part, WireType::Varint, "seconds"));
        seconds = static_cast<int64_t>(part.varint);
      }
    }
    if (seconds == 0) return Status{};  // zero Time; JSON carries no value
    if (seconds < kMinSeconds || seconds >= kEndSeconds) {
      return invalidArgument("protobuf body: " + std::string(what) + " at byte " +
                             std::to_string(field.offset) + " is outside years 0001..9999");
    }
    int64_t days = seconds >= 0 ? seconds / 86400 : (seconds - 86399) / 86400;
    int64_t rest = seconds - days * 86400;
    int64_t year = 0;
    unsigned month = 0;
    unsigned day = 0;
    civilFromDays(days, &year, &month, &day);
    // Within the checked range: 1 <= year <= 9999 and 0 <= rest < 86400.
    auto hms = static_cast<unsigned>(rest);
    std::array<char, 64> text{};
    std::snprintf(text.data(), text.size(), "%04u-%02u-%02uT%02u:%02u:%02uZ",
                  static_cast<unsigned>(year), month, day, hms / 3600, hms / 60 % 60, hms % 60);
    *out = std::string(text.data());
    return Status{};
  }

  static Status ownerReference(const WireField& field, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, "ownerReferences"));
    WireReader reader(field.bytes, field.bytes_offset);
    Json ref = Json::object();
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case 1:
          CLRK_RETURN_IF_ERROR(string(f, "kind", &ref["kind"]));
          break;
        case 3:
          CLRK_RETURN_IF_ERROR(string(f, "name", &ref["name"]));
          break;
        case 4:
          CLRK_RETURN_IF_ERROR(string(f, "uid", &ref["uid"]));
          break;
        case 5:
          CLRK_RETURN_IF_ERROR(string(f, "apiVersion", &ref["apiVersion"]));
          break;
        case 6:
          CLRK_RETURN_IF_ERROR(boolField(f, "controller", &ref["controller"]));
          break;
        case 7:
          CLRK_RETURN_IF_ERROR(boolField(f, "blockOwnerDeletion", &ref["blockOwnerDeletion"]));
          break;
        default:
          break;
      }
    }
    if (!out->is_array()) *out = Json::array();
    out->push_back(std::move(ref));
    return Status{};
  }

  // meta/v1 ObjectMeta.
  static Status objectMeta(const WireField& field, Json* out) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, "metadata"));
    WireReader reader(field.bytes, field.bytes_offset);
    Json meta = Json::object();
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case 1:
          CLRK_RETURN_IF_ERROR(string(f, "name", &meta["name"]));
          break;
        case 2:
          CLRK_RETURN_IF_ERROR(string(f, "generateName", &meta["generateName"]));
          break;
        case 3:
          CLRK_RETURN_IF_ERROR(string(f, "namespace", &meta["namespace"]));
          break;
        case 4:
          CLRK_RETURN_IF_ERROR(string(f, "selfLink", &meta["selfLink"]));
          break;
        case 5:
          CLRK_RETURN_IF_ERROR(string(f, "uid", &meta["uid"]));
          break;
        case 6:
          CLRK_RETURN_IF_ERROR(string(f, "resourceVersion", &meta["resourceVersion"]));
          break;
        case 7:
          CLRK_RETURN_IF_ERROR(int64OmitZero(f, "generation", &meta["generation"]));
          break;
        case 8: {
          Json value;
          CLRK_RETURN_IF_ERROR(time(f, "creationTimestamp", &value));
          if (!value.is_null()) meta["creationTimestamp"] = std::move(value);
          break;
        }
        case 9: {
          Json value;
          CLRK_RETURN_IF_ERROR(time(f, "deletionTimestamp", &value));
          if (!value.is_null()) meta["deletionTimestamp"] = std::move(value);
          break;
        }
        case 10:
          CLRK_RETURN_IF_ERROR(
              int64Field(f, "deletionGracePeriodSeconds", &meta["deletionGracePeriodSeconds"]));
          break;
        case 11:
          CLRK_RETURN_IF_ERROR(mapEntry(f, "labels", false, &meta["labels"]));
          break;
        case 12:
          CLRK_RETURN_IF_ERROR(mapEntry(f, "annotations", false, &meta["annotations"]));
          break;
        case 13:
          CLRK_RETURN_IF_ERROR(ownerReference(f, &meta["ownerReferences"]));
          break;
        case 14:
          CLRK_RETURN_IF_ERROR(stringList(f, "finalizers", &meta["finalizers"]));
          break;
        default:
          break;  // managedFields (17) and unknown fields are skipped
      }
    }
    *out = std::move(meta);
    return Status{};
  }

  // Runs `handle(field)` for every field of a nested message.
  template <typename Handle>
  static Status nested(const WireField& field, std::string_view what, Handle handle) {
    CLRK_RETURN_IF_ERROR(expect(field, WireType::Bytes, what));
    WireReader reader(field.bytes, field.bytes_offset);
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      CLRK_RETURN_IF_ERROR(handle(f));
    }
    return Status{};
  }

  static Status secret(WireReader& reader, Json* object) {
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case 1:
          CLRK_RETURN_IF_ERROR(objectMeta(f, &(*object)["metadata"]));
          break;
        case 2:
          CLRK_RETURN_IF_ERROR(mapEntry(f, "data", true, &(*object)["data"]));
          break;
        case 3:
          CLRK_RETURN_IF_ERROR(string(f, "type", &(*object)["type"]));
          break;
        case 4:
          CLRK_RETURN_IF_ERROR(mapEntry(f, "stringData", false, &(*object)["stringData"]));
          break;
        case 5:
          CLRK_RETURN_IF_ERROR(boolField(f, "immutable", &(*object)["immutable"]));
          break;
        default:
          break;
      }
    }
    return Status{};
  }

  static Status configMap(WireReader& reader, Json* object) {
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case 1:
          CLRK_RETURN_IF_ERROR(objectMeta(f, &(*object)["metadata"]));
          break;
        case 2:
          CLRK_RETURN_IF_ERROR(mapEntry(f, "data", false, &(*object)["data"]));
          break;
        case 3:
          CLRK_RETURN_IF_ERROR(mapEntry(f, "binaryData", true, &(*object)["binaryData"]));
          break;
        case 4:
          CLRK_RETURN_IF_ERROR(boolField(f, "immutable", &(*object)["immutable"]));
          break;
        default:
          break;
      }
    }
    return Status{};
  }

  static Status namespaceObject(WireReader& reader, Json* object) {
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case 1:
          CLRK_RETURN_IF_ERROR(objectMeta(f, &(*object)["metadata"]));
          break;
        case 2: {
          Json spec = Json::object();
          CLRK_RETURN_IF_ERROR(nested(f, "spec", [&](const WireField& g) -> Status {
            if (g.number == 1) return stringList(g, "finalizers", &spec["finalizers"]);
            return Status{};
          }));
          (*object)["spec"] = std::move(spec);
          break;
        }
        case 3: {
          Json status = Json::object();
          CLRK_RETURN_IF_ERROR(nested(f, "status", [&](const WireField& g) -> Status {
            if (g.number == 1) return string(g, "phase", &status["phase"]);
            return Status{};
          }));
          (*object)["status"] = std::move(status);
          break;
        }
        default:
          break;
      }
    }
    return Status{};
  }

  // meta/v1 DeleteOptions: 1 gracePeriodSeconds, 2 preconditions {1 uid, 2 resourceVersion},
  // 3 orphanDependents, 4 propagationPolicy, 5 dryRun.
  static Status deleteOptions(WireReader& reader, Json* object) {
    while (!reader.done()) {
      WireField f;
      CLRK_RETURN_IF_ERROR(reader.next(&f));
      switch (f.number) {
        case 1:
          CLRK_RETURN_IF_ERROR(
              int64Field(f, "gracePeriodSeconds", &(*object)["gracePeriodSeconds"]));
          break;
        case 2: {
          Json pre = Json::object();
          CLRK_RETURN_IF_ERROR(nested(f, "preconditions", [&](const WireField& g) -> Status {
            if (g.number == 1) return string(g, "uid", &pre["uid"]);
            if (g.number == 2) return string(g, "resourceVersion", &pre["resourceVersion"]);
            return Status{};
          }));
          (*object)["preconditions"] = std::move(pre);
          break;
        }
        case 3:
          CLRK_RETURN_IF_ERROR(boolField(f, "orphanDependents", &(*object)["orphanDependents"]));
          break;
        case 4:
          CLRK_RETURN_IF_ERROR(string(f, "propagationPolicy", &(*object)["propagationPolicy"]));
          break;
        case 5:
          CLRK_RETURN_IF_ERROR(stringList(f, "dryRun", &(*object)["dryRun"]));
          break;
        default:
          break;
      }
    }
    return Status{};
  }
};

}  // namespace

Status WireReader::error(std::string_view what) const {
  return invalidArgument("protobuf body: " + std::string(what) + " at byte " +
                         std::to_string(base_ + pos_));
}

Status WireReader::readVarint(uint64_t* value) {
  uint64_t result = 0;
  size_t start = pos_;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) {
      pos_ = start;
      return error("truncated varint");
    }
    auto byte = static_cast<uint8_t>(data_[pos_++]);
    if (shift == 63 && byte > 1) {
      pos_ = start;
      return error("varint overflows 64 bits");
    }
    result |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *value = result;
      return Status{};
    }
  }
  pos_ = start;
  return error("varint longer than 10 bytes");
}

Status WireReader::next(WireField* field) {
  *field = WireField{};
  field->offset = base_ + pos_;
  uint64_t tag = 0;
  CLRK_RETURN_IF_ERROR(readVarint(&tag));
  uint64_t number = tag >> 3;
  if (number == 0 || number > 0x1fffffff) {
    pos_ = field->offset - base_;
    return error("invalid field number " + std::to_string(number));
  }
  field->number = static_cast<uint32_t>(number);
  switch (tag & 7) {
    case 0:
      field->type = WireType::Varint;
      return readVarint(&field->varint);
    case 1:
    case 5: {
      size_t width = (tag & 7) == 1 ? 8 : 4;
      field->type = (tag & 7) == 1 ? WireType::Fixed64 : WireType::Fixed32;
      if (data_.size() - pos_ < width) return error("truncated fixed-width field");
      uint64_t value = 0;
      for (size_t i = 0; i < width; ++i) {
        value |= static_cast<uint64_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
      }
      field->varint = value;
      pos_ += width;
      return Status{};
    }
    case 2: {
      field->type = WireType::Bytes;
      uint64_t length = 0;
      CLRK_RETURN_IF_ERROR(readVarint(&length));
      if (length > data_.size() - pos_) {
        return error("length " + std::to_string(length) + " runs past the end of the message");
      }
      field->bytes_offset = base_ + pos_;
      field->bytes = data_.substr(pos_, static_cast<size_t>(length));
      pos_ += static_cast<size_t>(length);
      return Status{};
    }
    default:
      pos_ = field->offset - base_;
      return error("unsupported wire type " + std::to_string(tag & 7));
  }
}

Result<ProtobufEnvelope> readProtobufEnvelope(std::string_view body) {
  if (body.size() > kMaxProtobufBodyBytes) {
    return invalidArgument("protobuf body: " + std::to_string(body.size()) +
                           " bytes exceed the limit of " + std::to_string(kMaxProtobufBodyBytes));
  }
  if (body.substr(0, kKubernetesProtobufMagic.size()) != kKubernetesProtobufMagic) {
    return invalidArgument("protobuf body: missing the \"k8s\\0\" prefix at byte 0");
  }
  size_t base = kKubernetesProtobufMagic.size();
  WireReader reader(body.substr(base), base);
  ProtobufEnvelope envelope;
  bool have_raw = false;
  while (!reader.done()) {
    WireField f;
    CLRK_RETURN_IF_ERROR(reader.next(&f));
    switch (f.number) {
      case 1: {
        auto type_meta = [&](const WireField& g) -> Status {
          if (g.number != 1 && g.number != 2) return Status{};
          std::string_view what = g.number == 1 ? "apiVersion" : "kind";
          Status status = Decoder::expect(g, WireType::Bytes, what);
          if (status.ok()) status = checkUtf8(g.bytes, g.bytes_offset, what);
          if (status.ok()) (g.number == 1 ? envelope.api_version : envelope.kind) = g.bytes;
          return status;
        };
        CLRK_RETURN_IF_ERROR(Decoder::nested(f, "typeMeta", type_meta));
        break;
      }
      case 2:
        CLRK_RETURN_IF_ERROR(Decoder::expect(f, WireType::Bytes, "raw"));
        envelope.raw = f.bytes;
        envelope.raw_offset = f.bytes_offset;
        have_raw = true;
        break;
      case 3:
        CLRK_RETURN_IF_ERROR(Decoder::expect(f, WireType::Bytes, "contentEncoding"));
        CLRK_RETURN_IF_ERROR(checkUtf8(f.bytes, f.bytes_offset, "contentEncoding"));
        envelope.content_encoding = f.bytes;
        break;
      case 4:
        CLRK_RETURN_IF_ERROR(Decoder::expect(f, WireType::Bytes, "contentType"));
        envelope.content_type = f.bytes;
        break;
      default:
        break;
    }
  }
  if (!have_raw) return invalidArgument("protobuf body: the envelope carries no object (raw)");
  if (!envelope.content_encoding.empty()) {
    return invalidArgument("protobuf body: unsupported contentEncoding \"" +
                           envelope.content_encoding + "\"");
  }
  return envelope;
}

bool isDecodableProtobufKind(std::string_view api_version, std::string_view kind) {
  if (api_version == "v1") {
    return kind == "Secret" || kind == "ConfigMap" || kind == "Namespace" ||
           kind == "DeleteOptions";
  }
  return api_version == "meta.k8s.io/v1" && kind == "DeleteOptions";
}

Result<Json> decodeProtobufObject(const ProtobufEnvelope& envelope) {
  if (!isDecodableProtobufKind(envelope.api_version, envelope.kind)) {
    return invalidArgument("protobuf body: cannot decode kind " + envelope.kind + " of " +
                           envelope.api_version);
  }
  Json object = Json::object();
  object["apiVersion"] = envelope.api_version;
  object["kind"] = envelope.kind;
  WireReader reader(envelope.raw, envelope.raw_offset);
  Status status;
  if (envelope.kind == "Secret") {
    status = Decoder::secret(reader, &object);
  } else if (envelope.kind == "ConfigMap") {
    status = Decoder::configMap(reader, &object);
  } else if (envelope.kind == "Namespace") {
    status = Decoder::namespaceObject(reader, &object);
  } else {
    status = Decoder::deleteOptions(reader, &object);
  }
  if (!status.ok()) return status;
  pruneNulls(&object);
  return object;
}

}  // namespace clrk::apiserver
