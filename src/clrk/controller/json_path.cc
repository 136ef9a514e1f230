#include "clrk/controller/json_path.h"

#include <nlohmann/json.hpp>

#include <cstdio>

namespace clrk::controller {
namespace {

bool isNameChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-';
}

bool isControl(char c) {
  auto byte = static_cast<unsigned char>(c);
  return byte < 0x20 || byte == 0x7f;
}

}  // namespace

std::string printableForMessage(std::string_view text, size_t limit) {
  std::string out;
  size_t shown = std::min(text.size(), limit);
  for (size_t byte_idx = 0; byte_idx < shown; ++byte_idx) {
    auto byte = static_cast<unsigned char>(text[byte_idx]);
    if (byte >= 0x20 && byte < 0x7f && byte != '\\') {
      out.push_back(static_cast<char>(byte));
    } else {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

Result<JsonPath> JsonPath::parse(std::string_view text) {
  auto fail = [&](std::string_view what, size_t offset) -> Status {
    return invalidArgument("jsonPath \"" + printableForMessage(text) + "\": " + std::string(what) +
                           " at offset " + std::to_string(offset));
  };
  if (text.empty()) return invalidArgument("jsonPath is empty; want $ followed by .name or [0]");
  if (text.size() > kMaxJsonPathLength) {
    return invalidArgument("jsonPath \"" + printableForMessage(text) + "\" is longer than " +
                           std::to_string(kMaxJsonPathLength) + " characters");
  }
  if (text[0] != '$') return fail("want \"$\" (the document root) first", 0);
  JsonPath path;
  path.text_ = std::string(text);
  size_t pos = 1;
  while (pos < text.size()) {
    if (path.segments_.size() >= kMaxJsonPathSegments) {
      return fail("more than " + std::to_string(kMaxJsonPathSegments) + " segments", pos);
    }
    Segment segment;
    if (text[pos] == '.') {
      size_t start = ++pos;
      while (pos < text.size() && isNameChar(text[pos])) ++pos;
      if (pos == start) {
        return fail(pos < text.size() && text[pos] == '*'
                        ? "wildcards are not supported"
                        : (pos < text.size() && text[pos] == '.'
                               ? "recursive descent (..) is not supported"
                               : "want a member name ([A-Za-z0-9_-]) after \".\""),
                    pos);
      }
      segment.name = std::string(text.substr(start, pos - start));
    } else if (text[pos] == '[') {
      size_t open = pos++;
      if (pos >= text.size()) return fail("unterminated \"[\"", open);
      char quote = text[pos];
      if (quote == '\'' || quote == '"') {
        size_t start = ++pos;
        while (pos < text.size() && text[pos] != quote) {
          if (text[pos] == '\\') return fail("escapes in quoted names are not supported", pos);
          if (isControl(text[pos])) return fail("control character in a quoted name", pos);
          ++pos;
        }
        if (pos >= text.size()) return fail("unterminated quoted name", start - 1);
        segment.name = std::string(text.substr(start, pos - start));
        ++pos;  // the closing quote
      } else if (quote >= '0' && quote <= '9') {
        size_t start = pos;
        size_t index = 0;
        while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
          if (pos - start >= kMaxJsonPathIndexDigits) {
            return fail("index over " + std::to_string(kMaxJsonPathIndexDigits) + " digits", start);
          }
          index = index * 10 + static_cast<size_t>(text[pos] - '0');
          ++pos;
        }
        segment.index = index;
      } else if (quote == '-') {
        return fail("negative indexes are not supported", pos);
      } else if (quote == '*') {
        return fail("wildcards are not supported", pos);
      } else if (quote == '?') {
        return fail("filters are not supported", pos);
      } else {
        return fail("want an index or a quoted name after \"[\"", pos);
      }
      if (pos >= text.size() || text[pos] != ']') {
        return fail(
            pos < text.size() && text[pos] == ':' ? "slices are not supported" : "want \"]\"", pos);
      }
      ++pos;
    } else {
      return fail("want \".name\" or \"[...]\"", pos);
    }
    path.segments_.push_back(std::move(segment));
  }
  return path;
}

const nlohmann::json* JsonPath::select(const nlohmann::json& document) const {
  const nlohmann::json* current = &document;
  for (const Segment& segment : segments_) {
    if (segment.index) {
      if (!current->is_array() || *segment.index >= current->size()) return nullptr;
      current = &(*current)[*segment.index];
    } else {
      if (!current->is_object()) return nullptr;
      auto it = current->find(segment.name);
      if (it == current->end()) return nullptr;
      current = &*it;
    }
  }
  return current;
}

}  // namespace clrk::controller
