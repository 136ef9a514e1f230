#include "clrk/telemetry/spool_format.h"

#include <algorithm>
#include <zlib.h>

namespace clrk::telemetry::spool {
namespace {

void putU32(std::string& out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>(value >> shift));
}

uint32_t getU32(const char* data) {
  uint32_t value = 0;
  for (int idx = 3; idx >= 0; --idx) value = value << 8 | static_cast<uint8_t>(data[idx]);
  return value;
}

}  // namespace

uint32_t crc32(std::string_view data) {
  // zlib's crc32 is the same CRC (IEEE 802.3), several times faster than a byte-wise table.
  uLong crc = ::crc32(0L, nullptr, 0);
  const auto* bytes = reinterpret_cast<const Bytef*>(data.data());
  size_t left = data.size();
  while (left > 0) {
    auto piece = static_cast<uInt>(std::min<size_t>(left, 1u << 30));
    crc = ::crc32(crc, bytes, piece);
    bytes += piece;
    left -= piece;
  }
  return static_cast<uint32_t>(crc);
}

void sealFrame(std::string& out, size_t frame_start) {
  std::string_view payload(out.data() + frame_start + kFrameHeaderBytes,
                           out.size() - frame_start - kFrameHeaderBytes);
  uint32_t length = static_cast<uint32_t>(payload.size());
  uint32_t crc = crc32(payload);
  for (int idx = 0; idx < 4; ++idx) {
    out[frame_start + static_cast<size_t>(idx)] = static_cast<char>(length >> (8 * idx));
    out[frame_start + 4 + static_cast<size_t>(idx)] = static_cast<char>(crc >> (8 * idx));
  }
}

void appendFrame(std::string& out, std::string_view payload) {
  putU32(out, static_cast<uint32_t>(payload.size()));
  putU32(out, crc32(payload));
  out.append(payload);
}

FrameResult decodeFrame(std::string_view data, std::string_view& payload, size_t& frame_bytes) {
  if (data.size() < kFrameHeaderBytes) return FrameResult::Truncated;
  uint32_t length = getU32(data.data());
  uint32_t crc = getU32(data.data() + 4);
  if (length > kMaxPayloadBytes) return FrameResult::Corrupt;
  if (data.size() - kFrameHeaderBytes < length) return FrameResult::Truncated;
  std::string_view body = data.substr(kFrameHeaderBytes, length);
  if (crc32(body) != crc) return FrameResult::Corrupt;
  payload = body;
  frame_bytes = kFrameHeaderBytes + length;
  return FrameResult::Ok;
}

}  // namespace clrk::telemetry::spool
