#include "clrk/sandbox/net/network.h"

#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/sandbox/net/netlink.h"
#include "clrk/sandbox/net/netns.h"
#include "clrk/sandbox/net/nftables.h"
#include "clrk/sandbox/net/slot_pool.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iterator>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <optional>
#include <poll.h>
#include <set>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox::net {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------------------------------------
// Unit tests (no privileges needed)

// Out of line: GCC 12 -O3 reports a false -Wrestrict when a literal assignment is inlined here.
[[gnu::noinline]] void set(std::string& field, const char* value) { field.assign(value); }

Status validate(void (*edit)(NetworkOptions&)) {
  NetworkOptions options;
  edit(options);
  return validateOptions(options);
}

TEST(NetworkOptionsTest, DefaultsAreValid) { EXPECT_TRUE(validateOptions({}).ok()); }

TEST(NetworkOptionsTest, RejectsBadValuesNamingTheField) {
  struct Case {
    void (*edit)(NetworkOptions&);
    const char* expected;
  };
  const Case cases[] = {
      {[](NetworkOptions& o) { set(o.tag, ""); }, "tag \"\""},
      {[](NetworkOptions& o) { set(o.tag, "abcd"); }, "1 to 3 characters"},
      {[](NetworkOptions& o) { set(o.tag, "A"); }, "character 'A'"},
      {[](NetworkOptions& o) { set(o.tag, "a-"); }, "character '-'"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0.0"); }, "expected a.b.c.d/prefix"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0/16"); }, "not an IPv4 address"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0.0/x"); }, "not a number"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0.0/"); }, "not a number"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0.0/7"); }, "outside /8../28"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0.0/29"); }, "outside /8../28"},
      {[](NetworkOptions& o) { set(o.pool_cidr, "10.0.0.1/24"); },
       "host bits are set (network is 10.0.0.0/24)"},
      {[](NetworkOptions& o) { o.egress_tcp_port = 0; }, "egress_tcp_port"},
      {[](NetworkOptions& o) { o.egress_dns_port = 0; }, "egress_dns_port"},
      {[](NetworkOptions& o) { o.egress_dns_port = o.egress_tcp_port; }, "are both 15001"},
      {[](NetworkOptions& o) { o.mtu = 100; }, "mtu 100"},
      {[](NetworkOptions& o) { o.mtu = 70000; }, "mtu 70000"},
      {[](NetworkOptions& o) { o.spare_namespaces = -1; }, "spare_namespaces -1"},
      {[](NetworkOptions& o) { o.spare_namespaces = 65; }, "spare_namespaces 65"},
  };
  for (const auto& test_case : cases) {
    Status status = validate(test_case.edit);
    EXPECT_EQ(status.code(), Code::InvalidArgument) << test_case.expected;
    EXPECT_THAT(status.message(), HasSubstr(test_case.expected));
  }
}

TEST(NetworkOptionsTest, SlotsMapToConsecutiveSlash30s) {
  NetworkOptions options;
  options.tag = "t1";
  options.pool_cidr = "10.231.0.0/16";
  EXPECT_EQ(slotCount(options).value(), 16384);
  auto first = networkForSlot(options, 0);
  ASSERT_TRUE(first.ok()) << first.status().toString();
  EXPECT_EQ(first->netns_name, "clrk-t1-0");
  EXPECT_EQ(first->netns_path, "/run/netns/clrk-t1-0");
  EXPECT_EQ(first->host_interface, "ckt1h0");
  EXPECT_EQ(first->sandbox_interface, "ckt1s0");
  EXPECT_EQ(first->host_address, "10.231.0.1");
  EXPECT_EQ(first->sandbox_address, "10.231.0.2");
  EXPECT_EQ(first->prefix_length, 30);
  auto fifth = networkForSlot(options, 5);
  EXPECT_EQ(fifth->host_address, "10.231.0.21");
  EXPECT_EQ(fifth->sandbox_address, "10.231.0.22");
  auto last = networkForSlot(options, 16383);
  EXPECT_EQ(last->host_address, "10.231.255.253");
  EXPECT_EQ(last->sandbox_address, "10.231.255.254");
  EXPECT_EQ(last->host_interface, "ckt1h16383");
  EXPECT_EQ(networkForSlot(options, 16384).status().code(), Code::InvalidArgument);
  EXPECT_EQ(networkForSlot(options, -1).status().code(), Code::InvalidArgument);

  options.pool_cidr = "10.0.0.0/28";
  EXPECT_EQ(slotCount(options).value(), 4);
  options.pool_cidr = "10.0.0.0/8";
  EXPECT_EQ(slotCount(options).value(), 1 << 22);
  // The longest interface name still fits IFNAMSIZ.
  options.tag = "abc";
  EXPECT_LT(networkForSlot(options, (1 << 22) - 1)->host_interface.size(), size_t{IFNAMSIZ});
}

TEST(SlotPoolTest, PrefersNeverUsedSlotsThenLeastRecentlyFreed) {
  auto t0 = Clock::now();
  SlotPool pool(4, std::chrono::seconds(10));
  EXPECT_EQ(pool.acquire(t0), 0);
  EXPECT_EQ(pool.acquire(t0), 1);
  EXPECT_TRUE(pool.release(0, t0));
  EXPECT_FALSE(pool.release(0, t0));  // not in use any more
  EXPECT_FALSE(pool.release(3, t0));  // never handed out
  // Slot 0 is still in quarantine and fresh slots remain.
  EXPECT_EQ(pool.acquire(t0 + std::chrono::seconds(1)), 2);
  EXPECT_TRUE(pool.release(1, t0 + std::chrono::seconds(2)));
  // After the quarantine the least recently freed slot (0, not 1) comes back.
  EXPECT_EQ(pool.acquire(t0 + std::chrono::seconds(11)), 0);
  EXPECT_EQ(pool.acquire(t0 + std::chrono::seconds(11)), 3);
  // No fresh slot left: slot 1 is reused although still in quarantine.
  EXPECT_EQ(pool.acquire(t0 + std::chrono::seconds(11)), 1);
  EXPECT_EQ(pool.used(), 4u);
  EXPECT_EQ(pool.acquire(t0 + std::chrono::seconds(11)), std::nullopt);
  EXPECT_TRUE(pool.inUse(2));
  EXPECT_FALSE(pool.inUse(7));
}

TEST(NftablesTextTest, RulesAreScopedToTheTagAndPorts) {
  NetworkOptions options;
  options.tag = "q7";
  options.egress_tcp_port = 41001;
  options.egress_dns_port = 41053;
  std::string rules = tablesCommand(options);
  EXPECT_THAT(rules, HasSubstr("table ip clrk_q7 {"));
  EXPECT_THAT(rules, HasSubstr("table ip6 clrk6_q7 {"));
  EXPECT_THAT(rules, HasSubstr("iifname @veths udp dport 53 redirect to :41053"));
  EXPECT_THAT(rules, HasSubstr("iifname @veths meta l4proto tcp redirect to :41001"));
  EXPECT_THAT(rules, HasSubstr("iifname . ip saddr != @sources"));
  EXPECT_THAT(rules, HasSubstr("iifname \"ckq7h*\""));
  SandboxNetwork network = networkForSlot(options, 3).value();
  EXPECT_THAT(addElementsCommand("q7", network),
              HasSubstr("add element ip clrk_q7 sources { \"ckq7h3\" . 10.200.0.14 }"));
  EXPECT_THAT(removeElementsCommand("q7", network),
              HasSubstr("delete element ip clrk_q7 veths { \"ckq7h3\" }"));
}

// ---------------------------------------------------------------------------------------------
// Root integration tests: real namespaces, veths and nftables, with a random tag and pool.

sockaddr_in ipv4(const std::string& ip, uint16_t port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &address.sin_addr);
  return address;
}

std::string ipOf(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address.sin_addr, text, sizeof(text));
  return text;
}

uint16_t portOf(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return ntohs(address.sin_port);
}

// A socket that belongs to the network namespace at `path` (a socket keeps the namespace it was
// created in, whichever thread uses it later).
UniqueFd socketIn(const std::string& path, int domain, int type, int protocol = 0) {
  UniqueFd fd;
  Status status = runInNetns(path, [&] { fd = UniqueFd(::socket(domain, type, protocol)); });
  EXPECT_TRUE(status.ok()) << status.toString();
  return fd;
}

bool bindTo(int fd, const std::string& ip, uint16_t port) {
  sockaddr_in address = ipv4(ip, port);
  return ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
}

bool waitReadable(int fd, int timeout_ms) {
  pollfd entry{fd, POLLIN, 0};
  return ::poll(&entry, 1, timeout_ms) == 1;
}

// Non-blocking connect bounded by `timeout_ms`; true when established.
template <typename Address>
bool connectWithin(int fd, const Address& to, int timeout_ms) {
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
  if (rc != 0 && errno != EINPROGRESS) return false;
  if (rc != 0) {
    pollfd entry{fd, POLLOUT, 0};
    if (::poll(&entry, 1, timeout_ms) != 1) return false;
    int error = 0;
    socklen_t length = sizeof(error);
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return false;
  }
  fcntl(fd, F_SETFL, flags);
  return true;
}

UniqueFd acceptWithin(int listener, int timeout_ms) {
  if (!waitReadable(listener, timeout_ms)) return UniqueFd();
  return UniqueFd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
}

sockaddr_in peerOf(int fd) {
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  getpeername(fd, reinterpret_cast<sockaddr*>(&address), &length);
  return address;
}

std::optional<sockaddr_in> originalDestination(int fd) {
  constexpr int kSoOriginalDst = 80;  // <linux/netfilter_ipv4.h>
  sockaddr_in address{};
  socklen_t length = sizeof(address);
  if (getsockopt(fd, SOL_IP, kSoOriginalDst, &address, &length) != 0) return std::nullopt;
  return address;
}

struct Datagram {
  std::string data;
  std::string from;
};

std::optional<Datagram> receiveWithin(int fd, int timeout_ms) {
  if (!waitReadable(fd, timeout_ms)) return std::nullopt;
  char buffer[2048];
  sockaddr_in from{};
  socklen_t length = sizeof(from);
  ssize_t n =
      ::recvfrom(fd, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&from), &length);
  if (n < 0) return std::nullopt;
  return Datagram{std::string(buffer, static_cast<size_t>(n)), ipOf(from)};
}

bool sendUdp(int fd, const std::string& ip, uint16_t port, const std::string& payload) {
  sockaddr_in to = ipv4(ip, port);
  return ::sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to),
                  sizeof(to)) == static_cast<ssize_t>(payload.size());
}

uint16_t icmpChecksum(const unsigned char* data, size_t length) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < length; i += 2)
    sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (length % 2 == 1) sum += static_cast<uint32_t>(data[length - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Sends an ICMP echo request from the namespace at `netns_path` and waits for the reply.
bool pingFrom(const std::string& netns_path, const std::string& ip, int timeout_ms) {
  UniqueFd fd = socketIn(netns_path, AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (!fd.valid()) return false;
  const uint16_t id = static_cast<uint16_t>(getpid() ^ 0x5a5a);
  unsigned char packet[16] = {ICMP_ECHO,
                              0,
                              0,
                              0,
                              static_cast<unsigned char>(id >> 8),
                              static_cast<unsigned char>(id & 0xff),
                              0,
                              1,
                              'c',
                              'l',
                              'r',
                              'k'};
  uint16_t checksum = icmpChecksum(packet, sizeof(packet));
  packet[2] = static_cast<unsigned char>(checksum >> 8);
  packet[3] = static_cast<unsigned char>(checksum & 0xff);
  sockaddr_in to = ipv4(ip, 0);
  if (::sendto(fd.get(), packet, sizeof(packet), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)) <
      0) {
    return false;
  }
  auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock::now() < deadline) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (!waitReadable(fd.get(), std::max(left, 1))) return false;
    unsigned char reply[1500];
    ssize_t n = ::recv(fd.get(), reply, sizeof(reply), 0);
    if (n < 20) continue;
    size_t header = static_cast<size_t>(reply[0] & 0x0f) * 4;
    if (static_cast<size_t>(n) < header + 8) continue;
    const unsigned char* icmp = reply + header;
    if (icmp[0] == ICMP_ECHOREPLY && (icmp[4] << 8 | icmp[5]) == id) return true;
  }
  return false;
}

int sh(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()); }

bool pathExists(const std::string& path) {
  struct stat info {};
  return ::lstat(path.c_str(), &info) == 0;
}

bool linkExists(const std::string& name) { return if_nametoindex(name.c_str()) != 0; }

std::string randomTag() {
  // "t" + two hex characters: cannot collide with a worker tag in use elsewhere unless random.
  return fmt::format("t{}", randomHex(1));
}

class NetworkManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    tcp_listener_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(tcp_listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    // 0.0.0.0 because redirected connections arrive at the host veth's address; the manager's
    // own rules drop this port from any interface but lo and the sandbox veths.
    ASSERT_TRUE(bindTo(tcp_listener_.get(), "0.0.0.0", 0));
    ASSERT_EQ(::listen(tcp_listener_.get(), 64), 0);
    dns_socket_ = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(bindTo(dns_socket_.get(), "0.0.0.0", 0));
    options_.tag = randomTag();
    unsigned char third = 0;
    std::string hex = randomHex(1);
    third = static_cast<unsigned char>(std::stoi(hex, nullptr, 16));
    options_.pool_cidr = fmt::format("10.251.{}.0/24", third);
    options_.egress_tcp_port = portOf(tcp_listener_.get());
    options_.egress_dns_port = portOf(dns_socket_.get());
    options_.mtu = 1400;
    auto manager = NetworkManager::create(options_);
    ASSERT_TRUE(manager.ok()) << manager.status().toString();
    manager_ = std::move(manager).value();
  }

  void TearDown() override {
    if (::geteuid() != 0) return;
    manager_.reset();
    // Whatever the test did: a fresh manager of the tag removes its leftovers, then the tables.
    auto cleaner = NetworkManager::create(options_);
    if (cleaner.ok()) {
      EXPECT_TRUE(cleaner.value()->releaseAll().ok());
      EXPECT_TRUE(cleaner.value()->destroyTables().ok());
    }
    for (const auto& name : listNetnsNames()) {
      EXPECT_THAT(name, Not(HasSubstr("clrk-" + options_.tag + "-"))) << "leftover netns";
    }
  }

  SandboxNetwork allocate(const std::string& owner) {
    auto network = manager_->allocate(owner);
    EXPECT_TRUE(network.ok()) << network.status().toString();
    return network.ok() ? network.value() : SandboxNetwork{};
  }

  // Drains connections already queued on the egress listener.
  void drainListener() {
    while (acceptWithin(tcp_listener_.get(), 0).valid()) {
    }
  }

  // Connects from `netns` to ip:port; the egress listener's accepted connection, or invalid.
  UniqueFd interceptTcp(const std::string& netns, const std::string& ip, uint16_t port,
                        const std::string& bind_ip = "") {
    drainListener();
    UniqueFd client = socketIn(netns, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
    if (!bind_ip.empty() && !bindTo(client.get(), bind_ip, 0)) {
      ADD_FAILURE() << "cannot bind " << bind_ip;
      return UniqueFd();
    }
    if (!connectWithin(client.get(), ipv4(ip, port), 700)) return UniqueFd();
    UniqueFd accepted = acceptWithin(tcp_listener_.get(), 1000);
    clients_.push_back(std::move(client));
    return accepted;
  }

  std::optional<std::string> nftQuery(const std::string& command) {
    auto nft = Nftables::create();
    if (!nft.ok()) return std::nullopt;
    auto output = nft.value()->query(command);
    if (!output.ok()) return std::nullopt;
    return output.value();
  }

  NetworkOptions options_;
  UniqueFd tcp_listener_;
  UniqueFd dns_socket_;
  std::vector<UniqueFd> clients_;
  std::unique_ptr<NetworkManager> manager_;
};

TEST_F(NetworkManagerTest, AllocatesAConfiguredNamespaceAndVeth) {
  SandboxNetwork a = allocate("sandbox-a");
  ASSERT_GE(a.slot, 0);
  EXPECT_EQ(a.netns_path, fmt::format("/run/netns/clrk-{}-{}", options_.tag, a.slot));
  EXPECT_EQ(a.host_interface, fmt::format("ck{}h{}", options_.tag, a.slot));
  EXPECT_TRUE(pathExists(a.netns_path));
  EXPECT_TRUE(linkExists(a.host_interface));
  EXPECT_FALSE(linkExists(a.sandbox_interface));  // it lives inside the namespace
  EXPECT_EQ(manager_->inUse(), 1u);

  std::string alias;
  std::ifstream alias_file(fmt::format("/sys/class/net/{}/ifalias", a.host_interface));
  std::getline(alias_file, alias);
  EXPECT_EQ(alias, "clrk sandbox-a");
  int host_mtu = 0;
  std::ifstream(fmt::format("/sys/class/net/{}/mtu", a.host_interface)) >> host_mtu;
  EXPECT_EQ(host_mtu, 1400);

  bool inside_has_veth = false;
  std::string source;
  std::string inside_inet6;
  int inside_mtu = 0;
  ASSERT_TRUE(runInNetns(a.netns_path, [&] {
                inside_has_veth = if_nametoindex(a.sandbox_interface.c_str()) != 0;
                UniqueFd control(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
                ifreq request{};
                std::strncpy(request.ifr_name, a.sandbox_interface.c_str(), IFNAMSIZ - 1);
                if (::ioctl(control.get(), SIOCGIFMTU, &request) == 0) inside_mtu = request.ifr_mtu;
                // The route lookup for an outside address picks the sandbox address as source.
                UniqueFd probe(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
                sockaddr_in to = ipv4("1.2.3.4", 443);
                if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0) {
                  sockaddr_in local{};
                  socklen_t length = sizeof(local);
                  getsockname(probe.get(), reinterpret_cast<sockaddr*>(&local), &length);
                  source = ipOf(local);
                }
                std::ifstream inet6("/proc/thread-self/net/if_inet6");
                inside_inet6.assign(std::istreambuf_iterator<char>(inet6), {});
              }).ok());
  EXPECT_TRUE(inside_has_veth);
  EXPECT_EQ(inside_mtu, 1400);
  EXPECT_EQ(source, a.sandbox_address);
  // No IPv6 address on either end of the veth (no link-local either).
  EXPECT_THAT(inside_inet6, Not(HasSubstr(a.sandbox_interface)));
  std::ifstream host_inet6_file("/proc/net/if_inet6");
  std::string host_inet6(std::istreambuf_iterator<char>(host_inet6_file), {});
  EXPECT_THAT(host_inet6, Not(HasSubstr(a.host_interface)));
  // lo is up: a ping to the sandbox's own address is answered locally.
  EXPECT_TRUE(pingFrom(a.netns_path, a.sandbox_address, 1000));
  EXPECT_TRUE(pingFrom(a.netns_path, "127.0.0.1", 1000));

  auto veths = nftQuery(fmt::format("list set ip clrk_{} sources", options_.tag));
  ASSERT_TRUE(veths.has_value());
  EXPECT_THAT(*veths, HasSubstr(fmt::format("\"{}\" . {}", a.host_interface, a.sandbox_address)));
}

TEST_F(NetworkManagerTest, AllTcpAndDnsAreRedirectedToTheEgressAndTheRestIsDropped) {
  SandboxNetwork a = allocate("sandbox-a");
  SandboxNetwork b = allocate("sandbox-b");
  ASSERT_GE(b.slot, 0);
  EXPECT_NE(a.sandbox_address, b.sandbox_address);

  // TCP to any address arrives at the egress with the original destination.
  for (const auto& [ip, port] : std::vector<std::pair<std::string, uint16_t>>{
           {"1.2.3.4", 443}, {a.host_address, 8080}, {"169.254.169.254", 80}}) {
    UniqueFd accepted = interceptTcp(a.netns_path, ip, port);
    ASSERT_TRUE(accepted.valid()) << ip << ":" << port << " did not reach the egress";
    EXPECT_EQ(ipOf(peerOf(accepted.get())), a.sandbox_address);
    auto original = originalDestination(accepted.get());
    ASSERT_TRUE(original.has_value());
    EXPECT_EQ(ipOf(*original), ip);
    EXPECT_EQ(ntohs(original->sin_port), port);
  }

  // DNS to an outside resolver arrives at the egress DNS port.
  UniqueFd udp = socketIn(a.netns_path, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC);
  ASSERT_TRUE(sendUdp(udp.get(), "8.8.8.8", 53, "query-1"));
  auto dns = receiveWithin(dns_socket_.get(), 1000);
  ASSERT_TRUE(dns.has_value()) << "DNS was not redirected";
  EXPECT_EQ(dns->data, "query-1");
  EXPECT_EQ(dns->from, a.sandbox_address);

  // Other UDP: to an outside port, to a host service, to sandbox B.
  UniqueFd host_udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(bindTo(host_udp.get(), "0.0.0.0", 0));
  uint16_t host_udp_port = portOf(host_udp.get());
  UniqueFd b_udp = socketIn(b.netns_path, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC);
  ASSERT_TRUE(bindTo(b_udp.get(), "0.0.0.0", 0));
  uint16_t b_udp_port = portOf(b_udp.get());
  ASSERT_TRUE(sendUdp(udp.get(), "8.8.8.8", 5353, "other"));
  ASSERT_TRUE(sendUdp(udp.get(), a.host_address, host_udp_port, "to-host"));
  ASSERT_TRUE(sendUdp(udp.get(), b.sandbox_address, b_udp_port, "to-b"));
  ASSERT_TRUE(sendUdp(udp.get(), a.host_address, options_.egress_dns_port, "direct-dns"));
  auto direct = receiveWithin(dns_socket_.get(), 1000);
  ASSERT_TRUE(direct.has_value());  // the DNS port itself is allowed, nothing else came first
  EXPECT_EQ(direct->data, "direct-dns");
  EXPECT_FALSE(receiveWithin(host_udp.get(), 300).has_value()) << "UDP reached a host service";
  EXPECT_FALSE(receiveWithin(b_udp.get(), 100).has_value()) << "UDP reached sandbox B";
  EXPECT_FALSE(receiveWithin(dns_socket_.get(), 100).has_value());
  // Controls: the receivers work when the path is allowed.
  UniqueFd local_udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sendUdp(local_udp.get(), "127.0.0.1", host_udp_port, "control"));
  EXPECT_TRUE(receiveWithin(host_udp.get(), 1000).has_value());
  UniqueFd b_self = socketIn(b.netns_path, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC);
  ASSERT_TRUE(sendUdp(b_self.get(), b.sandbox_address, b_udp_port, "control"));
  EXPECT_TRUE(receiveWithin(b_udp.get(), 1000).has_value());

  // ICMP: neither the host veth nor sandbox B nor the outside answer.
  EXPECT_FALSE(pingFrom(a.netns_path, a.host_address, 400));
  EXPECT_FALSE(pingFrom(a.netns_path, b.sandbox_address, 200));
  EXPECT_FALSE(pingFrom(a.netns_path, "8.8.8.8", 200));

  // TCP to sandbox B's address goes to the egress, never to B's listener; and the host (so also
  // the egress) cannot open connections into a sandbox.
  UniqueFd b_listener = socketIn(b.netns_path, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
  ASSERT_TRUE(bindTo(b_listener.get(), "0.0.0.0", 0));
  ASSERT_EQ(::listen(b_listener.get(), 8), 0);
  uint16_t b_port = portOf(b_listener.get());
  UniqueFd to_b = interceptTcp(a.netns_path, b.sandbox_address, b_port);
  ASSERT_TRUE(to_b.valid());
  EXPECT_EQ(ipOf(*originalDestination(to_b.get())), b.sandbox_address);
  UniqueFd from_host(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_FALSE(connectWithin(from_host.get(), ipv4(b.sandbox_address, b_port), 400));
  EXPECT_FALSE(acceptWithin(b_listener.get(), 50).valid());
  // Control: B's listener accepts from inside B.
  UniqueFd b_client = socketIn(b.netns_path, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
  EXPECT_TRUE(connectWithin(b_client.get(), ipv4("127.0.0.1", b_port), 1000));
  EXPECT_TRUE(acceptWithin(b_listener.get(), 1000).valid());
}

TEST_F(NetworkManagerTest, SpoofedSourceAddressesAreDropped) {
  SandboxNetwork a = allocate("sandbox-a");
  SandboxNetwork b = allocate("sandbox-b");
  // Root inside A claims B's address (and a random one) on A's veth.
  ASSERT_EQ(sh(fmt::format("ip -n {} addr add {}/32 dev {}", a.netns_name, b.sandbox_address,
                           a.sandbox_interface)),
            0);
  ASSERT_EQ(
      sh(fmt::format("ip -n {} addr add 192.0.2.77/32 dev {}", a.netns_name, a.sandbox_interface)),
      0);
  for (const std::string& spoofed : {b.sandbox_address, std::string("192.0.2.77")}) {
    EXPECT_FALSE(interceptTcp(a.netns_path, "1.2.3.4", 443, spoofed).valid()) << spoofed;
    UniqueFd udp = socketIn(a.netns_path, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC);
    ASSERT_TRUE(bindTo(udp.get(), spoofed, 0));
    ASSERT_TRUE(sendUdp(udp.get(), "8.8.8.8", 53, "spoofed"));
    EXPECT_FALSE(receiveWithin(dns_socket_.get(), 300).has_value()) << spoofed;
  }
  // Control: the real address still works from the same namespace.
  EXPECT_TRUE(interceptTcp(a.netns_path, "1.2.3.4", 443, a.sandbox_address).valid());
}

TEST_F(NetworkManagerTest, EgressPortsAreClosedToOtherInterfaces) {
  // A namespace on a veth that is not a sandbox's (as a LAN neighbour would be).
  std::string netns_path = fmt::format("/run/netns/clrkx-{}", options_.tag);
  std::string host_if = fmt::format("cx{}a", options_.tag);
  std::string peer_if = fmt::format("cx{}b", options_.tag);
  struct Guard {
    std::string path, link;
    ~Guard() {
      auto netlink = RtNetlink::open();
      if (netlink.ok()) (void)netlink->deleteLink(link);
      (void)deleteNamedNetns(path);
    }
  } guard{netns_path, host_if};
  auto netns = createNamedNetns(netns_path);
  ASSERT_TRUE(netns.ok()) << netns.status().toString();
  auto host = RtNetlink::open();
  ASSERT_TRUE(host.ok());
  ASSERT_TRUE(host->createVeth(host_if, peer_if, netns->fd.get(), 1500).ok());
  in_addr host_ip{}, peer_ip{};
  std::string prefix = fmt::format("10.252.{}", std::stoi(randomHex(1), nullptr, 16));
  inet_pton(AF_INET, (prefix + ".1").c_str(), &host_ip);
  inet_pton(AF_INET, (prefix + ".2").c_str(), &peer_ip);
  int host_index = static_cast<int>(if_nametoindex(host_if.c_str()));
  host->queueAddress(host_index, host_ip.s_addr, 30);
  host->queueLinkUp(host_index);
  ASSERT_TRUE(host->commit().ok());
  auto peer_index = netns->netlink.linkIndex(peer_if);
  ASSERT_TRUE(peer_index.ok());
  netns->netlink.queueAddress(*peer_index, peer_ip.s_addr, 30);
  netns->netlink.queueLinkUp(*peer_index);
  ASSERT_TRUE(netns->netlink.commit().ok());
  // The end that went up first passes packets once the kernel's link watcher has run.
  ASSERT_TRUE(host->waitOperUp(host_if, std::chrono::milliseconds(3000)).ok());

  UniqueFd other_listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(bindTo(other_listener.get(), "0.0.0.0", 0));
  ASSERT_EQ(::listen(other_listener.get(), 8), 0);
  // Control: an ordinary host port is reachable from that interface.
  UniqueFd control = socketIn(netns_path, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
  EXPECT_TRUE(
      connectWithin(control.get(), ipv4(prefix + ".1", portOf(other_listener.get())), 1000));
  // The egress ports are not.
  drainListener();
  UniqueFd probe = socketIn(netns_path, AF_INET, SOCK_STREAM | SOCK_CLOEXEC);
  EXPECT_FALSE(connectWithin(probe.get(), ipv4(prefix + ".1", options_.egress_tcp_port), 400));
  EXPECT_FALSE(acceptWithin(tcp_listener_.get(), 50).valid());
  UniqueFd udp = socketIn(netns_path, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC);
  ASSERT_TRUE(sendUdp(udp.get(), prefix + ".1", options_.egress_dns_port, "lan"));
  EXPECT_FALSE(receiveWithin(dns_socket_.get(), 300).has_value());
  // From the host itself (lo) they are.
  UniqueFd local(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(connectWithin(local.get(), ipv4("127.0.0.1", options_.egress_tcp_port), 1000));
}

TEST_F(NetworkManagerTest, Ipv6FromTheSandboxIsDropped) {
  SandboxNetwork a = allocate("sandbox-a");
  // Root inside a sandbox could turn IPv6 back on; enable it on both ends to test the host rules.
  std::string prefix = fmt::format("fd00:{}:{}::", randomHex(2), a.slot);
  auto write = [](const std::string& path, const char* value) { std::ofstream(path) << value; };
  write(fmt::format("/proc/sys/net/ipv6/conf/{}/disable_ipv6", a.host_interface), "0");
  ASSERT_TRUE(runInNetns(a.netns_path, [&] {
                write(fmt::format("/proc/sys/net/ipv6/conf/{}/disable_ipv6", a.sandbox_interface),
                      "0");
              }).ok());
  ASSERT_EQ(sh(fmt::format("ip addr add {}1/64 dev {} nodad", prefix, a.host_interface)), 0);
  ASSERT_EQ(sh(fmt::format("ip -n {} addr add {}2/64 dev {} nodad", a.netns_name, prefix,
                           a.sandbox_interface)),
            0);
  UniqueFd listener(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_any;
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&any), sizeof(any)), 0);
  ASSERT_EQ(::listen(listener.get(), 8), 0);
  sockaddr_in6 target{};
  target.sin6_family = AF_INET6;
  target.sin6_port = htons(portOf(listener.get()));
  inet_pton(AF_INET6, (prefix + "1").c_str(), &target.sin6_addr);

  UniqueFd client = socketIn(a.netns_path, AF_INET6, SOCK_STREAM | SOCK_CLOEXEC);
  EXPECT_FALSE(connectWithin(client.get(), target, 500)) << "IPv6 reached the host";
  // Control: without the ip6 table the same connection goes through, so the drop was the rules'.
  ASSERT_EQ(sh(fmt::format("nft delete table ip6 clrk6_{}", options_.tag)), 0);
  UniqueFd again = socketIn(a.netns_path, AF_INET6, SOCK_STREAM | SOCK_CLOEXEC);
  EXPECT_TRUE(connectWithin(again.get(), target, 2000));
}

TEST_F(NetworkManagerTest, ReleaseRemovesEverythingAndIsIdempotent) {
  SandboxNetwork a = allocate("sandbox-a");
  SandboxNetwork b = allocate("sandbox-b");
  EXPECT_EQ(manager_->inUse(), 2u);
  ASSERT_TRUE(manager_->release(a).ok());
  EXPECT_FALSE(pathExists(a.netns_path));
  EXPECT_FALSE(linkExists(a.host_interface));
  EXPECT_TRUE(pathExists(b.netns_path));
  EXPECT_TRUE(linkExists(b.host_interface));
  EXPECT_EQ(manager_->inUse(), 1u);
  auto sources = nftQuery(fmt::format("list set ip clrk_{} sources", options_.tag));
  ASSERT_TRUE(sources.has_value());
  EXPECT_THAT(*sources, Not(HasSubstr(fmt::format("\"{}\"", a.host_interface))));
  EXPECT_THAT(*sources, HasSubstr(fmt::format("\"{}\"", b.host_interface)));
  auto veths = nftQuery(fmt::format("list set ip clrk_{} veths", options_.tag));
  EXPECT_THAT(*veths, Not(HasSubstr(fmt::format("\"{}\"", a.host_interface))));

  EXPECT_TRUE(manager_->release(a).ok());  // again
  EXPECT_EQ(manager_->inUse(), 1u);
  EXPECT_TRUE(manager_->release(SandboxNetwork{}).ok());
  SandboxNetwork forged = b;
  forged.host_interface = "eth0";
  EXPECT_EQ(manager_->release(forged).code(), Code::InvalidArgument);
  EXPECT_TRUE(linkExists("eth0"));

  // A new allocation does not reuse A's freshly freed address while never-used slots remain.
  SandboxNetwork c = allocate("sandbox-c");
  EXPECT_NE(c.slot, a.slot);
  EXPECT_NE(c.sandbox_address, a.sandbox_address);

  ASSERT_TRUE(manager_->releaseAll().ok());
  EXPECT_EQ(manager_->inUse(), 0u);
  EXPECT_FALSE(pathExists(b.netns_path));
  EXPECT_FALSE(linkExists(c.host_interface));
  ASSERT_TRUE(manager_->destroyTables().ok());
  EXPECT_FALSE(nftQuery(fmt::format("list table ip clrk_{}", options_.tag)).has_value());
  EXPECT_FALSE(nftQuery(fmt::format("list table ip6 clrk6_{}", options_.tag)).has_value());
  EXPECT_TRUE(manager_->destroyTables().ok());  // idempotent
}

TEST_F(NetworkManagerTest, ReleaseSoonUnmountsAtOnceAndFinishesInTheBackground) {
  SandboxNetwork a = allocate("sandbox-a");
  SandboxNetwork b = allocate("sandbox-b");
  auto start = Clock::now();
  ASSERT_TRUE(manager_->releaseSoon(a).ok());
  double soon_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  EXPECT_FALSE(pathExists(a.netns_path));
  EXPECT_EQ(manager_->inUse(), 1u);
  EXPECT_TRUE(manager_->releaseSoon(a).ok());  // again, while it may still be draining
  ASSERT_TRUE(manager_->waitForReleases().ok());
  double total_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  std::printf("[net timing] releaseSoon returned after %.2f ms, done after %.2f ms\n", soon_ms,
              total_ms);
  EXPECT_FALSE(linkExists(a.host_interface));
  auto sources = nftQuery(fmt::format("list set ip clrk_{} sources", options_.tag));
  ASSERT_TRUE(sources.has_value());
  EXPECT_THAT(*sources, Not(HasSubstr(fmt::format("\"{}\"", a.host_interface))));
  EXPECT_THAT(*sources, HasSubstr(fmt::format("\"{}\"", b.host_interface)));
  EXPECT_TRUE(manager_->releaseSoon(a).ok());  // and after it finished
  EXPECT_TRUE(manager_->waitForReleases().ok());
  // Dropping the manager finishes pending background releases but keeps allocated networks.
  ASSERT_TRUE(manager_->releaseSoon(b).ok());
  manager_.reset();
  EXPECT_FALSE(linkExists(b.host_interface));
}

TEST_F(NetworkManagerTest, CreateRemovesTheLeftoversOfACrashedManager) {
  SandboxNetwork a = allocate("sandbox-a");
  SandboxNetwork b = allocate("sandbox-b");
  // Also a stray netns file and a stray sandbox-side link of the tag in the host namespace.
  std::string stray_netns = fmt::format("/run/netns/clrk-{}-63", options_.tag);
  ASSERT_TRUE(createNamedNetns(stray_netns).ok());
  ASSERT_EQ(sh(fmt::format("ip link add ck{0}s62 type veth peer name ck{0}h62", options_.tag)), 0);
  // Names of other tags that merely look alike are not touched.
  std::string lookalike = fmt::format("ck{}hx1", options_.tag);
  ASSERT_EQ(sh(fmt::format("ip link add {} type veth peer name ck{}sx1", lookalike, options_.tag)),
            0);
  manager_.reset();  // the "crash": nothing released
  EXPECT_TRUE(pathExists(a.netns_path));
  EXPECT_TRUE(linkExists(b.host_interface));

  auto restarted = NetworkManager::create(options_);
  ASSERT_TRUE(restarted.ok()) << restarted.status().toString();
  manager_ = std::move(restarted).value();
  EXPECT_FALSE(pathExists(a.netns_path));
  EXPECT_FALSE(pathExists(b.netns_path));
  EXPECT_FALSE(pathExists(stray_netns));
  EXPECT_FALSE(linkExists(a.host_interface));
  EXPECT_FALSE(linkExists(b.host_interface));
  EXPECT_FALSE(linkExists(fmt::format("ck{}s62", options_.tag)));
  EXPECT_TRUE(linkExists(lookalike));
  sh("ip link del " + lookalike);
  auto sources = nftQuery(fmt::format("list set ip clrk_{} sources", options_.tag));
  ASSERT_TRUE(sources.has_value());
  EXPECT_THAT(*sources, Not(HasSubstr("\"ck")));
  EXPECT_EQ(manager_->inUse(), 0u);
  // And it works afterwards.
  SandboxNetwork again = allocate("sandbox-again");
  EXPECT_EQ(again.slot, 0);
  EXPECT_TRUE(interceptTcp(again.netns_path, "1.2.3.4", 443).valid());
}

TEST_F(NetworkManagerTest, ConcurrentAllocationsGetDistinctSlotsAndTheTimingIsPrinted) {
  if (std::getenv("CLRK_NET_DEBUG") != nullptr) setLogLevel("debug");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 6;
  std::vector<std::vector<SandboxNetwork>> made(kThreads);
  std::vector<std::vector<double>> allocate_ms(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto start = Clock::now();
        auto network = manager_->allocate(fmt::format("c{}-{}", t, i));
        allocate_ms[static_cast<size_t>(t)].push_back(
            std::chrono::duration<double, std::milli>(Clock::now() - start).count());
        if (network.ok()) made[static_cast<size_t>(t)].push_back(network.value());
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::set<std::string> addresses;
  std::vector<SandboxNetwork> all;
  for (const auto& list : made) all.insert(all.end(), list.begin(), list.end());
  ASSERT_EQ(all.size(), size_t{kThreads * kPerThread});
  for (const auto& network : all) addresses.insert(network.sandbox_address);
  EXPECT_EQ(addresses.size(), all.size());
  EXPECT_EQ(manager_->inUse(), all.size());
  std::vector<double> release_ms;
  for (const auto& network : all) {
    auto start = Clock::now();
    EXPECT_TRUE(manager_->release(network).ok());
    release_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  // Sequential figures (the concurrent ones above include contention on 2 cores).
  std::vector<double> sequential_ms;
  std::vector<double> sequential_release_ms;
  for (int i = 0; i < 10; ++i) {
    auto start = Clock::now();
    SandboxNetwork network = allocate("seq");
    sequential_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    start = Clock::now();
    EXPECT_TRUE(manager_->release(network).ok());
    sequential_release_ms.push_back(
        std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  }
  auto summary = [](std::vector<double> values) {
    std::sort(values.begin(), values.end());
    double sum = 0;
    for (double v : values) sum += v;
    return fmt::format("n={} mean={:.2f} p50={:.2f} max={:.2f} ms", values.size(),
                       sum / static_cast<double>(values.size()), values[values.size() / 2],
                       values.back());
  };
  std::vector<double> concurrent;
  for (const auto& list : allocate_ms)
    concurrent.insert(concurrent.end(), list.begin(), list.end());
  std::printf("[net timing] allocate sequential: %s\n", summary(sequential_ms).c_str());
  std::printf("[net timing] release sequential: %s\n", summary(sequential_release_ms).c_str());
  std::printf("[net timing] allocate %d threads: %s\n", kThreads, summary(concurrent).c_str());
  std::printf("[net timing] release after concurrent: %s\n", summary(release_ms).c_str());
  EXPECT_EQ(manager_->inUse(), 0u);

  // releaseAll() deletes all links in one kernel operation.
  std::vector<SandboxNetwork> batch;
  for (int i = 0; i < 12; ++i) batch.push_back(allocate(fmt::format("batch-{}", i)));
  auto start = Clock::now();
  ASSERT_TRUE(manager_->releaseAll().ok());
  std::printf("[net timing] releaseAll of %zu networks: %.2f ms\n", batch.size(),
              std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  for (const auto& network : batch) {
    EXPECT_FALSE(linkExists(network.host_interface));
    EXPECT_FALSE(pathExists(network.netns_path));
  }
  EXPECT_EQ(manager_->inUse(), 0u);
}

TEST(NftablesTest, ElementChangesOnAMissingTableFailClearly) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto nft = Nftables::create();
  ASSERT_TRUE(nft.ok());
  NetworkOptions options;
  options.tag = "zq9";  // no such table (tags are 1-3 characters; tests use "t..")
  SandboxNetwork network = networkForSlot(options, 0).value();
  Status added = nft.value()->addElements(options.tag, {network});
  EXPECT_FALSE(added.ok());
  EXPECT_THAT(added.message(), HasSubstr("clrk_zq9"));
  EXPECT_FALSE(nft.value()->removeElements(options.tag, {network}).ok());
  EXPECT_TRUE(nft.value()->addElements(options.tag, {}).ok());
}

TEST(RtNetlinkTest, ErrorsNameTheRequest) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto netlink = RtNetlink::open();
  ASSERT_TRUE(netlink.ok());
  auto missing = netlink->linkIndex("czmissing0");
  EXPECT_EQ(missing.status().code(), Code::NotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("czmissing0"));
  UniqueFd self(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  Status too_long = netlink->createVeth("cz-name-much-too-long", "czpeer", self.get(), 1500);
  EXPECT_FALSE(too_long.ok());
  EXPECT_THAT(too_long.message(), HasSubstr("creating veth cz-name-much-too-long"));
  EXPECT_FALSE(linkExists("czpeer"));
  EXPECT_TRUE(netlink->deleteLink("czmissing0").ok());  // absent is fine
}

TEST(RtNetlinkTest, DeletesSeveralLinksAtOnceAndIgnoresMissingOnes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string tag = randomTag();
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) {
    names.push_back(fmt::format("cz{}a{}", tag, i));
    ASSERT_EQ(sh(fmt::format("ip link add {} type veth peer name cz{}b{}", names.back(), tag, i)),
              0);
  }
  // An unrelated link stays.
  std::string bystander = fmt::format("cz{}keep", tag);
  ASSERT_EQ(sh(fmt::format("ip link add {} type veth peer name cz{}kp", bystander, tag)), 0);
  names.push_back(fmt::format("cz{}gone", tag));
  auto netlink = RtNetlink::open();
  ASSERT_TRUE(netlink.ok());
  Status deleted = netlink->deleteLinks(names);
  EXPECT_TRUE(deleted.ok()) << deleted.toString();
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(linkExists(names[static_cast<size_t>(i)]));
    EXPECT_FALSE(linkExists(fmt::format("cz{}b{}", tag, i)));
  }
  EXPECT_TRUE(linkExists(bystander));
  EXPECT_TRUE(netlink->deleteLinks({names[0], names[1]}).ok());  // none left: still fine
  EXPECT_TRUE(netlink->deleteLink(bystander).ok());
  EXPECT_FALSE(linkExists(bystander));
}

TEST(NetworkManagerPoolTest, ExhaustedPoolIsAClearErrorAndFreedSlotsAreReused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  NetworkOptions options;
  options.tag = randomTag();
  options.pool_cidr = fmt::format("10.253.{}.0/28", std::stoi(randomHex(1), nullptr, 16));
  options.egress_tcp_port = 1;  // nothing listens: this test never sends traffic
  options.egress_dns_port = 2;
  struct Cleanup {
    NetworkOptions options;
    ~Cleanup() {
      auto manager = NetworkManager::create(options);
      if (manager.ok()) {
        (void)manager.value()->releaseAll();
        (void)manager.value()->destroyTables();
      }
    }
  } cleanup{options};
  auto manager = NetworkManager::create(options);
  ASSERT_TRUE(manager.ok()) << manager.status().toString();
  std::vector<SandboxNetwork> networks;
  for (int i = 0; i < 4; ++i) {
    auto network = manager.value()->allocate(fmt::format("s{}", i));
    ASSERT_TRUE(network.ok()) << network.status().toString();
    networks.push_back(network.value());
  }
  auto full = manager.value()->allocate("one-too-many");
  EXPECT_EQ(full.status().code(), Code::Unavailable);
  EXPECT_THAT(full.status().message(), HasSubstr("exhausted: all 4 /30 slots in use"));
  EXPECT_THAT(full.status().message(), HasSubstr(options.pool_cidr));
  ASSERT_TRUE(manager.value()->release(networks[2]).ok());
  auto reused = manager.value()->allocate("reuse");
  ASSERT_TRUE(reused.ok()) << reused.status().toString();
  EXPECT_EQ(reused->slot, networks[2].slot);
  EXPECT_EQ(reused->sandbox_address, networks[2].sandbox_address);
  // A slot released in the background comes back once the release has finished.
  ASSERT_TRUE(manager.value()->releaseSoon(networks[1]).ok());
  ASSERT_TRUE(manager.value()->waitForReleases().ok());
  auto after_soon = manager.value()->allocate("after-soon");
  ASSERT_TRUE(after_soon.ok()) << after_soon.status().toString();
  EXPECT_EQ(after_soon->slot, networks[1].slot);
  EXPECT_TRUE(manager.value()->releaseAll().ok());
}

TEST(NetworkManagerCreateTest, RejectsInvalidOptionsBeforeTouchingTheHost) {
  NetworkOptions options;
  options.tag = "BAD";
  auto manager = NetworkManager::create(options);
  EXPECT_EQ(manager.status().code(), Code::InvalidArgument);
  EXPECT_THAT(manager.status().message(), HasSubstr("tag \"BAD\""));
}

}  // namespace
}  // namespace clrk::sandbox::net
