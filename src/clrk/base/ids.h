// Identifiers and secrets: random UUIDs, opaque tokens. Backed by OpenSSL's CSPRNG.
#pragma once

#include <string>

namespace clrk {

// A random RFC 4122 version-4 UUID, lower-case hex with dashes.
std::string newUuid();

// `bytes` random bytes, hex-encoded (2*bytes characters). For bearer tokens and nonces.
std::string randomHex(size_t bytes);

}  // namespace clrk
