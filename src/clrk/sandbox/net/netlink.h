// A minimal rtnetlink client (libmnl) for what per-sandbox networking needs: veth pairs whose peer
// is created directly inside another network namespace, addresses, link state, default routes,
// link listing and deletion. Requests can be batched into one sendmsg() and their acks collected
// together; errors carry the kernel's extended-ack message when it sends one.
//
// A socket operates on the network namespace it was opened in (see openInNewNetns()).
// Thread model: one RtNetlink per thread at a time; distinct instances are independent.
#pragma once

#include "clrk/base/status.h"
#include "clrk/base/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct mnl_socket;
struct nlmsghdr;

namespace clrk::sandbox::net {

// One link as listed by RTM_GETLINK.
struct LinkInfo {
  int index = 0;
  std::string name;
  int operstate = 0;  // IF_OPER_* (getLink() only)
};

class RtNetlink {
 public:
  // Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
  static Result<RtNetlink> open();

  RtNetlink(RtNetlink&&) noexcept;
  RtNetlink& operator=(RtNetlink&&) noexcept;
  ~RtNetlink();

  // Creates veth `name` here and its peer `peer_name` directly inside the namespace `peer_netns_fd`
  // (both with `mtu`). AlreadyExists when `name` exists.
  Status createVeth(const std::string& name, const std::string& peer_name, int peer_netns_fd,
                    int mtu);
  // Index of link `name`; NotFound when absent.
  Result<int> linkIndex(const std::string& name);
  // Index, name and operational state of link `name`; NotFound when absent.
  Result<LinkInfo> getLink(const std::string& name);
  // Waits until link `name` is operationally up. A veth end that went up before its peer drops
  // every packet until the kernel's link watcher has handled the carrier change (usually well
  // under a millisecond, up to a second when it is rate limited); this is when it is done.
  // Unavailable after `timeout`.
  Status waitOperUp(const std::string& name, std::chrono::milliseconds timeout);
  // Every link of this namespace.
  Result<std::vector<LinkInfo>> listLinks();
  // Deletes link `name` (a veth takes its peer with it). Ok when it does not exist.
  Status deleteLink(const std::string& name);
  // Deletes several links in one kernel operation (they are put in a random link group, then the
  // group is deleted), so the RCU waits of unregistering are paid once. Missing links are fine.
  Status deleteLinks(const std::vector<std::string>& names);

  // Batched configuration: queue requests, then commit() sends them in one message and waits for
  // every ack. The first failure is returned, naming the request.
  void queueLinkUp(int index, const std::string& alias = "");
  // IPv6 address generation mode "none": the link gets no link-local (or any automatic) IPv6
  // address. Queue it before the link goes up. (Unlike the disable_ipv6 sysctl, this does not
  // spin on rtnl_trylock while other namespaces are being made.)
  void queueNoIpv6Addresses(int index);
  void queueAddress(int index, uint32_t address_be, int prefix_length);
  void queueDefaultRoute(int index, uint32_t gateway_be);
  Status commit();

 private:
  explicit RtNetlink(mnl_socket* socket);
  nlmsghdr* beginMessage(uint16_t type, uint16_t flags, const std::string& what);
  // Sends `buffer_` and collects an ack (or error) for every queued request.
  Status exchange();

  mnl_socket* socket_ = nullptr;
  uint32_t port_id_ = 0;
  uint32_t next_seq_ = 1;
  std::vector<char> buffer_;
  size_t used_ = 0;
  std::vector<std::pair<uint32_t, std::string>> pending_;  // seq, description
  std::vector<uint32_t> ignore_missing_;                   // seqs for which ENODEV is fine
};

}  // namespace clrk::sandbox::net
