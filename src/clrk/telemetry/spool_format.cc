#include "clrk/telemetry/spool_format.h"

#include <array>

namespace clrk::telemetry::spool {
namespace {

constexpr std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = makeCrcTable();

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
  uint32_t c = 0xFFFFFFFFu;
  for (char ch : data) c = kCrcTable[(c ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
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
