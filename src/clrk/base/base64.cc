#include "clrk/base/base64.h"

#include <openssl/evp.h>

namespace clrk {

std::string base64Encode(std::string_view data) {
  // EVP_EncodeBlock writes a terminating NUL after the output: room for it, then drop it.
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(written > 0 ? static_cast<size_t>(written) : 0);
  return out;
}

}  // namespace clrk
