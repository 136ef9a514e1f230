#include "clrk/base/ids.h"

#include <openssl/rand.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <vector>

namespace clrk {
namespace {

void fillRandom(unsigned char* out, size_t size) {
  if (RAND_bytes(out, static_cast<int>(size)) != 1) {
    throw std::runtime_error("RAND_bytes failed: the OpenSSL CSPRNG is unavailable");
  }
}

std::string toHex(const unsigned char* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(size * 2);
  for (size_t byte_idx = 0; byte_idx < size; ++byte_idx) {
    out.push_back(kDigits[data[byte_idx] >> 4]);
    out.push_back(kDigits[data[byte_idx] & 0xf]);
  }
  return out;
}

}  // namespace

std::string newUuid() {
  std::array<unsigned char, 16> raw{};
  fillRandom(raw.data(), raw.size());
  raw[6] = static_cast<unsigned char>((raw[6] & 0x0f) | 0x40);
  raw[8] = static_cast<unsigned char>((raw[8] & 0x3f) | 0x80);
  std::string hex = toHex(raw.data(), raw.size());
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::string randomHex(size_t bytes) {
  std::vector<unsigned char> raw(bytes);
  fillRandom(raw.data(), raw.size());
  return toHex(raw.data(), raw.size());
}

}  // namespace clrk
