// `clrk egress` as a user runs it: the real binaries (clrk, clrk-mock-providers), a manifest file,
// curl through the explicit proxy, then `clrk egress records`.
#include "harness.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <signal.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

// A background process with its output in a file; killed (by PID) on destruction.
class Background {
 public:
  Background(const std::string& command, const fs::path& log) : log_(log) {
    // Built before fork(): the child of a multithreaded process must not allocate.
    const std::string script = "exec " + command + " > '" + log.string() + "' 2>&1";
    pid_ = fork();
    if (pid_ == 0) {
      setpgid(0, 0);
      execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Background() { stop(SIGKILL); }
  void signal(int signal) const {
    if (pid_ > 0) kill(pid_, signal);
  }
  // Sends `signal` and reaps; returns the exit status (or -1).
  int stop(int signal = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, signal);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  // Waits until the log matches `pattern`; returns the first capture group ("" on timeout).
  std::string waitFor(const std::string& pattern, std::chrono::seconds timeout) const {
    std::regex re(pattern);
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::ifstream in(log_);
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      std::smatch match;
      if (std::regex_search(text, match, re)) return match.size() > 1 ? match[1].str() : "ok";
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "";
  }
  std::string log() const {
    std::ifstream in(log_);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }

 private:
  fs::path log_;
  pid_t pid_ = -1;
};

std::string mockBinary() { return clrk::testing::binaryPath("clrk-mock-providers"); }

class EgressCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("clrk-egress-cli-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // An upstream CA and a certificate for api.openai.com, made with the openssl CLI.
    auto made = testing::runCommand(
        "cd '" + dir_.string() +
        "' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 "
        "-subj /CN=upstream-ca -keyout ca.key -out upstream-ca.pem "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
        "2>&1 && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-subj /CN=api.openai.com -keyout leaf.key -out leaf.csr 2>&1 && "
        "printf 'subjectAltName=DNS:api.openai.com\\n' > ext.cnf && "
        "openssl x509 -req -in leaf.csr -CA upstream-ca.pem -CAkey ca.key -CAcreateserial "
        "-days 1 -extfile ext.cnf -out leaf.pem 2>&1");
    ASSERT_EQ(made.exit_code, 0) << made.output;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

constexpr std::string_view kManifest = R"(apiVersion: v1
kind: Secret
metadata: {name: openai}
stringData: {token: sk-from-secret-0042}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: EgressGateway
metadata: {name: default}
spec:
  listeners:
  - {name: https, protocol: TLS, tls: {mode: Terminate}}
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: AIProviderRoute
metadata: {name: openai}
spec:
  parentRefs: [{name: default}]
  rules:
  - matches: [{provider: openai}]
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: CredentialInjectionPolicy
metadata: {name: openai}
spec:
  targetRefs: [{group: clrk.apoxy.dev, kind: AIProviderRoute, name: openai}]
  secretRef: {name: openai}
  target: Header
  headerName: Authorization
)";

TEST_F(EgressCliTest, StandaloneProxyGovernsRecordsAndReloads) {
  Background mock(mockBinary() + " --listen 127.0.0.1:0 --tls-cert " +
                      (dir_ / "leaf.pem").string() + " --tls-key " + (dir_ / "leaf.key").string(),
                  dir_ / "mock.log");
  std::string mock_port =
      mock.waitFor(R"(listening on https://127\.0\.0\.1:(\d+))", std::chrono::seconds(20));
  ASSERT_FALSE(mock_port.empty()) << mock.log();
  std::ofstream(dir_ / "egress.yaml") << kManifest;
  std::string state = (dir_ / "state").string();
  Background egress(testing::binaryPath("clrk") + " egress -f " + (dir_ / "egress.yaml").string() +
                        " --listen 127.0.0.1:0 --state-dir " + state + " --ca-cert-out " +
                        (dir_ / "ca.pem").string() + " --upstream-ca " +
                        (dir_ / "upstream-ca.pem").string() +
                        " --upstream-override api.openai.com:443=127.0.0.1:" + mock_port,
                    dir_ / "egress.log");
  std::string port =
      egress.waitFor(R"(explicit proxy on 127\.0\.0\.1:(\d+))", std::chrono::seconds(20));
  ASSERT_FALSE(port.empty()) << egress.log();
  auto curl = [&](const std::string& args) {
    return testing::runCommand("curl -sS --max-time 10 -x http://127.0.0.1:" + port + " --cacert " +
                               (dir_ / "ca.pem").string() + " -w '\\nHTTP %{http_code}' " + args);
  };
  auto ok = curl(
      "https://api.openai.com/v1/chat/completions -H 'Authorization: Bearer sk-mine' "
      "-H 'Content-Type: application/json' "
      "-d '{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'");
  EXPECT_THAT(ok.output, HasSubstr("HTTP 200")) << egress.log();
  auto denied = curl("https://example.org/");
  EXPECT_THAT(denied.output, HasSubstr("HTTP 403"));
  EXPECT_THAT(denied.output, HasSubstr("deny-all"));
  // The mock saw the Secret's key, not the agent's.
  auto seen =
      testing::runCommand("curl -sS --cacert " + (dir_ / "upstream-ca.pem").string() +
                          " --resolve api.openai.com:" + mock_port +
                          ":127.0.0.1 https://api.openai.com:" + mock_port + "/__mock/requests");
  EXPECT_THAT(seen.output, HasSubstr("sk-from-secret-0042"));
  EXPECT_THAT(seen.output, Not(HasSubstr("sk-mine")));

  // SIGHUP with a broken file keeps the running configuration.
  std::ofstream(dir_ / "egress.yaml")
      << "kind: EgressGateway\napiVersion: clrk.apoxy.dev/v1alpha1\n"
         "metadata: {name: default}\nspec: {bogus: 1}\n";
  egress.signal(SIGHUP);
  EXPECT_FALSE(
      egress.waitFor("reload \\(previous configuration kept\\)", std::chrono::seconds(10)).empty())
      << egress.log();
  EXPECT_THAT(curl("https://api.openai.com/v1/models").output, HasSubstr("HTTP 200"));
  EXPECT_EQ(egress.stop(SIGTERM), 0) << egress.log();

  auto records =
      testing::runCommand(testing::binaryPath("clrk") + " egress records --state-dir " + state);
  ASSERT_EQ(records.exit_code, 0) << records.output;
  EXPECT_THAT(records.output, HasSubstr("gen_ai.request.model"));
  EXPECT_THAT(records.output, HasSubstr("gpt-4o-mini"));
  EXPECT_THAT(records.output, HasSubstr("example.org"));
  EXPECT_THAT(records.output, Not(HasSubstr("sk-from-secret-0042")));
  // The CA key stays private to the state directory.
  EXPECT_EQ(fs::status(fs::path(state) / "ca.key").permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

TEST_F(EgressCliTest, BadManifestIsRejectedWithFileAndField) {
  std::ofstream(dir_ / "bad.yaml") << "apiVersion: clrk.apoxy.dev/v1alpha1\nkind: EgressGateway\n"
                                      "metadata: {name: gw}\nspec:\n  defaultPolicy: maybe\n"
                                      "  listeners: [{name: x, protocol: TLS}]\n";
  auto result = testing::runCommand(
      testing::binaryPath("clrk") + " egress -f " + (dir_ / "bad.yaml").string() +
      " --listen 127.0.0.1:0 --state-dir " + (dir_ / "state").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_THAT(result.output, HasSubstr("bad.yaml"));
  EXPECT_THAT(result.output, HasSubstr("spec.defaultPolicy"));
}

}  // namespace
}  // namespace clrk
