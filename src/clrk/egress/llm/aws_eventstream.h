// Incremental decoder for the AWS event stream framing (application/vnd.amazon.eventstream) that
// Bedrock uses for ConverseStream and InvokeModelWithResponseStream. Each message: total length
// (4 bytes, big-endian), headers length (4), prelude CRC32 (4), headers, payload, message CRC32
// (4). Bounded: a message longer than the limit stops decoding (the stream is then ignored).
// CRCs are verified; a bad one stops decoding too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace clrk::egress::llm {

struct AwsEventMessage {
  std::string_view message_type;    // ":message-type" header: "event", "exception", "error"
  std::string_view event_type;      // ":event-type" (e.g. "metadata", "chunk", "messageStop")
  std::string_view exception_type;  // ":exception-type" (e.g. "throttlingException")
  std::string_view payload;         // valid only during the callback
};

class AwsEventStreamDecoder {
 public:
  explicit AwsEventStreamDecoder(size_t max_message_bytes = size_t{1} << 20);

  void feed(std::string_view chunk, const std::function<void(const AwsEventMessage&)>& on_message);
  // Decoding stopped on a malformed or oversize message.
  bool failed() const { return failed_; }
  uint64_t messages() const { return messages_; }

 private:
  size_t max_message_bytes_;
  std::string buffer_;
  bool failed_ = false;
  uint64_t messages_ = 0;
};

// CRC-32 (IEEE 802.3, as zlib's crc32), continuing from `crc`.
uint32_t crc32(std::string_view bytes, uint32_t crc = 0);

// Standard base64 (with or without padding) into `out`; false on invalid input.
bool base64Decode(std::string_view in, std::string* out);

}  // namespace clrk::egress::llm
