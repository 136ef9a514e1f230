// Escape tests: a process inside a sandbox (both backends, host rootfs, its own netns from
// sandbox::net) tries to get out, and every attempt must fail while a positive control proves the
// one allowed path (the egress, by name through its DNS, to one allowed upstream) works.
//
// The probes are tests/integration/sandbox_probes/probe.py (python3 stdlib), run with
// `/usr/bin/python3 -c <text> ACTION...`; each action prints `RESULT <name> <json>`. What the
// sandbox says is never trusted alone: host-side spies (TCP, UDP listeners, a raw ICMP socket, a
// /proc scan) check that nothing arrived or survived.
//
// Needs root, runsc (gvisor) and the kernel features of the namespaces backend; host-global
// state (netns, veths, nft tables, runsc containers, state dirs under /var/tmp) is created with
// random names and removed by the test.
#include "harness.h"

#include "clrk/api/codec.h"
#include "clrk/api/registry.h"
#include "clrk/base/ids.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/identity.h"
#include "clrk/egress/proxy.h"
#include "clrk/sandbox/net/network.h"
#include "clrk/sandbox/runtime.h"

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#ifndef CLRK_ESCAPE_PROBE
#define CLRK_ESCAPE_PROBE "tests/integration/sandbox_probes/probe.py"
#endif

namespace clrk {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr std::string_view kAllowedHost = "allowed.clrk.test";
constexpr std::string_view kBanner = "REAL-TARGET-";

// ---------------------------------------------------------------------------------------------
// Host-side spies.

std::string addressText(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {};
  if (address.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
  } else if (address.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
  }
  return text;
}

// Binds `address` (IPv4 or IPv6 literal) on an ephemeral port of `type` (SOCK_STREAM /
// SOCK_DGRAM); -1 on failure.
int bindSocket(const std::string& address, int type, uint16_t* port) {
  sockaddr_storage storage{};
  socklen_t length = 0;
  int family = address.find(':') == std::string::npos ? AF_INET : AF_INET6;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    in->sin_family = AF_INET;
    if (inet_pton(AF_INET, address.c_str(), &in->sin_addr) != 1) return -1;
    length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    in6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, address.c_str(), &in6->sin6_addr) != 1) return -1;
    length = sizeof(sockaddr_in6);
  }
  int fd = ::socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (family == AF_INET6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&storage), length) != 0 ||
      (type == SOCK_STREAM && ::listen(fd, 64) != 0)) {
    ::close(fd);
    return -1;
  }
  length = sizeof(storage);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&storage), &length);
  *port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&storage)->sin_port
                                  : reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port);
  return fd;
}

// Something that receives on a socket in a thread and records who talked to it.
class Spy {
 public:
  virtual ~Spy() { stop(); }
  uint16_t port() const { return port_; }
  bool ok() const { return fd_ >= 0; }
  // Peers (and for datagrams "peer payload") seen so far.
  std::vector<std::string> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }
  size_t count() const { return seen().size(); }
  void clear() {
    std::lock_guard lock(mutex_);
    seen_.clear();
  }

 protected:
  void run() {
    thread_ = std::thread([this] {
      while (!stopping_) {
        pollfd entry{fd_, POLLIN, 0};
        if (::poll(&entry, 1, 100) > 0) onReadable();
      }
    });
  }
  void stop() {
    stopping_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  void record(std::string what) {
    std::lock_guard lock(mutex_);
    seen_.push_back(std::move(what));
  }
  virtual void onReadable() = 0;

  int fd_ = -1;
  uint16_t port_ = 0;

 private:
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<std::string> seen_;
};

// A TCP listener. With an HTTP `body` it answers one HTTP/1.1 request with 200 and that body
// (the allowed upstream); otherwise it sends a banner at once (a target that must stay unseen).
class TcpSpy : public Spy {
 public:
  TcpSpy(const std::string& address, std::string banner, std::string body = "")
      : banner_(std::move(banner)), body_(std::move(body)) {
    fd_ = bindSocket(address, SOCK_STREAM, &port_);
    if (fd_ >= 0) run();
  }
  ~TcpSpy() override { stop(); }

 private:
  void onReadable() override {
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    int client = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer), &length, SOCK_CLOEXEC);
    if (client < 0) return;
    record(addressText(peer));
    if (body_.empty()) {
      (void)!::send(client, banner_.data(), banner_.size(), MSG_NOSIGNAL);
    } else {
      std::string request;
      char buffer[4096];
      auto deadline = std::chrono::steady_clock::now() + 3s;
      while (request.find("\r\n\r\n") == std::string::npos &&
             std::chrono::steady_clock::now() < deadline) {
        pollfd entry{client, POLLIN, 0};
        if (::poll(&entry, 1, 100) <= 0) continue;
        ssize_t n = ::recv(client, buffer, sizeof(buffer), 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      std::string response = fmt::format(
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: "
          "close\r\n\r\n{}",
          body_.size(), body_);
      (void)!::send(client, response.data(), response.size(), MSG_NOSIGNAL);
    }
    ::shutdown(client, SHUT_WR);
    ::close(client);
  }

  std::string banner_;
  std::string body_;
};

// A UDP receiver: records "peer payload" of every datagram (and answers nothing).
class UdpSpy : public Spy {
 public:
  explicit UdpSpy(const std::string& address) {
    fd_ = bindSocket(address, SOCK_DGRAM, &port_);
    if (fd_ >= 0) run();
  }
  ~UdpSpy() override { stop(); }

 private:
  void onReadable() override {
    char buffer[2048];
    sockaddr_storage peer{};
    socklen_t length = sizeof(peer);
    ssize_t n =
        ::recvfrom(fd_, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr*>(&peer), &length);
    if (n >= 0) record(addressText(peer) + " " + std::string(buffer, static_cast<size_t>(n)));
  }
};

// A raw ICMP socket: sees ICMP that passed the host's INPUT hook (raw delivery happens after
// netfilter), so an echo request dropped by the sandbox rules never shows up here. Records the
// source address of every echo request.
class IcmpSpy : public Spy {
 public:
  IcmpSpy() {
    fd_ = ::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    if (fd_ >= 0) run();
  }
  ~IcmpSpy() override { stop(); }

 private:
  void onReadable() override {
    unsigned char buffer[2048];
    ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    if (n < 28) return;
    size_t header = static_cast<size_t>(buffer[0] & 0x0F) * 4;
    if (static_cast<size_t>(n) < header + 8) return;
    if (buffer[header] != 8) return;  // echo request only
    char text[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, buffer + 12, text, sizeof(text));
    record(text);
  }
};

// ---------------------------------------------------------------------------------------------
// Host facts.

// Source address the host uses towards `probe` (its primary address), "" if no route.
std::string primaryAddress(int family) {
  int fd = ::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "";
  sockaddr_storage target{};
  socklen_t length = 0;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&target);
    in->sin_family = AF_INET;
    in->sin_port = htons(53);
    inet_pton(AF_INET, "1.1.1.1", &in->sin_addr);
    length = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&target);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(53);
    inet_pton(AF_INET6, "2001:4860:4860::8888", &in6->sin6_addr);
    length = sizeof(sockaddr_in6);
  }
  std::string result;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&target), length) == 0) {
    sockaddr_storage local{};
    socklen_t local_length = sizeof(local);
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0) {
      result = addressText(local);
    }
  }
  ::close(fd);
  return result;
}

// The IPv6 link-local address of a host interface ("" if it has none).
std::string linkLocalOf(const std::string& interface) {
  auto result = testing::runCommand(
      fmt::format("ip -6 -o addr show dev {} scope link 2>/dev/null", interface));
  auto at = result.output.find("inet6 ");
  if (at == std::string::npos) return "";
  auto begin = at + 6;
  auto slash = result.output.find('/', begin);
  return result.output.substr(begin, slash - begin);
}

bool inSyntheticPool(const std::string& address) {
  // 198.18.0.0/15: the egress DNS pool.
  in_addr parsed{};
  if (inet_pton(AF_INET, address.c_str(), &parsed) != 1) return false;
  uint32_t value = ntohl(parsed.s_addr);
  return (value & 0xFFFE0000u) == 0xC6120000u;
}

// Host processes whose command line contains `needle` (zombies have none and do not count).
std::vector<int> hostProcessesWith(const std::string& needle) {
  std::vector<int> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* entry = ::readdir(proc)) {
    int pid = std::atoi(entry->d_name);
    if (pid <= 0 || pid == getpid()) continue;
    std::ifstream file(fmt::format("/proc/{}/cmdline", pid), std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    if (cmdline.find(needle) != std::string::npos) found.push_back(pid);
  }
  ::closedir(proc);
  return found;
}

std::string readText(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return {(std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>()};
}

// ---------------------------------------------------------------------------------------------
// Probe results.

struct ProbeOutput {
  sandbox::ExitStatus exit;
  std::string output;                        // every captured line
  std::multimap<std::string, json> results;  // RESULT lines by probe name

  std::vector<json> all(const std::string& name) const {
    std::vector<json> out;
    auto [begin, end] = results.equal_range(name);
    for (auto it = begin; it != end; ++it) out.push_back(it->second);
    return out;
  }
  json first(const std::string& name) const {
    auto it = results.find(name);
    return it == results.end() ? json::object() : it->second;
  }
  bool finished() const { return results.count("done") == 1; }
};

void parseLine(const std::string& line, ProbeOutput* out) {
  if (line.rfind("RESULT ", 0) != 0) return;
  auto space = line.find(' ', 7);
  if (space == std::string::npos) return;
  try {
    out->results.emplace(line.substr(7, space - 7), json::parse(line.substr(space + 1)));
  } catch (const std::exception&) {
  }
}

std::string str(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// ---------------------------------------------------------------------------------------------
// The suite: one egress Proxy, one NetworkManager, host spies; one Runtime per backend.

constexpr std::string_view kManifests = R"(
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: default, namespace: default}
spec:
  defaultPolicy: deny-all
  listeners:
  - name: http
    protocol: HTTP
  - name: https
    protocol: TLS
    tls: {mode: Terminate}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressL4Route
metadata: {name: allowed, namespace: default}
spec:
  parentRefs: [{name: default, sectionName: http}]
  rules:
  - matches: [{destinationHostnames: [allowed.clrk.test], ports: [{port: 80}]}]
)";

struct Suite {
  std::string skip;  // why the environment cannot run these tests; empty = ready
  std::string token = randomHex(6);
  fs::path base;  // /var/tmp/clrk-escape-<pid>-<token>
  std::string probe_text;
  egress::config::SnapshotHolder snapshots;
  egress::IdentityMap identities;
  std::unique_ptr<egress::Proxy> proxy;
  std::unique_ptr<sandbox::net::NetworkManager> networks;
  std::unique_ptr<TcpSpy> upstream;    // the allowed upstream (127.0.0.1)
  std::unique_ptr<TcpSpy> forbidden;   // 0.0.0.0: host veth, primary address, 127.0.0.1
  std::unique_ptr<TcpSpy> forbidden6;  // [::]
  std::unique_ptr<TcpSpy> api;         // an API server stand-in on 127.0.0.1
  std::unique_ptr<UdpSpy> udp;         // 0.0.0.0
  std::unique_ptr<UdpSpy> udp6;        // [::]
  std::unique_ptr<IcmpSpy> icmp;
  std::string primary4, primary6;
  std::map<std::string, std::unique_ptr<sandbox::Runtime>> runtimes;
  std::map<std::string, fs::path> state_dirs;
  int counter = 0;

  std::string banner() const { return std::string(kBanner) + token; }
  std::string upstreamBody() const { return "ALLOWED-UPSTREAM-" + token; }
};

Suite* suite = nullptr;

std::string setUpSuite(Suite& s) {
  if (geteuid() != 0) return "needs root (netns, veth, nftables, runsc)";
  for (const char* tool : {"ip", "nft"}) {
    if (testing::runCommand(fmt::format("command -v {}", tool)).exit_code != 0) {
      return fmt::format("{} not installed (Debian packages iproute2, nftables)", tool);
    }
  }
  if (!fs::exists("/usr/bin/python3")) return "/usr/bin/python3 missing (Debian python3)";
  if (!fs::exists("/bin/busybox")) return "/bin/busybox missing (Debian busybox-static)";
  s.probe_text = readText(CLRK_ESCAPE_PROBE);
  if (s.probe_text.empty()) return std::string("probe script not found: ") + CLRK_ESCAPE_PROBE;

  s.base = fs::path("/var/tmp") / fmt::format("clrk-escape-{}-{}", getpid(), s.token);
  fs::create_directories(s.base);

  s.upstream = std::make_unique<TcpSpy>("127.0.0.1", "", s.upstreamBody());
  s.forbidden = std::make_unique<TcpSpy>("0.0.0.0", s.banner());
  s.forbidden6 = std::make_unique<TcpSpy>("::", s.banner());
  s.api = std::make_unique<TcpSpy>("127.0.0.1", s.banner());
  s.udp = std::make_unique<UdpSpy>("0.0.0.0");
  s.udp6 = std::make_unique<UdpSpy>("::");
  s.icmp = std::make_unique<IcmpSpy>();
  if (!s.upstream->ok() || !s.forbidden->ok() || !s.api->ok() || !s.udp->ok() || !s.icmp->ok()) {
    return "cannot bind the host spies";
  }
  s.primary4 = primaryAddress(AF_INET);
  s.primary6 = primaryAddress(AF_INET6);

  auto documents = api::decodeManifests(kManifests, "escape.yaml");
  if (!documents.ok()) return documents.status().toString();
  std::vector<json> objects;
  for (auto& document : documents.value()) objects.push_back(document.object);
  auto compiled = egress::config::compile(objects, 1);
  for (const auto& status : compiled.statuses) {
    if (!status.accepted)
      return fmt::format("manifest {} {}: {}", status.kind, status.name, status.message);
  }
  s.snapshots.swap(compiled.snapshot);

  egress::ProxyOptions options;
  options.transparent_listen = "0.0.0.0:0";
  options.dns_listen = "0.0.0.0:0";
  options.header_timeout_ms = 3000;
  options.connect_timeout_ms = 2000;
  options.upstream_overrides.emplace_back(fmt::format("{}:80", kAllowedHost),
                                          fmt::format("127.0.0.1:{}", s.upstream->port()));
  auto proxy = egress::Proxy::start(options, s.snapshots, s.identities, nullptr);
  if (!proxy.ok()) return "egress proxy: " + proxy.status().toString();
  s.proxy = std::move(proxy).value();

  sandbox::net::NetworkOptions net_options;
  // A tag and a pool of our own so that other tests on this host never collide with ours.
  net_options.tag = "e" + randomHex(1);
  unsigned seed = static_cast<unsigned>(std::stoul(randomHex(2), nullptr, 16));
  net_options.pool_cidr = fmt::format("10.{}.{}.0/24", 230 + seed % 20, (seed / 20) % 256);
  net_options.egress_tcp_port = s.proxy->transparentPort();
  net_options.egress_dns_port = s.proxy->dnsPort();
  auto networks = sandbox::net::NetworkManager::create(net_options);
  if (!networks.ok()) return "sandbox::net: " + networks.status().toString();
  s.networks = std::move(networks).value();
  return "";
}

void tearDownSuite(Suite& s) {
  s.runtimes.clear();
  if (s.networks) {
    (void)s.networks->releaseAll();
    (void)s.networks->destroyTables();
    s.networks.reset();
  }
  if (s.proxy) s.proxy->stop();
  std::error_code ignored;
  if (!s.base.empty()) fs::remove_all(s.base, ignored);
}

// One sandbox of a test: network (optional), prepared, started, waited for, destroyed and its
// network released on scope exit whatever happens.
class SandboxRun {
 public:
  SandboxRun(sandbox::Runtime& runtime, std::string id) : runtime_(runtime), id_(std::move(id)) {}
  ~SandboxRun() { cleanUp(); }
  SandboxRun(const SandboxRun&) = delete;
  SandboxRun& operator=(const SandboxRun&) = delete;

  // Allocates the sandbox's netns and registers its identity with the egress.
  Status allocateNetwork() {
    auto network = suite->networks->allocate(id_);
    if (!network.ok()) return network.status();
    network_ = network.value();
    egress::Identity identity;
    identity.namespace_name = "default";
    identity.agent = "escape";
    identity.agent_kind = "TaskAgent";
    identity.execution_id = id_;
    identity.sandbox_id = id_;
    suite->identities.set(network_->sandbox_address, identity);
    return {};
  }

  // Prepares the sandbox running `argv` (in the allocated network, if any; else loopback only).
  Status prepare(std::vector<std::string> argv) {
    sandbox::SandboxSpec spec;
    spec.id = id_;
    spec.rootfs_kind = sandbox::RootfsKind::Host;
    spec.argv = std::move(argv);
    spec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "PYTHONDONTWRITEBYTECODE=1"};
    spec.timeout = 60s;
    spec.ca_cert_pem = suite->proxy->caCertificatePem();
    spec.on_log = [this](const sandbox::LogLine& line) {
      std::lock_guard lock(mutex_);
      output_.output += line.text + "\n";
      parseLine(line.text, &output_);
      changed_.notify_all();
    };
    if (network_) spec.netns_path = network_->netns_path;
    auto prepared = runtime_.prepare(spec);
    if (!prepared.ok()) return prepared.status();
    sandbox_ = std::move(prepared).value();
    return {};
  }

  Status start() { return sandbox_->start(); }

  // Waits for the process to end (bounded) and returns what it printed.
  Result<ProbeOutput> finish(std::chrono::milliseconds timeout = 90s) {
    auto exit = sandbox_->wait(timeout);
    if (!exit.ok()) return exit.status();
    std::lock_guard lock(mutex_);
    output_.exit = exit.value();
    return output_;
  }

  // Waits until a RESULT line named `name` was printed (the process keeps running).
  bool waitForResult(const std::string& name, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return output_.results.count(name) > 0; });
  }
  bool waitForLine(const std::string& text, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout,
                             [&] { return output_.output.find(text) != std::string::npos; });
  }
  ProbeOutput snapshot() const {
    std::lock_guard lock(mutex_);
    return output_;
  }

  Status destroy() { return sandbox_ ? sandbox_->destroy() : Status{}; }

  sandbox::Sandbox* sandbox() { return sandbox_.get(); }
  const std::optional<sandbox::net::SandboxNetwork>& network() const { return network_; }
  const std::string& id() const { return id_; }

 private:
  void cleanUp() {
    if (sandbox_) {
      Status destroyed = sandbox_->destroy();
      EXPECT_TRUE(destroyed.ok()) << "destroy " << id_ << ": " << destroyed.toString();
    }
    if (network_) {
      suite->identities.remove(network_->sandbox_address);
      Status released = suite->networks->release(*network_);
      EXPECT_TRUE(released.ok()) << "release " << id_ << ": " << released.toString();
    }
  }

  sandbox::Runtime& runtime_;
  std::string id_;
  std::unique_ptr<sandbox::Sandbox> sandbox_;
  std::optional<sandbox::net::SandboxNetwork> network_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  ProbeOutput output_;
};

class SandboxEscapeTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    suite = new Suite();
    suite->skip = setUpSuite(*suite);
  }
  static void TearDownTestSuite() {
    tearDownSuite(*suite);
    delete suite;
    suite = nullptr;
  }

  void SetUp() override {
    if (!suite->skip.empty()) GTEST_SKIP() << suite->skip;
    const std::string& backend = GetParam();
    auto found = suite->runtimes.find(backend);
    if (found == suite->runtimes.end()) {
      sandbox::RuntimeOptions options;
      // Outside /tmp, /root, /home and /work on purpose: those are masked by every Host rootfs
      // anyway, so only a runtime that hides its own state dir passes the worker-files test.
      options.state_dir = suite->base / backend / "sandboxes";
      options.cgroup_parent = "clrk-escape-" + suite->token;
      auto runtime = sandbox::makeRuntime(backend, options);
      if (!runtime.ok()) {
        const Status& status = runtime.status();
        // A backend whose host prerequisites are missing says which package to install.
        if (status.message().find("install") != std::string::npos) {
          GTEST_SKIP() << "backend " << backend << " unavailable: " << status.toString();
        }
        FAIL() << "makeRuntime(" << backend << "): " << status.toString();
      }
      suite->state_dirs[backend] = options.state_dir;
      found = suite->runtimes.emplace(backend, std::move(runtime).value()).first;
    }
    runtime_ = found->second.get();
    // Spies keep what earlier tests sent; each test judges only its own traffic.
    suite->forbidden->clear();
    suite->forbidden6->clear();
    suite->api->clear();
    suite->udp->clear();
    suite->udp6->clear();
    suite->icmp->clear();
  }

  std::string newId() {
    return fmt::format("esc-{}-{}-{}", GetParam().substr(0, 2), suite->token, suite->counter++);
  }

  // Runs the probe with `actions` in a fresh sandbox and returns its output; fails the test on
  // any runtime error. With a network, placeholders in actions are replaced first:
  //   @GW@  the host side of this sandbox's veth (its default gateway, a worker address)
  //   @SB@  the sandbox's own address
  //   @LL@  the host veth's IPv6 link-local address with the sandbox interface as scope
  //         (actions using it are dropped when the veth has no IPv6)
  // `used`, when given, receives the network (already released when this returns).
  ProbeOutput probe(std::vector<std::string> actions, bool with_network = true,
                    sandbox::net::SandboxNetwork* used = nullptr) {
    SandboxRun run(*runtime_, newId());
    if (with_network) {
      Status allocated = run.allocateNetwork();
      EXPECT_TRUE(allocated.ok()) << "sandbox::net allocate: " << allocated.toString();
      if (!allocated.ok()) return {};
      const auto& network = *run.network();
      if (used != nullptr) *used = network;
      std::string link_local = linkLocalOf(network.host_interface);
      std::vector<std::string> substituted;
      for (auto action : actions) {
        if (action.find("@LL@") != std::string::npos && link_local.empty()) continue;
        for (auto [from, to] : {std::pair<std::string, std::string>{"@GW@", network.host_address},
                                {"@SB@", network.sandbox_address},
                                {"@IF@", network.sandbox_interface},
                                {"@LL@", link_local + "%" + network.sandbox_interface}}) {
          for (size_t at = action.find(from); at != std::string::npos; at = action.find(from)) {
            action.replace(at, from.size(), to);
          }
        }
        substituted.push_back(action);
      }
      actions = std::move(substituted);
    }
    std::vector<std::string> argv = {"/usr/bin/python3", "-c", suite->probe_text};
    argv.insert(argv.end(), actions.begin(), actions.end());
    Status prepared = run.prepare(argv);
    EXPECT_TRUE(prepared.ok()) << "prepare: " << prepared.toString();
    if (!prepared.ok()) return {};
    Status started = run.start();
    EXPECT_TRUE(started.ok()) << "start: " << started.toString();
    if (!started.ok()) return {};
    auto output = run.finish();
    EXPECT_TRUE(output.ok()) << "wait: " << output.status().toString();
    if (!output.ok()) return {};
    EXPECT_TRUE(output->finished()) << "probe did not finish; output:\n" << output->output;
    EXPECT_EQ(output->exit.exit_code, 0) << output->exit.message << "\n" << output->output;
    return std::move(output).value();
  }

  // The positive control: the allowed upstream, by name through the egress DNS and listener.
  static std::string control() { return fmt::format("http,http://{}/", kAllowedHost); }
  static void expectControlWorked(const ProbeOutput& out) {
    json http = out.first("http");
    EXPECT_EQ(http.value("status", 0), 200) << "positive control failed: " << http.dump();
    EXPECT_THAT(str(http, "body"), HasSubstr(suite->upstreamBody())) << http.dump();
  }

  // A TCP probe result must not carry the real target's banner: either it failed, or the egress
  // answered (its 403) or closed it.
  static void expectNoTarget(const json& tcp) {
    std::string received = str(tcp, "received");
    EXPECT_THAT(received, Not(HasSubstr(std::string(kBanner)))) << tcp.dump();
    EXPECT_TRUE(received.empty() || received.rfind("HTTP/1.1 403", 0) == 0)
        << "an answer that is not the egress's refusal: " << tcp.dump();
  }

  static std::string seen(const Spy& spy) { return ::testing::PrintToString(spy.seen()); }

  sandbox::Runtime* runtime_ = nullptr;
};

// ---------------------------------------------------------------------------------------------

TEST_P(SandboxEscapeTest, Ipv4LiteralConnectsNeverReachTheTarget) {
  auto stats = suite->proxy->stats();
  uint64_t denied_before = stats.requests_denied + stats.connections_denied;
  uint16_t port = suite->forbidden->port();
  std::vector<std::string> actions = {control(), "tcp,1.2.3.4,80", "tcp,93.184.216.34,443",
                                      "tcp,10.255.255.53,80", "opaque,9.9.9.9,5432"};
  if (!suite->primary4.empty()) {
    actions.push_back(fmt::format("tcp,{},{}", suite->primary4, port));
    actions.push_back(fmt::format("opaque,{},{}", suite->primary4, port));
  }
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  auto tcps = out.all("tcp");
  ASSERT_EQ(tcps.size(), suite->primary4.empty() ? 3u : 4u) << out.output;
  for (const auto& tcp : tcps) expectNoTarget(tcp);
  for (const auto& opaque : out.all("opaque")) {
    EXPECT_THAT(str(opaque, "received"), Not(HasSubstr(std::string(kBanner)))) << opaque.dump();
  }
  EXPECT_EQ(suite->forbidden->count(), 0u) << "host listener reached: " << seen(*suite->forbidden);
  // The egress saw and refused them (all TCP is redirected to it).
  stats = suite->proxy->stats();
  EXPECT_GT(stats.requests_denied + stats.connections_denied, denied_before);
}

TEST_P(SandboxEscapeTest, Ipv6ConnectsFail) {
  uint16_t port = suite->forbidden6->port();
  uint16_t udp_port = suite->udp6->port();
  std::vector<std::string> actions = {
      control(),
      "tcp,2001:db8::1,80,6",
      fmt::format("tcp,@LL@,{},6", port),
      fmt::format("udp,@LL@,{},{},6", udp_port, suite->token),
      // IPv6 is off on the veth; turning it back on or adding an address must fail.
      "cmd,/bin/sh,-c,echo 0 > /proc/sys/net/ipv6/conf/@IF@/disable_ipv6",
      "cmd,/bin/busybox,ip,-6,addr,add,fd00:99::2/64,dev,@IF@",
  };
  if (!suite->primary6.empty()) {
    actions.push_back(fmt::format("tcp,{},{},6", suite->primary6, port));
    actions.push_back(fmt::format("udp,{},{},{},6", suite->primary6, udp_port, suite->token));
  }
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  ASSERT_GE(out.all("tcp").size(), 1u) << out.output;
  for (const auto& tcp : out.all("tcp")) {
    EXPECT_FALSE(tcp.value("connected", false)) << tcp.dump();
    expectNoTarget(tcp);
  }
  for (const auto& udp : out.all("udp")) EXPECT_FALSE(udp.contains("reply")) << udp.dump();
  auto cmds = out.all("cmd");
  ASSERT_EQ(cmds.size(), 2u) << out.output;
  for (const auto& cmd : cmds) {
    EXPECT_NE(cmd.value("exit", 0), 0) << "IPv6 configuration changed: " << cmd.dump();
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(suite->forbidden6->count(), 0u) << seen(*suite->forbidden6);
  EXPECT_EQ(suite->udp6->count(), 0u) << seen(*suite->udp6);
}

TEST_P(SandboxEscapeTest, WorkerOwnAddressesAreUnreachable) {
  uint16_t port = suite->forbidden->port();
  std::vector<std::string> actions = {control(),
                                      fmt::format("tcp,@GW@,{}", port),
                                      fmt::format("opaque,@GW@,{}", port),
                                      fmt::format("tcp,127.0.0.1,{}", port),
                                      fmt::format("opaque,127.0.0.1,{}", port),
                                      fmt::format("tcp,localhost,{}", port)};
  if (!suite->primary4.empty()) {
    actions.push_back(fmt::format("tcp,{},{}", suite->primary4, port));
    actions.push_back(fmt::format("opaque,{},{}", suite->primary4, port));
  }
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  ASSERT_GE(out.all("tcp").size(), 3u) << out.output;
  for (const auto& tcp : out.all("tcp")) expectNoTarget(tcp);
  for (const auto& opaque : out.all("opaque")) {
    EXPECT_THAT(str(opaque, "received"), Not(HasSubstr(std::string(kBanner)))) << opaque.dump();
  }
  EXPECT_EQ(suite->forbidden->count(), 0u) << "host listener reached: " << seen(*suite->forbidden);
  // Control: the same listener answers the host itself with its banner.
  auto host = testing::runCommand(fmt::format(
      "/usr/bin/python3 -c \"import socket; print(socket.create_connection(('127.0.0.1', {}), "
      "timeout=3).recv(100))\"",
      port));
  EXPECT_THAT(host.output, HasSubstr(suite->banner())) << "control: the TCP spy did not answer";
  EXPECT_EQ(suite->forbidden->count(), 1u);
}

TEST_P(SandboxEscapeTest, ApiServerIsUnreachable) {
  uint16_t port = suite->api->port();
  std::vector<std::string> actions = {
      control(),
      fmt::format("tcp,127.0.0.1,{}", port),
      fmt::format("tcp,@GW@,{}", port),
      "tcp,kubernetes.default.svc,443",
      "http,https://kubernetes.default.svc/api",
  };
  if (!suite->primary4.empty()) actions.push_back(fmt::format("tcp,{},{}", suite->primary4, port));
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  ASSERT_GE(out.all("tcp").size(), 3u) << out.output;
  for (const auto& tcp : out.all("tcp")) expectNoTarget(tcp);
  auto https = out.all("http");
  ASSERT_EQ(https.size(), 2u) << out.output;
  EXPECT_NE(https[1].value("status", 0), 200) << https[1].dump();
  EXPECT_EQ(suite->api->count(), 0u) << "API server stand-in reached: " << seen(*suite->api);
}

TEST_P(SandboxEscapeTest, MetadataLinkLocalIsUnreachable) {
  ProbeOutput out = probe({control(), "tcp,169.254.169.254,80", "opaque,169.254.169.254,80",
                           "http,http://169.254.169.254/latest/meta-data/",
                           "http,http://169.254.169.254/computeMetadata/v1/"});
  expectControlWorked(out);
  for (const auto& tcp : out.all("tcp")) expectNoTarget(tcp);
  auto https = out.all("http");
  ASSERT_EQ(https.size(), 3u) << out.output;
  for (size_t i = 1; i < https.size(); ++i) {
    EXPECT_NE(https[i].value("status", 0), 200) << https[i].dump();
  }
}

TEST_P(SandboxEscapeTest, SandboxesCannotReachEachOther) {
  // B listens on TCP and UDP and reports anything that arrives.
  SandboxRun b(*runtime_, newId());
  ASSERT_TRUE(b.allocateNetwork().ok());
  ASSERT_TRUE(b.prepare({"/usr/bin/python3", "-c",
                         "import socket, select, time\n"
                         "t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, "
                         "socket.SO_REUSEADDR, 1)\n"
                         "t.bind(('0.0.0.0', 7777)); t.listen(8)\n"
                         "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                         "u.bind(('0.0.0.0', 7777))\n"
                         "print('ready', flush=True)\n"
                         "end = time.time() + 60\n"
                         "while time.time() < end:\n"
                         "    r, _, _ = select.select([t, u], [], [], 0.2)\n"
                         "    for s in r:\n"
                         "        if s is t:\n"
                         "            c, peer = t.accept(); print('GOT-TCP', peer, flush=True)\n"
                         "            c.sendall(b'B-ANSWERS'); c.close()\n"
                         "        else:\n"
                         "            d, peer = u.recvfrom(100); print('GOT-UDP', peer, "
                         "flush=True)\n"})
                  .ok());
  ASSERT_TRUE(b.start().ok());
  ASSERT_TRUE(b.waitForLine("ready", 30s)) << b.snapshot().output;
  std::string address = b.network()->sandbox_address;
  ProbeOutput out =
      probe({control(), fmt::format("tcp,{},7777", address), fmt::format("opaque,{},7777", address),
             fmt::format("udp,{},7777,{}", address, suite->token)});
  expectControlWorked(out);
  for (const auto& tcp : out.all("tcp")) {
    expectNoTarget(tcp);
    EXPECT_THAT(str(tcp, "received"), Not(HasSubstr("B-ANSWERS"))) << tcp.dump();
  }
  for (const auto& opaque : out.all("opaque")) {
    EXPECT_THAT(str(opaque, "received"), Not(HasSubstr("B-ANSWERS"))) << opaque.dump();
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_THAT(b.snapshot().output, Not(HasSubstr("GOT-"))) << "sandbox B was reached";
}

TEST_P(SandboxEscapeTest, UdpOutIsDropped) {
  uint16_t port = suite->udp->port();
  std::vector<std::string> actions = {control(), fmt::format("udp,@GW@,{},{}", port, suite->token),
                                      fmt::format("udp,1.2.3.4,{},{}", port, suite->token),
                                      "udp,1.2.3.4,123," + suite->token,
                                      fmt::format("udp,10.255.255.53,{},{}", port, suite->token)};
  if (!suite->primary4.empty()) {
    actions.push_back(fmt::format("udp,{},{},{}", suite->primary4, port, suite->token));
  }
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  ASSERT_GE(out.all("udp").size(), 4u) << out.output;
  for (const auto& udp : out.all("udp")) EXPECT_FALSE(udp.contains("reply")) << udp.dump();
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(suite->udp->count(), 0u) << "host UDP listener reached: " << seen(*suite->udp);
  // Control: the spy does see a datagram that is allowed to arrive (from the host itself).
  auto sent = testing::runCommand(
      fmt::format("/usr/bin/python3 -c \"import socket; socket.socket(socket.AF_INET, "
                  "socket.SOCK_DGRAM).sendto(b'control', ('127.0.0.1', {}))\"",
                  port));
  ASSERT_EQ(sent.exit_code, 0) << sent.output;
  for (auto deadline = std::chrono::steady_clock::now() + 2s;
       suite->udp->count() == 0 && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(suite->udp->count(), 1u) << "control: the UDP spy saw nothing";
}

TEST_P(SandboxEscapeTest, IcmpIsDropped) {
  sandbox::net::SandboxNetwork network;
  std::vector<std::string> actions = {control(), "ping,@GW@", "ping,1.2.3.4"};
  if (!suite->primary4.empty()) actions.push_back("ping," + suite->primary4);
  ProbeOutput out = probe(actions, true, &network);
  expectControlWorked(out);
  auto pings = out.all("ping");
  ASSERT_GE(pings.size(), 2u) << out.output;
  for (const auto& ping : pings) {
    EXPECT_THAT(str(ping, "dgram"), Not(HasSubstr("reply from"))) << ping.dump();
    EXPECT_THAT(str(ping, "raw"), Not(HasSubstr("reply from"))) << ping.dump();
    EXPECT_NE(ping.value("busybox_exit", 0), 0) << ping.dump();
  }
  std::this_thread::sleep_for(200ms);
  for (const auto& source : suite->icmp->seen()) {
    EXPECT_NE(source, network.sandbox_address) << "an echo request from the sandbox got in";
  }
  // Control: the raw ICMP spy does see an echo request that is allowed in (host to itself).
  testing::runCommand("/bin/busybox ping -c 1 -W 1 127.0.0.1");
  for (auto deadline = std::chrono::steady_clock::now() + 2s;
       suite->icmp->count() == 0 && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_THAT(suite->icmp->seen(), ::testing::Contains("127.0.0.1"))
      << "control: the ICMP spy saw nothing";
}

TEST_P(SandboxEscapeTest, DnsOnlyEverReachesTheEgress) {
  // A "real resolver" on the host on a port that is not 53: must never hear from the sandbox.
  uint16_t resolver = suite->udp->port();
  std::vector<std::string> actions = {
      control(),
      fmt::format("dns,9.9.9.9,53,{}", kAllowedHost),
      "dns,9.9.9.9,53,example.com",
      "dns,10.255.255.53,53,example.com",
      "dns,@GW@,53,metadata.google.internal",
      fmt::format("dns,@GW@,{},example.com", resolver),
      fmt::format("dns,1.2.3.4,{},example.com", resolver),
      "resolve,example.com",
      fmt::format("resolve,{}", kAllowedHost),
  };
  if (!suite->primary4.empty()) {
    actions.push_back(fmt::format("dns,{},{},example.com", suite->primary4, resolver));
    actions.push_back(fmt::format("dns,{},53,example.com", suite->primary4));
  }
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  auto queries = out.all("dns");
  ASSERT_GE(queries.size(), 6u) << out.output;
  for (const auto& dns : queries) {
    if (dns.value("port", 0) != 53) {
      EXPECT_TRUE(dns.contains("error")) << "a resolver not on port 53 answered: " << dns.dump();
      continue;
    }
    // Port 53 anywhere: answered by the egress only, with synthetic addresses (or nothing).
    for (const auto& answer : dns.value("answers", std::vector<std::string>{})) {
      EXPECT_TRUE(inSyntheticPool(answer)) << "a real answer leaked: " << dns.dump();
    }
  }
  // The allowed name resolves (synthetic) through whatever resolver was asked.
  EXPECT_FALSE(queries[0].value("answers", std::vector<std::string>{}).empty())
      << queries[0].dump();
  for (const auto& resolved : out.all("resolve")) {
    for (const auto& address : resolved.value("addresses", std::vector<std::string>{})) {
      EXPECT_TRUE(inSyntheticPool(address)) << resolved.dump();
    }
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(suite->udp->count(), 0u) << "host resolver stand-in reached: " << seen(*suite->udp);
}

TEST_P(SandboxEscapeTest, RawSocketsFailOrSendNothing) {
  uint16_t port = suite->udp->port();
  std::vector<std::string> actions = {control(), "caps",
                                      fmt::format("raw,@GW@,{},{}", port, suite->token),
                                      fmt::format("raw,1.2.3.4,{},{}", port, suite->token)};
  if (!suite->primary4.empty()) {
    actions.push_back(fmt::format("raw,{},{},{}", suite->primary4, port, suite->token));
  }
  ProbeOutput out = probe(actions);
  expectControlWorked(out);
  auto raws = out.all("raw");
  ASSERT_GE(raws.size(), 2u) << out.output;
  for (const auto& raw : raws) {
    // Creating a packet or raw IP socket needs CAP_NET_RAW, which a sandbox must not have.
    EXPECT_THAT(str(raw, "packet_socket"), HasSubstr("socket:")) << raw.dump();
    EXPECT_THAT(str(raw, "raw_ip"), HasSubstr("socket:")) << raw.dump();
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(suite->udp->count(), 0u) << "raw datagrams arrived: " << seen(*suite->udp);
  RecordProperty("caps_" + GetParam(), out.first("caps").dump());
}

TEST_P(SandboxEscapeTest, AnotherSandboxsFilesAndProcessesAreInvisible) {
  std::string marker = "clrkmark" + randomHex(6);
  std::string secret = "CLRK-SECRET-" + randomHex(12);
  // B writes a secret into its /tmp and prints it (so it is in B's log too), then stays up.
  SandboxRun b(*runtime_, newId());
  ASSERT_TRUE(b.prepare({"/usr/bin/python3", "-c",
                         "import sys, time\n"
                         "open('/tmp/' + sys.argv[1], 'w').write(sys.argv[2])\n"
                         "print(sys.argv[2], flush=True)\n"
                         "print('ready', flush=True)\n"
                         "time.sleep(120)\n",
                         marker, secret})
                  .ok());
  ASSERT_TRUE(b.start().ok());
  ASSERT_TRUE(b.waitForLine("ready", 30s)) << b.snapshot().output;
  // C printed the same secret and has ended but is not destroyed yet (a finished execution
  // whose log the worker has not collected): its log on the host holds the secret.
  SandboxRun c(*runtime_, newId());
  ASSERT_TRUE(c.prepare({"/usr/bin/python3", "-c", "import sys; print(sys.argv[1])", secret}).ok());
  ASSERT_TRUE(c.start().ok());
  auto c_exit = c.finish(60s);
  ASSERT_TRUE(c_exit.ok()) << c_exit.status().toString();
  EXPECT_THAT(readText(c.sandbox()->logPath().string()), HasSubstr(secret))
      << "control: C's log on the host should hold the secret";

  // A searches everywhere it can look, the runtime's state dir (B's logs, overlays) included;
  // as a control it must find a file it wrote itself the same way.
  std::string own = "clrkown" + randomHex(6);
  fs::path state_dir = suite->state_dirs[GetParam()];
  std::string roots = state_dir.string() + ":" + state_dir.parent_path().string();
  ProbeOutput out = probe({fmt::format("cmd,/bin/sh,-c,echo {} > /tmp/{}", own, own),
                           fmt::format("find,{},{},{}", own, own, roots),
                           fmt::format("find,{},{},{}", marker, secret, roots)},
                          false);
  auto finds = out.all("find");
  ASSERT_EQ(finds.size(), 2u) << out.output;
  EXPECT_FALSE(finds[0].value("found", std::vector<std::string>{}).empty())
      << "control: the search does not find the sandbox's own file: " << finds[0].dump();
  EXPECT_TRUE(finds[1].value("found", std::vector<std::string>{}).empty())
      << "another sandbox's file is readable: " << finds[1].dump();
  EXPECT_TRUE(finds[1].value("processes", std::vector<int>{}).empty())
      << "another sandbox's processes are visible: " << finds[1].dump();
  EXPECT_LT(finds[1].value("pids", 1000), 10) << "A sees more than its own processes";
  // B is still running, undisturbed.
  EXPECT_FALSE(b.sandbox()->wait(0ms).ok());
}

TEST_P(SandboxEscapeTest, WorkerStateCaKeyAndSecretsAreUnreadable) {
  std::string secret = "CLRK-KEY-" + randomHex(12);
  fs::path state_dir = suite->state_dirs[GetParam()];
  fs::path worker_home = state_dir.parent_path();
  fs::create_directories(state_dir);
  // What a worker keeps: the egress CA key and Secrets, inside the runtime's state dir and next
  // to it (its home, the parent of RuntimeOptions::state_dir).
  std::string key_pem =
      fmt::format("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", secret);
  std::ofstream(state_dir / "ca-key.pem") << key_pem;
  std::ofstream(state_dir / "secrets.json") << fmt::format(R"({{"openai":"{}"}})", secret);
  std::ofstream(worker_home / "ca-key.pem") << key_pem;
  fs::permissions(state_dir / "ca-key.pem", fs::perms::owner_read | fs::perms::owner_write);
  fs::permissions(worker_home / "ca-key.pem", fs::perms::owner_read | fs::perms::owner_write);

  ProbeOutput out =
      probe({"read," + (state_dir / "ca-key.pem").string(),
             "read," + (state_dir / "secrets.json").string(), "read," + state_dir.string(),
             "read," + (worker_home / "ca-key.pem").string(), "read," + worker_home.string(),
             "read,/etc/clrk/ca.crt",
             fmt::format("find,ca-key,{},{}:{}", secret, state_dir.string(), worker_home.string()),
             "caps"},
            false);
  auto reads = out.all("read");
  ASSERT_EQ(reads.size(), 6u) << out.output;
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_THAT(str(reads[i], "content"), Not(HasSubstr(secret)))
        << "the sandbox read a worker file: " << reads[i].dump();
    EXPECT_FALSE(reads[i].value("readable", false))
        << "worker state is visible from a Host-rootfs sandbox (the runtime must mask "
        << (i < 3 ? "RuntimeOptions::state_dir" : "the worker home around it")
        << "): " << reads[i].dump();
  }
  // The CA certificate is there (trust), its key is not.
  EXPECT_THAT(str(reads[5], "content"), HasSubstr("BEGIN CERTIFICATE")) << reads[5].dump();
  EXPECT_THAT(str(reads[5], "content"), Not(HasSubstr("PRIVATE KEY")));
  json find = out.first("find");
  EXPECT_TRUE(find.value("found", std::vector<std::string>{}).empty()) << find.dump();
  RecordProperty("caps_" + GetParam(), out.first("caps").dump());
}

TEST_P(SandboxEscapeTest, NetnsCannotBeChanged) {
  std::vector<std::string> actions;
  // The interface inside has the name the network manager gave it (gVisor copies it).
  sandbox::net::SandboxNetwork network;
  for (const char* ip : {"/bin/busybox,ip", "/usr/sbin/ip"}) {
    actions.push_back(fmt::format("cmd,{},addr,add,10.99.0.5/32,dev,@IF@", ip));
    actions.push_back(fmt::format("cmd,{},route,add,10.98.0.0/16,dev,@IF@", ip));
    actions.push_back(fmt::format("cmd,{},route,del,default", ip));
    actions.push_back(fmt::format("cmd,{},link,set,@IF@,down", ip));
    actions.push_back(fmt::format("cmd,{},link,set,@IF@,mtu,1280", ip));
  }
  actions.push_back("cmd,/bin/busybox,ip,addr");
  actions.push_back("cmd,/bin/busybox,ip,route");
  actions.push_back("caps");
  actions.push_back("interfaces");
  actions.push_back(control());  // after all that, still the same working network
  ProbeOutput out = probe(actions, true, &network);
  auto cmds = out.all("cmd");
  ASSERT_EQ(cmds.size(), 12u) << out.output;
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_NE(cmds[i].value("exit", 0), 0) << "network change allowed: " << cmds[i].dump();
    EXPECT_THAT(str(cmds[i], "output"), Not(HasSubstr("No such device")))
        << "the probe named the wrong interface: " << cmds[i].dump();
  }
  EXPECT_THAT(str(cmds[10], "output"), Not(HasSubstr("10.99.0.5"))) << cmds[10].dump();
  EXPECT_THAT(str(cmds[11], "output"), Not(HasSubstr("10.98.0.0"))) << cmds[11].dump();
  expectControlWorked(out);
  RecordProperty("netadmin_caps_" + GetParam(), out.first("caps").dump());
}

TEST_P(SandboxEscapeTest, NothingSurvivesTheSandbox) {
  // (a) The init exits on its own after double-forking a daemon into a new session.
  std::string marker_a = "clrkdaemon" + randomHex(6);
  std::string id_a;
  {
    SandboxRun run(*runtime_, newId());
    id_a = run.id();
    ASSERT_TRUE(run.allocateNetwork().ok());
    ASSERT_TRUE(run.prepare({"/usr/bin/python3", "-c", suite->probe_text,
                             fmt::format("daemon,{},0", marker_a)})
                    .ok());
    ASSERT_TRUE(run.start().ok());
    auto out = run.finish(60s);
    ASSERT_TRUE(out.ok()) << out.status().toString();
    EXPECT_FALSE(out->first("daemon").value("running", std::vector<int>{}).empty())
        << "control: the daemon did not start: " << out->output;
    ASSERT_TRUE(run.destroy().ok());
    EXPECT_THAT(hostProcessesWith(marker_a), ::testing::IsEmpty()) << "daemon survived (a)";
    EXPECT_THAT(hostProcessesWith(id_a), ::testing::IsEmpty()) << "sandbox processes left (a)";
  }
  // (b) Destroyed while the init and its daemon still run.
  std::string marker_b = "clrkdaemon" + randomHex(6);
  std::string id_b;
  {
    SandboxRun run(*runtime_, newId());
    id_b = run.id();
    ASSERT_TRUE(run.allocateNetwork().ok());
    ASSERT_TRUE(run.prepare({"/usr/bin/python3", "-c", suite->probe_text,
                             fmt::format("daemon,{},1", marker_b)})
                    .ok());
    ASSERT_TRUE(run.start().ok());
    ASSERT_TRUE(run.waitForResult("daemon", 30s)) << run.snapshot().output;
    EXPECT_FALSE(run.snapshot().first("daemon").value("running", std::vector<int>{}).empty())
        << "control: the daemon did not start: " << run.snapshot().output;
    ASSERT_TRUE(run.destroy().ok());
    EXPECT_THAT(hostProcessesWith(marker_b), ::testing::IsEmpty()) << "daemon survived (b)";
    EXPECT_THAT(hostProcessesWith(id_b), ::testing::IsEmpty()) << "sandbox processes left (b)";
  }
  // No mount of either sandbox is left in the host's mount table.
  std::string mounts = readText("/proc/self/mountinfo");
  EXPECT_THAT(mounts, Not(HasSubstr(id_a)));
  EXPECT_THAT(mounts, Not(HasSubstr(id_b)));
}

INSTANTIATE_TEST_SUITE_P(Backends, SandboxEscapeTest, ::testing::Values("gvisor", "namespaces"),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           return param_info.param;
                         });

}  // namespace
}  // namespace clrk
