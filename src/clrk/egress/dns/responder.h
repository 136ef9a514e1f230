// Responder: the sandbox resolver's decisions, without any I/O. Turns one DNS query packet into
// the reply bytes. DnsServer uses it for UDP; the transparent listener can use it for DNS over
// TCP (RFC 1035 §4.2.2: each message prefixed by a two-byte length), so a client that retries
// over TCP/53 gets the same answers.
//
// What it answers (class IN or ANY; other classes get REFUSED):
// - opcode other than QUERY: NOTIMP. Unparsable queries that still have a header: FORMERR.
//   Shorter than a header, or QR=1 (a response): nothing (empty reply: send nothing).
// - EDNS version other than 0: BADVERS.
// - "localhost" and "*.localhost" (RFC 6761): A -> 127.0.0.1 without asking the policy; it is the
//   sandbox's own loopback inside its netns, so nothing leaves the sandbox. Other types: NOERROR,
//   no answers.
// - The root name: REFUSED (we are not a recursive resolver for the root zone).
// - Names under in-addr.arpa / ip6.arpa: PTR of a synthetic address -> the name it stands for
//   ("localhost" for 127.0.0.1); NXDOMAIN for any other address. The policy is not asked.
// - Every other name: the policy decides once per query. kNxDomain -> NXDOMAIN and kRefused ->
//   REFUSED for every type. kSynthetic -> A (and ANY) get the name's synthetic address from the
//   NameTable with `ttl`; AAAA gets NOERROR with no answers (sandboxes only do IPv4, so clients
//   fall back to A); every other type gets NOERROR with no answers. A full NameTable or a policy
//   that throws -> SERVFAIL.
// - Replies never exceed 512 bytes, so truncation (TC) does not occur in practice.
//
// Thread model: respond() is const and thread-safe provided the policy and the query log callback
// are (the NameTable is). It never throws: exceptions from the callbacks are caught.
#pragma once

#include "clrk/egress/dns/name_table.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace spdlog {
class logger;
}

namespace clrk::egress::dns {

struct Query;

enum class Answer { kSynthetic, kNxDomain, kRefused };

// Decides a name (lower case, no trailing dot) for a client (its address as text, e.g.
// "10.200.0.2"; IPv4-mapped IPv6 senders on a dual-stack socket are given in IPv4 form).
using Policy = std::function<Answer(const std::string& name, const std::string& client_ip)>;

// One handled query, for audit logs and tests.
struct QueryLog {
  std::string name;       // as parsed; empty if the packet could not be parsed
  uint16_t type = 0;      // QTYPE (0 if unparsable)
  std::string client_ip;  // "10.200.0.2"
  uint16_t client_port = 0;
  std::optional<Answer> decision;    // set when the policy was consulted
  uint8_t rcode = 0;                 // what was answered
  std::vector<std::string> answers;  // "198.18.0.7" for A, the target name for PTR
  std::string error;                 // why, for FORMERR/NOTIMP/SERVFAIL replies
};

class Responder {
 public:
  struct Options {
    std::chrono::seconds ttl{30};  // TTL of A and PTR answers (keep well below min_reuse_age)
    // Optional; called for every answered query, before respond() returns.
    std::function<void(const QueryLog&)> on_query;
  };

  // `table` must outlive the responder. A null policy refuses every name.
  Responder(NameTable& table, Policy policy, Options options);

  // The reply to `packet` from `client_ip`:`client_port`; empty when nothing must be sent.
  std::vector<uint8_t> respond(std::span<const uint8_t> packet, const std::string& client_ip,
                               uint16_t client_port) const;

 private:
  std::vector<uint8_t> respondOrThrow(std::span<const uint8_t> packet, const std::string& client_ip,
                                      uint16_t client_port) const;
  std::vector<uint8_t> answer(const Query& q, QueryLog& entry) const;

  NameTable& table_;
  Policy policy_;
  Options options_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace clrk::egress::dns
