#include "clrk/sandbox/net/netlink.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <random>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox::net {
namespace {

constexpr size_t kMessageRoom = 4096;  // more than any single request here needs

size_t align4(size_t n) { return (n + 3) & ~size_t{3}; }

Status errnoStatus(int error, const std::string& what, const std::string& detail) {
  std::string message = fmt::format("{}: {}", what, std::strerror(error));
  if (!detail.empty()) message += fmt::format(" ({})", detail);
  switch (error) {
    case EEXIST:
      return {Code::AlreadyExists, message};
    case ENODEV:
    case ENOENT:
      return notFound(message);
    case EPERM:
    case EACCES:
      return {Code::Forbidden, message};
    default:
      return internalError(message);
  }
}

// The extended-ack text (NLMSGERR_ATTR_MSG) of an NLMSG_ERROR message, if any.
std::string extAckMessage(const nlmsghdr* nlh) {
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return {};
  std::string text;
  auto callback = [](const nlattr* attr, void* data) -> int {
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG &&
        mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
      *static_cast<std::string*>(data) = mnl_attr_get_str(attr);
    }
    return MNL_CB_OK;
  };
  mnl_attr_parse(nlh, sizeof(nlmsgerr), callback, &text);
  return text;
}

// Receives until `done(nlh)` says so for the messages of this socket; NLMSG_ERROR messages are
// handed to `done` as well.
Status receiveLoop(mnl_socket* socket, const std::function<bool(const nlmsghdr*)>& done) {
  std::vector<char> buffer(MNL_SOCKET_BUFFER_SIZE > 32768 ? MNL_SOCKET_BUFFER_SIZE : 32768);
  for (;;) {
    ssize_t received = mnl_socket_recvfrom(socket, buffer.data(), buffer.size());
    if (received < 0) {
      if (errno == EINTR) continue;
      return errnoStatus(errno, "netlink receive", "");
    }
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(buffer.data());
    int remaining = static_cast<int>(received);
    while (mnl_nlmsg_ok(nlh, remaining)) {
      if (done(nlh)) return {};
      nlh = mnl_nlmsg_next(nlh, &remaining);
    }
  }
}

}  // namespace

Result<RtNetlink> RtNetlink::open() {
  mnl_socket* socket = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (socket == nullptr) return errnoStatus(errno, "opening a NETLINK_ROUTE socket", "");
  RtNetlink netlink(socket);
  if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    return errnoStatus(errno, "binding the NETLINK_ROUTE socket", "");
  }
  int one = 1;
  // Best effort: short acks without the echoed request, and error strings from the kernel.
  (void)mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &one, sizeof(one));
  (void)mnl_socket_setsockopt(socket, NETLINK_EXT_ACK, &one, sizeof(one));
  netlink.port_id_ = mnl_socket_get_portid(socket);
  return netlink;
}

RtNetlink::RtNetlink(mnl_socket* socket) : socket_(socket) {}

RtNetlink::RtNetlink(RtNetlink&& other) noexcept
    : socket_(other.socket_),
      port_id_(other.port_id_),
      next_seq_(other.next_seq_),
      buffer_(std::move(other.buffer_)),
      used_(other.used_),
      pending_(std::move(other.pending_)) {
  other.socket_ = nullptr;
  other.used_ = 0;
}

RtNetlink& RtNetlink::operator=(RtNetlink&& other) noexcept {
  if (this != &other) {
    if (socket_ != nullptr) mnl_socket_close(socket_);
    socket_ = other.socket_;
    port_id_ = other.port_id_;
    next_seq_ = other.next_seq_;
    buffer_ = std::move(other.buffer_);
    used_ = other.used_;
    pending_ = std::move(other.pending_);
    other.socket_ = nullptr;
    other.used_ = 0;
  }
  return *this;
}

RtNetlink::~RtNetlink() {
  if (socket_ != nullptr) mnl_socket_close(socket_);
}

nlmsghdr* RtNetlink::beginMessage(uint16_t type, uint16_t flags, const std::string& what) {
  if (buffer_.size() < used_ + kMessageRoom) buffer_.resize(used_ + kMessageRoom);
  std::memset(buffer_.data() + used_, 0, kMessageRoom);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buffer_.data() + used_);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = next_seq_++;
  pending_.emplace_back(nlh->nlmsg_seq, what);
  return nlh;
}

Status RtNetlink::exchange() {
  size_t total = used_;
  std::vector<std::pair<uint32_t, std::string>> pending = std::move(pending_);
  pending_.clear();
  std::vector<uint32_t> ignore_missing = std::move(ignore_missing_);
  ignore_missing_.clear();
  used_ = 0;
  if (pending.empty()) return {};
  if (mnl_socket_sendto(socket_, buffer_.data(), total) < 0) {
    return errnoStatus(errno, "netlink send (" + pending.front().second + ")", "");
  }
  size_t acked = 0;
  Status first_error;
  Status loop = receiveLoop(socket_, [&](const nlmsghdr* nlh) {
    if (nlh->nlmsg_type != NLMSG_ERROR || nlh->nlmsg_pid != port_id_) return false;
    const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    for (const auto& [seq, what] : pending) {
      if (seq != nlh->nlmsg_seq) continue;
      ++acked;
      bool missing_is_fine =
          err->error == -ENODEV &&
          std::find(ignore_missing.begin(), ignore_missing.end(), seq) != ignore_missing.end();
      if (err->error != 0 && !missing_is_fine && first_error.ok()) {
        first_error = errnoStatus(-err->error, what, extAckMessage(nlh));
      }
    }
    return acked >= pending.size();
  });
  if (!loop.ok()) return loop;
  return first_error;
}

Status RtNetlink::commit() { return exchange(); }

Status RtNetlink::createVeth(const std::string& name, const std::string& peer_name,
                             int peer_netns_fd, int mtu) {
  nlmsghdr* nlh = beginMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                               fmt::format("creating veth {} (peer {})", name, peer_name));
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  mnl_attr_put_u32(nlh, IFLA_MTU, static_cast<uint32_t>(mtu));
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  // The peer's payload is an ifinfomsg followed by its attributes.
  auto* peer_ifm = static_cast<ifinfomsg*>(mnl_nlmsg_get_payload_tail(nlh));
  std::memset(peer_ifm, 0, sizeof(ifinfomsg));
  peer_ifm->ifi_family = AF_UNSPEC;
  nlh->nlmsg_len += static_cast<uint32_t>(align4(sizeof(ifinfomsg)));
  mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_name.c_str());
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, static_cast<uint32_t>(peer_netns_fd));
  mnl_attr_put_u32(nlh, IFLA_MTU, static_cast<uint32_t>(mtu));
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, linkinfo);
  used_ += align4(nlh->nlmsg_len);
  return exchange();
}

Result<LinkInfo> RtNetlink::getLink(const std::string& name) {
  if (!pending_.empty()) return internalError("getLink() with uncommitted requests");
  nlmsghdr* nlh = beginMessage(RTM_GETLINK, NLM_F_REQUEST, "looking up link " + name);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  uint32_t seq = nlh->nlmsg_seq;
  size_t length = align4(nlh->nlmsg_len);
  pending_.clear();
  if (mnl_socket_sendto(socket_, buffer_.data(), length) < 0) {
    return errnoStatus(errno, "netlink send (looking up link " + name + ")", "");
  }
  LinkInfo link;
  Status error;
  Status loop = receiveLoop(socket_, [&](const nlmsghdr* reply) {
    if (reply->nlmsg_seq != seq || reply->nlmsg_pid != port_id_) return false;
    if (reply->nlmsg_type == NLMSG_ERROR) {
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(reply));
      if (err->error != 0) error = errnoStatus(-err->error, "link " + name, extAckMessage(reply));
      return true;
    }
    if (reply->nlmsg_type == RTM_NEWLINK) {
      link.index = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(reply))->ifi_index;
      auto callback = [](const nlattr* attr, void* out) -> int {
        auto* info = static_cast<LinkInfo*>(out);
        if (mnl_attr_get_type(attr) == IFLA_IFNAME &&
            mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
          info->name = mnl_attr_get_str(attr);
        } else if (mnl_attr_get_type(attr) == IFLA_OPERSTATE &&
                   mnl_attr_validate(attr, MNL_TYPE_U8) >= 0) {
          info->operstate = mnl_attr_get_u8(attr);
        }
        return MNL_CB_OK;
      };
      mnl_attr_parse(reply, sizeof(ifinfomsg), callback, &link);
      return true;
    }
    return false;
  });
  if (!loop.ok()) return loop;
  if (!error.ok()) return error;
  if (link.index <= 0) return notFound("link " + name + ": no index in the kernel's answer");
  return link;
}

Status RtNetlink::waitOperUp(const std::string& name, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = std::chrono::microseconds(50);
  for (;;) {
    CLRK_ASSIGN_OR_RETURN(LinkInfo link, getLink(name));
    if (link.operstate == IF_OPER_UP) return {};
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(Code::Unavailable, fmt::format("{} did not come up within {} ms (operstate {})",
                                                   name, timeout.count(), link.operstate));
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(2000));
  }
}

Result<int> RtNetlink::linkIndex(const std::string& name) {
  CLRK_ASSIGN_OR_RETURN(LinkInfo link, getLink(name));
  return link.index;
}

Result<std::vector<LinkInfo>> RtNetlink::listLinks() {
  if (!pending_.empty()) return internalError("listLinks() with uncommitted requests");
  nlmsghdr* nlh = beginMessage(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, "listing links");
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  uint32_t seq = nlh->nlmsg_seq;
  size_t length = align4(nlh->nlmsg_len);
  pending_.clear();
  if (mnl_socket_sendto(socket_, buffer_.data(), length) < 0) {
    return errnoStatus(errno, "netlink send (listing links)", "");
  }
  std::vector<LinkInfo> links;
  Status error;
  Status loop = receiveLoop(socket_, [&](const nlmsghdr* reply) {
    if (reply->nlmsg_seq != seq || reply->nlmsg_pid != port_id_) return false;
    if (reply->nlmsg_type == NLMSG_DONE) return true;
    if (reply->nlmsg_type == NLMSG_ERROR) {
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(reply));
      if (err->error != 0) error = errnoStatus(-err->error, "listing links", extAckMessage(reply));
      return true;
    }
    if (reply->nlmsg_type != RTM_NEWLINK) return false;
    LinkInfo link;
    link.index = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(reply))->ifi_index;
    auto callback = [](const nlattr* attr, void* out) -> int {
      if (mnl_attr_get_type(attr) == IFLA_IFNAME &&
          mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) >= 0) {
        static_cast<LinkInfo*>(out)->name = mnl_attr_get_str(attr);
      }
      return MNL_CB_OK;
    };
    mnl_attr_parse(reply, sizeof(ifinfomsg), callback, &link);
    links.push_back(std::move(link));
    return false;
  });
  if (!loop.ok()) return loop;
  if (!error.ok()) return error;
  return links;
}

Status RtNetlink::deleteLink(const std::string& name) {
  if (!pending_.empty()) return internalError("deleteLink() with uncommitted requests");
  nlmsghdr* nlh = beginMessage(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, "deleting link " + name);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  used_ += align4(nlh->nlmsg_len);
  Status status = exchange();
  if (status.code() == Code::NotFound) return {};
  return status;
}

Status RtNetlink::deleteLinks(const std::vector<std::string>& names) {
  if (names.empty()) return {};
  if (names.size() == 1) return deleteLink(names.front());
  if (!pending_.empty()) return internalError("deleteLinks() with uncommitted requests");
  std::random_device random;
  // Non-zero and unlikely to be anyone's group (groups are rarely used at all).
  const uint32_t group = (random() & 0x3fffffffu) | 0x40000000u;
  for (const auto& name : names) {
    nlmsghdr* nlh = beginMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                                 fmt::format("putting link {} in a deletion group", name));
    auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifm->ifi_family = AF_UNSPEC;
    mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
    mnl_attr_put_u32(nlh, IFLA_GROUP, group);
    ignore_missing_.push_back(nlh->nlmsg_seq);
    used_ += align4(nlh->nlmsg_len);
  }
  CLRK_RETURN_IF_ERROR(exchange());
  nlmsghdr* nlh = beginMessage(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK,
                               fmt::format("deleting {} links", names.size()));
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  mnl_attr_put_u32(nlh, IFLA_GROUP, group);
  used_ += align4(nlh->nlmsg_len);
  Status status = exchange();
  if (status.code() == Code::NotFound) return {};  // none of them existed
  return status;
}

void RtNetlink::queueLinkUp(int index, const std::string& alias) {
  nlmsghdr* nlh = beginMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                               fmt::format("setting link {} up", index));
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  ifm->ifi_flags = IFF_UP;
  ifm->ifi_change = IFF_UP;
  if (!alias.empty()) {
    mnl_attr_put_strz(nlh, IFLA_IFALIAS, alias.substr(0, IFALIASZ - 1).c_str());
  }
  used_ += align4(nlh->nlmsg_len);
}

void RtNetlink::queueNoIpv6Addresses(int index) {
  nlmsghdr* nlh = beginMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                               fmt::format("turning off IPv6 addresses on link {}", index));
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index;
  nlattr* af_spec = mnl_attr_nest_start(nlh, IFLA_AF_SPEC);
  nlattr* inet6 = mnl_attr_nest_start(nlh, AF_INET6);
  mnl_attr_put_u8(nlh, IFLA_INET6_ADDR_GEN_MODE, IN6_ADDR_GEN_MODE_NONE);
  mnl_attr_nest_end(nlh, inet6);
  mnl_attr_nest_end(nlh, af_spec);
  used_ += align4(nlh->nlmsg_len);
}

void RtNetlink::queueAddress(int index, uint32_t address_be, int prefix_length) {
  nlmsghdr* nlh = beginMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                               fmt::format("adding an address to link {}", index));
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix_length);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<unsigned>(index);
  mnl_attr_put_u32(nlh, IFA_LOCAL, address_be);
  mnl_attr_put_u32(nlh, IFA_ADDRESS, address_be);
  used_ += align4(nlh->nlmsg_len);
}

void RtNetlink::queueDefaultRoute(int index, uint32_t gateway_be) {
  nlmsghdr* nlh = beginMessage(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
                               "adding the default route");
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = AF_INET;
  rtm->rtm_dst_len = 0;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put_u32(nlh, RTA_GATEWAY, gateway_be);
  mnl_attr_put_u32(nlh, RTA_OIF, static_cast<uint32_t>(index));
  used_ += align4(nlh->nlmsg_len);
}

}  // namespace clrk::sandbox::net
