#include "clrk/sandbox/net/nftables.h"

#include "clrk/base/log.h"

#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>
#include <nftables/libnftables.h>
#include <sys/socket.h>
#include <sys/time.h>

namespace clrk::sandbox::net {
namespace {

std::string trimmed(const char* text) {
  std::string out = text == nullptr ? "" : text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// One set element change for the raw batch.
struct ElementChange {
  uint16_t message;  // NFT_MSG_NEWSETELEM or NFT_MSG_DELSETELEM
  const char* set;
  std::vector<uint8_t> key;
};

std::vector<uint8_t> ifnameKey(const std::string& name) {
  std::vector<uint8_t> key(IFNAMSIZ, 0);  // the nft "ifname" type: 16 bytes, zero padded
  std::memcpy(key.data(), name.data(), std::min(name.size(), size_t{IFNAMSIZ - 1}));
  return key;
}

nlmsghdr* putMessage(std::vector<char>& buffer, size_t& used, uint16_t type, uint16_t flags,
                     uint32_t seq, uint8_t family, uint16_t res_id) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buffer.data() + used);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = flags;
  nlh->nlmsg_seq = seq;
  auto* header = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  header->nfgen_family = family;
  header->version = NFNETLINK_V0;
  header->res_id = htons(res_id);
  return nlh;
}

// Sends `changes` to table `table` (family ip) as one nfnetlink transaction.
Status sendElementBatch(const std::string& table, const std::vector<ElementChange>& changes) {
  mnl_socket* socket = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (socket == nullptr) {
    return internalError(fmt::format("nfnetlink socket: {}", std::strerror(errno)));
  }
  std::unique_ptr<mnl_socket, int (*)(mnl_socket*)> owner(socket, mnl_socket_close);
  if (mnl_socket_bind(socket, 0, MNL_SOCKET_AUTOPID) < 0) {
    return internalError(fmt::format("nfnetlink bind: {}", std::strerror(errno)));
  }
  timeval timeout{2, 0};
  (void)setsockopt(mnl_socket_get_fd(socket), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  int one = 1;
  (void)mnl_socket_setsockopt(socket, NETLINK_CAP_ACK, &one, sizeof(one));
  const uint32_t port = mnl_socket_get_portid(socket);

  std::vector<char> buffer(1024 + 256 * changes.size(), 0);
  size_t used = 0;
  auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  uint32_t seq = static_cast<uint32_t>(now) & 0x7fffffffu;
  const uint32_t first_seq = seq;
  auto finish = [&](nlmsghdr* nlh) { used += MNL_ALIGN(nlh->nlmsg_len); };
  finish(putMessage(buffer, used, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, AF_UNSPEC,
                    NFNL_SUBSYS_NFTABLES));
  size_t expected = 0;
  for (const auto& change : changes) {
    uint16_t flags = NLM_F_REQUEST | NLM_F_ACK;
    if (change.message == NFT_MSG_NEWSETELEM) flags |= NLM_F_CREATE;
    nlmsghdr* nlh = putMessage(buffer, used,
                               static_cast<uint16_t>((NFNL_SUBSYS_NFTABLES << 8) | change.message),
                               flags, seq++, NFPROTO_IPV4, 0);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, change.set);
    nlattr* elements = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    nlattr* element = mnl_attr_nest_start(nlh, NFTA_LIST_ELEM);
    nlattr* key = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_KEY);
    mnl_attr_put(nlh, NFTA_DATA_VALUE, change.key.size(), change.key.data());
    mnl_attr_nest_end(nlh, key);
    mnl_attr_nest_end(nlh, element);
    mnl_attr_nest_end(nlh, elements);
    finish(nlh);
    ++expected;
  }
  finish(putMessage(buffer, used, NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq++, AF_UNSPEC,
                    NFNL_SUBSYS_NFTABLES));
  if (mnl_socket_sendto(socket, buffer.data(), used) < 0) {
    return internalError(fmt::format("nfnetlink send: {}", std::strerror(errno)));
  }
  size_t answered = 0;
  std::vector<char> reply(32768);
  while (answered < expected) {
    ssize_t received = mnl_socket_recvfrom(socket, reply.data(), reply.size());
    if (received < 0) {
      if (errno == EINTR) continue;
      return internalError(fmt::format("nfnetlink receive: {}", std::strerror(errno)));
    }
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(reply.data());
    int remaining = static_cast<int>(received);
    while (mnl_nlmsg_ok(nlh, remaining)) {
      if (nlh->nlmsg_type == NLMSG_ERROR && nlh->nlmsg_pid == port && nlh->nlmsg_seq >= first_seq &&
          nlh->nlmsg_seq < seq) {
        const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
        if (err->error != 0) {
          return internalError(fmt::format("nfnetlink: changing set elements of {}: {}", table,
                                           std::strerror(-err->error)));
        }
        ++answered;
      }
      nlh = mnl_nlmsg_next(nlh, &remaining);
    }
  }
  return {};
}

std::vector<ElementChange> elementChanges(const std::vector<SandboxNetwork>& networks, bool add) {
  std::vector<ElementChange> changes;
  for (const auto& network : networks) {
    std::vector<uint8_t> veth = ifnameKey(network.host_interface);
    std::vector<uint8_t> source = veth;
    in_addr address{};
    inet_pton(AF_INET, network.sandbox_address.c_str(), &address);
    const auto* bytes = reinterpret_cast<const uint8_t*>(&address.s_addr);
    source.insert(source.end(), bytes, bytes + 4);
    // Removal adds first, so it succeeds whether or not the elements exist.
    changes.push_back({NFT_MSG_NEWSETELEM, "veths", veth});
    changes.push_back({NFT_MSG_NEWSETELEM, "sources", source});
    if (!add) {
      changes.push_back({NFT_MSG_DELSETELEM, "veths", veth});
      changes.push_back({NFT_MSG_DELSETELEM, "sources", source});
    }
  }
  return changes;
}

}  // namespace

Status Nftables::addElements(const std::string& tag, const std::vector<SandboxNetwork>& networks) {
  if (networks.empty()) return {};
  Status direct = sendElementBatch(ipTableName(tag), elementChanges(networks, true));
  if (direct.ok()) return {};
  logger("sandbox.net")->warn("{}; retrying through libnftables", direct.toString());
  std::string command;
  for (const auto& network : networks) command += addElementsCommand(tag, network);
  return run(command);
}

Status Nftables::removeElements(const std::string& tag,
                                const std::vector<SandboxNetwork>& networks) {
  if (networks.empty()) return {};
  Status direct = sendElementBatch(ipTableName(tag), elementChanges(networks, false));
  if (direct.ok()) return {};
  logger("sandbox.net")->warn("{}; retrying through libnftables", direct.toString());
  std::string command;
  for (const auto& network : networks) command += removeElementsCommand(tag, network);
  return run(command);
}

Result<std::unique_ptr<Nftables>> Nftables::create() {
  nft_ctx* context = nft_ctx_new(NFT_CTX_DEFAULT);
  if (context == nullptr) return internalError("libnftables: nft_ctx_new failed");
  if (nft_ctx_buffer_output(context) != 0 || nft_ctx_buffer_error(context) != 0) {
    nft_ctx_free(context);
    return internalError("libnftables: cannot buffer output");
  }
  return std::unique_ptr<Nftables>(new Nftables(context));
}

Nftables::~Nftables() { nft_ctx_free(context_); }

Status Nftables::run(const std::string& commands) { return query(commands).status(); }

Result<std::string> Nftables::query(const std::string& commands) {
  std::lock_guard lock(mutex_);
  int rc = nft_run_cmd_from_buffer(context_, commands.c_str());
  std::string output = trimmed(nft_ctx_get_output_buffer(context_));
  std::string error = trimmed(nft_ctx_get_error_buffer(context_));
  if (rc != 0) {
    if (error.empty()) error = "nft_run_cmd_from_buffer failed";
    return internalError("nftables: " + error);
  }
  return output;
}

std::string ipTableName(const std::string& tag) { return "clrk_" + tag; }
std::string ip6TableName(const std::string& tag) { return "clrk6_" + tag; }

std::string tablesCommand(const NetworkOptions& options) {
  const std::string table = ipTableName(options.tag);
  const std::string table6 = ip6TableName(options.tag);
  const std::string wildcard = fmt::format("ck{}h*", options.tag);
  const uint16_t tcp = options.egress_tcp_port;
  const uint16_t dns = options.egress_dns_port;
  // Sandbox host-side veths are listed in @veths (added before the link exists, removed after it
  // is gone), so no rule depends on a name pattern another tag could share. Drop-only rules
  // (forward, IPv6) use the wildcard as a safety net: dropping a look-alike is harmless there.
  return fmt::format(
      R"(table ip {table} {{ }}
delete table ip {table}
table ip {table} {{
  set veths {{ type ifname; }}
  set sources {{ type ifname . ipv4_addr; }}
  chain antispoof {{
    type filter hook prerouting priority raw; policy accept;
    iifname @veths iifname . ip saddr != @sources counter drop
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname @veths udp dport 53 redirect to :{dns}
    iifname @veths meta l4proto tcp redirect to :{tcp}
  }}
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname @veths jump sandbox_input
    iifname "lo" accept
    iifname "ck*" accept
    tcp dport {tcp} counter drop
    udp dport {dns} counter drop
  }}
  chain sandbox_input {{
    ct state established,related accept
    tcp dport {tcp} accept
    udp dport {dns} accept
    counter drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname @veths counter drop
    oifname @veths counter drop
    iifname "{wildcard}" counter drop
    oifname "{wildcard}" counter drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    oifname @veths ct state established,related accept
    oifname @veths counter drop
  }}
}}
table ip6 {table6} {{ }}
delete table ip6 {table6}
table ip6 {table6} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    iifname "{wildcard}" counter drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname "{wildcard}" counter drop
    oifname "{wildcard}" counter drop
  }}
  chain output {{
    type filter hook output priority filter; policy accept;
    oifname "{wildcard}" counter drop
  }}
}}
)",
      fmt::arg("table", table), fmt::arg("table6", table6), fmt::arg("wildcard", wildcard),
      fmt::arg("tcp", tcp), fmt::arg("dns", dns));
}

std::string destroyTablesCommand(const std::string& tag) {
  return fmt::format(
      "table ip {0} {{ }}\ndelete table ip {0}\ntable ip6 {1} {{ }}\ndelete table ip6 {1}\n",
      ipTableName(tag), ip6TableName(tag));
}

std::string addElementsCommand(const std::string& tag, const SandboxNetwork& network) {
  return fmt::format(
      "add element ip {0} veths {{ \"{1}\" }}\n"
      "add element ip {0} sources {{ \"{1}\" . {2} }}\n",
      ipTableName(tag), network.host_interface, network.sandbox_address);
}

std::string removeElementsCommand(const std::string& tag, const SandboxNetwork& network) {
  // Adding first makes the deletion succeed whether or not the elements exist.
  return addElementsCommand(tag, network) +
         fmt::format(
             "delete element ip {0} veths {{ \"{1}\" }}\n"
             "delete element ip {0} sources {{ \"{1}\" . {2} }}\n",
             ipTableName(tag), network.host_interface, network.sandbox_address);
}

std::string flushSetsCommand(const std::string& tag) {
  return fmt::format("flush set ip {0} veths\nflush set ip {0} sources\n", ipTableName(tag));
}

}  // namespace clrk::sandbox::net
