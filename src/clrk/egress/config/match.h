// Matchers the compiled egress snapshot evaluates per connection and per request: globs, hostname
// patterns, CIDRs, label selectors, plus the small parsers compile() needs (base64, IPs, header
// names). Each matcher is parsed once at compile time; match calls do not allocate.
#pragma once

#include "clrk/base/base64.h"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::egress::config {

// ---- globs ---------------------------------------------------------------------------------

// Glob syntax (model IDs, endpoints, tool names): `*` matches any run of characters (including
// `/`), `?` one character, `[abc]`, `[a-z]`, `[!a-z]` / `[^a-z]` a character class, `\x` a literal
// x. Returns an error text for a malformed pattern (unclosed class, trailing backslash).
std::optional<std::string> globError(std::string_view pattern);
// Matches the whole of `text`. A malformed pattern never matches.
bool globMatch(std::string_view pattern, std::string_view text);

// ---- hostnames -----------------------------------------------------------------------------

// An exact hostname ("api.openai.com") or a wildcard ("*.openai.com") that matches exactly one
// extra leading label ("eu.openai.com", not "openai.com" nor "a.b.openai.com"). Matching is
// ASCII case-insensitive and ignores one trailing dot on the host.
class HostPattern {
 public:
  // nullopt when `pattern` is empty or has a `*` anywhere but a leading "*." label.
  static std::optional<HostPattern> parse(std::string_view pattern);
  bool matches(std::string_view host) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;    // lower case, as written
  std::string suffix_;  // for wildcards: ".openai.com"
  bool wildcard_ = false;
};

// ---- IP addresses and CIDRs ----------------------------------------------------------------

struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4 bytes
};
// Parses dotted IPv4 or IPv6 text; IPv4-mapped IPv6 ("::ffff:1.2.3.4") becomes IPv4. Accepts
// "[v6]" brackets.
std::optional<IpAddress> parseIp(std::string_view text);

class Cidr {
 public:
  // "10.0.0.0/8", "2001:db8::/32"; a bare address is a host route (/32 or /128). Host bits
  // beyond the prefix are ignored (as Go's net.ParseCIDR does). nullopt when malformed or the
  // prefix is out of range.
  static std::optional<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& ip) const;

 private:
  IpAddress network_;
  int prefix_ = 0;
};

// ---- label selectors -----------------------------------------------------------------------

// metav1.LabelSelector: matchLabels plus matchExpressions (In, NotIn, Exists, DoesNotExist).
// An empty selector matches everything, including an absent label set.
class LabelSelector {
 public:
  enum class Op { kIn, kNotIn, kExists, kDoesNotExist };
  struct Requirement {
    std::string key;
    Op op = Op::kIn;
    std::vector<std::string> values;
  };
  // `op` as written ("In", ...); returns false for an unknown operator or values that do not fit
  // the operator (In/NotIn need values, Exists/DoesNotExist take none).
  bool add(std::string key, std::string_view op, std::vector<std::string> values);
  bool matches(const std::map<std::string, std::string>& labels) const;
  bool empty() const { return requirements_.empty(); }

 private:
  std::vector<Requirement> requirements_;
};

// ---- misc parsers --------------------------------------------------------------------------

// RFC 9110 token characters, non-empty.
bool isHeaderName(std::string_view name);
// No CR, LF or NUL (a value that cannot smuggle another header).
bool isHeaderValue(std::string_view value);

}  // namespace clrk::egress::config
