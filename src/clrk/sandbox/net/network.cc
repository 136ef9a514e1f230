#include "clrk/sandbox/net/network.h"

#include "clrk/base/log.h"
#include "clrk/sandbox/net/netlink.h"
#include "clrk/sandbox/net/netns.h"
#include "clrk/sandbox/net/nftables.h"
#include "clrk/sandbox/net/slot_pool.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <optional>
#include <regex>
#include <set>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox::net {
namespace {

using Clock = std::chrono::steady_clock;

// A freed address is not reused for this long while never-used slots remain.
constexpr auto kSlotQuarantine = std::chrono::seconds(30);
// How long a background release waits for allocations in flight before it goes ahead anyway.
constexpr auto kReleaseYield = std::chrono::milliseconds(200);
// How long allocate() waits for the host veth to pass packets.
constexpr auto kCarrierWait = std::chrono::milliseconds(3000);
constexpr int kMinPrefix = 8;
constexpr int kMaxPrefix = 28;

struct Pool {
  uint32_t base = 0;  // host order
  int prefix = 0;
};

Result<Pool> parsePool(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) {
    return invalidArgument(fmt::format("pool_cidr \"{}\": expected a.b.c.d/prefix", cidr));
  }
  std::string address = cidr.substr(0, slash);
  std::string prefix_text = cidr.substr(slash + 1);
  in_addr parsed{};
  if (inet_pton(AF_INET, address.c_str(), &parsed) != 1) {
    return invalidArgument(
        fmt::format("pool_cidr \"{}\": \"{}\" is not an IPv4 address", cidr, address));
  }
  int prefix = -1;
  auto [end, error] =
      std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), prefix);
  if (error != std::errc() || end != prefix_text.data() + prefix_text.size() ||
      prefix_text.empty()) {
    return invalidArgument(
        fmt::format("pool_cidr \"{}\": prefix \"{}\" is not a number", cidr, prefix_text));
  }
  if (prefix < kMinPrefix || prefix > kMaxPrefix) {
    return invalidArgument(fmt::format("pool_cidr \"{}\": prefix /{} is outside /{}../{}", cidr,
                                       prefix, kMinPrefix, kMaxPrefix));
  }
  uint32_t base = ntohl(parsed.s_addr);
  uint32_t host_mask = (uint32_t{1} << (32 - prefix)) - 1;
  if ((base & host_mask) != 0) {
    return invalidArgument(fmt::format(
        "pool_cidr \"{}\": host bits are set (network is {}/{})", cidr,
        [&] {
          in_addr net{htonl(base & ~host_mask)};
          char text[INET_ADDRSTRLEN] = {};
          inet_ntop(AF_INET, &net, text, sizeof(text));
          return std::string(text);
        }(),
        prefix));
  }
  return Pool{base, prefix};
}

std::string ipText(uint32_t host_order) {
  in_addr address{htonl(host_order)};
  char text[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &address, text, sizeof(text));
  return text;
}

uint32_t beAddress(const std::string& text) {
  in_addr address{};
  inet_pton(AF_INET, text.c_str(), &address);
  return address.s_addr;
}

double millisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

class NetworkManagerImpl final : public NetworkManager {
 public:
  NetworkManagerImpl(NetworkOptions options, int capacity, std::unique_ptr<Nftables> nft)
      : options_(std::move(options)),
        nft_(std::move(nft)),
        pool_(capacity, kSlotQuarantine),
        log_(logger("sandbox.net")) {}

  ~NetworkManagerImpl() override {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    work_.notify_all();
    if (reaper_.joinable()) reaper_.join();
    {
      std::lock_guard lock(spare_mutex_);
      spare_stop_ = true;
    }
    spare_wanted_.notify_all();
    if (filler_.joinable()) filler_.join();
  }

  void startSpares() {
    if (options_.spare_namespaces > 0) filler_ = std::thread([this] { fillSpares(); });
  }

  // Removes this tag's netns files and links, whatever their slot.
  Status sweepLeftovers() {
    Status first;
    const std::regex netns_pattern("clrk-" + options_.tag + "-[0-9]+");
    for (const auto& name : listNetnsNames()) {
      if (!std::regex_match(name, netns_pattern)) continue;
      Status status = deleteNamedNetns(std::string(kNetnsDir) + "/" + name);
      if (!status.ok() && first.ok()) first = status;
      if (status.ok()) log_->info("removed leftover network namespace {}", name);
    }
    auto netlink = RtNetlink::open();
    if (!netlink.ok()) return netlink.status();
    auto links = netlink->listLinks();
    if (!links.ok()) return links.status();
    const std::regex link_pattern("ck" + options_.tag + "[hs][0-9]+");
    std::vector<std::string> leftovers;
    for (const auto& link : links.value()) {
      if (std::regex_match(link.name, link_pattern)) leftovers.push_back(link.name);
    }
    if (leftovers.empty()) return first;
    if (netlink->deleteLinks(leftovers).ok()) {
      log_->info("removed {} leftover links: {}", leftovers.size(), fmt::join(leftovers, " "));
      return first;
    }
    for (const auto& name : leftovers) {  // one by one, to name the one that fails
      Status status = netlink->deleteLink(name);
      if (!status.ok() && first.ok()) first = status;
      if (status.ok()) log_->info("removed leftover link {}", name);
    }
    return first;
  }

  Status installTables() { return nft_->run(tablesCommand(options_)); }

  Result<SandboxNetwork> allocate(const std::string& owner) override {
    auto start = Clock::now();
    int slot = -1;
    {
      std::lock_guard lock(mutex_);
      auto acquired = pool_.acquire(start);
      if (!acquired) {
        return Status(Code::Unavailable,
                      fmt::format("sandbox address pool {} exhausted: all {} /30 slots in use",
                                  options_.pool_cidr, pool_.capacity()));
      }
      slot = *acquired;
      owners_[slot] = owner;
      ++allocating_;
    }
    auto network = networkForSlot(options_, slot);
    std::string phases;
    Status status = network.ok() ? provision(network.value(), owner, &phases) : network.status();
    {
      std::lock_guard lock(mutex_);
      --allocating_;
    }
    work_.notify_all();
    if (!status.ok()) {
      if (network.ok()) (void)teardown(network.value());
      std::lock_guard lock(mutex_);
      owners_.erase(slot);
      pool_.release(slot, Clock::now());
      return status.withContext(fmt::format("allocating a sandbox network for {}", owner));
    }
    log_->debug("allocated {} ({} -> {}) for {} in {:.2f} ms ({})", network->netns_name,
                network->sandbox_address, network->host_interface, owner, millisSince(start),
                phases.substr(phases.empty() ? 0 : 1));
    return network;
  }

  // The network slot `network.slot` really has (release never touches names it was not given
  // by allocate()).
  Result<SandboxNetwork> checkOwnName(const SandboxNetwork& network) const {
    auto expected = networkForSlot(options_, network.slot);
    if (!expected.ok()) return expected.status().withContext("release");
    if (network.host_interface != expected->host_interface ||
        network.netns_path != expected->netns_path) {
      return invalidArgument(
          fmt::format("release: network {} / {} does not belong to slot {} of tag {}",
                      network.netns_path, network.host_interface, network.slot, options_.tag));
    }
    return expected;
  }

  Status release(const SandboxNetwork& network) override {
    if (network.slot < 0) return {};
    auto expected = checkOwnName(network);
    if (!expected.ok()) return expected.status();
    auto start = Clock::now();
    std::string phases;
    Status status = teardown(expected.value(), &phases);
    {
      std::lock_guard lock(mutex_);
      if (owners_.erase(network.slot) > 0) pool_.release(network.slot, Clock::now());
    }
    log_->debug("released {} in {:.2f} ms ({})", expected->netns_name, millisSince(start),
                phases.substr(phases.empty() ? 0 : 1));
    return status;
  }

  Status releaseSoon(const SandboxNetwork& network) override {
    if (network.slot < 0) return {};
    CLRK_ASSIGN_OR_RETURN(SandboxNetwork expected, checkOwnName(network));
    // Gone from /run/netns at once: nothing can join it any more.
    Status unmounted = deleteNamedNetns(expected.netns_path);
    {
      std::lock_guard lock(mutex_);
      if (draining_.count(network.slot) > 0) return unmounted;
      bool owned = owners_.erase(network.slot) > 0;
      if (owned) draining_.insert(network.slot);
      queue_.push_back({expected, owned});
      if (!reaper_.joinable()) reaper_ = std::thread([this] { reap(); });
    }
    work_.notify_all();
    return unmounted;
  }

  Status waitForReleases() override {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return queue_.empty() && reaping_ == 0; });
    Status error = reap_error_;
    reap_error_ = {};
    return error;
  }

  Status releaseAll() override {
    Status first = waitForReleases();
    std::vector<SandboxNetwork> networks;
    {
      std::lock_guard lock(mutex_);
      for (const auto& entry : owners_) {
        auto network = networkForSlot(options_, entry.first);
        if (network.ok()) networks.push_back(std::move(network).value());
      }
    }
    Status torn = teardownMany(networks);
    if (!torn.ok() && first.ok()) first = torn;
    {
      std::lock_guard lock(mutex_);
      for (const auto& network : networks) {
        if (owners_.erase(network.slot) > 0) pool_.release(network.slot, Clock::now());
      }
    }
    Status swept = sweepLeftovers();
    if (!swept.ok() && first.ok()) first = swept;
    Status flushed = nft_->run(flushSetsCommand(options_.tag));
    if (!flushed.ok() && first.ok()) first = flushed;
    return first;
  }

  Status destroyTables() override { return nft_->run(destroyTablesCommand(options_.tag)); }

  const NetworkOptions& options() const override { return options_; }

  size_t inUse() const override {
    std::lock_guard lock(mutex_);
    return owners_.size();
  }

 private:
  // Order matters for safety: the host veth is in @veths before it exists, so no packet from it
  // is ever evaluated without the sandbox rules.
  Status provision(const SandboxNetwork& network, const std::string& owner, std::string* phases) {
    auto mark = Clock::now();
    auto phase = [&](const char* name) {
      *phases += fmt::format(" {}={:.2f}", name, millisSince(mark));
      mark = Clock::now();
    };
    CLRK_RETURN_IF_ERROR(nft_->addElements(options_.tag, {network}));
    phase("nft");
    std::optional<NamedNetns> spare = takeSpare();
    Result<NamedNetns> netns = spare ? Result<NamedNetns>(std::move(*spare)) : createNetns();
    if (!netns.ok()) return netns.status();
    Status bound = bindNetns(netns.value(), network.netns_path);
    if (bound.code() == Code::AlreadyExists) {
      // A leftover of a failed release of this slot.
      CLRK_RETURN_IF_ERROR(deleteNamedNetns(network.netns_path));
      bound = bindNetns(netns.value(), network.netns_path);
    }
    CLRK_RETURN_IF_ERROR(bound);
    phase(spare ? "netns(spare)" : "netns");
    CLRK_ASSIGN_OR_RETURN(RtNetlink host, RtNetlink::open());
    Status created = host.createVeth(network.host_interface, network.sandbox_interface,
                                     netns->fd.get(), options_.mtu);
    if (created.code() == Code::AlreadyExists) {
      CLRK_RETURN_IF_ERROR(host.deleteLink(network.host_interface));
      created = host.createVeth(network.host_interface, network.sandbox_interface, netns->fd.get(),
                                options_.mtu);
    }
    CLRK_RETURN_IF_ERROR(created);
    phase("veth");
    CLRK_ASSIGN_OR_RETURN(int host_index, host.linkIndex(network.host_interface));
    host.queueNoIpv6Addresses(host_index);
    host.queueAddress(host_index, beAddress(network.host_address), network.prefix_length);
    host.queueLinkUp(host_index, "clrk " + owner);
    CLRK_RETURN_IF_ERROR(host.commit());
    phase("host");

    RtNetlink& inside = netns->netlink;
    CLRK_ASSIGN_OR_RETURN(int sandbox_index, inside.linkIndex(network.sandbox_interface));
    constexpr int kLoopbackIndex = 1;  // the kernel gives lo index 1 in every namespace
    inside.queueLinkUp(kLoopbackIndex);
    inside.queueNoIpv6Addresses(sandbox_index);
    inside.queueAddress(sandbox_index, beAddress(network.sandbox_address), network.prefix_length);
    inside.queueLinkUp(sandbox_index);
    inside.queueDefaultRoute(sandbox_index, beAddress(network.host_address));
    CLRK_RETURN_IF_ERROR(inside.commit().withContext("configuring " + network.netns_name));
    phase("inside");
    // The end that went up first (the host's) only starts passing packets once the kernel's
    // link watcher has seen the carrier come on; until then it drops them, and a sandbox's first
    // SYN would be retried only after a second. Wait for that (its operstate turns UP).
    CLRK_RETURN_IF_ERROR(host.waitOperUp(network.host_interface, kCarrierWait));
    phase("carrier");
    return {};
  }

  // The namespace, then the veth pair (a veth takes its peer along), then the set elements: the
  // rules confine the veth for as long as it exists.
  Status teardown(const SandboxNetwork& network, std::string* phases = nullptr) {
    auto mark = Clock::now();
    auto phase = [&](const char* name) {
      if (phases != nullptr) *phases += fmt::format(" {}={:.2f}", name, millisSince(mark));
      mark = Clock::now();
    };
    Status first = deleteNamedNetns(network.netns_path);
    phase("netns");
    auto host = RtNetlink::open();
    Status link = host.ok() ? host->deleteLink(network.host_interface) : host.status();
    phase("veth");
    if (!link.ok()) {
      // The veth may still exist: keep its elements (so the rules) until a later release works.
      return link.withContext("deleting " + network.host_interface);
    }
    Status elements = nft_->removeElements(options_.tag, {network});
    if (!elements.ok() && first.ok()) first = elements;
    phase("nft");
    return first;
  }

  // teardown() of several networks with one kernel link deletion for all of them.
  Status teardownMany(const std::vector<SandboxNetwork>& networks) {
    if (networks.empty()) return {};
    if (networks.size() == 1) return teardown(networks.front());
    Status first;
    std::vector<std::string> links;
    for (const auto& network : networks) {
      Status unmounted = deleteNamedNetns(network.netns_path);
      if (!unmounted.ok() && first.ok()) first = unmounted;
      links.push_back(network.host_interface);
    }
    auto host = RtNetlink::open();
    Status deleted = host.ok() ? host->deleteLinks(links) : host.status();
    if (!deleted.ok()) {
      // One at a time: a link that cannot go keeps its own elements only.
      for (const auto& network : networks) {
        Status status = teardown(network);
        if (!status.ok() && first.ok()) first = status;
      }
      return first;
    }
    Status elements = nft_->removeElements(options_.tag, networks);
    if (!elements.ok() && first.ok()) first = elements;
    return first;
  }

  struct PendingRelease {
    SandboxNetwork network;
    bool return_slot = false;  // it was allocated (not a repeated release)
  };

  // The background half of releaseSoon().
  void reap() {
    std::unique_lock lock(mutex_);
    for (;;) {
      work_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything asked for is done
      // Deleting a veth holds the kernel's rtnl lock through RCU grace periods (10-40 ms), which
      // would stall an allocation's veth creation: let allocations in flight finish first.
      work_.wait_for(lock, kReleaseYield, [&] { return allocating_ == 0 || stopping_; });
      // Everything queued goes in one batch: one link deletion, one RCU wait.
      std::vector<PendingRelease> batch(std::make_move_iterator(queue_.begin()),
                                        std::make_move_iterator(queue_.end()));
      queue_.clear();
      ++reaping_;
      lock.unlock();
      auto start = Clock::now();
      std::vector<SandboxNetwork> networks;
      for (const auto& pending : batch) networks.push_back(pending.network);
      Status status = teardownMany(networks);
      log_->debug("released {} network(s) in the background in {:.2f} ms (first {})",
                  networks.size(), millisSince(start), networks.front().netns_name);
      if (!status.ok()) log_->warn("background release: {}", status.toString());
      lock.lock();
      --reaping_;
      if (!status.ok() && reap_error_.ok()) reap_error_ = status;
      for (const auto& pending : batch) {
        if (!pending.return_slot) continue;
        draining_.erase(pending.network.slot);
        pool_.release(pending.network.slot, Clock::now());
      }
      if (queue_.empty() && reaping_ == 0) idle_.notify_all();
    }
  }

  std::optional<NamedNetns> takeSpare() {
    std::optional<NamedNetns> spare;
    {
      std::lock_guard lock(spare_mutex_);
      if (spares_.empty()) return spare;
      spare.emplace(std::move(spares_.front()));
      spares_.pop_front();
    }
    spare_wanted_.notify_all();
    return spare;
  }

  // Keeps options_.spare_namespaces fresh namespaces ready.
  void fillSpares() {
    const size_t target = static_cast<size_t>(options_.spare_namespaces);
    std::unique_lock lock(spare_mutex_);
    for (;;) {
      spare_wanted_.wait(lock, [&] { return spare_stop_ || spares_.size() < target; });
      if (spare_stop_) return;
      lock.unlock();
      auto made = createNetns();
      lock.lock();
      if (made.ok()) {
        spares_.push_back(std::move(made).value());
      } else {
        log_->warn("preparing a spare network namespace: {}", made.status().toString());
        spare_wanted_.wait_for(lock, std::chrono::seconds(1), [&] { return spare_stop_; });
      }
    }
  }

  NetworkOptions options_;
  std::unique_ptr<Nftables> nft_;
  mutable std::mutex mutex_;
  SlotPool pool_;                      // guarded by mutex_
  std::map<int, std::string> owners_;  // slot -> owner; guarded by mutex_
  std::set<int> draining_;             // released soon, not back in pool_ yet; guarded by mutex_
  std::deque<PendingRelease> queue_;   // guarded by mutex_
  int reaping_ = 0;                    // guarded by mutex_
  int allocating_ = 0;                 // allocate() calls in flight; guarded by mutex_
  bool stopping_ = false;              // guarded by mutex_
  Status reap_error_;                  // guarded by mutex_
  std::condition_variable work_;
  std::condition_variable idle_;
  std::thread reaper_;
  std::mutex spare_mutex_;
  std::condition_variable spare_wanted_;
  std::deque<NamedNetns> spares_;  // guarded by spare_mutex_
  bool spare_stop_ = false;        // guarded by spare_mutex_
  std::thread filler_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace

Status validateOptions(const NetworkOptions& options) {
  if (options.tag.empty() || options.tag.size() > 3) {
    return invalidArgument(
        fmt::format("tag \"{}\": must be 1 to 3 characters of [a-z0-9]", options.tag));
  }
  for (char c : options.tag) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      return invalidArgument(
          fmt::format("tag \"{}\": character '{}' is not in [a-z0-9]", options.tag, c));
    }
  }
  CLRK_RETURN_IF_ERROR(parsePool(options.pool_cidr).status());
  if (options.egress_tcp_port == 0) return invalidArgument("egress_tcp_port: must not be 0");
  if (options.egress_dns_port == 0) return invalidArgument("egress_dns_port: must not be 0");
  if (options.egress_tcp_port == options.egress_dns_port) {
    return invalidArgument(
        fmt::format("egress_tcp_port and egress_dns_port are both {}", options.egress_tcp_port));
  }
  if (options.mtu < 576 || options.mtu > 65535) {
    return invalidArgument(fmt::format("mtu {}: must be 576..65535", options.mtu));
  }
  if (options.spare_namespaces < 0 || options.spare_namespaces > 64) {
    return invalidArgument(
        fmt::format("spare_namespaces {}: must be 0..64", options.spare_namespaces));
  }
  return {};
}

Result<int> slotCount(const NetworkOptions& options) {
  CLRK_ASSIGN_OR_RETURN(Pool pool, parsePool(options.pool_cidr));
  return 1 << (30 - pool.prefix);
}

Result<SandboxNetwork> networkForSlot(const NetworkOptions& options, int slot) {
  CLRK_RETURN_IF_ERROR(validateOptions(options));
  CLRK_ASSIGN_OR_RETURN(Pool pool, parsePool(options.pool_cidr));
  int capacity = 1 << (30 - pool.prefix);
  if (slot < 0 || slot >= capacity) {
    return invalidArgument(fmt::format("slot {} is outside the pool {} (0..{})", slot,
                                       options.pool_cidr, capacity - 1));
  }
  SandboxNetwork network;
  network.slot = slot;
  network.netns_name = fmt::format("clrk-{}-{}", options.tag, slot);
  network.netns_path = fmt::format("{}/{}", kNetnsDir, network.netns_name);
  network.host_interface = fmt::format("ck{}h{}", options.tag, slot);
  network.sandbox_interface = fmt::format("ck{}s{}", options.tag, slot);
  uint32_t base = pool.base + static_cast<uint32_t>(slot) * 4;
  network.host_address = ipText(base + 1);
  network.sandbox_address = ipText(base + 2);
  network.prefix_length = 30;
  return network;
}

Result<std::unique_ptr<NetworkManager>> NetworkManager::create(NetworkOptions options) {
  CLRK_RETURN_IF_ERROR(validateOptions(options));
  if (::geteuid() != 0) {
    return Status(Code::Forbidden,
                  "sandbox networking needs root (network namespaces, veth, nftables)");
  }
  CLRK_ASSIGN_OR_RETURN(int capacity, slotCount(options));
  CLRK_RETURN_IF_ERROR(ensureNetnsDir());
  CLRK_ASSIGN_OR_RETURN(auto nft, Nftables::create());
  auto manager = std::make_unique<NetworkManagerImpl>(std::move(options), capacity, std::move(nft));
  // Leftovers go before the tables are replaced: while they are removed the old rules (with
  // their elements) still confine them.
  CLRK_RETURN_IF_ERROR(manager->sweepLeftovers().withContext("removing leftovers"));
  CLRK_RETURN_IF_ERROR(manager->installTables().withContext("installing nftables tables"));
  manager->startSpares();
  return std::unique_ptr<NetworkManager>(std::move(manager));
}

}  // namespace clrk::sandbox::net
