// Decoding of the Kubernetes protobuf wire form ("application/vnd.kubernetes.protobuf") for the
// few core kinds that the real kubectl sends typed: v1 Secret, ConfigMap, Namespace and
// meta/v1 DeleteOptions. The result is the JSON object the JSON wire form would have carried,
// so the resource handler treats both forms the same. Responses are never protobuf.
//
// Untrusted input: every read is bounds-checked, nesting and size are limited, and malformed
// bytes give an InvalidArgument Status naming the byte offset (from the start of the body).
// Nesting is bounded by the fixed schema (at most four levels); unknown fields are skipped
// without being parsed, so no input can drive recursion.
#pragma once

#include "clrk/base/status.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace clrk::apiserver {

// The 4-byte prefix of every Kubernetes protobuf body: "k8s\0".
inline constexpr std::string_view kKubernetesProtobufMagic{"k8s\0", 4};
// Bodies larger than this are rejected before decoding.
inline constexpr size_t kMaxProtobufBodyBytes = 16 * 1024 * 1024;

// The runtime.Unknown envelope that follows the magic.
struct ProtobufEnvelope {
  std::string api_version;
  std::string kind;
  std::string_view raw;   // the encoded object; points into the body passed to readEnvelope
  size_t raw_offset = 0;  // offset of `raw` within that body, for error messages
  std::string content_encoding;
  std::string content_type;
};

// Parses magic + runtime.Unknown. InvalidArgument when the magic is missing, the bytes are
// malformed, or contentEncoding is set (no encoding is supported).
Result<ProtobufEnvelope> readProtobufEnvelope(std::string_view body);

// True when decodeProtobufObject understands (api_version, kind).
bool isDecodableProtobufKind(std::string_view api_version, std::string_view kind);

// Decodes the envelope's raw object into JSON with "apiVersion" and "kind" set from the
// envelope. REQUIRES: isDecodableProtobufKind(envelope.api_version, envelope.kind).
// InvalidArgument on malformed bytes or a timestamp outside years 0001..9999.
Result<nlohmann::json> decodeProtobufObject(const ProtobufEnvelope& envelope);

// The low-level wire reader, exposed for tests and the fuzzer.
enum class WireType : uint8_t { Varint = 0, Fixed64 = 1, Bytes = 2, Fixed32 = 5 };

struct WireField {
  uint32_t number = 0;
  WireType type = WireType::Varint;
  uint64_t varint = 0;      // Varint, Fixed64 and Fixed32 values
  std::string_view bytes;   // Bytes payload
  size_t offset = 0;        // absolute offset of the field's tag
  size_t bytes_offset = 0;  // absolute offset of the Bytes payload
};

// Reads the fields of one message in order. Groups (wire types 3/4) are rejected.
class WireReader {
 public:
  // `base_offset` is the absolute offset of data[0], used in error messages.
  explicit WireReader(std::string_view data, size_t base_offset = 0)
      : data_(data), base_(base_offset) {}

  bool done() const { return pos_ >= data_.size(); }
  // REQUIRES: !done(). Reads the next field or returns InvalidArgument naming the offset.
  Status next(WireField* field);

 private:
  Status readVarint(uint64_t* value);
  Status error(std::string_view what) const;

  std::string_view data_;
  size_t base_;
  size_t pos_ = 0;
};

}  // namespace clrk::apiserver
