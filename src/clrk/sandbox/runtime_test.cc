// Conformance tests of the Runtime contract, run against every backend installed here (as root).
#include "clrk/sandbox/runtime.h"

#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/sandbox/cgroups.h"
#include "clrk/sandbox/sandbox_util.h"
#include "clrk/sandbox/supervised_sandbox.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <netinet/in.h>
#include <regex>
#include <signal.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

const char kFakeCa[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBclrkTESTCAnotARealCertificateButPlacedVerbatim0123456789abcdef\n"
    "-----END CERTIFICATE-----\n";

int sh(const std::string& command) { return std::system(command.c_str()); }

// Collects on_log lines.
struct Lines {
  std::mutex mu;
  std::vector<LogLine> lines;
  std::function<void(const LogLine&)> sink() {
    return [this](const LogLine& line) {
      std::lock_guard lock(mu);
      lines.push_back(line);
    };
  }
  std::string text(bool is_stderr) {
    std::lock_guard lock(mu);
    std::string out;
    for (const auto& line : lines) {
      if (line.is_stderr == is_stderr) out += line.text + "\n";
    }
    return out;
  }
};

// Alive and not a zombie.
bool processAlive(int pid) { return processRunning(pid); }

// Host processes whose command line contains `needle`.
int countProcesses(const std::string& needle) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = readFile(entry.path() / "cmdline");
    if (!cmdline.ok()) continue;
    std::string text = *cmdline;
    std::replace(text.begin(), text.end(), '\0', ' ');
    if (text.find(needle) != std::string::npos) ++count;
  }
  return count;
}

class RuntimeTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    tag_ = randomHex(3);
    state_root_ = fs::temp_directory_path() / ("clrk-rt-test-" + tag_);
    cgroup_parent_ = "clrk-rt-test-" + tag_;
  }
  static void TearDownTestSuite() {
    (void)removeCgroupEverywhere(cgroup_parent_);
    std::error_code ec;
    fs::remove_all(state_root_, ec);
  }

  void SetUp() override {
    RuntimeOptions options;
    options.state_dir = state_root_ / GetParam();
    options.cgroup_parent = cgroup_parent_;
    auto runtime = makeRuntime(GetParam(), options);
    if (!runtime.ok()) GTEST_SKIP() << runtime.status().toString();
    runtime_ = std::move(*runtime);
  }

  SandboxSpec spec(std::vector<std::string> argv) {
    SandboxSpec result;
    result.id = "t-" + randomHex(6);
    result.argv = std::move(argv);
    result.on_log = lines_.sink();
    return result;
  }

  ExitStatus run(const SandboxSpec& spec) {
    auto sandbox = runtime_->prepare(spec);
    EXPECT_TRUE(sandbox.ok()) << sandbox.status().toString();
    if (!sandbox.ok()) return {};
    EXPECT_TRUE((*sandbox)->start().ok());
    auto exit = (*sandbox)->wait(30s);
    EXPECT_TRUE(exit.ok()) << exit.status().toString();
    EXPECT_TRUE((*sandbox)->destroy().ok());
    return exit.ok() ? *exit : ExitStatus{};
  }

  bool isGvisor() const { return GetParam() == "gvisor"; }

  static std::string tag_;
  static fs::path state_root_;
  static std::string cgroup_parent_;
  std::unique_ptr<Runtime> runtime_;
  Lines lines_;
};

std::string RuntimeTest::tag_;
fs::path RuntimeTest::state_root_;
std::string RuntimeTest::cgroup_parent_;

TEST_P(RuntimeTest, TrueExitsZero) {
  auto exit = run(spec({"true"}));
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_EQ(exit.signal, 0);
  EXPECT_FALSE(exit.timed_out);
  EXPECT_EQ(exit.message, "exited 0");
  EXPECT_LE(exit.started_at, exit.finished_at);
}

TEST_P(RuntimeTest, ExitCodeIsReported) {
  auto exit = run(spec({"sh", "-c", "exit 3"}));
  EXPECT_EQ(exit.exit_code, 3);
  EXPECT_EQ(exit.signal, 0);
}

TEST_P(RuntimeTest, MissingBinaryFails) {
  // namespaces: the process exits 126/127 with a message on stderr; gvisor: start() fails.
  auto sandbox = runtime_->prepare(spec({"/no/such/binary"}));
  ASSERT_TRUE(sandbox.ok());
  Status started = (*sandbox)->start();
  if (started.ok()) {
    auto exit = (*sandbox)->wait(30s);
    ASSERT_TRUE(exit.ok());
    EXPECT_NE(exit->exit_code, 0);
    EXPECT_THAT(lines_.text(true), HasSubstr("/no/such/binary"));
  } else {
    EXPECT_THAT(started.message(), HasSubstr("/no/such/binary"));
  }
  EXPECT_TRUE((*sandbox)->destroy().ok());
}

TEST_P(RuntimeTest, OutputIsCapturedWithTimestamps) {
  auto before = std::chrono::system_clock::now();
  auto s = spec({"sh", "-c", "echo out1; echo err1 >&2; echo out2; printf partial"});
  auto sandbox = runtime_->prepare(s);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().toString();
  ASSERT_TRUE((*sandbox)->start().ok());
  auto exit = (*sandbox)->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(lines_.text(false), "out1\nout2\npartial\n");
  EXPECT_EQ(lines_.text(true), "err1\n");
  for (const auto& line : lines_.lines) {
    EXPECT_GE(line.time, before);
    EXPECT_LE(line.time, std::chrono::system_clock::now());
  }
  auto log = readFile((*sandbox)->logPath());
  ASSERT_TRUE(log.ok());
  EXPECT_TRUE(std::regex_search(
      *log, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z stdout out1\n)")))
      << *log;
  EXPECT_THAT(*log, HasSubstr(" stderr err1\n"));
  EXPECT_TRUE((*sandbox)->destroy().ok());
  EXPECT_FALSE(fs::exists((*sandbox)->logPath()));
}

TEST_P(RuntimeTest, LogFileIsRotated) {
  auto s = spec({"sh", "-c", "i=0; while [ $i -lt 200 ]; do echo line-$i; i=$((i+1)); done"});
  s.log_max_bytes = 2000;
  auto sandbox = runtime_->prepare(s);
  ASSERT_TRUE(sandbox.ok());
  ASSERT_TRUE((*sandbox)->start().ok());
  ASSERT_TRUE((*sandbox)->wait(30s).ok());
  fs::path log = (*sandbox)->logPath();
  fs::path old = log;
  old += ".1";
  EXPECT_LE(fs::file_size(log), 2000u);
  EXPECT_LE(fs::file_size(old), 2000u);
  EXPECT_THAT(*readFile(log), HasSubstr("stdout line-199\n"));
  EXPECT_EQ(lines_.lines.size(), 200u);
}

TEST_P(RuntimeTest, StdinIsDelivered) {
  auto s = spec({"sh", "-c", "cat; echo done"});
  s.stdin_data = std::string("hello\nworld\n");
  auto exit = run(s);
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_EQ(lines_.text(false), "hello\nworld\ndone\n");
}

TEST_P(RuntimeTest, TimeoutKillsTheTree) {
  auto s = spec({"sh", "-c", "sleep 100 & sleep 100"});
  s.timeout = 400ms;
  auto started = std::chrono::steady_clock::now();
  auto exit = run(s);
  auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(exit.timed_out);
  EXPECT_EQ(exit.signal, SIGKILL);
  EXPECT_THAT(exit.message, HasSubstr("timeout"));
  EXPECT_LT(elapsed, 400ms + 3s);
}

TEST_P(RuntimeTest, WaitWithTimeoutLeavesItRunning) {
  auto sandbox = runtime_->prepare(spec({"sleep", "100"}));
  ASSERT_TRUE(sandbox.ok());
  EXPECT_FALSE((*sandbox)->wait(10ms).ok());  // not started
  ASSERT_TRUE((*sandbox)->start().ok());
  EXPECT_FALSE((*sandbox)->start().ok());
  auto exit = (*sandbox)->wait(100ms);
  EXPECT_FALSE(exit.ok());
  EXPECT_EQ(exit.status().code(), Code::Timeout);
  EXPECT_TRUE(processAlive((*sandbox)->hostPid()));
  EXPECT_TRUE((*sandbox)->destroy().ok());
  EXPECT_TRUE((*sandbox)->destroy().ok());  // idempotent
}

TEST_P(RuntimeTest, SignalTerminates) {
  auto sandbox = runtime_->prepare(spec({"sleep", "100"}));
  ASSERT_TRUE(sandbox.ok());
  ASSERT_TRUE((*sandbox)->start().ok());
  std::this_thread::sleep_for(100ms);
  ASSERT_TRUE((*sandbox)->signal(SIGTERM).ok());
  auto exit = (*sandbox)->wait(10s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, 128 + SIGTERM);
  EXPECT_EQ(exit->signal, SIGTERM);
  EXPECT_TRUE((*sandbox)->destroy().ok());
}

TEST_P(RuntimeTest, MemoryLimitKillsAHog) {
  auto s = spec({"/usr/bin/python3", "-c",
                 "b = bytearray(400 << 20); b[::4096] = b'x' * len(b[::4096]); print('survived')"});
  s.limits.memory_bytes = 96 << 20;
  s.timeout = 20s;
  auto exit = run(s);
  std::printf("[memory] %s: %s\n", GetParam().c_str(), exit.message.c_str());
  EXPECT_NE(exit.exit_code, 0) << exit.message;
  EXPECT_THAT(lines_.text(false), ::testing::Not(HasSubstr("survived")));
  if (!isGvisor()) {
    EXPECT_TRUE(exit.oom_killed) << exit.message;
  }
}

TEST_P(RuntimeTest, PidsLimitStopsAForkBomb) {
  auto s = spec({"sh", "-c",
                 "n=0; i=0; while [ $i -lt 300 ]; do sleep 5 2>/dev/null & i=$((i+1)); done; "
                 "echo spawned; kill $(jobs -p) 2>/dev/null; exit 0"});
  s.limits.pids = 64;
  s.timeout = 20s;
  auto sandbox = runtime_->prepare(s);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().toString();
  ASSERT_TRUE((*sandbox)->start().ok());
  auto exit = (*sandbox)->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_FALSE(exit->timed_out);
  // The kernel refused forks beyond the limit.
  auto events = readFile("/sys/fs/cgroup/pids/" + cgroup_parent_ + "/" + s.id + "/pids.events");
  if (!events.ok())
    events = readFile("/sys/fs/cgroup/" + cgroup_parent_ + "/" + s.id + "/pids.events");
  ASSERT_TRUE(events.ok());
  EXPECT_THAT(*events, ::testing::Not(HasSubstr("max 0"))) << *events;
  EXPECT_TRUE((*sandbox)->destroy().ok());
}

TEST_P(RuntimeTest, HostRootWritesStayPrivate) {
  std::string name = "clrk-rt-" + randomHex(4);
  auto exit = run(spec({"sh", "-c",
                        "echo data > /etc/" + name + " && echo more > /usr/" + name +
                            " && echo tmp > /tmp/" + name + " && cat /etc/" + name +
                            " && cat /work/main/CMakeLists.txt 2>/dev/null | head -1; "
                            "test -e /root/.clrk && echo visible-root; true"}));
  EXPECT_EQ(exit.exit_code, 0);
  EXPECT_EQ(lines_.text(false), "data\n");
  EXPECT_FALSE(fs::exists("/etc/" + name));
  EXPECT_FALSE(fs::exists("/usr/" + name));
  EXPECT_FALSE(fs::exists("/tmp/" + name));
}

TEST_P(RuntimeTest, DirectoryRootfsIsALowerLayer) {
  fs::path rootfs = state_root_ / ("rootfs-" + randomHex(4));
  fs::create_directories(rootfs / "bin");
  fs::create_directories(rootfs / "etc/ssl/certs");
  fs::copy_file("/bin/busybox", rootfs / "bin/busybox");
  for (const char* applet : {"sh", "cat", "echo", "rm", "ls", "grep"}) {
    fs::create_symlink("busybox", rootfs / "bin" / applet);
  }
  ASSERT_TRUE(writeFileAtomic(rootfs / "etc/hello", "lower\n").ok());
  ASSERT_TRUE(writeFileAtomic(rootfs / "etc/ssl/certs/ca-certificates.crt", "IMAGE-BUNDLE\n").ok());
  auto s =
      spec({"/bin/sh", "-c",
            "cat /etc/hello; echo upper > /etc/hello; echo new > /bin/new; rm /bin/cat; "
            "/bin/busybox cat /etc/hello; /bin/busybox cat /etc/ssl/certs/ca-certificates.crt"});
  s.rootfs_kind = RootfsKind::Directory;
  s.rootfs_dir = rootfs;
  s.env = {"PATH=/bin"};
  s.ca_cert_pem = kFakeCa;
  auto exit = run(s);
  EXPECT_EQ(exit.exit_code, 0) << lines_.text(true);
  EXPECT_EQ(lines_.text(false), std::string("lower\nupper\nIMAGE-BUNDLE\n") + kFakeCa);
  EXPECT_EQ(*readFile(rootfs / "etc/hello"), "lower\n");
  EXPECT_FALSE(fs::exists(rootfs / "bin/new"));
  EXPECT_TRUE(fs::is_symlink(rootfs / "bin/cat"));
  fs::remove_all(rootfs);
}

TEST_P(RuntimeTest, CaTrustIsInjected) {
  auto s = spec({"sh", "-c",
                 "cat /etc/clrk/ca.crt; tail -n 3 /etc/ssl/certs/ca-certificates.crt; "
                 "echo $SSL_CERT_FILE $NODE_EXTRA_CA_CERTS $REQUESTS_CA_BUNDLE $CURL_CA_BUNDLE; "
                 "grep -c 'BEGIN CERTIFICATE' /etc/ssl/certs/ca-certificates.crt"});
  s.ca_cert_pem = kFakeCa;
  s.env = {"CURL_CA_BUNDLE=/custom.pem"};
  auto exit = run(s);
  EXPECT_EQ(exit.exit_code, 0) << lines_.text(true);
  std::string out = lines_.text(false);
  std::string ca = kFakeCa;
  EXPECT_EQ(out.substr(0, ca.size() * 2), ca + ca);
  std::string bundle = "/etc/ssl/certs/ca-certificates.crt";
  EXPECT_THAT(out, HasSubstr(bundle + " " + bundle + " " + bundle + " /custom.pem\n"));
  // The host's trust store is kept, the CA appended.
  auto host = readFile(bundle);
  if (host.ok()) {
    size_t count = 0;
    for (size_t pos = 0; (pos = host->find("BEGIN CERTIFICATE", pos)) != std::string::npos; ++pos) {
      ++count;
    }
    EXPECT_THAT(out, HasSubstr("\n" + std::to_string(count + 1) + "\n"));
  }
}

TEST_P(RuntimeTest, DangerousOperationsFail) {
  auto exit =
      run(spec({"/usr/bin/python3", "-c",
                "import ctypes, os, socket\n"
                "libc = ctypes.CDLL(None, use_errno=True)\n"
                "def denied(what, fn):\n"
                "    try:\n"
                "        r = fn()\n"
                "        print(what, 'ALLOWED' if r in (None, 0) else 'denied')\n"
                "    except OSError:\n"
                "        print(what, 'denied')\n"
                "denied('raw', lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, 1))\n"
                "denied('packet', lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0))\n"
                "denied('unshare', lambda: libc.unshare(0x40000000))\n"
                "denied('userns', lambda: libc.unshare(0x10000000))\n"
                "denied('mount', lambda: libc.mount(b'none', b'/mnt', b'tmpfs', 0, None))\n"
                "denied('sysctl', lambda: open('/proc/sys/kernel/domainname', 'w').write('x'))\n"
                "denied('chown', lambda: os.chown('/etc/passwd', 1, 1))\n"}));
  EXPECT_EQ(exit.exit_code, 0) << lines_.text(true);
  std::string out = lines_.text(false);
  for (const char* what : {"raw", "packet", "unshare", "mount", "sysctl", "chown"}) {
    EXPECT_THAT(out, HasSubstr(std::string(what) + " denied\n")) << out;
  }
  // gVisor implements user namespaces inside its own kernel (the sentry): allowed there, harmless.
  if (!isGvisor()) {
    EXPECT_THAT(out, HasSubstr("userns denied\n"));
  }
}

TEST_P(RuntimeTest, UserWorkingDirAndBindMounts) {
  fs::path shared = state_root_ / ("shared-" + randomHex(4));
  fs::path scratch = state_root_ / ("scratch-" + randomHex(4));
  fs::create_directories(shared);
  fs::create_directories(scratch);
  fs::permissions(scratch, fs::perms::all);
  ASSERT_TRUE(writeFileAtomic(shared / "input.txt", "from-host\n").ok());
  auto s = spec({"sh", "-c",
                 "id -u; id -g; pwd; cat /mnt/in/input.txt; echo x > /mnt/in/new 2>/dev/null || "
                 "echo ro; echo out > /mnt/out/result"});
  s.uid = 1000;
  s.gid = 1000;
  s.working_dir = "/mnt/in";
  s.mounts = {{shared, "/mnt/in", true}, {scratch, "/mnt/out", false}};
  auto exit = run(s);
  EXPECT_EQ(exit.exit_code, 0) << lines_.text(true);
  EXPECT_EQ(lines_.text(false), "1000\n1000\n/mnt/in\nfrom-host\nro\n");
  EXPECT_FALSE(fs::exists(shared / "new"));
  EXPECT_EQ(*readFile(scratch / "result"), "out\n");
  fs::remove_all(shared);
  fs::remove_all(scratch);
}

TEST_P(RuntimeTest, NoCapabilitiesInside) {
  auto exit = run(spec({"sh", "-c",
                        "grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/self/status; grep NoNewPrivs "
                        "/proc/self/status; ip link set lo down 2>/dev/null && echo lo-down; "
                        "hostname"}));
  EXPECT_EQ(exit.exit_code, 0) << lines_.text(true);
  std::string out = lines_.text(false);
  EXPECT_THAT(out, HasSubstr("CapEff:\t0000000000000000"));
  EXPECT_THAT(out, HasSubstr("CapPrm:\t0000000000000000"));
  EXPECT_THAT(out, HasSubstr("CapBnd:\t0000000000000000"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("lo-down")));
  EXPECT_THAT(out, HasSubstr("sandbox\n"));
}

TEST_P(RuntimeTest, DoubleForkedDaemonDoesNotSurvive) {
  std::string marker = std::to_string(100000 + (std::rand() % 800000));
  auto sandbox = runtime_->prepare(
      spec({"sh", "-c", "(sh -c 'sleep " + marker + " & exit 0') ; echo forked; sleep 0.2"}));
  ASSERT_TRUE(sandbox.ok());
  ASSERT_TRUE((*sandbox)->start().ok());
  int host_pid = (*sandbox)->hostPid();
  auto exit = (*sandbox)->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(lines_.text(false), "forked\n");
  ASSERT_TRUE((*sandbox)->destroy().ok());
  for (int attempt = 0; attempt < 100 && countProcesses("sleep " + marker) > 0; ++attempt) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(countProcesses("sleep " + marker), 0);
  EXPECT_FALSE(processAlive(host_pid));
}

TEST_P(RuntimeTest, NoNetworkMeansLoopbackOnly) {
  auto exit = run(spec({"sh", "-c", "cat /proc/net/dev"}));
  EXPECT_EQ(exit.exit_code, 0);
  std::string out = lines_.text(false);
  EXPECT_THAT(out, HasSubstr("lo:"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("eth")));
}

// A netns with a veth pair and a listener on the host side, removed by the destructor.
struct TestNetwork {
  std::string name, host_if, sandbox_if, host_ip, sandbox_ip;
  bool ok = false;
  TestNetwork() {
    std::string tag = randomHex(3);
    name = "clrk-rtt-" + tag;
    host_if = "crth" + tag;
    sandbox_if = "crts" + tag;
    int octet = 1 + std::rand() % 250;
    host_ip = "10.251." + std::to_string(octet) + ".1";
    sandbox_ip = "10.251." + std::to_string(octet) + ".2";
    ok =
        sh("ip netns add " + name) == 0 &&
        sh("ip link add " + host_if + " type veth peer name " + sandbox_if) == 0 &&
        sh("ip link set " + sandbox_if + " netns " + name) == 0 &&
        sh("ip addr add " + host_ip + "/30 dev " + host_if) == 0 &&
        sh("ip link set " + host_if + " up") == 0 &&
        sh("ip netns exec " + name + " ip addr add " + sandbox_ip + "/30 dev " + sandbox_if) == 0 &&
        sh("ip netns exec " + name + " ip link set " + sandbox_if + " up") == 0 &&
        sh("ip netns exec " + name + " ip link set lo up") == 0 &&
        sh("ip netns exec " + name + " ip route add default via " + host_ip) == 0;
  }
  ~TestNetwork() {
    sh("ip link del " + host_if + " 2>/dev/null");
    sh("ip netns del " + name + " 2>/dev/null");
  }
};

TEST_P(RuntimeTest, JoinsTheGivenNetns) {
  TestNetwork network;
  ASSERT_TRUE(network.ok);
  int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  ::inet_pton(AF_INET, network.host_ip.c_str(), &addr.sin_addr);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  socklen_t len = sizeof addr;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  std::string peer;
  std::thread server([&] {
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    int conn = ::accept(listener, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (conn < 0) return;
    char ip[64];
    ::inet_ntop(AF_INET, &from.sin_addr, ip, sizeof ip);
    peer = ip;
    ::close(conn);
  });
  auto s = spec({"/usr/bin/python3", "-c",
                 "import socket; socket.create_connection(('" + network.host_ip + "', " +
                     std::to_string(port) + "), 5).close(); print('connected')"});
  s.netns_path = "/run/netns/" + network.name;
  auto exit = run(s);
  ::shutdown(listener, SHUT_RDWR);
  server.join();
  ::close(listener);
  EXPECT_EQ(exit.exit_code, 0) << lines_.text(true);
  EXPECT_EQ(lines_.text(false), "connected\n");
  EXPECT_EQ(peer, network.sandbox_ip);
}

TEST_P(RuntimeTest, CleanupLeftoversAfterACrash) {
  auto s = spec({"sh", "-c", "sleep 100 & sleep 100"});
  s.limits.pids = 100;
  auto sandbox = runtime_->prepare(s);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().toString();
  ASSERT_TRUE((*sandbox)->start().ok());
  std::this_thread::sleep_for(100ms);
  int host_pid = (*sandbox)->hostPid();
  fs::path dir = (*sandbox)->logPath().parent_path();
  fs::path cgroup = cgroupSupport().mode == CgroupMode::V2
                        ? fs::path("/sys/fs/cgroup") / cgroup_parent_ / s.id
                        : fs::path("/sys/fs/cgroup/pids") / cgroup_parent_ / s.id;
  ASSERT_TRUE(processAlive(host_pid));
  ASSERT_TRUE(fs::exists(cgroup));
  dynamic_cast<SupervisedSandbox&>(**sandbox).abandonForTest();
  sandbox->reset();
  runtime_.reset();
  ASSERT_TRUE(processAlive(host_pid));

  RuntimeOptions options;
  options.state_dir = state_root_ / GetParam();
  options.cgroup_parent = cgroup_parent_;
  auto fresh = makeRuntime(GetParam(), options);
  ASSERT_TRUE(fresh.ok());
  auto cleaned = (*fresh)->cleanupLeftovers();
  ASSERT_TRUE(cleaned.ok()) << cleaned.status().toString();
  EXPECT_EQ(*cleaned, 1);
  EXPECT_FALSE(processAlive(host_pid));
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(fs::exists(cgroup));
  EXPECT_EQ(*(*fresh)->cleanupLeftovers(), 0);
}

// A real crash: a child process (the "worker") starts a sandbox and is SIGKILLed; a new Runtime
// on the same state dir removes what is left.
TEST_P(RuntimeTest, CleanupAfterTheWorkerIsKilled) {
  RuntimeOptions options;
  options.state_dir = state_root_ / (GetParam() + "-crash-" + randomHex(3));
  options.cgroup_parent = cgroup_parent_;
  std::string id = "t-" + randomHex(6);
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t worker = ::fork();
  ASSERT_GE(worker, 0);
  if (worker == 0) {
    ::close(ready[0]);
    auto runtime = makeRuntime(GetParam(), options);
    if (!runtime.ok()) ::_exit(1);
    SandboxSpec s;
    s.id = id;
    s.argv = {"sh", "-c", "sleep 100 & sleep 100"};
    s.limits.pids = 100;
    auto sandbox = (*runtime)->prepare(s);
    if (!sandbox.ok() || !(*sandbox)->start().ok()) ::_exit(2);
    int pid = (*sandbox)->hostPid();
    (void)!::write(ready[1], &pid, sizeof pid);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  int sandbox_pid = 0;
  ASSERT_EQ(::read(ready[0], &sandbox_pid, sizeof sandbox_pid),
            static_cast<ssize_t>(sizeof sandbox_pid));
  ::close(ready[0]);
  ASSERT_TRUE(processAlive(sandbox_pid));
  ::kill(worker, SIGKILL);
  int status = 0;
  ::waitpid(worker, &status, 0);

  fs::path cgroup = cgroupSupport().mode == CgroupMode::V2
                        ? fs::path("/sys/fs/cgroup") / cgroup_parent_ / id
                        : fs::path("/sys/fs/cgroup/pids") / cgroup_parent_ / id;
  EXPECT_TRUE(fs::exists(options.state_dir / id));
  auto fresh = makeRuntime(GetParam(), options);
  ASSERT_TRUE(fresh.ok());
  auto cleaned = (*fresh)->cleanupLeftovers();
  ASSERT_TRUE(cleaned.ok()) << cleaned.status().toString();
  EXPECT_EQ(*cleaned, 1);
  for (int attempt = 0; attempt < 200 && processAlive(sandbox_pid); ++attempt) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_FALSE(processAlive(sandbox_pid));
  EXPECT_FALSE(fs::exists(options.state_dir / id));
  EXPECT_FALSE(fs::exists(cgroup));
  std::error_code ec;
  fs::remove_all(options.state_dir, ec);
}

TEST_P(RuntimeTest, ConcurrentSandboxes) {
  const int kThreads = isGvisor() ? 3 : 6;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int thread_idx = 0; thread_idx < kThreads; ++thread_idx) {
    threads.emplace_back([&, thread_idx] {
      for (int run_idx = 0; run_idx < 2; ++run_idx) {
        SandboxSpec s;
        s.id = "t-" + randomHex(6);
        std::string expected = "n" + std::to_string(thread_idx) + "-" + std::to_string(run_idx);
        s.argv = {"sh", "-c", "cat; echo " + expected};
        s.stdin_data = expected + "-in\n";
        std::string out;
        s.on_log = [&out](const LogLine& line) { out += line.text + "\n"; };
        auto sandbox = runtime_->prepare(s);
        if (!sandbox.ok() || !(*sandbox)->start().ok()) continue;
        auto exit = (*sandbox)->wait(30s);
        if (exit.ok() && exit->exit_code == 0 && out == expected + "-in\n" + expected + "\n" &&
            (*sandbox)->destroy().ok()) {
          ++ok;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), kThreads * 2);
}

TEST_P(RuntimeTest, PrepareValidatesTheSpec) {
  auto bad_id = spec({"true"});
  bad_id.id = "Bad_Id";
  EXPECT_EQ(runtime_->prepare(bad_id).status().code(), Code::InvalidArgument);
  auto key = spec({"true"});
  key.ca_cert_pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n";
  EXPECT_THAT(runtime_->prepare(key).status().message(), HasSubstr("private key"));
  auto dir = spec({"true"});
  dir.rootfs_kind = RootfsKind::Directory;
  dir.rootfs_dir = "/nonexistent-rootfs";
  EXPECT_EQ(runtime_->prepare(dir).status().code(), Code::InvalidArgument);
  auto twice = spec({"true"});
  auto first = runtime_->prepare(twice);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(runtime_->prepare(twice).status().code(), Code::AlreadyExists);
}

TEST_P(RuntimeTest, DestroyBeforeStartRemovesEverything) {
  auto s = spec({"true"});
  s.limits.pids = 50;
  auto sandbox = runtime_->prepare(s);
  ASSERT_TRUE(sandbox.ok());
  fs::path dir = (*sandbox)->logPath().parent_path();
  EXPECT_TRUE(fs::exists(dir));
  EXPECT_TRUE((*sandbox)->destroy().ok());
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(fs::exists(fs::path("/sys/fs/cgroup/pids") / cgroup_parent_ / s.id));
  EXPECT_FALSE((*sandbox)->start().ok());
}

// Prints cold (prepare+start+wait of `true`, netns joined) and warm (start+wait after prepare)
// latencies; asserts only that they are sane. Figures from an optimised build are in
// docs/architecture/sandbox.md.
TEST_P(RuntimeTest, Timings) {
  TestNetwork network;
  ASSERT_TRUE(network.ok);
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  const int kRuns = isGvisor() ? 3 : 10;
  double cold = 0, prepare = 0, warm = 0, teardown = 0;
  for (int run_idx = 0; run_idx < kRuns; ++run_idx) {
    auto s = spec({"true"});
    s.netns_path = "/run/netns/" + network.name;
    auto t0 = Clock::now();
    auto sandbox = runtime_->prepare(s);
    ASSERT_TRUE(sandbox.ok()) << sandbox.status().toString();
    auto t1 = Clock::now();
    ASSERT_TRUE((*sandbox)->start().ok());
    auto exit = (*sandbox)->wait(30s);
    auto t2 = Clock::now();
    ASSERT_TRUE(exit.ok());
    EXPECT_EQ(exit->exit_code, 0);
    ASSERT_TRUE((*sandbox)->destroy().ok());
    auto t3 = Clock::now();
    cold += ms(t2 - t0);
    prepare += ms(t1 - t0);
    warm += ms(t2 - t1);
    teardown += ms(t3 - t2);
    if (isGvisor()) {
      // runsc moves the veth's address into its netstack: give it back for the next run.
      sh("ip netns exec " + network.name + " ip addr replace " + network.sandbox_ip + "/30 dev " +
         network.sandbox_if + " && ip netns exec " + network.name +
         " ip route replace default via " + network.host_ip);
    }
  }
  std::printf(
      "[timing] %s: cold prepare+start+exit %.1f ms (prepare %.1f, start-to-exit %.1f), "
      "destroy %.1f ms, mean of %d\n",
      GetParam().c_str(), cold / kRuns, prepare / kRuns, warm / kRuns, teardown / kRuns, kRuns);
  EXPECT_LT(cold / kRuns, 5000.0);
}

TEST_P(RuntimeTest, LimitsSupportIsReported) {
  EXPECT_THAT(runtime_->limitsSupport(), HasSubstr("cgroup"));
  EXPECT_EQ(runtime_->name(), GetParam());
}

// ---- booted sandboxes (await_launch + launch()) --------------------------------------------

Launch launchOf(std::vector<std::string> argv) {
  Launch launch;
  launch.argv = std::move(argv);
  return launch;
}

// A booted sandbox: prepared and started with await_launch, its launcher waiting.
std::unique_ptr<Sandbox> boot(Runtime& runtime, SandboxSpec spec) {
  spec.await_launch = true;
  spec.ca_cert_pem = kFakeCa;
  auto sandbox = runtime.prepare(spec);
  EXPECT_TRUE(sandbox.ok()) << sandbox.status().toString();
  if (!sandbox.ok()) return nullptr;
  Status started = (*sandbox)->start();
  EXPECT_TRUE(started.ok()) << started.toString();
  return std::move(*sandbox);
}

TEST_P(RuntimeTest, BootedSandboxRunsWhatItIsLaunchedWith) {
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  // Booted, the launcher waits: no exit however long we wait.
  auto early = sandbox->wait(300ms);
  ASSERT_FALSE(early.ok());
  EXPECT_EQ(early.status().code(), Code::Timeout);

  Lines launched;
  Launch launch;
  launch.argv = {"sh", "-c",
                 "echo \"$1 $GREETING $(pwd) $SSL_CERT_FILE\"; cat; echo oops >&2; exit 7", "sh",
                 "arg1"};
  launch.env = {"GREETING=hello"};
  launch.working_dir = "/etc";
  launch.stdin_data = "from stdin\n";
  launch.on_log = launched.sink();
  auto before = std::chrono::system_clock::now();
  ASSERT_TRUE(sandbox->launch(launch).ok());
  auto exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok()) << exit.status().toString();
  EXPECT_EQ(exit->exit_code, 7);
  EXPECT_GE(exit->started_at, before);  // the clock starts at launch, not at boot
  EXPECT_EQ(launched.text(false),
            "arg1 hello /etc /etc/ssl/certs/ca-certificates.crt\nfrom stdin\n");
  EXPECT_EQ(launched.text(true), "oops\n");
  EXPECT_EQ(lines_.text(false), "");  // the boot spec's on_log is not the launch's
  // Once only.
  EXPECT_EQ(sandbox->launch(launch).code(), Code::InvalidArgument);
  EXPECT_TRUE(sandbox->destroy().ok());
}

TEST_P(RuntimeTest, BootedSandboxSearchesTheLaunchPathAndReportsMissingPrograms) {
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  Lines launched;
  Launch launch;
  launch.argv = {"no-such-program-xyz"};
  launch.on_log = launched.sink();
  ASSERT_TRUE(sandbox->launch(launch).ok());
  auto exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, 127);
  EXPECT_THAT(launched.text(true), HasSubstr("no-such-program-xyz"));
  EXPECT_TRUE(sandbox->destroy().ok());
}

TEST_P(RuntimeTest, BootedSandboxTimeoutCountsFromLaunch) {
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  std::this_thread::sleep_for(500ms);  // longer than the timeout below: must not count
  Launch launch;
  launch.argv = {"sh", "-c", "echo started; sleep 30"};
  launch.timeout = 400ms;
  Lines launched;
  launch.on_log = launched.sink();
  ASSERT_TRUE(sandbox->launch(launch).ok());
  auto exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_TRUE(exit->timed_out);
  EXPECT_EQ(launched.text(false), "started\n");
  EXPECT_THAT(exit->message, HasSubstr("400 ms"));
  EXPECT_TRUE(sandbox->destroy().ok());
}

TEST_P(RuntimeTest, BootedSandboxPassesSignalsOnAndReportsSignalDeaths) {
  // sandbox->signal() reaches the launched process (gVisor: through the launcher, which stays
  // the sandbox's init and forwards it).
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  Lines launched;
  Launch launch = launchOf(
      {"sh", "-c", "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done"});
  launch.on_log = launched.sink();
  ASSERT_TRUE(sandbox->launch(launch).ok());
  for (int tries = 0; tries < 300 && launched.text(false).empty(); ++tries) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(launched.text(false), "ready\n");
  ASSERT_TRUE(sandbox->signal(SIGTERM).ok());
  auto exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, 3);
  EXPECT_EQ(launched.text(false), "ready\ngot TERM\n");
  EXPECT_TRUE(sandbox->destroy().ok());

  // A process that dies of a signal is reported as such, not as its launcher's exit code.
  sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  ASSERT_TRUE(sandbox->launch(launchOf({"sh", "-c", "kill -USR1 $$"})).ok());
  exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->signal, SIGUSR1);
  EXPECT_EQ(exit->exit_code, 128 + SIGUSR1);
  EXPECT_TRUE(sandbox->destroy().ok());
}

TEST_P(RuntimeTest, BootedSandboxOutputIsCompleteWhenTheExitIsKnown) {
  // The exit may come from the launcher's report, before the sandbox is torn down: everything
  // the process wrote must be captured by then, and bytes the agent writes on its stdin that
  // are not a report change nothing.
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  Lines launched;
  Launch launch = launchOf({"sh", "-c",
                            "printf 'not a report' >&0 2>/dev/null; i=0; while [ $i -lt 2000 ]; "
                            "do echo line$i; i=$((i+1)); done; printf tail; exit 4"});
  launch.on_log = launched.sink();
  ASSERT_TRUE(sandbox->launch(launch).ok());
  auto exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, 4);
  std::string out = launched.text(false);
  EXPECT_THAT(out, HasSubstr("line0\nline1\n"));
  EXPECT_THAT(out, HasSubstr("line1999\ntail\n"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2001);
  EXPECT_TRUE(sandbox->destroy().ok());
}

TEST_P(RuntimeTest, BootedGvisorSandboxExitIsKnownFromTheReport) {
  // gVisor only: the launcher's report on the stdin socket gives the exit while the sandbox still
  // runs. The agent shares that socket, so it can write a report of its own: that ends its run
  // with the code it chose (no more than exiting would), and destroy() still kills what runs.
  if (GetParam() != "gvisor") GTEST_SKIP() << "the exit report is the gVisor launcher's";
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  Lines launched;
  Launch launch = launchOf(
      {"sh", "-c", "echo before; printf 'CLRKEXT1\\000\\011\\000\\000' >&0; sleep 30 & wait"});
  launch.on_log = launched.sink();
  auto launched_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(sandbox->launch(launch).ok());
  auto exit = sandbox->wait(20s);
  auto took = std::chrono::steady_clock::now() - launched_at;
  ASSERT_TRUE(exit.ok()) << exit.status().toString();
  // Wait status 0x0900: exited with code 9, long before the 30 s sleep could end.
  EXPECT_EQ(exit->exit_code, 9);
  EXPECT_EQ(exit->signal, 0);
  EXPECT_LT(took, 15s);
  EXPECT_EQ(launched.text(false), "before\n");
  int pid = sandbox->hostPid();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(processAlive(pid));  // the sleep still runs: the exit came from the report
  EXPECT_TRUE(sandbox->destroy().ok());
  EXPECT_FALSE(processAlive(pid));
  EXPECT_EQ(countProcesses(sandbox->id()), 0);
}

TEST_P(RuntimeTest, BootedSandboxCanBeDestroyedUnlaunched) {
  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  int pid = sandbox->hostPid();
  EXPECT_GT(pid, 0);
  fs::path dir = state_root_ / GetParam() / sandbox->id();
  EXPECT_TRUE(fs::exists(dir));
  EXPECT_TRUE(sandbox->destroy().ok());
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_FALSE(processAlive(pid));
  EXPECT_EQ(sandbox->launch(launchOf({"true"})).code(), Code::InvalidArgument);
}

TEST_P(RuntimeTest, LaunchIsRefusedForPlainSandboxesAndBadInput) {
  auto plain = runtime_->prepare(spec({"true"}));
  ASSERT_TRUE(plain.ok());
  ASSERT_TRUE((*plain)->start().ok());
  EXPECT_EQ((*plain)->launch(launchOf({"true"})).code(), Code::InvalidArgument);
  ASSERT_TRUE((*plain)->wait(30s).ok());
  EXPECT_TRUE((*plain)->destroy().ok());

  auto sandbox = boot(*runtime_, spec({"ignored"}));
  ASSERT_NE(sandbox, nullptr);
  Launch bad;
  EXPECT_EQ(sandbox->launch(bad).code(), Code::InvalidArgument);  // empty argv
  bad.argv = {"true"};
  bad.env = {"NOEQUALS"};
  EXPECT_EQ(sandbox->launch(bad).code(), Code::InvalidArgument);
  bad.env.clear();
  bad.working_dir = "relative";
  EXPECT_EQ(sandbox->launch(bad).code(), Code::InvalidArgument);
  // Still waiting after refused launches.
  bad.working_dir = "/";
  ASSERT_TRUE(sandbox->launch(bad).ok());
  auto exit = sandbox->wait(30s);
  ASSERT_TRUE(exit.ok());
  EXPECT_EQ(exit->exit_code, 0);
  EXPECT_TRUE(sandbox->destroy().ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, RuntimeTest, ::testing::Values("namespaces", "gvisor"),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           return param_info.param;
                         });

TEST(LauncherTest, MalformedMessagesRunNothing) {
  // Bytes that are not a complete launch message end the launcher with 125.
  std::string launcher = findLauncher(RuntimeOptions{}).string();
  EXPECT_EQ(WEXITSTATUS(sh("printf 'GARBAGE!xxxx' | " + launcher + " 2>/dev/null")), 125);
  EXPECT_EQ(WEXITSTATUS(sh("printf 'CLRKLNC1\\377\\377\\377\\377' | " + launcher + " 2>/dev/null")),
            125);
  EXPECT_EQ(WEXITSTATUS(
                sh("printf 'CLRKLNC1\\005\\000\\000\\0001\\000x' | " + launcher + " 2>/dev/null")),
            125);                                      // truncated
  EXPECT_EQ(WEXITSTATUS(sh(": | " + launcher)), 125);  // closed before a launch
}

TEST(MakeRuntimeTest, UnknownNameListsTheValidOnes) {
  RuntimeOptions options;
  options.state_dir = "/tmp/x";
  auto runtime = makeRuntime("docker", options);
  ASSERT_FALSE(runtime.ok());
  EXPECT_THAT(runtime.status().message(), HasSubstr("gvisor, namespaces"));
}

TEST(MakeRuntimeTest, MissingRunscNamesThePackage) {
  std::string path = std::getenv("PATH");
  ::setenv("PATH", "/nonexistent", 1);
  RuntimeOptions options;
  options.state_dir = "/tmp/x";
  auto runtime = makeRuntime("gvisor", options);
  ::setenv("PATH", path.c_str(), 1);
  ASSERT_FALSE(runtime.ok());
  EXPECT_EQ(runtime.status().message(),
            "runtime gvisor: runsc not found in PATH; install the Debian package runsc");
}

}  // namespace
}  // namespace clrk::sandbox
