// Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past U+10FFFF.
#pragma once

#include <cstddef>
#include <string_view>

namespace clrk {

// Length (2-4) of the valid multi-byte sequence that starts at text[index], a byte >= 0x80; 0
// when the sequence is invalid or cut short by the end of `text`.
constexpr size_t utf8SequenceLength(std::string_view text, size_t index) {
  auto lead = static_cast<unsigned char>(text[index]);
  size_t length = 0;
  unsigned char low = 0x80;  // bounds of the second byte
  unsigned char high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // overlong
    if (lead == 0xF4) high = 0x8F;  // past U+10FFFF
  }
  if (length == 0 || text.size() - index < length) return 0;
  for (size_t k = 1; k < length; ++k) {
    auto next = static_cast<unsigned char>(text[index + k]);
    if (next < (k == 1 ? low : 0x80) || next > (k == 1 ? high : 0xBF)) return 0;
  }
  return length;
}

}  // namespace clrk
