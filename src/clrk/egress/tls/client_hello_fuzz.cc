// libFuzzer target for the ClientHello sniffer: any input must yield a result without crashing,
// and every prefix of an accepted hello must be kNeedMore or the same answer.
#include "clrk/egress/tls/client_hello.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using clrk::egress::tls::ClientHello;
  using clrk::egress::tls::SniffResult;
  std::span<const uint8_t> input(data, size);
  ClientHello hello;
  std::string error;
  const SniffResult result = clrk::egress::tls::sniffClientHello(input, &hello, &error);
  if (result == SniffResult::kMalformed && error.empty()) std::abort();
  if (result == SniffResult::kOk) {
    for (char c : hello.sni) {
      if (c >= 'A' && c <= 'Z') std::abort();  // SNI is lower-cased
      if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
        std::abort();
    }
    if (hello.sni.size() > 253) std::abort();
  }
  // A strict prefix can never be kOk with a different answer: check a few cut points.
  if (result == SniffResult::kOk && size > 1) {
    const size_t cuts[] = {size / 2, size - 1};
    for (size_t cut : cuts) {
      const SniffResult prefix =
          clrk::egress::tls::sniffClientHello(input.first(cut), nullptr, nullptr);
      if (prefix == SniffResult::kNotTls) std::abort();
    }
  }
  return 0;
}
