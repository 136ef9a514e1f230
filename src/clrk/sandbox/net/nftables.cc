#include "clrk/sandbox/net/nftables.h"

#include <fmt/format.h>

#include <nftables/libnftables.h>

namespace clrk::sandbox::net {
namespace {

std::string trimmed(const char* text) {
  std::string out = text == nullptr ? "" : text;
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

}  // namespace

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
