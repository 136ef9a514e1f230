// Test-only helpers: hand-built DNS queries and a small independent decoder for responses.
// Deliberately separate from message.cc so tests do not check the code against itself.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace clrk::egress::dns::testing {

inline void push16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v & 0xFF));
}

// Wire form of a dotted name (no validation: tests build bad names on purpose elsewhere).
inline std::vector<uint8_t> wireName(const std::string& name) {
  std::vector<uint8_t> out;
  size_t begin = 0;
  while (begin < name.size()) {
    size_t dot = name.find('.', begin);
    if (dot == std::string::npos) dot = name.size();
    out.push_back(static_cast<uint8_t>(dot - begin));
    out.insert(out.end(), name.begin() + static_cast<std::ptrdiff_t>(begin),
               name.begin() + static_cast<std::ptrdiff_t>(dot));
    begin = dot + 1;
  }
  out.push_back(0);
  return out;
}

struct QuerySpec {
  uint16_t id = 0x1234;
  uint16_t flags = 0x0100;  // RD
  std::string name = "example.com";
  uint16_t type = 1;
  uint16_t klass = 1;
  bool edns = false;
  uint16_t edns_size = 4096;
  uint8_t edns_version = 0;
  bool edns_do = false;
};

inline std::vector<uint8_t> makeQuery(const QuerySpec& spec) {
  std::vector<uint8_t> out;
  push16(out, spec.id);
  push16(out, spec.flags);
  push16(out, 1);
  push16(out, 0);
  push16(out, 0);
  push16(out, spec.edns ? 1 : 0);
  auto name = wireName(spec.name);
  out.insert(out.end(), name.begin(), name.end());
  push16(out, spec.type);
  push16(out, spec.klass);
  if (spec.edns) {
    out.push_back(0);
    push16(out, 41);
    push16(out, spec.edns_size);
    out.push_back(0);  // extended rcode
    out.push_back(spec.edns_version);
    push16(out, spec.edns_do ? 0x8000 : 0);
    push16(out, 0);
  }
  return out;
}

struct DecodedRecord {
  std::string name;
  uint16_t type = 0;
  uint16_t klass = 0;
  uint32_t ttl = 0;
  std::vector<uint8_t> rdata;
  std::string rdata_name;  // decoded when the RDATA is a name (PTR)
};

struct Decoded {
  uint16_t id = 0;
  uint16_t flags = 0;
  uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
  std::string qname;
  uint16_t qtype = 0, qclass = 0;
  std::vector<DecodedRecord> answers;
  std::vector<DecodedRecord> additional;
  uint8_t rcode() const { return static_cast<uint8_t>(flags & 0xF); }
};

// Throws std::runtime_error on anything malformed (the code under test must never produce it).
class Decoder {
 public:
  explicit Decoder(const std::vector<uint8_t>& bytes) : p_(bytes) {}

  Decoded decode() {
    Decoded d;
    d.id = u16();
    d.flags = u16();
    d.qdcount = u16();
    d.ancount = u16();
    d.nscount = u16();
    d.arcount = u16();
    if (d.qdcount > 0) {
      d.qname = name(pos_, true);
      d.qtype = u16();
      d.qclass = u16();
    }
    for (int i = 0; i < d.ancount; ++i) d.answers.push_back(record());
    for (int i = 0; i < d.nscount; ++i) record();
    for (int i = 0; i < d.arcount; ++i) d.additional.push_back(record());
    if (pos_ != p_.size()) throw std::runtime_error("trailing bytes in response");
    return d;
  }

 private:
  uint8_t at(size_t i) const {
    if (i >= p_.size()) throw std::runtime_error("read past end");
    return p_[i];
  }
  uint16_t u16() {
    uint16_t v = static_cast<uint16_t>((at(pos_) << 8) | at(pos_ + 1));
    pos_ += 2;
    return v;
  }
  uint32_t u32() {
    uint32_t hi = u16();
    return (hi << 16) | u16();
  }
  // Reads a name at `where`; advances pos_ when `advance`.
  std::string name(size_t where, bool advance) {
    std::string out;
    size_t cur = where;
    bool jumped = false;
    for (int guard = 0; guard < 300; ++guard) {
      uint8_t len = at(cur);
      if ((len & 0xC0) == 0xC0) {
        size_t target = static_cast<size_t>(((len & 0x3F) << 8) | at(cur + 1));
        if (advance && !jumped) pos_ = cur + 2;
        jumped = true;
        cur = target;
        continue;
      }
      if (len == 0) {
        if (advance && !jumped) pos_ = cur + 1;
        return out;
      }
      if (!out.empty()) out.push_back('.');
      for (size_t i = 0; i < len; ++i) out.push_back(static_cast<char>(at(cur + 1 + i)));
      cur += 1 + len;
    }
    throw std::runtime_error("name loop");
  }
  DecodedRecord record() {
    DecodedRecord r;
    r.name = name(pos_, true);
    r.type = u16();
    r.klass = u16();
    r.ttl = u32();
    uint16_t len = u16();
    if (pos_ + len > p_.size()) throw std::runtime_error("rdata past end");
    r.rdata.assign(p_.begin() + static_cast<std::ptrdiff_t>(pos_),
                   p_.begin() + static_cast<std::ptrdiff_t>(pos_ + len));
    if (r.type == 12) r.rdata_name = name(pos_, false);
    pos_ += len;
    return r;
  }

  const std::vector<uint8_t>& p_;
  size_t pos_ = 0;
};

inline Decoded decode(const std::vector<uint8_t>& bytes) { return Decoder(bytes).decode(); }

}  // namespace clrk::egress::dns::testing
