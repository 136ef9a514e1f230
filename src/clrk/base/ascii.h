// ASCII helpers for protocol text (header names and values, hosts, schemes, kinds): independent
// of the C locale, and bytes outside A-Z (UTF-8 included) are left as they are.
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

// `text` without leading and trailing spaces and tabs (HTTP's optional whitespace, RFC 9110
// §5.6.3).
constexpr std::string_view trimOptionalWhitespace(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

// Calls `visit(element)` for each element of an HTTP comma-separated list (RFC 9110 §5.6.1),
// trimmed of optional whitespace; empty elements are skipped. Stops at the first element for which
// `visit` returns true, and returns whether one did.
template <class Visit>
constexpr bool anyListElement(std::string_view list, Visit&& visit) {
  while (!list.empty()) {
    size_t comma = list.find(',');
    std::string_view element = trimOptionalWhitespace(list.substr(0, comma));
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    if (!element.empty() && visit(element)) return true;
  }
  return false;
}

}  // namespace clrk
