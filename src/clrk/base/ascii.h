// ASCII case helpers for protocol text (header names, hosts, schemes, kinds): independent of the
// C locale, and bytes outside A-Z (UTF-8 included) are left as they are.
#pragma once

#include <string>
#include <string_view>

namespace clrk {

constexpr char asciiLower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string asciiLowerCopy(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = asciiLower(c);
  return out;
}

constexpr bool asciiEqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t index = 0; index < a.size(); ++index) {
    if (asciiLower(a[index]) != asciiLower(b[index])) return false;
  }
  return true;
}

}  // namespace clrk
