#include "clrk/egress/llm/aws_eventstream.h"

#include <array>

namespace clrk::egress::llm {
namespace {

constexpr size_t kPreludeBytes = 12;
constexpr size_t kMinMessageBytes = 16;

uint32_t readU32(std::string_view s, size_t at) {
  return (static_cast<uint32_t>(static_cast<unsigned char>(s[at])) << 24) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 1])) << 16) |
         (static_cast<uint32_t>(static_cast<unsigned char>(s[at + 2])) << 8) |
         static_cast<uint32_t>(static_cast<unsigned char>(s[at + 3]));
}

constexpr std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

constexpr std::array<uint32_t, 256> kCrcTable = makeCrcTable();

// Parses the headers block; false if malformed.
bool parseHeaders(std::string_view h, AwsEventMessage* msg) {
  size_t i = 0;
  while (i < h.size()) {
    size_t name_len = static_cast<unsigned char>(h[i++]);
    if (i + name_len + 1 > h.size()) return false;
    std::string_view name = h.substr(i, name_len);
    i += name_len;
    auto type = static_cast<unsigned char>(h[i++]);
    size_t value_len = 0;
    switch (type) {
      case 0:
      case 1:
        value_len = 0;
        break;
      case 2:
        value_len = 1;
        break;
      case 3:
        value_len = 2;
        break;
      case 4:
        value_len = 4;
        break;
      case 5:
      case 8:
        value_len = 8;
        break;
      case 9:
        value_len = 16;
        break;
      case 6:
      case 7: {
        if (i + 2 > h.size()) return false;
        value_len = (static_cast<size_t>(static_cast<unsigned char>(h[i])) << 8) |
                    static_cast<unsigned char>(h[i + 1]);
        i += 2;
        break;
      }
      default:
        return false;
    }
    if (i + value_len > h.size()) return false;
    if (type == 7) {
      std::string_view value = h.substr(i, value_len);
      if (name == ":message-type") msg->message_type = value;
      if (name == ":event-type") msg->event_type = value;
      if (name == ":exception-type") msg->exception_type = value;
    }
    i += value_len;
  }
  return true;
}

int base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

uint32_t crc32(std::string_view bytes, uint32_t crc) {
  crc = ~crc;
  for (char ch : bytes) crc = kCrcTable[(crc ^ static_cast<unsigned char>(ch)) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

bool base64Decode(std::string_view in, std::string* out) {
  out->clear();
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out->reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = base64Value(c);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return true;
}

AwsEventStreamDecoder::AwsEventStreamDecoder(size_t max_message_bytes)
    : max_message_bytes_(max_message_bytes) {}

void AwsEventStreamDecoder::feed(std::string_view chunk,
                                 const std::function<void(const AwsEventMessage&)>& on_message) {
  if (failed_) return;
  buffer_.append(chunk);
  size_t at = 0;
  while (buffer_.size() - at >= kPreludeBytes) {
    std::string_view rest = std::string_view(buffer_).substr(at);
    uint32_t total = readU32(rest, 0);
    uint32_t headers_len = readU32(rest, 4);
    if (total < kMinMessageBytes || total > max_message_bytes_ ||
        headers_len > total - kMinMessageBytes || crc32(rest.substr(0, 8)) != readU32(rest, 8)) {
      failed_ = true;
      std::string().swap(buffer_);
      return;
    }
    if (rest.size() < total) break;
    std::string_view message = rest.substr(0, total);
    if (crc32(message.substr(0, total - 4)) != readU32(message, total - 4)) {
      failed_ = true;
      std::string().swap(buffer_);
      return;
    }
    AwsEventMessage msg;
    if (!parseHeaders(message.substr(kPreludeBytes, headers_len), &msg)) {
      failed_ = true;
      std::string().swap(buffer_);
      return;
    }
    msg.payload =
        message.substr(kPreludeBytes + headers_len, total - kMinMessageBytes - headers_len);
    ++messages_;
    if (on_message) on_message(msg);
    at += total;
  }
  buffer_.erase(0, at);
}

}  // namespace clrk::egress::llm
