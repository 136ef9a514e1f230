#include "clrk/apiserver/storage/continue_token.h"

#include <array>
#include <charconv>

namespace clrk::apiserver::storage {

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr size_t kMaxTokenSize = 4096;
constexpr std::string_view kVersion = "s1";

std::string base64UrlEncode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16) |
                       (static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8) |
                       static_cast<uint32_t>(static_cast<unsigned char>(in[i + 2]));
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    if (rest == 2) out += kAlphabet[(v >> 6) & 63];
  }
  return out;
}

bool base64UrlDecode(std::string_view in, std::string& out) {
  static const std::array<int8_t, 256> kTable = [] {
    std::array<int8_t, 256> table{};
    table.fill(-1);
    for (size_t i = 0; i < kAlphabet.size(); ++i) {
      table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
    }
    return table;
  }();
  if (in.size() % 4 == 1) return false;
  out.clear();
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const int8_t v = kTable[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return true;
}

bool readNumber(std::string_view& in, int64_t& value) {
  const auto colon = in.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  auto [ptr, ec] = std::from_chars(in.data(), in.data() + colon, value);
  if (ec != std::errc() || ptr != in.data() + colon) return false;
  in.remove_prefix(colon + 1);
  return true;
}

}  // namespace

std::string encodeContinueToken(const ContinueToken& token) {
  std::string raw;
  raw.reserve(32 + token.ns.size() + token.name.size());
  raw += kVersion;
  raw += ':';
  raw += std::to_string(token.revision);
  raw += ':';
  raw += std::to_string(token.ns.size());
  raw += ':';
  raw += token.ns;
  raw += token.name;
  return base64UrlEncode(raw);
}

Result<ContinueToken> decodeContinueToken(std::string_view token) {
  const auto invalid = [] {
    return invalidArgument(
        "invalid continue token: it must be the value returned by a previous list");
  };
  if (token.size() > kMaxTokenSize) return invalid();
  std::string raw;
  if (!base64UrlDecode(token, raw)) return invalid();
  std::string_view in(raw);
  if (in.substr(0, kVersion.size() + 1) != std::string(kVersion) + ":") return invalid();
  in.remove_prefix(kVersion.size() + 1);
  ContinueToken out;
  int64_t ns_size = 0;
  if (!readNumber(in, out.revision) || out.revision < 0) return invalid();
  if (!readNumber(in, ns_size) || ns_size < 0 || static_cast<size_t>(ns_size) > in.size()) {
    return invalid();
  }
  out.ns = std::string(in.substr(0, static_cast<size_t>(ns_size)));
  out.name = std::string(in.substr(static_cast<size_t>(ns_size)));
  if (out.name.empty()) return invalid();
  return out;
}

}  // namespace clrk::apiserver::storage
