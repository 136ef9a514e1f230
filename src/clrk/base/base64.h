// Standard base64 (RFC 4648 alphabet, with padding), as Kubernetes Secret data and HTTP Basic
// credentials use it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace clrk {

std::string base64Encode(std::string_view data);

// Standard base64 (RFC 4648 §4), padding optional, ASCII whitespace ignored (Secret data may be
// line-wrapped); nullopt if invalid.
std::optional<std::string> base64Decode(std::string_view text);

}  // namespace clrk
