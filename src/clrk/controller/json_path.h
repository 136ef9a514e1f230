// JsonPath: the small, bounded JSONPath subset TaskAgent body identity extractors use
// (spec.identity.extractors[].body.jsonPath) to pick one value out of a JSON request body.
//
//   path     := "$" segment*
//   segment  := "." name              name: [A-Za-z0-9_-]+
//             | "['" text "']"        text: any bytes but ', \ and control characters
//             | "[\"" text "\"]"
//             | "[" index "]"         index: 1 to 6 digits (array position, from 0)
//
// Examples: `$.user`, `$.auth.claims[0].sub`, `$['tenant id']`. No wildcards, slices, filters,
// recursive descent or negative indexes: a path selects at most one value. Bounds:
// kMaxJsonPathLength characters and kMaxJsonPathSegments segments. The TaskAgent schema checks
// the same grammar with a pattern (kJsonPathPattern) when the object is applied.
// Thread model: immutable values.
#pragma once

#include "clrk/base/status.h"

#include <nlohmann/json_fwd.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::controller {

inline constexpr size_t kMaxJsonPathLength = 256;
inline constexpr size_t kMaxJsonPathSegments = 32;
inline constexpr size_t kMaxJsonPathIndexDigits = 6;
// ECMAScript and RE2 alike: the grammar above (the segment count is bounded by the length).
inline constexpr std::string_view kJsonPathPattern =
    R"(^\$(\.[A-Za-z0-9_-]+|\[[0-9]{1,6}\]|\['[^'\\]*'\]|\["[^"\\]*"\])*$)";

class JsonPath {
 public:
  struct Segment {
    std::string name;             // member name when index is empty
    std::optional<size_t> index;  // array position
  };

  // InvalidArgument `jsonPath "<path>": <what is wrong> at offset <n>` on anything outside the
  // grammar or its bounds; never throws.
  static Result<JsonPath> parse(std::string_view text);

  // The value the path selects in `document`, or nullptr when a member is missing, an index is
  // out of range, or a segment meets the wrong type (a name on an array, an index on an object).
  const nlohmann::json* select(const nlohmann::json& document) const;

  const std::string& text() const { return text_; }
  const std::vector<Segment>& segments() const { return segments_; }

 private:
  std::string text_;
  std::vector<Segment> segments_;
};

// `text` for an error message: at most `limit` bytes, bytes outside printable ASCII as \xNN.
std::string printableForMessage(std::string_view text, size_t limit = 64);

}  // namespace clrk::controller
