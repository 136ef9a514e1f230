// Continue tokens for paginated lists: opaque to clients, they carry the last key returned and
// the revision of the first page's snapshot. Encoded as unpadded base64url so they can be passed
// in a URL query without further escaping.
// Thread model: pure functions.
#pragma once

#include "clrk/base/status.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace clrk::apiserver::storage {

struct ContinueToken {
  int64_t revision = 0;  // snapshot revision of the first page
  std::string ns;        // last key returned
  std::string name;
};

std::string encodeContinueToken(const ContinueToken& token);
// InvalidArgument naming the problem if `token` was not produced by encodeContinueToken.
Result<ContinueToken> decodeContinueToken(std::string_view token);

}  // namespace clrk::apiserver::storage
