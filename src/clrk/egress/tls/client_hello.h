// TLS ClientHello sniffer: reads the SNI and ALPN offers from the first bytes of a connection
// without consuming them, so the proxy can decide MITM / passthrough / deny before any TLS.
//
// Untrusted input: every read is bounds-checked, the handshake message is bounded to
// kMaxClientHelloBytes, and nothing here allocates more than that. Pure function, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace clrk::egress::tls {

// Largest ClientHello handshake message accepted (body plus its 4-byte header). A hello may be
// split over several TLS records; the record headers come on top of this bound.
inline constexpr size_t kMaxClientHelloBytes = 16 * 1024 + 4;
// The hello may be spread over at most this many records (more is kMalformed), so a caller never
// needs to buffer more than kMaxSniffBytes before sniffClientHello stops answering kNeedMore.
inline constexpr size_t kMaxClientHelloRecords = 64;
inline constexpr size_t kMaxSniffBytes = kMaxClientHelloBytes + 5 * kMaxClientHelloRecords;

struct ClientHello {
  std::string sni;                // server_name host_name, lower-cased; empty when absent
  std::vector<std::string> alpn;  // ALPN protocol names in the client's order (may be empty)
  uint16_t record_version = 0;    // legacy_record_version of the first record (e.g. 0x0301)
};

enum class SniffResult {
  kNeedMore,   // the bytes so far are a valid prefix; read more and call again with all of them
  kNotTls,     // the first byte is not a TLS handshake record (0x16): not TLS at all
  kMalformed,  // TLS-looking but invalid; *error names what is wrong and at which byte offset
  kOk,         // *out filled in
};

// Parses the ClientHello at the start of `data` (the first bytes the client sent, unconsumed).
// On kOk fills *out; on kMalformed sets *error (e.g. "server_name: host name contains byte 0x00
// at offset 131"). `out` and `error` may be null. Data after the ClientHello is ignored.
// The SNI must be a valid DNS host name (letters, digits, '-', '_', '.', at most 253 bytes,
// labels 1..63 bytes) or it is kMalformed; it is returned lower-cased without a trailing dot.
SniffResult sniffClientHello(std::span<const uint8_t> data, ClientHello* out, std::string* error);

}  // namespace clrk::egress::tls
