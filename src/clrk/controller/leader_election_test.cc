#include "clrk/controller/leader_election.h"

#include "clrk/apiserver/server.h"
#include "clrk/base/time.h"
#include "clrk/base/unique_fd.h"

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <poll.h>
#include <string>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace clrk::controller {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using api::Json;

constexpr std::string_view kNamespace = "default";
constexpr std::string_view kLeaseName = "controller-manager";
// A bound on waiting for what should happen within a few retry periods; never a timing check.
constexpr auto kPatience = 30s;

const api::ResourceType& leaseType() {
  return *api::Registry::builtin().byKind("coordination.k8s.io/v1", "Lease");
}

// Polls `condition` every 10ms until it holds or kPatience has passed; returns its last value.
template <typename Condition>
bool eventually(Condition condition) {
  auto give_up = std::chrono::steady_clock::now() + kPatience;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > give_up) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// What the callbacks saw, readable from the test thread.
struct Recorder {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::mutex mutex;
  std::vector<std::string> leaders;

  LeaderElector::Callbacks callbacks() {
    return {.on_started_leading = [this] { ++started; },
            .on_stopped_leading = [this] { ++stopped; },
            .on_new_leader =
                [this](const std::string& identity) {
                  std::lock_guard lock(mutex);
                  leaders.push_back(identity);
                }};
  }
  std::vector<std::string> newLeaders() {
    std::lock_guard lock(mutex);
    return leaders;
  }
};

// A TCP relay to the API server that can stop relaying: once frozen it accepts connections and
// keeps them open but forwards nothing, like an API server that hangs.
class FreezableProxy {
 public:
  explicit FreezableProxy(uint16_t upstream_port) : upstream_port_(upstream_port) {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr = loopback(0);
    socklen_t len = sizeof(addr);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listener_.get(), 16) != 0 ||
        ::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "proxy listener: " << std::strerror(errno);
    }
    port_ = ntohs(addr.sin_port);
    threads_.emplace_back([this] { acceptLoop(); });
  }
  ~FreezableProxy() {
    stopping_ = true;
    for (auto& thread : threads_) thread.join();
  }
  uint16_t port() const { return port_; }
  void freeze() { frozen_ = true; }

 private:
  static sockaddr_in loopback(uint16_t port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }
  // Waits up to 20ms for `fd` to be readable.
  static bool readable(int fd) {
    pollfd entry{fd, POLLIN, 0};
    return ::poll(&entry, 1, 20) > 0;
  }
  void acceptLoop() {
    while (!stopping_) {
      if (!readable(listener_.get())) continue;
      auto client =
          std::make_shared<UniqueFd>(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      auto server = std::make_shared<UniqueFd>(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in addr = loopback(upstream_port_);
      if (!client->valid() ||
          ::connect(server->get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        continue;
      }
      threads_.emplace_back([this, client, server] { relay(client->get(), server->get()); });
      threads_.emplace_back([this, client, server] { relay(server->get(), client->get()); });
    }
  }
  void relay(int from, int to) {
    char buffer[16384];
    while (!stopping_) {
      if (frozen_ || !readable(from)) {
        if (frozen_) std::this_thread::sleep_for(20ms);
        continue;
      }
      ssize_t got = ::read(from, buffer, sizeof(buffer));
      if (got <= 0 || ::send(to, buffer, static_cast<size_t>(got), MSG_NOSIGNAL) != got) break;
    }
    ::shutdown(to, SHUT_WR);
  }

  uint16_t upstream_port_;
  uint16_t port_ = 0;
  UniqueFd listener_;
  std::atomic<bool> frozen_{false};
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> threads_;  // only the accept thread adds, before the destructor joins
};

class LeaderElectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "clrk-leader-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    server_ = apiserver::makeServer({.state_dir = dir_, .in_memory = true});
    Status started = server_->start();
    ASSERT_TRUE(started.ok()) << started.toString();
    client_ = newClient();
    ASSERT_NE(client_, nullptr);
  }

  void TearDown() override {
    candidates_.clear();  // stops the electors while the server still runs
    if (server_) server_->stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A client of the API server, or of whatever listens on `port` with the server's certificate.
  kube::ClientPtr newClient(uint16_t port = 0) {
    kube::RestConfig config;
    config.server = port == 0 ? server_->url() : "https://127.0.0.1:" + std::to_string(port);
    config.ca_pem = server_->caCertificatePem();
    config.token = server_->token();
    auto client = kube::Client::create(config);
    EXPECT_TRUE(client.ok()) << client.status().toString();
    return client.ok() ? client.value() : nullptr;
  }

  static LeaderElector::Options options(std::string identity) {
    return {.namespace_name = std::string(kNamespace),
            .lease_name = std::string(kLeaseName),
            .identity = std::move(identity),
            .lease_duration = 2s,
            .renew_deadline = 1500ms,
            .retry_period = 200ms};
  }

  // An elector with its own client and the recorder of its callbacks; the fixture owns both.
  struct Candidate {
    Recorder recorder;
    std::unique_ptr<LeaderElector> elector;  // destroyed (stopped) before its recorder
  };
  Candidate& startCandidate(const std::string& identity, kube::ClientPtr client = nullptr) {
    auto candidate = std::make_unique<Candidate>();
    candidate->elector =
        std::make_unique<LeaderElector>(client ? std::move(client) : newClient(), options(identity),
                                        candidate->recorder.callbacks());
    Status started = candidate->elector->start();
    EXPECT_TRUE(started.ok()) << started.toString();
    candidates_.push_back(std::move(candidate));
    return *candidates_.back();
  }

  Json lease() {
    auto lease = client_->get(leaseType(), kNamespace, kLeaseName);
    EXPECT_TRUE(lease.ok()) << lease.status().toString();
    return lease.ok() ? lease.value()["spec"] : Json::object();
  }

  void putLease(const std::string& holder, SystemTime renewed, int duration_seconds,
                int transitions) {
    Json object = {{"apiVersion", "coordination.k8s.io/v1"},
                   {"kind", "Lease"},
                   {"metadata", {{"name", kLeaseName}, {"namespace", kNamespace}}},
                   {"spec",
                    {{"holderIdentity", holder},
                     {"leaseDurationSeconds", duration_seconds},
                     {"acquireTime", formatRfc3339Micro(renewed)},
                     {"renewTime", formatRfc3339Micro(renewed)},
                     {"leaseTransitions", transitions}}}};
    auto created = client_->create(leaseType(), kNamespace, object);
    ASSERT_TRUE(created.ok()) << created.status().toString();
  }

  // Another writer takes the Lease for an hour (retrying when a renewal wins the race).
  void takeLeaseAs(const std::string& holder) {
    ASSERT_TRUE(eventually([&] {
      auto current = client_->get(leaseType(), kNamespace, kLeaseName);
      if (!current.ok()) return false;
      Json lease = current.value();
      lease["spec"]["holderIdentity"] = holder;
      lease["spec"]["leaseDurationSeconds"] = 3600;
      lease["spec"]["renewTime"] = formatRfc3339Micro(std::chrono::system_clock::now());
      return client_->update(leaseType(), lease).ok();
    }));
  }

  fs::path dir_;
  apiserver::ServerPtr server_;
  kube::ClientPtr client_;
  std::vector<std::unique_ptr<Candidate>> candidates_;
};

TEST_F(LeaderElectionTest, SingleElectorBecomesLeaderAndRenews) {
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  EXPECT_EQ(recorder.started, 1);
  EXPECT_EQ(recorder.stopped, 0);
  EXPECT_EQ(recorder.newLeaders(), std::vector<std::string>{"a"});

  Json spec = lease();
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_EQ(spec["leaseDurationSeconds"], 2);
  EXPECT_EQ(spec["leaseTransitions"], 0);
  ASSERT_TRUE(spec["acquireTime"].is_string());
  EXPECT_TRUE(parseRfc3339(spec["acquireTime"].get<std::string>()).has_value());
  std::string first_renewal = spec["renewTime"];
  ASSERT_TRUE(eventually([&] { return lease()["renewTime"] != first_renewal; }));
  spec = lease();
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_EQ(spec["leaseTransitions"], 0);  // renewing is not a transition
  EXPECT_TRUE(elector.isLeader());
  EXPECT_EQ(recorder.started, 1);
}

TEST_F(LeaderElectionTest, StopReleasesTheLease) {
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  elector.stop();
  EXPECT_FALSE(elector.isLeader());
  EXPECT_EQ(recorder.stopped, 1);
  Json spec = lease();
  EXPECT_EQ(spec["holderIdentity"], "");
  EXPECT_EQ(spec["leaseDurationSeconds"], 1);
  elector.stop();  // idempotent
  EXPECT_EQ(recorder.stopped, 1);
}

TEST_F(LeaderElectionTest, TwoElectorsExactlyOneLeadsThenTheOtherTakesOver) {
  Candidate& candidate_a = startCandidate("a");
  Candidate& candidate_b = startCandidate("b");
  Recorder& recorder_a = candidate_a.recorder;
  Recorder& recorder_b = candidate_b.recorder;
  LeaderElector& a = *candidate_a.elector;
  LeaderElector& b = *candidate_b.elector;
  ASSERT_TRUE(eventually([&] { return a.isLeader() || b.isLeader(); }));
  // Over several retry periods, never both.
  for (int sample_idx = 0; sample_idx < 150; ++sample_idx) {
    ASSERT_FALSE(a.isLeader() && b.isLeader());
    std::this_thread::sleep_for(10ms);
  }
  LeaderElector& leader = a.isLeader() ? a : b;
  LeaderElector& follower = a.isLeader() ? b : a;
  Recorder& leader_recorder = a.isLeader() ? recorder_a : recorder_b;
  Recorder& follower_recorder = a.isLeader() ? recorder_b : recorder_a;
  const std::string leader_name = a.isLeader() ? "a" : "b";
  const std::string follower_name = a.isLeader() ? "b" : "a";
  EXPECT_TRUE(leader.isLeader());
  EXPECT_EQ(lease()["holderIdentity"], leader_name);
  EXPECT_EQ(leader_recorder.started, 1);
  EXPECT_EQ(follower_recorder.started, 0);
  // The follower learned who leads.
  ASSERT_TRUE(eventually([&] { return !follower_recorder.newLeaders().empty(); }));
  EXPECT_EQ(follower_recorder.newLeaders(), std::vector<std::string>{leader_name});

  leader.stop();
  EXPECT_EQ(leader_recorder.stopped, 1);
  ASSERT_TRUE(eventually([&] { return follower.isLeader(); }));
  Json spec = lease();
  EXPECT_EQ(spec["holderIdentity"], follower_name);
  EXPECT_EQ(spec["leaseTransitions"], 1);
  EXPECT_EQ(follower_recorder.started, 1);
  EXPECT_EQ(follower_recorder.newLeaders(), (std::vector<std::string>{leader_name, follower_name}));
}

TEST_F(LeaderElectionTest, TransitionsAreCounted) {
  LeaderElector& a = *startCandidate("a").elector;
  ASSERT_TRUE(eventually([&] { return a.isLeader(); }));
  EXPECT_EQ(lease()["leaseTransitions"], 0);
  a.stop();

  LeaderElector& b = *startCandidate("b").elector;
  ASSERT_TRUE(eventually([&] { return b.isLeader(); }));
  EXPECT_EQ(lease()["leaseTransitions"], 1);
  std::string acquired_by_b = lease()["acquireTime"];
  b.stop();

  LeaderElector& a_again = *startCandidate("a").elector;
  ASSERT_TRUE(eventually([&] { return a_again.isLeader(); }));
  Json spec = lease();
  EXPECT_EQ(spec["leaseTransitions"], 2);
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_NE(spec["acquireTime"], acquired_by_b);
}

TEST_F(LeaderElectionTest, ExpiredLeaseIsTakenOver) {
  // "ghost" renewed a minute ago with a 2s lease and is gone.
  putLease("ghost", std::chrono::system_clock::now() - 60s, 2, 4);
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  Json spec = lease();
  EXPECT_EQ(spec["holderIdentity"], "a");
  EXPECT_EQ(spec["leaseTransitions"], 5);
  EXPECT_EQ(spec["leaseDurationSeconds"], 2);
  EXPECT_EQ(recorder.newLeaders(), (std::vector<std::string>{"ghost", "a"}));
}

TEST_F(LeaderElectionTest, ValidLeaseOfAnotherHolderIsLeftAlone) {
  putLease("other", std::chrono::system_clock::now(), 3600, 0);
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return !recorder.newLeaders().empty(); }));
  EXPECT_EQ(recorder.newLeaders(), std::vector<std::string>{"other"});
  // Several retry periods later it still has not taken the Lease.
  std::this_thread::sleep_for(1s);
  EXPECT_FALSE(elector.isLeader());
  EXPECT_EQ(recorder.started, 0);
  EXPECT_EQ(lease()["holderIdentity"], "other");
  elector.stop();
  EXPECT_EQ(recorder.stopped, 0);  // never led: nothing to stop, nothing released
  EXPECT_EQ(lease()["holderIdentity"], "other");
}

TEST_F(LeaderElectionTest, OwnLeaseIsResumedWithoutATransition) {
  // A previous run of "a" (e.g. before a restart) holds a still-valid Lease.
  putLease("a", std::chrono::system_clock::now(), 3600, 3);
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  EXPECT_EQ(lease()["leaseTransitions"], 3);
  EXPECT_EQ(recorder.newLeaders(), std::vector<std::string>{"a"});
}

TEST_F(LeaderElectionTest, LeaderStepsDownWhenTheLeaseNamesSomeoneElse) {
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  takeLeaseAs("intruder");
  ASSERT_TRUE(eventually([&] { return recorder.stopped.load() == 1; }));
  EXPECT_FALSE(elector.isLeader());
  EXPECT_EQ(recorder.newLeaders(), (std::vector<std::string>{"a", "intruder"}));
  EXPECT_EQ(lease()["holderIdentity"], "intruder");
}

TEST_F(LeaderElectionTest, StopFromACallbackEndsTheElection) {
  std::atomic<int> started{0};
  std::atomic<int> stopped{0};
  std::unique_ptr<LeaderElector> elector;
  LeaderElector::Callbacks callbacks{.on_started_leading = [&] { ++started; },
                                     .on_stopped_leading =
                                         [&] {
                                           ++stopped;
                                           elector->stop();
                                           // Leave a free Lease behind: an elector that kept going
                                           // would take it at once.
                                           (void)client_->remove(leaseType(), kNamespace,
                                                                 kLeaseName);
                                         },
                                     .on_new_leader = {}};
  elector = std::make_unique<LeaderElector>(newClient(), options("a"), callbacks);
  ASSERT_TRUE(elector->start().ok());
  ASSERT_TRUE(eventually([&] { return elector->isLeader(); }));
  takeLeaseAs("intruder");
  ASSERT_TRUE(eventually([&] { return stopped.load() == 1; }));
  elector->stop();  // joins the thread
  EXPECT_EQ(started, 1);
  EXPECT_EQ(stopped, 1);
  EXPECT_FALSE(elector->isLeader());
  EXPECT_EQ(client_->get(leaseType(), kNamespace, kLeaseName).status().code(), Code::NotFound);
}

TEST_F(LeaderElectionTest, LeaderGivesUpWhenTheApiServerIsGone) {
  Candidate& candidate = startCandidate("a");
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  server_->stop();
  ASSERT_TRUE(eventually([&] { return recorder.stopped.load() == 1; }));
  EXPECT_FALSE(elector.isLeader());
  EXPECT_EQ(recorder.started, 1);
  elector.stop();  // the release fails (no server) without hanging
  EXPECT_EQ(recorder.stopped, 1);
}

TEST_F(LeaderElectionTest, LeaderGivesUpWhenTheApiServerHangs) {
  FreezableProxy proxy(server_->port());
  kube::ClientPtr client = newClient(proxy.port());
  // Without the elector's own deadline a hung call would wait for this.
  client->setTimeout(std::chrono::minutes(10));
  Candidate& candidate = startCandidate("a", client);
  Recorder& recorder = candidate.recorder;
  LeaderElector& elector = *candidate.elector;
  ASSERT_TRUE(eventually([&] { return elector.isLeader(); }));
  proxy.freeze();
  ASSERT_TRUE(eventually([&] { return recorder.stopped.load() == 1; }));
  EXPECT_FALSE(elector.isLeader());
  elector.stop();  // its calls are bounded too: this returns without waiting for the proxy
  EXPECT_EQ(recorder.stopped, 1);
}

TEST_F(LeaderElectionTest, OptionsAreChecked) {
  auto start = [&](LeaderElector::Options options) {
    LeaderElector elector(client_, std::move(options), {});
    return elector.start();
  };
  auto no_identity = options("");
  EXPECT_EQ(start(no_identity).code(), Code::InvalidArgument);
  auto short_lease = options("a");
  short_lease.lease_duration = 1s;  // renew_deadline 1500ms is longer
  EXPECT_EQ(start(short_lease).message(),
            "leader election: need 0 < retry_period < renew_deadline < lease_duration");
  auto slow_retry = options("a");
  slow_retry.retry_period = 2s;
  EXPECT_EQ(start(slow_retry).code(), Code::InvalidArgument);
  auto zero_lease = options("a");
  zero_lease.lease_duration = 0s;
  EXPECT_EQ(start(zero_lease).message(),
            "leader election: lease_duration must be from 1s to 2147483647s");

  LeaderElector elector(client_, options("a"), {});
  ASSERT_TRUE(elector.start().ok());
  EXPECT_EQ(elector.start().message(), "leader election: start() after start() or stop()");
  LeaderElector stopped(client_, options("b"), {});
  stopped.stop();
  EXPECT_EQ(stopped.start().code(), Code::InvalidArgument);
}

}  // namespace
}  // namespace clrk::controller
