#include "clrk/egress/dns/message.h"

#include <fmt/format.h>

#include <algorithm>

namespace clrk::egress::dns {
namespace {

constexpr uint16_t kOpcodeMask = 0x7800;
constexpr uint16_t kFlagCd = 0x0010;
constexpr uint16_t kCompressionPointerToQuestion = 0xC000 | kHeaderSize;

uint16_t get16(std::span<const uint8_t> p, size_t at) {
  return static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
}
uint32_t get32(std::span<const uint8_t> p, size_t at) {
  return (static_cast<uint32_t>(p[at]) << 24) | (static_cast<uint32_t>(p[at + 1]) << 16) |
         (static_cast<uint32_t>(p[at + 2]) << 8) | static_cast<uint32_t>(p[at + 3]);
}

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v & 0xFF));
}
void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v & 0xFFFF));
}

Status formErr(std::string message) { return invalidArgument("DNS: " + std::move(message)); }

struct ParsedName {
  std::string lower;    // lower case, dotted, no trailing dot
  std::string as_sent;  // case preserved
  size_t wire_length = 0;
};

// Reads the name at `pos`, following compression pointers. On success `pos` is just past the
// name in the original byte stream. `strict` restricts label bytes to printable ASCII other than
// '.' (question names); other owner names are only checked for structure.
Result<ParsedName> readName(std::span<const uint8_t> packet, size_t& pos, bool strict) {
  const size_t start = pos;
  size_t cur = pos;
  size_t limit = pos;  // every pointer must target strictly below this; it only ever decreases
  bool jumped = false;
  int hops = 0;
  ParsedName name;
  name.wire_length = 0;
  while (true) {
    if (cur >= packet.size()) {
      return formErr(
          fmt::format("name starting at offset {} runs past the end of the packet "
                      "({} bytes) at offset {}",
                      start, packet.size(), cur));
    }
    const uint8_t len = packet[cur];
    if ((len & 0xC0) == 0xC0) {
      if (cur + 1 >= packet.size()) {
        return formErr(fmt::format("truncated compression pointer at offset {}", cur));
      }
      const size_t target = static_cast<size_t>(get16(packet, cur) & 0x3FFF);
      if (++hops > kMaxPointerHops) {
        return formErr(
            fmt::format("name starting at offset {} follows more than {} compression "
                        "pointers",
                        start, kMaxPointerHops));
      }
      if (target >= packet.size()) {
        return formErr(
            fmt::format("compression pointer at offset {} points to offset {}, outside "
                        "the packet ({} bytes)",
                        cur, target, packet.size()));
      }
      if (target < kHeaderSize) {
        return formErr(fmt::format(
            "compression pointer at offset {} points into the header (offset {})", cur, target));
      }
      if (target >= limit) {
        return formErr(
            fmt::format("compression pointer at offset {} points to offset {}, not "
                        "strictly before {} (loop or forward reference)",
                        cur, target, limit));
      }
      if (!jumped) pos = cur + 2;
      jumped = true;
      limit = target;
      cur = target;
      continue;
    }
    if ((len & 0xC0) != 0) {
      return formErr(
          fmt::format("label length byte 0x{:02x} at offset {}: labels are at most {} "
                      "bytes and extended label types are not supported",
                      len, cur, kMaxLabelLength));
    }
    if (len == 0) {
      name.wire_length += 1;
      if (name.wire_length > kMaxNameWireLength) {
        return formErr(fmt::format("name starting at offset {} is longer than {} bytes", start,
                                   kMaxNameWireLength));
      }
      if (!jumped) pos = cur + 1;
      return name;
    }
    name.wire_length += 1 + len;
    if (name.wire_length + 1 > kMaxNameWireLength) {
      return formErr(fmt::format("name starting at offset {} is longer than {} bytes", start,
                                 kMaxNameWireLength));
    }
    if (cur + 1 + len > packet.size()) {
      return formErr(
          fmt::format("label of {} bytes at offset {} runs past the end of the packet "
                      "({} bytes)",
                      len, cur, packet.size()));
    }
    if (!name.lower.empty()) {
      name.lower.push_back('.');
      name.as_sent.push_back('.');
    }
    for (size_t i = cur + 1; i < cur + 1 + len; ++i) {
      const uint8_t c = packet[i];
      if (strict && (c <= 0x20 || c >= 0x7F || c == '.')) {
        return formErr(
            fmt::format("name starting at offset {} has byte 0x{:02x} at offset {}; "
                        "only printable ASCII other than '.' is accepted in a label",
                        start, c, i));
      }
      name.as_sent.push_back(static_cast<char>(c));
      name.lower.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    }
    cur += 1 + len;
  }
}

// Appends `name` (dotted, no trailing dot, "" = root) in wire form. False if it is not a valid
// name (empty label, label > 63, total > 255).
bool appendName(std::vector<uint8_t>& out, std::string_view name) {
  const size_t mark = out.size();
  size_t total = 1;
  if (!name.empty()) {
    size_t begin = 0;
    while (true) {
      size_t dot = name.find('.', begin);
      std::string_view label =
          name.substr(begin, dot == std::string_view::npos ? std::string_view::npos : dot - begin);
      total += 1 + label.size();
      if (label.empty() || label.size() > kMaxLabelLength || total > kMaxNameWireLength) {
        out.resize(mark);
        return false;
      }
      out.push_back(static_cast<uint8_t>(label.size()));
      out.insert(out.end(), label.begin(), label.end());
      if (dot == std::string_view::npos) break;
      begin = dot + 1;
    }
  }
  out.push_back(0);
  return true;
}

size_t responseLimit(const Query& q) {
  if (!q.has_edns) return kMinUdpPayload;
  return std::max<size_t>(kMinUdpPayload, q.edns_udp_size);
}

// Writes header + question; `answers` is the ANCOUNT to announce.
void appendHeaderAndQuestion(std::vector<uint8_t>& out, const Query& q, uint8_t rcode,
                             uint16_t answers, bool truncated) {
  uint16_t flags = kFlagQr | kFlagAa | kFlagRa;
  flags |= q.flags & (kOpcodeMask | kFlagRd | kFlagCd);
  if (truncated) flags |= kFlagTc;
  flags |= rcode & 0x0F;
  put16(out, q.id);
  put16(out, flags);
  put16(out, 1);
  put16(out, answers);
  put16(out, 0);
  put16(out, q.has_edns ? 1 : 0);
  const std::string& name = q.name_as_sent.empty() ? q.question.name : q.name_as_sent;
  if (!appendName(out, name)) appendName(out, q.question.name);
  put16(out, q.question.type);
  put16(out, q.question.klass);
}

void appendOpt(std::vector<uint8_t>& out, const Query& q, uint8_t rcode) {
  if (!q.has_edns) return;
  out.push_back(0);  // root owner
  put16(out, kTypeOpt);
  put16(out, kServerUdpPayload);
  uint32_t ttl = static_cast<uint32_t>(rcode >> 4) << 24;  // extended rcode; version 0
  if (q.edns_do) ttl |= 0x8000;
  put32(out, ttl);
  put16(out, 0);  // no options
}

uint8_t effectiveRcode(const Query& q, uint8_t rcode) {
  return (rcode > 15 && !q.has_edns) ? kRcodeServFail : rcode;
}

}  // namespace

Result<Query> parseQuery(std::span<const uint8_t> packet) {
  if (packet.size() < kHeaderSize) {
    return formErr(fmt::format("packet of {} bytes is shorter than the {}-byte header",
                               packet.size(), kHeaderSize));
  }
  Query q;
  q.id = get16(packet, 0);
  q.flags = get16(packet, 2);
  if (q.flags & kFlagQr) return formErr("QR bit set at offset 2: the packet is a response");
  const uint16_t qdcount = get16(packet, 4);
  const uint16_t ancount = get16(packet, 6);
  const uint16_t nscount = get16(packet, 8);
  const uint16_t arcount = get16(packet, 10);
  if (qdcount != 1) {
    return formErr(
        fmt::format("QDCOUNT at offset 4 is {}; exactly one question is required", qdcount));
  }
  size_t pos = kHeaderSize;
  auto name = readName(packet, pos, /*strict=*/true);
  if (!name.ok()) return name.status();
  if (pos + 4 > packet.size()) {
    return formErr(
        fmt::format("question type and class at offset {} run past the end of the "
                    "packet ({} bytes)",
                    pos, packet.size()));
  }
  q.question.name = std::move(name->lower);
  q.name_as_sent = std::move(name->as_sent);
  q.question.type = get16(packet, pos);
  q.question.klass = get16(packet, pos + 2);
  pos += 4;

  const uint32_t records = uint32_t{ancount} + nscount + arcount;
  for (uint32_t i = 0; i < records; ++i) {
    const size_t record_start = pos;
    const bool additional = i >= uint32_t{ancount} + nscount;
    auto owner = readName(packet, pos, /*strict=*/false);
    if (!owner.ok()) return owner.status();
    if (pos + 10 > packet.size()) {
      return formErr(
          fmt::format("resource record at offset {} runs past the end of the packet "
                      "({} bytes)",
                      record_start, packet.size()));
    }
    const uint16_t type = get16(packet, pos);
    const uint16_t klass = get16(packet, pos + 2);
    const uint32_t ttl = get32(packet, pos + 4);
    const uint16_t rdlength = get16(packet, pos + 8);
    pos += 10;
    if (pos + rdlength > packet.size()) {
      return formErr(
          fmt::format("RDATA of {} bytes of the record at offset {} runs past the end "
                      "of the packet ({} bytes)",
                      rdlength, record_start, packet.size()));
    }
    if (type == kTypeOpt) {
      if (!additional) {
        return formErr(
            fmt::format("OPT record at offset {} outside the additional section", record_start));
      }
      if (q.has_edns) {
        return formErr(fmt::format("second OPT record at offset {}", record_start));
      }
      if (owner->wire_length != 1) {
        return formErr(
            fmt::format("OPT record at offset {} has a non-root owner name", record_start));
      }
      q.has_edns = true;
      q.edns_udp_size = std::max(klass, kMinUdpPayload);
      q.edns_version = static_cast<uint8_t>((ttl >> 16) & 0xFF);
      q.edns_do = (ttl & 0x8000) != 0;
    }
    pos += rdlength;
  }
  return q;
}

std::vector<uint8_t> buildResponse(const Query& q, uint8_t rcode,
                                   std::span<const std::array<uint8_t, 4>> a_records,
                                   uint32_t ttl) {
  rcode = effectiveRcode(q, rcode);
  std::vector<uint8_t> out;
  out.reserve(kMinUdpPayload);
  const size_t count = std::min<size_t>(a_records.size(), 0xFFFF);
  appendHeaderAndQuestion(out, q, rcode, static_cast<uint16_t>(count), false);
  for (size_t i = 0; i < count; ++i) {
    put16(out, kCompressionPointerToQuestion);
    put16(out, kTypeA);
    put16(out, kClassIn);
    put32(out, ttl);
    put16(out, 4);
    out.insert(out.end(), a_records[i].begin(), a_records[i].end());
  }
  appendOpt(out, q, rcode);
  if (out.size() > responseLimit(q)) {
    out.clear();
    appendHeaderAndQuestion(out, q, rcode, 0, true);
    appendOpt(out, q, rcode);
  }
  return out;
}

std::vector<uint8_t> buildPtrResponse(const Query& q, std::string_view target_name, uint32_t ttl) {
  std::vector<uint8_t> target;
  if (target_name.empty() || !appendName(target, target_name)) {
    return buildResponse(q, kRcodeServFail, {}, 0);
  }
  std::vector<uint8_t> out;
  out.reserve(kMinUdpPayload);
  appendHeaderAndQuestion(out, q, kRcodeNoError, 1, false);
  put16(out, kCompressionPointerToQuestion);
  put16(out, kTypePtr);
  put16(out, kClassIn);
  put32(out, ttl);
  put16(out, static_cast<uint16_t>(target.size()));
  out.insert(out.end(), target.begin(), target.end());
  appendOpt(out, q, kRcodeNoError);
  if (out.size() > responseLimit(q)) {
    out.clear();
    appendHeaderAndQuestion(out, q, kRcodeNoError, 0, true);
    appendOpt(out, q, kRcodeNoError);
  }
  return out;
}

std::vector<uint8_t> buildError(std::span<const uint8_t> packet, uint8_t rcode) {
  if (packet.size() < kHeaderSize) return {};
  const uint16_t in_flags = get16(packet, 2);
  if (in_flags & kFlagQr) return {};
  if (rcode > 15) rcode = kRcodeServFail;
  std::vector<uint8_t> out;
  out.reserve(kHeaderSize);
  put16(out, get16(packet, 0));
  put16(out, static_cast<uint16_t>(kFlagQr | kFlagRa | (in_flags & (kOpcodeMask | kFlagRd)) |
                                   (rcode & 0x0F)));
  for (int i = 0; i < 4; ++i) put16(out, 0);
  return out;
}

std::string typeName(uint16_t type) {
  switch (type) {
    case kTypeA:
      return "A";
    case kTypeNs:
      return "NS";
    case kTypeCname:
      return "CNAME";
    case kTypeSoa:
      return "SOA";
    case kTypePtr:
      return "PTR";
    case kTypeMx:
      return "MX";
    case kTypeTxt:
      return "TXT";
    case kTypeAaaa:
      return "AAAA";
    case kTypeSrv:
      return "SRV";
    case kTypeOpt:
      return "OPT";
    case 64:
      return "SVCB";
    case kTypeHttps:
      return "HTTPS";
    case kTypeAny:
      return "ANY";
    default:
      return fmt::format("TYPE{}", type);
  }
}

std::string rcodeName(uint8_t rcode) {
  switch (rcode) {
    case kRcodeNoError:
      return "NOERROR";
    case kRcodeFormErr:
      return "FORMERR";
    case kRcodeServFail:
      return "SERVFAIL";
    case kRcodeNxDomain:
      return "NXDOMAIN";
    case kRcodeNotImp:
      return "NOTIMP";
    case kRcodeRefused:
      return "REFUSED";
    case kRcodeBadVers:
      return "BADVERS";
    default:
      return fmt::format("RCODE{}", rcode);
  }
}

}  // namespace clrk::egress::dns
