// DNS wire format (RFC 1035, EDNS0 from RFC 6891): a bounded parser for the queries sandboxes send
// and a builder for the answers the sandbox resolver gives.
//
// The parser treats every byte as hostile: it never reads outside the packet, follows name
// compression pointers only strictly backwards (so loops are impossible) and at most
// kMaxPointerHops times, enforces the 63-byte label and 255-byte name limits, and names the
// problem and the byte offset in its error ("label of 64 bytes at offset 12 exceeds 63").
// Nothing here throws. Thread model: free functions on plain values.
#pragma once

#include "clrk/base/status.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::egress::dns {

// Record types (QTYPE/TYPE) the resolver cares about.
inline constexpr uint16_t kTypeA = 1;
inline constexpr uint16_t kTypeNs = 2;
inline constexpr uint16_t kTypeCname = 5;
inline constexpr uint16_t kTypeSoa = 6;
inline constexpr uint16_t kTypePtr = 12;
inline constexpr uint16_t kTypeMx = 15;
inline constexpr uint16_t kTypeTxt = 16;
inline constexpr uint16_t kTypeAaaa = 28;
inline constexpr uint16_t kTypeSrv = 33;
inline constexpr uint16_t kTypeOpt = 41;
inline constexpr uint16_t kTypeHttps = 65;
inline constexpr uint16_t kTypeAny = 255;

inline constexpr uint16_t kClassIn = 1;
inline constexpr uint16_t kClassAny = 255;

// Response codes. Values above 15 only travel with EDNS (upper bits in the OPT record).
inline constexpr uint8_t kRcodeNoError = 0;
inline constexpr uint8_t kRcodeFormErr = 1;
inline constexpr uint8_t kRcodeServFail = 2;
inline constexpr uint8_t kRcodeNxDomain = 3;
inline constexpr uint8_t kRcodeNotImp = 4;
inline constexpr uint8_t kRcodeRefused = 5;
inline constexpr uint8_t kRcodeBadVers = 16;

// Header flag bits (the 16-bit word after the id).
inline constexpr uint16_t kFlagQr = 0x8000;
inline constexpr uint16_t kFlagAa = 0x0400;
inline constexpr uint16_t kFlagTc = 0x0200;
inline constexpr uint16_t kFlagRd = 0x0100;
inline constexpr uint16_t kFlagRa = 0x0080;

inline constexpr size_t kHeaderSize = 12;
inline constexpr size_t kMaxLabelLength = 63;
inline constexpr size_t kMaxNameWireLength = 255;  // length octets and the final zero included
inline constexpr int kMaxPointerHops = 64;
inline constexpr uint16_t kMinUdpPayload = 512;      // classic limit; also the EDNS floor
inline constexpr uint16_t kServerUdpPayload = 1232;  // what we advertise in our own OPT record

struct Question {
  std::string name;  // lower case, no trailing dot; "" is the root
  uint16_t type = 0;
  uint16_t klass = 0;
};

struct Query {
  uint16_t id = 0;
  uint16_t flags = 0;  // the header flags word as received (opcode = (flags >> 11) & 0xF)
  Question question;
  bool has_edns = false;
  uint16_t edns_udp_size = kMinUdpPayload;  // requestor's payload size, never below 512
  uint8_t edns_version = 0;                 // meaningful only when has_edns
  bool edns_do = false;                     // DNSSEC OK bit, echoed in the response's OPT
  // The question name exactly as sent (case preserved, dotted), so the response echoes it
  // byte for byte (clients using 0x20 case randomisation compare it). Empty = use question.name.
  std::string name_as_sent;
};

inline uint8_t opcodeOf(uint16_t flags) { return static_cast<uint8_t>((flags >> 11) & 0xF); }

// Parses a query. Requirements, each with its own error (InvalidArgument, message naming the
// field and byte offset): at least a 12-byte header; QR = 0; QDCOUNT exactly 1; a well-formed
// question name (labels <= 63 bytes of printable ASCII other than '.', total <= 255 bytes,
// compression pointers strictly backwards into the message body, never into the header); the
// answer/authority/additional records, when present, well-formed and inside the packet; at most
// one OPT record (EDNS), whose owner must be the root. Bytes after the last record are ignored.
// Any opcode is accepted; the caller decides what to do with non-QUERY opcodes.
Result<Query> parseQuery(std::span<const uint8_t> packet);

// Builds the response to `q`: same id and opcode, QR + AA + RA set, RD copied, `rcode` (low four
// bits in the header; an rcode > 15 needs EDNS, else SERVFAIL is sent), the question echoed, one
// A record per entry of `a_records` (owner = the question name via a compression pointer,
// class IN, `ttl`) and an OPT record advertising kServerUdpPayload when the query had EDNS.
// If the message would exceed what the client accepts (512, or its EDNS size) the answers are
// dropped and TC is set (cannot happen for the handful of A records the resolver returns).
std::vector<uint8_t> buildResponse(const Query& q, uint8_t rcode,
                                   std::span<const std::array<uint8_t, 4>> a_records, uint32_t ttl);

// Like buildResponse with NOERROR and a single PTR record whose target is `target_name`
// (dotted, no trailing dot; must be a valid name, else the response is SERVFAIL).
std::vector<uint8_t> buildPtrResponse(const Query& q, std::string_view target_name, uint32_t ttl);

// An error reply for a packet that could not be parsed (or must not be processed): echoes the
// id, the opcode and RD from the raw header, sets QR and RA, `rcode` (e.g. kRcodeFormErr,
// kRcodeNotImp), all section counts zero. Returns an empty vector — meaning "send nothing" —
// when the packet is shorter than a header or is itself a response (QR = 1), so the resolver can
// never be used to bounce packets back and forth.
std::vector<uint8_t> buildError(std::span<const uint8_t> packet, uint8_t rcode);

// "A", "AAAA", "PTR", ...; "TYPE<n>" for the rest (RFC 3597 notation). For logs.
std::string typeName(uint16_t type);
// "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", ...; "RCODE<n>" otherwise.
std::string rcodeName(uint8_t rcode);

}  // namespace clrk::egress::dns
