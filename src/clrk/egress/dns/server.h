// DnsServer: the resolver sandboxes talk to. The worker's nftables rules redirect every UDP/53
// packet leaving a sandbox to this server's port (environment.md §1), whatever resolver the
// sandbox thought it was asking; replies go back through the same socket and are un-NATed.
//
// What it answers (class IN or ANY; other classes get REFUSED):
// - opcode other than QUERY: NOTIMP. Unparsable queries that still have a header: FORMERR.
//   Shorter than a header, or QR=1 (a response): dropped, nothing sent.
// - EDNS version other than 0: BADVERS.
// - "localhost" and "*.localhost" (RFC 6761): A -> 127.0.0.1 without asking the policy; it is the
//   sandbox's own loopback inside its netns, so nothing leaves the sandbox. Other types: NOERROR,
//   no answers.
// - The root name: REFUSED (we are not a recursive resolver for the root zone).
// - PTR for d.c.b.a.in-addr.arpa: the name behind a synthetic address ("localhost" for
//   127.0.0.1); NXDOMAIN for any other address. The policy is not asked.
// - Every other name: the policy decides once per query. kNxDomain -> NXDOMAIN and kRefused ->
//   REFUSED for every type. kSynthetic -> A (and ANY) get the name's synthetic address from the
//   NameTable with `ttl`; AAAA gets NOERROR with no answers (sandboxes only do IPv4, so clients
//   fall back to A); every other type gets NOERROR with no answers. A full NameTable -> SERVFAIL.
// - Responses never exceed 512 bytes, so truncation (TC, TCP retry) never occurs; TCP/53 is not
//   served here (the transparent TCP listener sees it like any other connection).
//
// Thread model: start() and stop() may be called from any thread; the io_context may be run by
// any number of threads (one receive is outstanding at a time, so queries are handled one by
// one). The policy and the query log callback run on an io_context thread; they must be fast and
// must not call stop(). Exceptions thrown by them are caught (the query gets SERVFAIL).
// The NameTable must outlive the server; the io_context must outlive it too.
#pragma once

#include "clrk/base/status.h"
#include "clrk/egress/dns/name_table.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/udp.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clrk::egress::dns {

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
  std::string error;                 // the parse error for FORMERR replies
};

class DnsServer {
 public:
  struct Options {
    std::chrono::seconds ttl{30};  // TTL of A and PTR answers
    // Optional; called for every answered query, before the reply is sent.
    std::function<void(const QueryLog&)> on_query;
  };

  // Binds `listen` (port 0 picks a free port) and starts answering on `io`. Fails (Unavailable)
  // when the socket cannot be opened or bound, e.g. the port is taken.
  static Result<std::unique_ptr<DnsServer>> start(boost::asio::io_context& io,
                                                  const boost::asio::ip::udp::endpoint& listen,
                                                  NameTable& table, Policy policy);
  static Result<std::unique_ptr<DnsServer>> start(boost::asio::io_context& io,
                                                  const boost::asio::ip::udp::endpoint& listen,
                                                  NameTable& table, Policy policy, Options options);

  // Stops (idempotent).
  ~DnsServer();
  DnsServer(const DnsServer&) = delete;
  DnsServer& operator=(const DnsServer&) = delete;

  // The bound port.
  uint16_t port() const { return port_; }
  // Closes the socket; no policy or log callback runs after stop() returns (one already running
  // on another thread finishes first). Idempotent.
  void stop();

  struct State;  // implementation detail, shared with pending handlers

 private:
  DnsServer(std::shared_ptr<State> state, uint16_t port) : state_(std::move(state)), port_(port) {}

  std::shared_ptr<State> state_;
  uint16_t port_;
};

}  // namespace clrk::egress::dns
