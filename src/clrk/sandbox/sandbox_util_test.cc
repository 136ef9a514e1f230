// Unit tests of the backend-independent pieces: spec validation, CA files, environment, records,
// the rotated output log, tree removal and the seccomp program.
#include "clrk/sandbox/sandbox_util.h"

#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/sandbox/namespaces/namespaces_runtime.h"
#include "clrk/sandbox/supervised_sandbox.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace clrk::sandbox {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() : path_(fs::temp_directory_path() / ("clrk-sbu-" + randomHex(6))) {
    fs::create_directories(path_);
  }
  ~TempDir() { (void)removeTree(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

SandboxSpec validSpec() {
  SandboxSpec spec;
  spec.id = "abc-123";
  spec.argv = {"true"};
  return spec;
}

TEST(ValidateSpecTest, AcceptsAndRejects) {
  EXPECT_TRUE(validateSpec(validSpec()).ok());
  auto spec = validSpec();
  spec.id = std::string(49, 'a');
  EXPECT_THAT(validateSpec(spec).message(), HasSubstr("[a-z0-9-]{1,48}"));
  spec = validSpec();
  spec.argv.clear();
  EXPECT_THAT(validateSpec(spec).message(), HasSubstr("argv is empty"));
  spec = validSpec();
  spec.env = {"NOEQUALS"};
  EXPECT_THAT(validateSpec(spec).message(), HasSubstr("NAME=VALUE"));
  spec = validSpec();
  spec.working_dir = "relative";
  EXPECT_FALSE(validateSpec(spec).ok());
  spec = validSpec();
  spec.mounts.push_back({"/etc", "/a/../b", true});
  EXPECT_FALSE(validateSpec(spec).ok());
  spec = validSpec();
  spec.ca_cert_pem = "-----BEGIN EC PRIVATE KEY-----\n";
  EXPECT_THAT(validateSpec(spec).message(), HasSubstr("private key"));
  spec = validSpec();
  spec.ca_cert_pem = "garbage";
  EXPECT_THAT(validateSpec(spec).message(), HasSubstr("not a PEM"));
}

TEST(CaFilesTest, BundleResolvesSymlinksInsideTheRoot) {
  TempDir root, out;
  fs::create_directories(root.path() / "etc/ssl/certs");
  // An image pointing its bundle at a host file must not make the worker copy that file.
  fs::create_symlink("/etc/hostname", root.path() / "etc/ssl/certs/ca-certificates.crt");
  SandboxSpec spec = validSpec();
  spec.ca_cert_pem = "-----BEGIN CERTIFICATE-----\nQQ==\n-----END CERTIFICATE-----";
  auto files = writeCaFiles(spec, root.path(), out.path());
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(*readFile(files->bundle), spec.ca_cert_pem + "\n");
  EXPECT_EQ(*readFile(files->ca_cert), spec.ca_cert_pem + "\n");

  ASSERT_TRUE(writeFileAtomic(root.path() / "etc/hostname", "IN-ROOT\n").ok());
  files = writeCaFiles(spec, root.path(), out.path());
  ASSERT_TRUE(files.ok());
  EXPECT_EQ(*readFile(files->bundle), "IN-ROOT\n" + spec.ca_cert_pem + "\n");
}

TEST(SandboxEnvTest, AddsPathAndCaVariablesUnlessSet) {
  SandboxSpec spec = validSpec();
  spec.env = {"NODE_EXTRA_CA_CERTS=/mine.pem", "A=b"};
  spec.ca_cert_pem = "-----BEGIN CERTIFICATE-----\n";
  auto env = sandboxEnv(spec);
  EXPECT_THAT(env, ::testing::Contains("NODE_EXTRA_CA_CERTS=/mine.pem"));
  EXPECT_THAT(env, ::testing::Contains("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"));
  EXPECT_THAT(env, ::testing::Contains("CURL_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"));
  EXPECT_THAT(env, ::testing::Contains("REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt"));
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.rfind("NODE_EXTRA", 0) == 0; }),
            1);
  EXPECT_EQ(std::count_if(env.begin(), env.end(),
                          [](const std::string& e) { return e.rfind("PATH=", 0) == 0; }),
            1);
}

TEST(RecordTest, RoundTripsAndRejectsGarbage) {
  TempDir dir;
  SandboxRecord record;
  record.id = "x1";
  record.backend = "gvisor";
  record.pid = 42;
  record.pid_start = 123456789012ull;
  record.cgroup = "clrk/x1";
  record.runsc_root = "/r";
  ASSERT_TRUE(writeRecord(dir.path() / "record.json", record).ok());
  auto loaded = readRecord(dir.path() / "record.json");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->pid_start, record.pid_start);
  EXPECT_EQ(loaded->cgroup, "clrk/x1");
  ASSERT_TRUE(writeFileAtomic(dir.path() / "bad.json", "{not json").ok());
  EXPECT_THAT(readRecord(dir.path() / "bad.json").status().message(),
              HasSubstr("bad sandbox record"));
}

TEST(ProcessTest, StartTimeAndGuardedSignal) {
  EXPECT_GT(processStartTime(::getpid()), 0u);
  EXPECT_EQ(processStartTime(0), 0u);
  // A wrong start time means "not the same process": no signal is sent.
  EXPECT_FALSE(signalIfSame(::getpid(), processStartTime(::getpid()) + 1, SIGKILL));
}

TEST(OutputLogTest, SplitsLinesAndRotates) {
  TempDir dir;
  std::vector<LogLine> lines;
  {
    OutputLog log(dir.path() / "out.log", 200, [&](const LogLine& line) { lines.push_back(line); });
    log.append(false, "a\nb", 3);
    log.append(true, "err\n", 4);
    log.append(false, "c\n", 2);
    std::string big(OutputLog::kMaxLineBytes + 10, 'x');
    log.append(false, big.data(), big.size());
    log.append(false, "\n", 1);
    for (int index = 0; index < 10; ++index) log.append(false, "0123456789\n", 11);
    log.flush();
  }
  ASSERT_GE(lines.size(), 4u);
  EXPECT_EQ(lines[0].text, "a");
  EXPECT_EQ(lines[1].text, "err");
  EXPECT_TRUE(lines[1].is_stderr);
  EXPECT_EQ(lines[2].text, "bc");
  EXPECT_EQ(lines[3].text.size(), OutputLog::kMaxLineBytes);
  EXPECT_EQ(lines[4].text, "xxxxxxxxxx");  // the remainder of the split line
  EXPECT_EQ(lines.back().text, "0123456789");
  EXPECT_LE(fs::file_size(dir.path() / "out.log"), 200u);
  EXPECT_TRUE(fs::exists(dir.path() / "out.log.1"));
}

TEST(OutputLogTest, EachLineReachesTheFileWhenItEnds) {
  TempDir dir;
  OutputLog log(dir.path() / "live.log", 0, nullptr);
  log.append(false, "first\npart", 10);
  auto content = readFile(dir.path() / "live.log");
  ASSERT_TRUE(content.ok());
  EXPECT_THAT(*content, HasSubstr(" stdout first\n"));
  EXPECT_THAT(*content, ::testing::Not(HasSubstr("part")));
}

TEST(HostMaskedDirsTest, HidesStateDirItsParentAndExtrasWithoutNesting) {
  TempDir dir;
  fs::create_directories(dir.path() / "worker" / "sandboxes");
  fs::create_directories(dir.path() / "secrets" / "inner");
  RuntimeOptions options;
  options.state_dir = dir.path() / "worker" / "sandboxes";
  options.hidden_paths = {dir.path() / "secrets", dir.path() / "secrets" / "inner",
                          dir.path() / "missing", "/"};
  std::vector<std::string> masked = hostMaskedDirs(options);
  auto has = [&](const fs::path& path) {
    return std::find(masked.begin(), masked.end(), fs::weakly_canonical(path).string()) !=
           masked.end();
  };
  // The temp dir lives under /tmp, which is hidden as a whole: nothing nested is listed again.
  if (fs::weakly_canonical(dir.path()).string().rfind("/tmp/", 0) == 0) {
    EXPECT_TRUE(has("/tmp"));
    EXPECT_FALSE(has(dir.path() / "worker"));
  } else {
    EXPECT_TRUE(has(dir.path() / "worker"));
    EXPECT_FALSE(has(dir.path() / "worker" / "sandboxes"));  // covered by its parent
    EXPECT_TRUE(has(dir.path() / "secrets"));
  }
  EXPECT_FALSE(has(dir.path() / "secrets" / "inner"));
  EXPECT_FALSE(has(dir.path() / "missing"));
  EXPECT_FALSE(has("/"));
  EXPECT_TRUE(has("/root"));
  for (size_t i = 0; i < masked.size(); ++i) {
    for (size_t j = 0; j < masked.size(); ++j) {
      if (i != j) {
        EXPECT_NE(masked[j].rfind(masked[i] + "/", 0), 0u) << masked[j];
      }
    }
  }
}

TEST(RemoveTreeTest, UnmountsInsteadOfDescending) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  TempDir outer, keep;
  ASSERT_TRUE(writeFileAtomic(keep.path() / "precious", "x").ok());
  fs::create_directories(outer.path() / "a/mnt");
  ASSERT_EQ(
      ::mount(keep.path().c_str(), (outer.path() / "a/mnt").c_str(), nullptr, MS_BIND, nullptr), 0);
  ASSERT_TRUE(removeTree(outer.path() / "a").ok());
  EXPECT_FALSE(fs::exists(outer.path() / "a"));
  EXPECT_TRUE(fs::exists(keep.path() / "precious"));
  EXPECT_TRUE(removeTree(outer.path() / "missing").ok());
}

TEST(SeccompTest, ProgramBuilds) {
  auto program = namespaces::buildSeccompProgram();
  ASSERT_TRUE(program.ok()) << program.status().toString();
  EXPECT_GT(program->size(), 20u);
}

TEST(ExitReportReaderTest, TakesOneReportInPiecesAndRefusesAnythingElse) {
  std::string report =
      std::string(kExitMagic, sizeof kExitMagic - 1) + std::string("\x00\x07\x00\x00", 4);
  ExitReportReader pieces;
  EXPECT_TRUE(pieces.take(report.data(), 3));
  EXPECT_FALSE(pieces.complete());
  EXPECT_TRUE(pieces.take(report.data() + 3, report.size() - 3));
  ASSERT_TRUE(pieces.complete());
  EXPECT_TRUE(WIFEXITED(pieces.waitStatus()));
  EXPECT_EQ(WEXITSTATUS(pieces.waitStatus()), 7);
  EXPECT_FALSE(pieces.take("x", 1));  // nothing may follow a report

  ExitReportReader wrong;
  EXPECT_FALSE(wrong.take("CLRKEXT2", 8));
  ExitReportReader longer;
  std::string doubled = report + report;
  EXPECT_FALSE(longer.take(doubled.data(), doubled.size()));

  // From a socket: partial, then complete; end of stream without a report is refused.
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd reader_end(fds[0]), writer_end(fds[1]);
  ExitReportReader from_socket;
  EXPECT_TRUE(from_socket.readFrom(reader_end.get()));  // nothing yet: keep waiting
  ASSERT_EQ(::write(writer_end.get(), report.data(), 5), 5);
  EXPECT_TRUE(from_socket.readFrom(reader_end.get()));
  EXPECT_FALSE(from_socket.complete());
  ASSERT_EQ(::write(writer_end.get(), report.data() + 5, report.size() - 5),
            static_cast<ssize_t>(report.size() - 5));
  EXPECT_TRUE(from_socket.readFrom(reader_end.get()));
  EXPECT_TRUE(from_socket.complete());
  ExitReportReader cut;
  ASSERT_EQ(::write(writer_end.get(), report.data(), 4), 4);
  writer_end.reset();
  EXPECT_FALSE(cut.readFrom(reader_end.get()));
}

}  // namespace
}  // namespace clrk::sandbox
