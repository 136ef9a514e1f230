#include "clrk/egress/llm/json_scan.h"

#include <charconv>
#include <cmath>

namespace clrk::egress::llm::json {
namespace {

constexpr size_t kNpos = std::string_view::npos;

bool isWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Index just past the string whose opening quote is at s[pos]; npos if unterminated or it holds
// a raw control character.
size_t scanString(std::string_view s, size_t pos) {
  ++pos;
  while (pos < s.size()) {
    char c = s[pos];
    if (c == '"') return pos + 1;
    if (c == '\\') {
      pos += 2;
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20) return kNpos;
    ++pos;
  }
  return kNpos;
}

size_t scanNumber(std::string_view s, size_t pos) {
  size_t start = pos;
  if (pos < s.size() && s[pos] == '-') ++pos;
  size_t digits = pos;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
  if (pos == digits) return kNpos;
  if (pos < s.size() && s[pos] == '.') {
    size_t frac = ++pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == frac) return kNpos;
  }
  if (pos < s.size() && (s[pos] == 'e' || s[pos] == 'E')) {
    ++pos;
    if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) ++pos;
    size_t exp = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') ++pos;
    if (pos == exp) return kNpos;
  }
  // A number must be followed by a delimiter (or the end): "12abc" is not a number.
  if (pos < s.size() && !isWs(s[pos]) && s[pos] != ',' && s[pos] != '}' && s[pos] != ']') {
    return kNpos;
  }
  return pos > start ? pos : kNpos;
}

// Skips a container opening at s[pos], counting brackets outside strings. Only balance is
// checked here; the contents are validated when a caller walks them.
size_t scanContainer(std::string_view s, size_t pos) {
  size_t depth = 0;
  while (pos < s.size()) {
    char c = s[pos];
    if (c == '"') {
      pos = scanString(s, pos);
      if (pos == kNpos) return kNpos;
      continue;
    }
    if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return kNpos;
      if (--depth == 0) return pos + 1;
    }
    ++pos;
  }
  return kNpos;
}

void appendUtf8(std::string* out, uint32_t cp) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool hex4(std::string_view s, size_t pos, uint32_t* out) {
  if (pos + 4 > s.size()) return false;
  uint32_t v = 0;
  for (size_t i = pos; i < pos + 4; ++i) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') {
      v |= static_cast<uint32_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v |= static_cast<uint32_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v |= static_cast<uint32_t>(c - 'A' + 10);
    } else {
      return false;
    }
  }
  *out = v;
  return true;
}

}  // namespace

size_t skipWs(std::string_view s, size_t pos) {
  while (pos < s.size() && isWs(s[pos])) ++pos;
  return pos;
}

size_t scanValue(std::string_view s, size_t pos, Value* out) {
  pos = skipWs(s, pos);
  if (pos >= s.size()) return kNpos;
  size_t end = kNpos;
  Kind kind = Kind::kNull;
  char c = s[pos];
  auto literal = [&](std::string_view word, Kind k) {
    if (s.substr(pos, word.size()) == word) {
      end = pos + word.size();
      kind = k;
    }
  };
  switch (c) {
    case '{':
      end = scanContainer(s, pos);
      kind = Kind::kObject;
      break;
    case '[':
      end = scanContainer(s, pos);
      kind = Kind::kArray;
      break;
    case '"':
      end = scanString(s, pos);
      kind = Kind::kString;
      break;
    case 't':
      literal("true", Kind::kTrue);
      break;
    case 'f':
      literal("false", Kind::kFalse);
      break;
    case 'n':
      literal("null", Kind::kNull);
      break;
    default:
      if (c == '-' || (c >= '0' && c <= '9')) {
        end = scanNumber(s, pos);
        kind = Kind::kNumber;
      }
  }
  if (end == kNpos) return kNpos;
  if (out != nullptr) {
    out->kind = kind;
    out->raw = s.substr(pos, end - pos);
  }
  return end;
}

std::optional<Value> parse(std::string_view s) {
  Value v;
  size_t end = scanValue(s, 0, &v);
  if (end == kNpos || skipWs(s, end) != s.size()) return std::nullopt;
  return v;
}

bool decodeString(const Value& v, std::string* out) { return decodeString(v, out, kNpos); }

bool decodeString(const Value& v, std::string* out, size_t max_bytes) {
  out->clear();
  if (v.kind != Kind::kString) return false;
  std::string_view s = rawString(v);
  size_t i = 0;
  while (i < s.size() && out->size() < max_bytes) {
    size_t bs = s.find('\\', i);
    size_t stop = bs == kNpos ? s.size() : bs;
    size_t take = std::min(stop - i, max_bytes - out->size());
    out->append(s.substr(i, take));
    i += take;
    if (i < stop || i >= s.size()) break;
    // s[i] == '\\'
    if (i + 1 >= s.size()) return false;
    char e = s[i + 1];
    i += 2;
    switch (e) {
      case '"':
        out->push_back('"');
        break;
      case '\\':
        out->push_back('\\');
        break;
      case '/':
        out->push_back('/');
        break;
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'u': {
        uint32_t cp = 0;
        if (!hex4(s, i, &cp)) return false;
        i += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          uint32_t lo = 0;
          if (i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u' && hex4(s, i + 2, &lo) &&
              lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
          } else {
            cp = 0xFFFD;  // lone surrogate
          }
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          cp = 0xFFFD;
        }
        appendUtf8(out, cp);
        break;
      }
      default:
        return false;
    }
  }
  if (out->size() > max_bytes) out->resize(max_bytes);
  return true;
}

std::optional<int64_t> asInt(const Value& v) {
  if (v.kind != Kind::kNumber) return std::nullopt;
  const char* first = v.raw.data();
  const char* last = first + v.raw.size();
  int64_t n = 0;
  auto [ptr, ec] = std::from_chars(first, last, n);
  if (ec == std::errc() && ptr == last) return n;
  double d = 0;
  auto [dptr, dec] = std::from_chars(first, last, d);
  if (dec != std::errc() || dptr != last || !std::isfinite(d) || d != std::floor(d) ||
      d < -9.2e18 || d > 9.2e18) {
    return std::nullopt;
  }
  return static_cast<int64_t>(d);
}

std::optional<bool> asBool(const Value& v) {
  if (v.kind == Kind::kTrue) return true;
  if (v.kind == Kind::kFalse) return false;
  return std::nullopt;
}

std::string_view normalizeKey(std::string_view raw_key, std::string* scratch) {
  if (raw_key.find('\\') == std::string_view::npos) return raw_key;
  std::string quoted;
  quoted.reserve(raw_key.size() + 2);
  quoted.push_back('"');
  quoted.append(raw_key);
  quoted.push_back('"');
  Value v{Kind::kString, quoted};
  if (!decodeString(v, scratch)) scratch->clear();
  return *scratch;
}

bool keyIs(std::string_view raw_key, std::string_view name) {
  if (raw_key.find('\\') == std::string_view::npos) return raw_key == name;
  std::string scratch;
  return normalizeKey(raw_key, &scratch) == name;
}

std::optional<Value> member(const Value& object, std::string_view name) {
  std::optional<Value> found;
  forEachMember(object, [&](std::string_view key, const Value& value) {
    if (keyIs(key, name)) found = value;
    return true;
  });
  return found;
}

}  // namespace clrk::egress::llm::json
