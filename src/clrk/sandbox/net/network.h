// Per-sandbox networking on the worker host: one network namespace and one veth pair per sandbox,
// a unique /30 from the worker's pool, and nftables rules scoped to the host-side interface that
// send all TCP to the egress transparent listener, UDP 53 to the egress DNS server, and drop
// everything else (other UDP, ICMP, IPv6, spoofed source addresses, forwarding).
//
// Names are derived from the manager's `tag` so several workers on one host (clrk dev --workers
// N) never collide and a restarted worker can find and delete exactly its own leftovers:
//   netns  /run/netns/clrk-<tag>-<slot>, host veth "ck<tag>h<slot>", sandbox veth "ck<tag>s<slot>"
//   nftables tables "ip clrk_<tag>" and "ip6 clrk6_<tag>" (created once, per-sandbox elements).
// Thread model: a NetworkManager is thread-safe; create() and destroy() may run concurrently.
#pragma once

#include "clrk/base/status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace clrk::sandbox::net {

struct NetworkOptions {
  std::string tag = "0";                    // 1-3 chars [a-z0-9]; unique per worker on the host
  std::string pool_cidr = "10.200.0.0/16";  // carved into /30s: host .1, sandbox .2 of each
  uint16_t egress_tcp_port = 15001;         // egress transparent listener (bound on the host)
  uint16_t egress_dns_port = 15053;         // egress DNS server (UDP, bound on the host)
  int mtu = 1500;
  // Fresh namespaces a background thread keeps ready, so allocate() does not wait for the kernel
  // to build one (0..64; 0: none).
  int spare_namespaces = 2;
};

// One provisioned sandbox network. The sandbox's default route points at host_address, which
// is also the address the egress sees as the client (the identity key in egress::IdentityMap).
struct SandboxNetwork {
  int slot = -1;
  std::string netns_name;         // "clrk-<tag>-<slot>"
  std::string netns_path;         // "/run/netns/clrk-<tag>-<slot>" (OCI linux.namespaces path)
  std::string host_interface;     // in the host netns
  std::string sandbox_interface;  // inside the sandbox netns, already up with its address
  std::string host_address;       // e.g. "10.200.0.1"
  std::string sandbox_address;    // e.g. "10.200.0.2": what the egress sees as the peer
  int prefix_length = 30;
};

// Checks `options`: tag 1-3 of [a-z0-9], pool_cidr an IPv4 network /8../28 without host bits,
// non-zero distinct ports, mtu 576..65535, spare_namespaces 0..64. The error names the offending
// field.
Status validateOptions(const NetworkOptions& options);
// How many /30 slots the pool holds (2^(30-prefix)); InvalidArgument like validateOptions().
Result<int> slotCount(const NetworkOptions& options);
// The names and addresses slot `slot` gets under `options` (nothing is created).
Result<SandboxNetwork> networkForSlot(const NetworkOptions& options, int slot);

class NetworkManager {
 public:
  // Validates options, creates the nftables base tables/chains for this tag (idempotent) and
  // deletes every leftover of this tag (netns, veths, set elements) from a previous run.
  static Result<std::unique_ptr<NetworkManager>> create(NetworkOptions options);
  // Finishes pending releaseSoon()s but leaves every allocated network and the tables in place (a
  // crashed or restarted worker's next create() removes them); call releaseAll() and
  // destroyTables() for a clean shutdown.
  virtual ~NetworkManager() = default;

  // Provisions a fresh netns + veth pair + address + default route + nft elements. `owner` (the
  // sandbox id) is recorded for diagnostics (also as the host veth's alias). Fails with
  // Code::Unavailable when the pool is full. Nothing is left behind on failure.
  virtual Result<SandboxNetwork> allocate(const std::string& owner) = 0;
  // Removes the netns, veth pair and nft elements of `network`; idempotent. Costs ~10-30 ms of
  // kernel time (deleting a veth waits for RCU grace periods); see releaseSoon().
  virtual Status release(const SandboxNetwork& network) = 0;
  // Like release(), but returns once the namespace is unmounted (~0.1 ms); deleting the veth pair
  // and then the nft elements finishes on a background thread, after which the slot is reusable.
  // Until the veth is gone its elements (so all the rules) stay in force.
  virtual Status releaseSoon(const SandboxNetwork& network) { return release(network); }
  // Waits until every releaseSoon() so far has finished; returns the first error they met since
  // the previous call.
  virtual Status waitForReleases() { return {}; }
  // Deletes every network of this tag (used at worker start and shutdown); waits for releaseSoon().
  virtual Status releaseAll() = 0;
  // Removes the tag's nftables tables too (worker shutdown; tests).
  virtual Status destroyTables() = 0;

  virtual const NetworkOptions& options() const = 0;
  virtual size_t inUse() const = 0;
};

}  // namespace clrk::sandbox::net
