// DnsServer: the resolver sandboxes talk to. The worker's nftables rules redirect every UDP/53
// packet leaving a sandbox to this server's port (environment.md §1), whatever resolver the
// sandbox thought it was asking; replies go back through the same socket and are un-NATed.
//
// What it answers is Responder's (responder.h). TCP/53 is not served here: the transparent TCP
// listener sees it like any other connection and may answer it with a Responder.
//
// Thread model: start() and stop() may be called from any thread; the io_context may be run by
// any number of threads (one receive is outstanding at a time, so queries are handled one by
// one). The policy and the query log callback run on an io_context thread; they must be fast and
// must not call stop(). Exceptions thrown by them are caught (the query gets SERVFAIL).
// The NameTable must outlive the server; the io_context must outlive it too.
#pragma once

#include "clrk/base/status.h"
#include "clrk/egress/dns/name_table.h"
#include "clrk/egress/dns/responder.h"

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
