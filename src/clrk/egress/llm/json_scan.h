// Internal: a small non-allocating JSON scanner over a byte view. It walks the members of one
// object (or the elements of one array) and hands out each value's raw text, so callers read the
// few fields they need without building a DOM, splice bytes in place, and keep what was read
// before a truncation. Nesting is skipped iteratively (no recursion, no stack growth); values are
// validated only as deep as a caller descends into them. Never throws.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace clrk::egress::llm::json {

enum class Kind { kObject, kArray, kString, kNumber, kTrue, kFalse, kNull };

struct Value {
  Kind kind = Kind::kNull;
  std::string_view raw;  // the value's bytes (strings with their quotes); a view into the input
};

// Index of the first non-whitespace byte at or after `pos` (s.size() when none).
size_t skipWs(std::string_view s, size_t pos);

// Scans the value starting at s[pos] (after optional whitespace). Returns the index just past it,
// or std::string_view::npos when the value is malformed or truncated.
size_t scanValue(std::string_view s, size_t pos, Value* out);

// The whole input as one value (surrounding whitespace allowed); nullopt if malformed. Like
// scanValue, containers are checked for balance only; walking them validates their contents.
std::optional<Value> parse(std::string_view s);

// Raw bytes between the quotes of a string value (escapes not decoded).
inline std::string_view rawString(const Value& v) {
  return v.kind == Kind::kString && v.raw.size() >= 2 ? v.raw.substr(1, v.raw.size() - 2)
                                                      : std::string_view();
}

// Decodes a string value into `out` (replacing its contents); false if not a valid string.
bool decodeString(const Value& v, std::string* out);
// Decodes a string value, keeping at most `max_bytes` bytes of it.
bool decodeString(const Value& v, std::string* out, size_t max_bytes);

// Integer value of a number (integral doubles such as 12.0 or 1e3 accepted); nullopt otherwise.
std::optional<int64_t> asInt(const Value& v);
// Boolean value; nullopt when not true/false.
std::optional<bool> asBool(const Value& v);

// Does the raw (undecoded) key equal `name`? Keys with escapes are decoded first.
bool keyIs(std::string_view raw_key, std::string_view name);
// The key as the upstream's parser will read it: `raw_key` itself when it has no escapes
// (the common case, no copy), else its decoding in `scratch` ("" if the escapes are invalid).
// Request-side code must compare normalised keys, or "mo\u0064el" would slip past a model rule.
std::string_view normalizeKey(std::string_view raw_key, std::string* scratch);

// Calls f(raw_key, value) for each member of the object starting at s[pos] (whitespace
// allowed) until f returns false. Returns true when the whole object was well formed and read,
// false when it was malformed or truncated (members before the damage were delivered) or f
// stopped the walk. `end` (optional) receives the index just past the object.
template <class F>
bool forEachMember(std::string_view s, size_t pos, F&& f, size_t* end = nullptr);

// Calls f(value) for each element of the array starting at s[pos]; same contract.
template <class F>
bool forEachElement(std::string_view s, size_t pos, F&& f, size_t* end = nullptr);

// Convenience: members of an object value / elements of an array value.
template <class F>
bool forEachMember(const Value& v, F&& f) {
  return v.kind == Kind::kObject && forEachMember(v.raw, 0, static_cast<F&&>(f));
}
template <class F>
bool forEachElement(const Value& v, F&& f) {
  return v.kind == Kind::kArray && forEachElement(v.raw, 0, static_cast<F&&>(f));
}

// Finds member `name` of an object value (the last one when a key repeats, as JSON parsers in
// Python, Go and JavaScript read duplicates; keys compared decoded).
std::optional<Value> member(const Value& object, std::string_view name);

// ---- implementation of the templates ----

template <class F>
bool forEachMember(std::string_view s, size_t pos, F&& f, size_t* end) {
  pos = skipWs(s, pos);
  if (pos >= s.size() || s[pos] != '{') return false;
  pos = skipWs(s, pos + 1);
  if (pos < s.size() && s[pos] == '}') {
    if (end) *end = pos + 1;
    return true;
  }
  while (true) {
    Value key;
    pos = scanValue(s, pos, &key);
    if (pos == std::string_view::npos || key.kind != Kind::kString) return false;
    pos = skipWs(s, pos);
    if (pos >= s.size() || s[pos] != ':') return false;
    Value value;
    pos = scanValue(s, pos + 1, &value);
    if (pos == std::string_view::npos) return false;
    if (!f(rawString(key), value)) return false;
    pos = skipWs(s, pos);
    if (pos >= s.size()) return false;
    if (s[pos] == '}') {
      if (end) *end = pos + 1;
      return true;
    }
    if (s[pos] != ',') return false;
    ++pos;
  }
}

template <class F>
bool forEachElement(std::string_view s, size_t pos, F&& f, size_t* end) {
  pos = skipWs(s, pos);
  if (pos >= s.size() || s[pos] != '[') return false;
  pos = skipWs(s, pos + 1);
  if (pos < s.size() && s[pos] == ']') {
    if (end) *end = pos + 1;
    return true;
  }
  while (true) {
    Value value;
    pos = scanValue(s, pos, &value);
    if (pos == std::string_view::npos) return false;
    if (!f(value)) return false;
    pos = skipWs(s, pos);
    if (pos >= s.size()) return false;
    if (s[pos] == ']') {
      if (end) *end = pos + 1;
      return true;
    }
    if (s[pos] != ',') return false;
    ++pos;
  }
}

}  // namespace clrk::egress::llm::json
