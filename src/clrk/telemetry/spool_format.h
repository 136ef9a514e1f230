// On-disk framing of the telemetry spool (see pipeline.h): each record is
//   u32le payload length | u32le CRC-32 (IEEE 802.3, as zlib's crc32) of payload | payload.
// Internal to clrk::telemetry; exposed for tests that corrupt spool files on purpose.
// Thread model: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace clrk::telemetry::spool {

inline constexpr size_t kFrameHeaderBytes = 8;
// Larger payloads are refused by the writer and treated as corruption by the reader.
inline constexpr uint32_t kMaxPayloadBytes = 4u << 20;

uint32_t crc32(std::string_view data);

// Appends the frame for `payload` to `out`.
void appendFrame(std::string& out, std::string_view payload);

// Frames a payload encoded in place: the caller appended kFrameHeaderBytes placeholder bytes at
// `frame_start` and then the payload; this writes the header. REQUIRES: the payload is at most
// kMaxPayloadBytes.
void sealFrame(std::string& out, size_t frame_start);

enum class FrameResult {
  Ok,         // `payload` and `frame_bytes` set
  Truncated,  // `data` ends inside the frame (torn write, or read more)
  Corrupt,    // length over kMaxPayloadBytes or CRC mismatch
};

// Decodes the frame at the start of `data`.
FrameResult decodeFrame(std::string_view data, std::string_view& payload, size_t& frame_bytes);

}  // namespace clrk::telemetry::spool
