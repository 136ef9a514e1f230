#include "clrk/egress/tls/client_hello.h"

#include <algorithm>
#include <bitset>
#include <cstdio>

namespace clrk::egress::tls {
namespace {

constexpr uint8_t kContentHandshake = 0x16;
constexpr uint8_t kHandshakeClientHello = 0x01;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordFragment = 16 * 1024;  // 2^14, RFC 8446 5.1
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;

// Where a piece of the reassembled handshake message came from in the original stream.
struct Segment {
  size_t message_offset;  // offset in the reassembled message
  size_t stream_offset;   // offset of the same byte in `data`
  size_t length;
};

class Parser {
 public:
  Parser(std::span<const uint8_t> data, std::string* error) : data_(data), error_(error) {}

  SniffResult run(ClientHello* out);

 private:
  SniffResult fail(size_t message_offset, const std::string& what) {
    return failAtStream(streamOffset(message_offset), what);
  }
  SniffResult failAtStream(size_t stream_offset, const std::string& what) {
    if (error_ != nullptr) *error_ = what + " at offset " + std::to_string(stream_offset);
    return SniffResult::kMalformed;
  }
  size_t streamOffset(size_t message_offset) const {
    for (const Segment& seg : segments_) {
      if (message_offset < seg.message_offset + seg.length) {
        return seg.stream_offset + (message_offset - seg.message_offset);
      }
    }
    if (segments_.empty()) return kRecordHeader;
    const Segment& last = segments_.back();
    return last.stream_offset + last.length;
  }

  SniffResult assemble();
  SniffResult parseBody(ClientHello* out);
  SniffResult parseServerName(size_t pos, size_t len, ClientHello* out);
  SniffResult parseAlpn(size_t pos, size_t len, ClientHello* out);

  // Bounds-checked big-endian reads from the reassembled message.
  bool has(size_t pos, size_t n) const { return pos <= msg_.size() && n <= msg_.size() - pos; }
  uint32_t u8(size_t pos) const { return msg_[pos]; }
  uint32_t u16(size_t pos) const { return (uint32_t{msg_[pos]} << 8) | msg_[pos + 1]; }
  uint32_t u24(size_t pos) const {
    return (uint32_t{msg_[pos]} << 16) | (uint32_t{msg_[pos + 1]} << 8) | msg_[pos + 2];
  }

  std::span<const uint8_t> data_;
  std::string* error_;
  std::vector<Segment> segments_;
  std::vector<uint8_t> owned_;    // the reassembled handshake message
  std::span<const uint8_t> msg_;  // == owned_ once complete (header included)
  uint16_t record_version_ = 0;
};

std::string hex2(uint32_t byte) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02x", byte & 0xffU);
  return buf;
}

// Collects the handshake message from as many records as it takes.
SniffResult Parser::assemble() {
  size_t stream_pos = 0;
  size_t needed = 0;  // total message length once the 4-byte header is known
  size_t have = 0;
  size_t records = 0;
  owned_.reserve(std::min(data_.size(), kMaxClientHelloBytes));
  while (true) {
    if (data_.size() - stream_pos < 1) return SniffResult::kNeedMore;
    // Checked as soon as a further record starts, so a caller never buffers past kMaxSniffBytes.
    if (records == kMaxClientHelloRecords) {
      return failAtStream(stream_pos, "ClientHello spread over more than " +
                                          std::to_string(kMaxClientHelloRecords) + " records");
    }
    ++records;
    if (data_[stream_pos] != kContentHandshake) {
      if (stream_pos == 0) return SniffResult::kNotTls;
      return failAtStream(stream_pos, "record type " + hex2(data_[stream_pos]) +
                                          " inside the ClientHello, expected handshake (0x16)");
    }
    if (data_.size() - stream_pos >= 2 && data_[stream_pos + 1] != 0x03) {
      return failAtStream(stream_pos + 1, "record version major " + hex2(data_[stream_pos + 1]) +
                                              ", expected 0x03");
    }
    if (data_.size() - stream_pos < kRecordHeader) return SniffResult::kNeedMore;
    const uint16_t version =
        static_cast<uint16_t>((data_[stream_pos + 1] << 8) | data_[stream_pos + 2]);
    const size_t length = (size_t{data_[stream_pos + 3]} << 8) | data_[stream_pos + 4];
    if (records == 1) record_version_ = version;
    if (length == 0) return failAtStream(stream_pos + 3, "empty handshake record");
    if (length > kMaxRecordFragment) {
      return failAtStream(stream_pos + 3,
                          "record length " + std::to_string(length) + " exceeds 16384");
    }
    const size_t frag_start = stream_pos + kRecordHeader;
    const size_t available = std::min(length, data_.size() - frag_start);
    // Take only what the message still needs (a record may carry more after the hello).
    size_t take = available;
    if (needed != 0) take = std::min(take, needed - have);
    if (take > 0) {
      segments_.push_back({have, frag_start, take});
      owned_.insert(owned_.end(), data_.begin() + static_cast<std::ptrdiff_t>(frag_start),
                    data_.begin() + static_cast<std::ptrdiff_t>(frag_start + take));
      have += take;
    }
    if (needed == 0 && have >= 1 && owned_[0] != kHandshakeClientHello) {
      return failAtStream(segments_.front().stream_offset,
                          "handshake type " + hex2(owned_[0]) + ", expected ClientHello (0x01)");
    }
    if (needed == 0 && have >= 4) {
      const size_t body = (size_t{owned_[1]} << 16) | (size_t{owned_[2]} << 8) | owned_[3];
      if (body + 4 > kMaxClientHelloBytes) {
        return fail(1, "ClientHello length " + std::to_string(body) + " exceeds " +
                           std::to_string(kMaxClientHelloBytes - 4));
      }
      needed = body + 4;
      if (have > needed) {  // the record carried more than the hello: drop the excess
        const size_t excess = have - needed;
        owned_.resize(needed);
        segments_.back().length -= excess;
        have = needed;
      }
    }
    if (needed != 0 && have == needed) {
      msg_ = owned_;
      return SniffResult::kOk;
    }
    if (available < length) return SniffResult::kNeedMore;  // record itself incomplete
    stream_pos = frag_start + length;
  }
}

bool validHostByte(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.';
}

SniffResult Parser::parseServerName(size_t pos, size_t len, ClientHello* out) {
  if (len < 2) return fail(pos, "server_name: extension too short");
  const size_t list_len = u16(pos);
  if (list_len != len - 2) {
    return fail(pos, "server_name: list length " + std::to_string(list_len) +
                         " does not match extension length " + std::to_string(len));
  }
  size_t cur = pos + 2;
  const size_t end = pos + len;
  bool seen_host = false;
  while (cur < end) {
    if (end - cur < 3) return fail(cur, "server_name: truncated entry");
    const uint32_t name_type = u8(cur);
    const size_t name_len = u16(cur + 1);
    if (name_len > end - cur - 3) return fail(cur + 1, "server_name: name overruns the list");
    const size_t name_pos = cur + 3;
    if (name_type == 0) {
      if (seen_host) return fail(cur, "server_name: more than one host_name");
      seen_host = true;
      if (name_len == 0) return fail(cur + 1, "server_name: empty host name");
      size_t host_len = name_len;
      if (msg_[name_pos + host_len - 1] == '.') --host_len;  // a single trailing dot is allowed
      if (host_len == 0) return fail(name_pos, "server_name: host name is only a dot");
      if (host_len > 253) {
        return fail(cur + 1,
                    "server_name: host name of " + std::to_string(host_len) + " bytes exceeds 253");
      }
      std::string host;
      host.reserve(host_len);
      size_t label_len = 0;
      for (size_t i = 0; i < host_len; ++i) {
        const uint8_t c = msg_[name_pos + i];
        if (!validHostByte(c)) {
          return fail(name_pos + i, "server_name: host name contains byte " + hex2(c));
        }
        if (c == '.') {
          if (label_len == 0) return fail(name_pos + i, "server_name: empty label in host name");
          label_len = 0;
        } else if (++label_len > 63) {
          return fail(name_pos + i, "server_name: label longer than 63 bytes");
        }
        host.push_back(static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c));
      }
      if (label_len == 0) return fail(name_pos + host_len - 1, "server_name: empty last label");
      if (host[0] == '-' || host.find(".-") != std::string::npos) {
        // Lenient on '_' (seen in the wild) but a label never starts with '-'.
        return fail(name_pos, "server_name: label starts with '-'");
      }
      out->sni = std::move(host);
    }
    cur = name_pos + name_len;
  }
  return SniffResult::kOk;
}

SniffResult Parser::parseAlpn(size_t pos, size_t len, ClientHello* out) {
  if (len < 2) return fail(pos, "alpn: extension too short");
  const size_t list_len = u16(pos);
  if (list_len != len - 2) {
    return fail(pos, "alpn: list length " + std::to_string(list_len) +
                         " does not match extension length " + std::to_string(len));
  }
  if (list_len == 0) return fail(pos, "alpn: empty protocol list");
  size_t cur = pos + 2;
  const size_t end = pos + len;
  while (cur < end) {
    const size_t name_len = u8(cur);
    if (name_len == 0) return fail(cur, "alpn: empty protocol name");
    if (name_len > end - cur - 1) return fail(cur, "alpn: protocol name overruns the list");
    out->alpn.emplace_back(reinterpret_cast<const char*>(msg_.data() + cur + 1), name_len);
    cur += 1 + name_len;
  }
  return SniffResult::kOk;
}

SniffResult Parser::parseBody(ClientHello* out) {
  size_t pos = 4;  // after msg_type + length
  if (!has(pos, 2 + 32)) return fail(pos, "ClientHello too short for version and random");
  const uint32_t legacy_version = u16(pos);
  if ((legacy_version >> 8) != 0x03) {
    return fail(pos, "client_version " + hex2(legacy_version >> 8) +
                         hex2(legacy_version).substr(2) + " is not TLS");
  }
  pos += 2 + 32;
  if (!has(pos, 1)) return fail(pos, "truncated before session_id");
  const size_t sid_len = u8(pos);
  if (sid_len > 32)
    return fail(pos, "session_id length " + std::to_string(sid_len) + " exceeds 32");
  if (!has(pos + 1, sid_len)) return fail(pos, "session_id overruns the ClientHello");
  pos += 1 + sid_len;
  if (!has(pos, 2)) return fail(pos, "truncated before cipher_suites");
  const size_t cs_len = u16(pos);
  if (cs_len < 2 || cs_len % 2 != 0) {
    return fail(
        pos, "cipher_suites length " + std::to_string(cs_len) + " is not a positive even number");
  }
  if (!has(pos + 2, cs_len)) return fail(pos, "cipher_suites overrun the ClientHello");
  pos += 2 + cs_len;
  if (!has(pos, 1)) return fail(pos, "truncated before compression_methods");
  const size_t comp_len = u8(pos);
  if (comp_len < 1) return fail(pos, "empty compression_methods");
  if (!has(pos + 1, comp_len)) return fail(pos, "compression_methods overrun the ClientHello");
  pos += 1 + comp_len;
  if (pos == msg_.size()) return SniffResult::kOk;  // no extensions (old clients)
  if (!has(pos, 2)) return fail(pos, "truncated extensions length");
  const size_t ext_total = u16(pos);
  if (ext_total != msg_.size() - pos - 2) {
    return fail(pos, "extensions length " + std::to_string(ext_total) + " does not match the " +
                         std::to_string(msg_.size() - pos - 2) + " bytes left in the ClientHello");
  }
  pos += 2;
  std::bitset<65536> seen;
  while (pos < msg_.size()) {
    if (!has(pos, 4)) return fail(pos, "truncated extension header");
    const uint32_t type = u16(pos);
    const size_t len = u16(pos + 2);
    if (!has(pos + 4, len)) {
      return fail(pos + 2, "extension " + std::to_string(type) + " length " + std::to_string(len) +
                               " overruns the ClientHello");
    }
    if (seen.test(type)) return fail(pos, "duplicate extension " + std::to_string(type));
    seen.set(type);
    SniffResult r = SniffResult::kOk;
    if (type == kExtServerName) r = parseServerName(pos + 4, len, out);
    if (type == kExtAlpn) r = parseAlpn(pos + 4, len, out);
    if (r != SniffResult::kOk) return r;
    pos += 4 + len;
  }
  return SniffResult::kOk;
}

SniffResult Parser::run(ClientHello* out) {
  SniffResult r = assemble();
  if (r != SniffResult::kOk) return r;
  ClientHello hello;
  hello.record_version = record_version_;
  r = parseBody(&hello);
  if (r != SniffResult::kOk) return r;
  if (out != nullptr) *out = std::move(hello);
  return SniffResult::kOk;
}

}  // namespace

SniffResult sniffClientHello(std::span<const uint8_t> data, ClientHello* out, std::string* error) {
  Parser parser(data, error);
  return parser.run(out);
}

}  // namespace clrk::egress::tls
