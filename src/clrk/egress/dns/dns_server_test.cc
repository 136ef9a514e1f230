#include "clrk/egress/dns/dns_test_util.h"
#include "clrk/egress/dns/message.h"
#include "clrk/egress/dns/server.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <stdexcept>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace clrk::egress::dns {
namespace {

namespace asio = boost::asio;
using testing::decode;
using testing::Decoded;
using ::testing::HasSubstr;
using testing::makeQuery;
using testing::QuerySpec;
using namespace std::chrono_literals;

// A UDP client socket on 127.0.0.1 with a receive timeout.
class UdpClient {
 public:
  UdpClient() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket");
  }
  ~UdpClient() { ::close(fd_); }
  UdpClient(const UdpClient&) = delete;
  UdpClient& operator=(const UdpClient&) = delete;

  void send(uint16_t port, const std::vector<uint8_t>& bytes) {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::sendto(fd_, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
  }
  std::optional<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return std::nullopt;
    std::vector<uint8_t> buffer(65536);
    ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
    if (n < 0) return std::nullopt;
    buffer.resize(static_cast<size_t>(n));
    return buffer;
  }
  std::optional<std::vector<uint8_t>> exchange(uint16_t port, const std::vector<uint8_t>& bytes,
                                               std::chrono::milliseconds timeout = 2000ms) {
    send(port, bytes);
    return receive(timeout);
  }

 private:
  int fd_ = -1;
};

// Runs `command`, returns its stdout (trimmed).
std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return "popen failed";
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out.append(buf, n);
  ::pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

class DnsServerTest : public ::testing::Test {
 protected:
  void SetUp() override { startServer(NameTable::Options{}); }

  void startServer(NameTable::Options table_options) {
    server_.reset();
    auto table = NameTable::create(std::move(table_options));
    ASSERT_TRUE(table.ok());
    table_ = std::move(table).value();
    DnsServer::Options options;
    options.ttl = 30s;
    options.on_query = [this](const QueryLog& entry) {
      std::lock_guard lock(mutex_);
      logs_.push_back(entry);
    };
    auto server = DnsServer::start(
        io_, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0), *table_,
        [this](const std::string& name, const std::string& client) {
          {
            std::lock_guard lock(mutex_);
            policy_calls_.push_back(name + "@" + client);
          }
          if (name == "boom.example") throw std::runtime_error("policy exploded");
          if (name == "refused.example") return Answer::kRefused;
          if (name == "api.openai.com" || name == "api.anthropic.com" || name.ends_with(".allowed"))
            return Answer::kSynthetic;
          return Answer::kNxDomain;
        },
        options);
    ASSERT_TRUE(server.ok()) << server.status().toString();
    server_ = std::move(server).value();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    if (!thread_.joinable()) thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    server_.reset();
    work_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

  Decoded ask(const QuerySpec& spec) {
    auto reply = client_.exchange(port_, makeQuery(spec));
    if (!reply) throw std::runtime_error("no reply for " + spec.name);
    auto d = decode(*reply);
    EXPECT_EQ(d.id, spec.id);
    return d;
  }
  Decoded ask(const std::string& name, uint16_t type = kTypeA) {
    QuerySpec spec;
    spec.name = name;
    spec.type = type;
    spec.id = next_id_++;
    return ask(spec);
  }
  std::vector<QueryLog> logs() {
    std::lock_guard lock(mutex_);
    return logs_;
  }
  std::vector<std::string> policyCalls() {
    std::lock_guard lock(mutex_);
    return policy_calls_;
  }

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(io_);
  std::thread thread_;
  std::unique_ptr<NameTable> table_;
  std::unique_ptr<DnsServer> server_;
  uint16_t port_ = 0;
  UdpClient client_;
  uint16_t next_id_ = 100;
  std::mutex mutex_;
  std::vector<QueryLog> logs_;
  std::vector<std::string> policy_calls_;
};

TEST_F(DnsServerTest, AnswersAllowedNameWithSyntheticAddressAndRemembersIt) {
  auto d = ask("API.OpenAI.com");
  EXPECT_EQ(d.rcode(), kRcodeNoError);
  EXPECT_TRUE(d.flags & kFlagQr);
  EXPECT_TRUE(d.flags & kFlagRa);
  EXPECT_EQ(d.qname, "API.OpenAI.com");
  ASSERT_EQ(d.answers.size(), 1u);
  EXPECT_EQ(d.answers[0].ttl, 30u);
  ASSERT_EQ(d.answers[0].rdata.size(), 4u);
  Ipv4 addr = {d.answers[0].rdata[0], d.answers[0].rdata[1], d.answers[0].rdata[2],
               d.answers[0].rdata[3]};
  EXPECT_TRUE(table_->inPool(addr));
  EXPECT_EQ(table_->nameFor(addr), "api.openai.com");
  // Same name, same address.
  auto again = ask("api.openai.com");
  ASSERT_EQ(again.answers.size(), 1u);
  EXPECT_EQ(again.answers[0].rdata, d.answers[0].rdata);

  auto entries = logs();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "api.openai.com");
  EXPECT_EQ(entries[0].type, kTypeA);
  EXPECT_EQ(entries[0].client_ip, "127.0.0.1");
  EXPECT_NE(entries[0].client_port, 0);
  EXPECT_EQ(entries[0].decision, Answer::kSynthetic);
  EXPECT_EQ(entries[0].rcode, kRcodeNoError);
  EXPECT_EQ(entries[0].answers, std::vector<std::string>{formatIpv4(addr)});
  EXPECT_THAT(policyCalls(), ::testing::Contains("api.openai.com@127.0.0.1"));
}

TEST_F(DnsServerTest, AaaaAndOtherTypesGetNoDataForAllowedNames) {
  for (uint16_t type : {kTypeAaaa, kTypeMx, kTypeTxt, kTypeHttps}) {
    auto d = ask("api.anthropic.com", type);
    EXPECT_EQ(d.rcode(), kRcodeNoError) << typeName(type);
    EXPECT_EQ(d.ancount, 0) << typeName(type);
    EXPECT_EQ(d.qtype, type);
  }
  EXPECT_EQ(table_->size(), 0u);  // no address allocated without an A query
}

TEST_F(DnsServerTest, DeniedNamesGetNxDomainOrRefusedForEveryType) {
  EXPECT_EQ(ask("evil.example").rcode(), kRcodeNxDomain);
  EXPECT_EQ(ask("evil.example", kTypeAaaa).rcode(), kRcodeNxDomain);
  EXPECT_EQ(ask("refused.example").rcode(), kRcodeRefused);
  EXPECT_EQ(ask("refused.example", kTypeAaaa).rcode(), kRcodeRefused);
  EXPECT_EQ(table_->size(), 0u);
  auto entries = logs();
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[0].decision, Answer::kNxDomain);
  EXPECT_EQ(entries[2].decision, Answer::kRefused);
}

TEST_F(DnsServerTest, ReverseLookups) {
  auto a = ask("x.allowed");
  ASSERT_EQ(a.answers.size(), 1u);
  const auto& ip = a.answers[0].rdata;
  std::string reverse = std::to_string(ip[3]) + "." + std::to_string(ip[2]) + "." +
                        std::to_string(ip[1]) + "." + std::to_string(ip[0]) + ".in-addr.arpa";
  auto ptr = ask(reverse, kTypePtr);
  EXPECT_EQ(ptr.rcode(), kRcodeNoError);
  ASSERT_EQ(ptr.answers.size(), 1u);
  EXPECT_EQ(ptr.answers[0].rdata_name, "x.allowed");

  EXPECT_EQ(ask("9.9.18.198.in-addr.arpa", kTypePtr).rcode(), kRcodeNxDomain);  // not handed out
  EXPECT_EQ(ask("8.8.8.8.in-addr.arpa", kTypePtr).rcode(), kRcodeNxDomain);
  EXPECT_EQ(ask("1.b.0.0.ip6.arpa", kTypePtr).rcode(), kRcodeNxDomain);
  auto lo = ask("1.0.0.127.in-addr.arpa", kTypePtr);
  ASSERT_EQ(lo.answers.size(), 1u);
  EXPECT_EQ(lo.answers[0].rdata_name, "localhost");
  // Reverse names never reach the policy.
  for (const auto& call : policyCalls()) EXPECT_THAT(call, ::testing::Not(HasSubstr("arpa")));
}

TEST_F(DnsServerTest, LocalhostIsLoopbackWithoutAskingThePolicy) {
  for (std::string name : {"localhost", "LOCALHOST", "db.localhost"}) {
    auto d = ask(name);
    EXPECT_EQ(d.rcode(), kRcodeNoError);
    ASSERT_EQ(d.answers.size(), 1u) << name;
    EXPECT_EQ(d.answers[0].rdata, (std::vector<uint8_t>{127, 0, 0, 1}));
    auto v6 = ask(name, kTypeAaaa);
    EXPECT_EQ(v6.rcode(), kRcodeNoError);
    EXPECT_EQ(v6.ancount, 0);
  }
  EXPECT_TRUE(policyCalls().empty());
}

TEST_F(DnsServerTest, EdnsIsEchoedAndUnknownVersionsGetBadVers) {
  QuerySpec spec;
  spec.name = "api.openai.com";
  spec.edns = true;
  spec.edns_size = 1232;
  auto d = ask(spec);
  EXPECT_EQ(d.rcode(), kRcodeNoError);
  ASSERT_EQ(d.additional.size(), 1u);
  EXPECT_EQ(d.additional[0].type, kTypeOpt);
  EXPECT_EQ(d.answers.size(), 1u);

  spec.edns_version = 1;
  auto bad = ask(spec);
  ASSERT_EQ(bad.additional.size(), 1u);
  EXPECT_EQ(((bad.additional[0].ttl >> 24) << 4) | bad.rcode(), kRcodeBadVers);
  EXPECT_EQ(bad.ancount, 0);
}

TEST_F(DnsServerTest, NonInternetClassesAreRefused) {
  QuerySpec spec;
  spec.name = "version.bind";
  spec.type = kTypeTxt;
  spec.klass = 3;  // CH
  EXPECT_EQ(ask(spec).rcode(), kRcodeRefused);
  EXPECT_EQ(ask("", kTypeNs).rcode(), kRcodeRefused);  // the root
}

TEST_F(DnsServerTest, MalformedAndUnsupportedPackets) {
  // Two questions: FORMERR, logged with the parse error.
  auto bad = makeQuery(QuerySpec{});
  bad[5] = 2;
  auto formerr = client_.exchange(port_, bad);
  ASSERT_TRUE(formerr);
  auto d = decode(*formerr);
  EXPECT_EQ(d.rcode(), kRcodeFormErr);
  EXPECT_EQ(d.id, 0x1234);
  // Compression loop.
  std::vector<uint8_t> loop = {0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1};
  auto loop_reply = client_.exchange(port_, loop);
  ASSERT_TRUE(loop_reply);
  EXPECT_EQ(decode(*loop_reply).rcode(), kRcodeFormErr);
  // Opcode NOTIFY (4): NOTIMP.
  QuerySpec notify;
  notify.flags = 4 << 11;
  auto notimp = client_.exchange(port_, makeQuery(notify));
  ASSERT_TRUE(notimp);
  EXPECT_EQ(decode(*notimp).rcode(), kRcodeNotImp);
  EXPECT_EQ(opcodeOf(decode(*notimp).flags), 4);
  // Too short, or a response: silently dropped.
  EXPECT_FALSE(client_.exchange(port_, {1, 2, 3}, 200ms));
  auto response = makeQuery(QuerySpec{});
  response[2] |= 0x80;
  EXPECT_FALSE(client_.exchange(port_, response, 200ms));
  // Still serving.
  EXPECT_EQ(ask("api.openai.com").answers.size(), 1u);

  auto entries = logs();
  ASSERT_GE(entries.size(), 3u);
  EXPECT_EQ(entries[0].rcode, kRcodeFormErr);
  EXPECT_THAT(entries[0].error, HasSubstr("QDCOUNT at offset 4 is 2"));
  EXPECT_THAT(entries[1].error, HasSubstr("compression pointer at offset 12"));
  EXPECT_EQ(entries[2].rcode, kRcodeNotImp);
}

TEST_F(DnsServerTest, PolicyExceptionIsServFail) {
  EXPECT_EQ(ask("boom.example").rcode(), kRcodeServFail);
  auto entries = logs();
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_THAT(entries[0].error, HasSubstr("policy exploded"));
  EXPECT_EQ(ask("api.openai.com").rcode(), kRcodeNoError);
}

TEST_F(DnsServerTest, FullTableIsServFail) {
  NameTable::Options options;
  options.cidr = "10.9.0.0/24";
  options.capacity = 2;
  options.min_reuse_age = 1h;
  startServer(options);
  EXPECT_EQ(ask("a.allowed").rcode(), kRcodeNoError);
  EXPECT_EQ(ask("b.allowed").rcode(), kRcodeNoError);
  EXPECT_EQ(ask("c.allowed").rcode(), kRcodeServFail);
  EXPECT_EQ(ask("a.allowed").rcode(), kRcodeNoError);  // known names still answered
  EXPECT_EQ(table_->nameFor("10.9.0.1"), "a.allowed");
}

TEST_F(DnsServerTest, SurvivesRandomGarbage) {
  std::mt19937 rng(12345);
  auto valid = makeQuery(QuerySpec{});
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> packet;
    if (i % 2 == 0) {
      packet.resize(rng() % 80);
      for (auto& b : packet) b = static_cast<uint8_t>(rng());
    } else {
      packet = valid;  // mutate a valid query
      for (int k = 0; k < 3; ++k) packet[rng() % packet.size()] = static_cast<uint8_t>(rng());
      packet.resize(rng() % (packet.size() + 1));
    }
    client_.send(port_, packet);
    if (i % 64 == 0) {
      while (client_.receive(1ms)) {
      }
    }
  }
  while (client_.receive(50ms)) {
  }
  EXPECT_EQ(ask("api.openai.com").rcode(), kRcodeNoError);
}

TEST_F(DnsServerTest, StopClosesTheSocketAndBindConflictsAreErrors) {
  // Another server on the same port fails cleanly.
  auto clash = DnsServer::start(
      io_, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), port_), *table_,
      [](const std::string&, const std::string&) { return Answer::kSynthetic; });
  ASSERT_FALSE(clash.ok());
  EXPECT_EQ(clash.status().code(), Code::Unavailable);
  EXPECT_THAT(clash.status().message(), HasSubstr("bind 127.0.0.1:" + std::to_string(port_)));
  auto no_policy = DnsServer::start(
      io_, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0), *table_, nullptr);
  EXPECT_FALSE(no_policy.ok());

  EXPECT_EQ(ask("api.openai.com").rcode(), kRcodeNoError);
  server_->stop();
  server_->stop();  // idempotent
  EXPECT_FALSE(client_.exchange(port_, makeQuery(QuerySpec{}), 200ms));
}

TEST_F(DnsServerTest, StopWhileFloodedFromAnotherThreadIsSafe) {
  std::atomic<bool> done{false};
  std::thread flooder([&] {
    UdpClient c;
    QuerySpec spec;
    spec.name = "x.allowed";
    auto q = makeQuery(spec);
    while (!done) c.send(port_, q);
  });
  std::this_thread::sleep_for(50ms);
  server_->stop();
  server_.reset();  // handlers still queued must not touch freed memory
  std::this_thread::sleep_for(20ms);
  done = true;
  flooder.join();
  auto count = logs().size();
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(logs().size(), count);  // nothing handled after stop
  EXPECT_GT(count, 0u);
}

TEST(DnsServerNoFixture, AnswersWithSeveralIoThreads) {
  asio::io_context io;
  NameTable table;
  auto server =
      DnsServer::start(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0), table,
                       [](const std::string&, const std::string&) { return Answer::kSynthetic; });
  ASSERT_TRUE(server.ok());
  const uint16_t port = (*server)->port();
  std::vector<std::thread> io_threads;
  for (int i = 0; i < 3; ++i) io_threads.emplace_back([&] { io.run(); });
  std::vector<std::thread> clients;
  std::atomic<int> answered{0};
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      UdpClient c;
      for (int i = 0; i < 50; ++i) {
        QuerySpec spec;
        spec.name = "h" + std::to_string(i % 10) + ".t" + std::to_string(t);
        spec.id = static_cast<uint16_t>(t * 1000 + i);
        auto reply = c.exchange(port, makeQuery(spec));
        if (reply && decode(*reply).answers.size() == 1) ++answered;
      }
    });
  }
  for (auto& c : clients) c.join();
  EXPECT_EQ(answered.load(), 200);
  EXPECT_EQ(table.size(), 40u);
  (*server)->stop();
  for (auto& t : io_threads) t.join();  // run() returns: no work left once the socket is closed
}

// --- Real clients ---

TEST_F(DnsServerTest, PythonSocketClient) {
  const char* python = "/usr/bin/python3";
  if (!std::filesystem::exists(python)) GTEST_SKIP() << "no " << python;
  // Builds the query bytes itself and decodes the A record from the answer section.
  std::string script = R"PY(
import socket, struct, sys
port = int(sys.argv[1])
def q(name, qtype):
    body = b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0'
    return struct.pack('>HHHHHH', 0x7777, 0x0100, 1, 0, 0, 0) + body + struct.pack('>HH', qtype, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
out = []
for name, qtype in (('api.openai.com', 1), ('denied.example', 1)):
    s.sendto(q(name, qtype), ('127.0.0.1', port))
    data, _ = s.recvfrom(4096)
    ident, flags, qd, an, ns, ar = struct.unpack('>HHHHHH', data[:12])
    pos = 12
    while data[pos] != 0:
        pos += data[pos] + 1
    pos += 5
    ips = []
    for _ in range(an):
        if data[pos] & 0xC0 == 0xC0:
            pos += 2
        t, c, ttl, rdlen = struct.unpack('>HHIH', data[pos:pos + 10])
        pos += 10
        if t == 1:
            ips.append('.'.join(str(b) for b in data[pos:pos + rdlen]))
        pos += rdlen
    out.append('%s rcode=%d %s' % (name, flags & 0xF, ','.join(ips)))
print(';'.join(out))
)PY";
  std::string path = ::testing::TempDir() + "dns_client.py";
  FILE* f = std::fopen(path.c_str(), "w");
  ASSERT_TRUE(f);
  std::fwrite(script.data(), 1, script.size(), f);
  std::fclose(f);
  std::string out = run(std::string(python) + " " + path + " " + std::to_string(port_) + " 2>&1");
  auto addr = table_->addressFor("api.openai.com");
  ASSERT_TRUE(addr.ok());
  EXPECT_EQ(out, "api.openai.com rcode=0 " + formatIpv4(*addr) + ";denied.example rcode=3 ");
}

TEST_F(DnsServerTest, NodeResolverClient) {
  const char* node = "/usr/bin/node";
  if (!std::filesystem::exists(node)) GTEST_SKIP() << "no " << node;
  // c-ares (Node's resolver) against the server: A, AAAA (no data), denied name, reverse.
  std::string script =
      "const dns=require('dns');const r=new dns.Resolver({timeout:2000,tries:1});"
      "r.setServers(['127.0.0.1:" +
      std::to_string(port_) +
      "']);"
      "const p=(f,...a)=>new "
      "Promise(ok=>f.call(r,...a,(e,v)=>ok(e?e.code:[].concat(v).join(','))));"
      "(async()=>{const a=await p(r.resolve4,'api.openai.com');"
      "const six=await p(r.resolve6,'api.openai.com');"
      "const no=await p(r.resolve4,'evil.example');"
      "const rev=await p(r.reverse,a);"
      "console.log([a,six,no,rev].join(' '));})();";
  std::string out = run(std::string(node) + " -e \"" + script + "\" 2>&1");
  auto addr = table_->addressFor("api.openai.com");
  ASSERT_TRUE(addr.ok());
  EXPECT_EQ(out, formatIpv4(*addr) + " ENODATA ENOTFOUND api.openai.com");
}

}  // namespace
}  // namespace clrk::egress::dns
