#include "clrk/egress/config/match.h"

#include "clrk/base/ascii.h"

#include <algorithm>
#include <arpa/inet.h>
#include <cstring>

namespace clrk::egress::config {
namespace {

// Parses the class starting after '[' at `pattern[i]`; on success sets `end` to the index after
// ']' and `matched` to whether `c` is in the class.
bool matchClass(std::string_view pattern, size_t i, char c, size_t& end, bool& matched) {
  bool negate = false;
  if (i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^')) {
    negate = true;
    ++i;
  }
  bool found = false;
  bool first = true;
  while (i < pattern.size()) {
    char lo = pattern[i];
    if (lo == ']' && !first) {
      end = i + 1;
      matched = found != negate;
      return true;
    }
    first = false;
    if (lo == '\\') {
      if (++i >= pattern.size()) return false;
      lo = pattern[i];
    }
    char hi = lo;
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      hi = pattern[i + 2];
      if (hi == '\\') {
        if (i + 3 >= pattern.size()) return false;
        hi = pattern[i + 3];
        ++i;
      }
      i += 2;
      if (hi < lo) return false;
    }
    if (c >= lo && c <= hi) found = true;
    ++i;
  }
  return false;  // unclosed
}

// Matches one non-star pattern element at `p` against `c`; advances `p` past it.
// Returns 1 on match, 0 on mismatch, -1 on a malformed pattern.
int matchOne(std::string_view pattern, size_t& p, char c) {
  char pc = pattern[p];
  if (pc == '?') {
    ++p;
    return 1;
  }
  if (pc == '[') {
    size_t end = 0;
    bool matched = false;
    if (!matchClass(pattern, p + 1, c, end, matched)) return -1;
    p = end;
    return matched ? 1 : 0;
  }
  if (pc == '\\') {
    if (p + 1 >= pattern.size()) return -1;
    pc = pattern[p + 1];
    p += 2;
    return pc == c ? 1 : 0;
  }
  ++p;
  return pc == c ? 1 : 0;
}

}  // namespace

std::optional<std::string> globError(std::string_view pattern) {
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\') {
      if (i + 1 >= pattern.size()) return "trailing backslash";
      ++i;
    } else if (pattern[i] == '[') {
      size_t end = 0;
      bool matched = false;
      if (!matchClass(pattern, i + 1, 'a', end, matched)) {
        return "malformed character class starting at offset " + std::to_string(i);
      }
      i = end - 1;
    }
  }
  return std::nullopt;
}

bool globMatch(std::string_view pattern, std::string_view text) {
  // Iterative matcher with single-star backtracking: linear in practice, no recursion.
  size_t p = 0;
  size_t t = 0;
  size_t star_p = std::string_view::npos;
  size_t star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = ++p;
      star_t = t;
      continue;
    }
    if (p < pattern.size()) {
      size_t next = p;
      int r = matchOne(pattern, next, text[t]);
      if (r < 0) return false;
      if (r == 1) {
        p = next;
        ++t;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::optional<HostPattern> HostPattern::parse(std::string_view pattern) {
  if (!pattern.empty() && pattern.back() == '.') pattern.remove_suffix(1);
  if (pattern.empty()) return std::nullopt;
  HostPattern out;
  out.text_ = asciiLowerCopy(pattern);
  if (out.text_.rfind("*.", 0) == 0) {
    out.wildcard_ = true;
    out.suffix_ = out.text_.substr(1);
    if (out.suffix_.size() < 2) return std::nullopt;
  }
  if (out.text_.find('*', out.wildcard_ ? 1 : 0) != std::string::npos) return std::nullopt;
  return out;
}

bool HostPattern::matches(std::string_view host) const {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (!wildcard_) return asciiEqualsIgnoreCase(host, text_);
  if (host.size() <= suffix_.size()) return false;
  std::string_view label = host.substr(0, host.size() - suffix_.size());
  if (label.find('.') != std::string_view::npos) return false;
  return asciiEqualsIgnoreCase(host.substr(label.size()), suffix_);
}

std::optional<IpAddress> parseIp(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
  }
  if (text.empty() || text.size() > 63) return std::nullopt;
  char buf[64];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  IpAddress ip;
  if (text.find(':') == std::string_view::npos) {
    if (inet_pton(AF_INET, buf, ip.bytes.data()) != 1) return std::nullopt;
    return ip;
  }
  if (inet_pton(AF_INET6, buf, ip.bytes.data()) != 1) return std::nullopt;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(ip.bytes.data(), kMapped, 12) == 0) {
    std::memmove(ip.bytes.data(), ip.bytes.data() + 12, 4);
    std::fill(ip.bytes.begin() + 4, ip.bytes.end(), 0);
    return ip;
  }
  ip.v6 = true;
  return ip;
}

std::optional<Cidr> Cidr::parse(std::string_view text) {
  std::string_view addr = text;
  std::optional<int> prefix;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return std::nullopt;
    int value = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      value = value * 10 + (c - '0');
    }
    prefix = value;
  }
  auto ip = parseIp(addr);
  if (!ip) return std::nullopt;
  // "::ffff:10.0.0.0/104" style mapped prefixes are not supported; plain v4 is.
  int max = ip->v6 ? 128 : 32;
  if (!ip->v6 && addr.find(':') != std::string_view::npos) return std::nullopt;
  int bits = prefix.value_or(max);
  if (bits < 0 || bits > max) return std::nullopt;
  Cidr out;
  out.network_ = *ip;
  out.prefix_ = bits;
  return out;
}

bool Cidr::contains(const IpAddress& ip) const {
  if (ip.v6 != network_.v6) return false;
  int full = prefix_ / 8;
  if (std::memcmp(ip.bytes.data(), network_.bytes.data(), static_cast<size_t>(full)) != 0) {
    return false;
  }
  int rest = prefix_ % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (ip.bytes[static_cast<size_t>(full)] & mask) ==
         (network_.bytes[static_cast<size_t>(full)] & mask);
}

bool LabelSelector::add(std::string key, std::string_view op, std::vector<std::string> values) {
  Requirement r;
  r.key = std::move(key);
  if (op == "In") {
    r.op = Op::kIn;
  } else if (op == "NotIn") {
    r.op = Op::kNotIn;
  } else if (op == "Exists") {
    r.op = Op::kExists;
  } else if (op == "DoesNotExist") {
    r.op = Op::kDoesNotExist;
  } else {
    return false;
  }
  bool needs_values = r.op == Op::kIn || r.op == Op::kNotIn;
  if (needs_values == values.empty()) return false;
  r.values = std::move(values);
  requirements_.push_back(std::move(r));
  return true;
}

bool LabelSelector::matches(const std::map<std::string, std::string>& labels) const {
  for (const Requirement& r : requirements_) {
    auto it = labels.find(r.key);
    bool has = it != labels.end();
    switch (r.op) {
      case Op::kExists:
        if (!has) return false;
        break;
      case Op::kDoesNotExist:
        if (has) return false;
        break;
      case Op::kIn:
        if (!has || std::find(r.values.begin(), r.values.end(), it->second) == r.values.end()) {
          return false;
        }
        break;
      case Op::kNotIn:
        if (has && std::find(r.values.begin(), r.values.end(), it->second) != r.values.end()) {
          return false;
        }
        break;
    }
  }
  return true;
}

bool isHeaderName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    if (!ok || c == '\0') return false;
  }
  return true;
}

bool isHeaderValue(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

}  // namespace clrk::egress::config
