// Standard base64 (RFC 4648 alphabet, with padding), as Kubernetes Secret data and HTTP Basic
// credentials use it.
#pragma once

#include <string>
#include <string_view>

namespace clrk {

std::string base64Encode(std::string_view data);

}  // namespace clrk
