// Integration tests against a real registry: Debian's docker-registry (distribution 2.8) started
// on 127.0.0.1:<free port> with its storage in a temp dir, holding images this test builds as an
// OCI layout (layer tars written with libarchive) and pushes with skopeo.
#include "clrk/sandbox/image/image_store.h"

#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/sandbox/image/manifest.h"
#include "clrk/sandbox/image/test_tar.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <chrono>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::sandbox::image {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::Compression;
using ::testing::HasSubstr;
using testing::TarEntry;
using testing::TempDir;

bool haveTools() {
  return ::access("/usr/bin/docker-registry", X_OK) == 0 && ::access("/usr/bin/skopeo", X_OK) == 0;
}

int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool canConnect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

// Runs a shell command; returns its exit code and appends its output to `output`.
int run(const std::string& command, std::string* output = nullptr) {
  std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  std::string text;
  while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) text.append(buffer, n);
  int status = ::pclose(pipe);
  if (output) *output += text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// docker-registry with filesystem storage in a temp dir; optional htpasswd auth. Stopped (by PID)
// in the destructor.
class Registry {
 public:
  // With `tls`, serves https with a fresh self-signed certificate for 127.0.0.1 (certPath()).
  explicit Registry(std::string htpasswd_line = "", bool tls = false) {
    port_ = freePort();
    std::string config =
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
        "storage:\n  filesystem:\n    rootdirectory: " +
        (dir_.path() / "data").string() + "\nhttp:\n  addr: 127.0.0.1:" + std::to_string(port_) +
        "\n";
    if (!htpasswd_line.empty()) {
      EXPECT_TRUE(writeFileAtomic(dir_.path() / "htpasswd", htpasswd_line + "\n").ok());
      config += "auth:\n  htpasswd:\n    realm: clrk-test\n    path: " +
                (dir_.path() / "htpasswd").string() + "\n";
    }
    if (tls) {
      std::string output;
      int rc =
          run("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
              "-days 1 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                  (dir_.path() / "key.pem").string() + " -out " + certPath().string(),
              &output);
      EXPECT_EQ(rc, 0) << output;
      config += "  tls:\n    certificate: " + certPath().string() +
                "\n    key: " + (dir_.path() / "key.pem").string() + "\n";
    }
    EXPECT_TRUE(writeFileAtomic(dir_.path() / "config.yml", config).ok());
    std::string log = (dir_.path() / "registry.log").string();
    std::string config_path = (dir_.path() / "config.yml").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execl("/usr/bin/docker-registry", "docker-registry", "serve", config_path.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !canConnect(port_); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    EXPECT_TRUE(canConnect(port_)) << "registry did not start: " << logText();
  }
  ~Registry() { stop(); }
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  fs::path certPath() const { return dir_.path() / "cert.pem"; }
  std::string logText() const {
    auto text = readFile(dir_.path() / "registry.log");
    return text.ok() ? *text : "";
  }
  fs::path blobData(const std::string& digest) const {
    std::string hex = digest.substr(7);
    return dir_.path() / "data/docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex / "data";
  }

 private:
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

// testdata/token_registry.py: a Bearer-token front for `upstream` that redirects blob requests
// to it. Prints its port; stopped by PID.
class TokenFront {
 public:
  TokenFront(const std::string& upstream, const std::string& creds, int uses = 1 << 30) {
    std::string uses_text = std::to_string(uses);
    const char* source = std::getenv("CLRK_SOURCE_DIR");
    fs::path script = source
                          ? fs::path(source) / "src/clrk/sandbox/image/testdata/token_registry.py"
                          : fs::path(__FILE__).parent_path() / "testdata/token_registry.py";
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      ::dup2(fds[1], 1);
      ::execl("/usr/bin/python3", "python3", script.c_str(), upstream.c_str(), creds.c_str(),
              uses_text.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    char c = 0;
    while (::read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(fds[0]);
    port_ = std::atoi(line.c_str());
    EXPECT_GT(port_, 0) << "token_registry.py did not start";
  }
  ~TokenFront() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  TokenFront(const TokenFront&) = delete;
  TokenFront& operator=(const TokenFront&) = delete;
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

struct BlobRef {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
  json descriptor() const {
    return {{"mediaType", media_type}, {"digest", digest}, {"size", size}};
  }
};

// Writes an OCI image layout (oci-layout, index.json, blobs/sha256/*) by hand.
class OciLayout {
 public:
  explicit OciLayout(fs::path dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_ / "blobs" / "sha256");
  }

  BlobRef addBlob(const std::string& media_type, const std::string& bytes) {
    BlobRef ref{media_type, "sha256:" + sha256Hex(bytes), bytes.size()};
    EXPECT_TRUE(writeFileAtomic(dir_ / "blobs" / "sha256" / ref.digest.substr(7), bytes).ok());
    return ref;
  }

  // Returns the layer descriptor; appends its diff_id (digest of the uncompressed tar).
  BlobRef addLayer(const std::vector<TarEntry>& entries, Compression compression,
                   std::vector<std::string>& diff_ids) {
    fs::path plain = dir_ / "tmp-layer.tar";
    testing::writeTar(plain, entries, Compression::None);
    diff_ids.push_back("sha256:" + sha256Hex(*readFile(plain)));
    fs::path packed = dir_ / "tmp-layer";
    testing::writeTar(packed, entries, compression);
    std::string bytes = *readFile(packed);
    fs::remove(plain);
    fs::remove(packed);
    std::string type = "application/vnd.oci.image.layer.v1.tar";
    if (compression == Compression::Gzip) type += "+gzip";
    if (compression == Compression::Zstd) type += "+zstd";
    return addBlob(type, bytes);
  }

  BlobRef addImage(const std::vector<BlobRef>& layers, const std::vector<std::string>& diff_ids,
                   const std::string& arch, const json& config) {
    json image = {{"architecture", arch},
                  {"os", "linux"},
                  {"config", config},
                  {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}};
    BlobRef config_ref = addBlob("application/vnd.oci.image.config.v1+json", image.dump());
    json manifest = {{"schemaVersion", 2},
                     {"mediaType", std::string(kOciManifest)},
                     {"config", config_ref.descriptor()},
                     {"layers", json::array()}};
    for (const BlobRef& layer : layers) manifest["layers"].push_back(layer.descriptor());
    return addBlob(std::string(kOciManifest), manifest.dump());
  }

  BlobRef addIndex(const std::vector<std::pair<BlobRef, std::string>>& manifests) {
    json index = {
        {"schemaVersion", 2}, {"mediaType", std::string(kOciIndex)}, {"manifests", json::array()}};
    for (const auto& [ref, arch] : manifests) {
      json entry = ref.descriptor();
      entry["platform"] = {{"os", "linux"}, {"architecture", arch}};
      if (arch == "arm64") entry["platform"]["variant"] = "v8";
      index["manifests"].push_back(entry);
    }
    return addBlob(std::string(kOciIndex), index.dump());
  }

  void tag(const BlobRef& ref, const std::string& name) {
    json entry = ref.descriptor();
    entry["annotations"] = {{"org.opencontainers.image.ref.name", name}};
    top_.push_back(entry);
    json index = {{"schemaVersion", 2}, {"manifests", top_}};
    EXPECT_TRUE(writeFileAtomic(dir_ / "index.json", index.dump()).ok());
    EXPECT_TRUE(writeFileAtomic(dir_ / "oci-layout", R"({"imageLayoutVersion": "1.0.0"})").ok());
  }

  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
  json top_ = json::array();
};

// The test image: busybox plus files in layer 1; layer 2 deletes, replaces and adds.
std::vector<TarEntry> baseLayer(const std::string& marker) {
  auto busybox = readFile("/bin/busybox");
  return {
      testing::dir("bin"),
      testing::file("bin/busybox", busybox.ok() ? *busybox : "no busybox", 0755),
      testing::symlink("bin/sh", "busybox"),
      testing::dir("etc"),
      testing::file("etc/hello.txt", "hello from layer 1\n"),
      testing::file("etc/remove-me.txt", "should be whited out\n"),
      testing::file("etc/marker", marker),
      testing::dir("opaque"),
      testing::file("opaque/old.txt", "old"),
  };
}

std::vector<TarEntry> topLayer(const std::string& marker) {
  return {
      testing::file("etc/top-marker", marker),
      testing::file("etc/.wh.remove-me.txt", ""),
      testing::file("etc/new.txt", "added by layer 2\n"),
      testing::hardlink("etc/hello-link", "etc/hello.txt"),
      testing::dir("opaque"),
      testing::file("opaque/.wh..wh..opq", ""),
      testing::file("opaque/new.txt", "new"),
  };
}

const json kConfig = {{"Entrypoint", {"/bin/sh", "-c"}},
                      {"Cmd", {"echo hi"}},
                      {"Env", {"PATH=/bin", "GREETING=hello"}},
                      {"WorkingDir", "/etc"},
                      {"User", "0:0"}};

BlobRef buildImage(OciLayout& layout, const std::string& marker, Compression compression,
                   const std::string& arch = "amd64") {
  std::vector<std::string> diff_ids;
  BlobRef l1 = layout.addLayer(baseLayer(marker), compression, diff_ids);
  BlobRef l2 = layout.addLayer(topLayer(marker), compression, diff_ids);
  return layout.addImage({l1, l2}, diff_ids, arch, kConfig);
}

void push(const OciLayout& layout, const std::string& tag, const std::string& dest,
          const std::string& extra = "") {
  std::string output;
  int rc = run("skopeo --insecure-policy copy --quiet --dest-tls-verify=false " + extra +
                   " oci:" + layout.dir().string() + ":" + tag + " docker://" + dest,
               &output);
  ASSERT_EQ(rc, 0) << output;
}

PullOptions insecure() {
  PullOptions options;
  options.insecure_http = true;
  options.timeout = std::chrono::seconds(60);
  return options;
}

void expectTestRootfs(const PulledImage& image, const std::string& marker) {
  const fs::path& root = image.rootfs;
  EXPECT_EQ(*readFile(root / "etc/marker"), marker);
  EXPECT_EQ(*readFile(root / "etc/top-marker"), marker);
  EXPECT_EQ(*readFile(root / "etc/hello.txt"), "hello from layer 1\n");
  EXPECT_EQ(*readFile(root / "etc/new.txt"), "added by layer 2\n");
  EXPECT_FALSE(fs::exists(fs::symlink_status(root / "etc/remove-me.txt")));
  EXPECT_FALSE(fs::exists(root / "etc/.wh.remove-me.txt"));
  EXPECT_FALSE(fs::exists(root / "opaque/old.txt"));
  EXPECT_EQ(*readFile(root / "opaque/new.txt"), "new");
  EXPECT_EQ(fs::read_symlink(root / "bin/sh"), "busybox");
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat((root / "etc/hello.txt").c_str(), &a), 0);
  ASSERT_EQ(::stat((root / "etc/hello-link").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  ASSERT_EQ(::stat((root / "bin/busybox").c_str(), &a), 0);
  EXPECT_EQ(a.st_mode & 0777, 0755u);
  EXPECT_EQ(image.config.entrypoint, (std::vector<std::string>{"/bin/sh", "-c"}));
  EXPECT_EQ(image.config.working_dir, "/etc");
  EXPECT_EQ(image.config.env.size(), 2u);
  EXPECT_TRUE(checkDigest(image.manifest_digest).empty()) << image.manifest_digest;
  EXPECT_EQ(image.rootfs.filename().string(), image.manifest_digest.substr(7));
  EXPECT_GT(image.size_bytes, 100000u);
  // The static busybox from the image runs and sees the unpacked files.
  std::string output;
  EXPECT_EQ(
      run((root / "bin/busybox").string() + " cat " + (root / "etc/new.txt").string(), &output), 0);
  EXPECT_EQ(output, "added by layer 2\n");
}

// One registry for most tests, holding: test/img:v1 (gzip), test/img:zstd (own zstd layers),
// test/img:skopeo-zstd (recompressed by skopeo), test/multi:v1 (index: arm64 + amd64).
class ImageStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!haveTools()) return;
    work_ = new TempDir();
    registry_ = new Registry();
    OciLayout layout(work_->path() / "layout");
    img_manifest_ = buildImage(layout, "gzip", Compression::Gzip);
    layout.tag(img_manifest_, "v1");
    layout.tag(buildImage(layout, "zstd", Compression::Zstd), "zstd");
    BlobRef arm = buildImage(layout, "arm64", Compression::Gzip, "arm64");
    BlobRef amd = buildImage(layout, "amd64", Compression::Gzip, "amd64");
    layout.tag(layout.addIndex({{arm, "arm64"}, {amd, "amd64"}}), "multi");
    // Layers of their own, so skopeo cannot reuse an already uploaded gzip blob.
    layout.tag(buildImage(layout, "skopeo-zstd", Compression::Gzip), "to-recompress");
    std::string host = registry_->host();
    push(layout, "v1", host + "/test/img:v1");
    push(layout, "zstd", host + "/test/img:zstd");
    push(layout, "to-recompress", host + "/test/img:skopeo-zstd",
         "--dest-compress --dest-compress-format zstd");
    push(layout, "multi", host + "/test/multi:v1", "--all");
  }
  static void TearDownTestSuite() {
    delete registry_;
    delete work_;
    registry_ = nullptr;
    work_ = nullptr;
  }
  void SetUp() override {
    if (!haveTools()) GTEST_SKIP() << "docker-registry or skopeo not installed";
    auto store = ImageStore::open(store_dir_.path() / "images");
    ASSERT_TRUE(store.ok()) << store.status().toString();
    store_ = std::move(*store);
  }

  std::string ref(const std::string& rest) const { return registry_->host() + "/" + rest; }

  static TempDir* work_;
  static Registry* registry_;
  static BlobRef img_manifest_;
  TempDir store_dir_;
  std::unique_ptr<ImageStore> store_;
};

TempDir* ImageStoreTest::work_ = nullptr;
Registry* ImageStoreTest::registry_ = nullptr;
BlobRef ImageStoreTest::img_manifest_;

TEST_F(ImageStoreTest, PullsUnpacksAndCaches) {
  auto image = store_->pull(ref("test/img:v1"), insecure());
  ASSERT_TRUE(image.ok()) << image.status().toString() << "\n" << registry_->logText();
  EXPECT_EQ(image->reference, ref("test/img:v1"));
  EXPECT_EQ(image->manifest_digest, img_manifest_.digest);
  expectTestRootfs(*image, "gzip");
  auto manifest = parseManifest(
      *readFile(store_->root() / "blobs/sha256" / image->manifest_digest.substr(7)), "");
  ASSERT_TRUE(manifest.ok());
  for (const Descriptor& layer : manifest->layers) EXPECT_THAT(layer.media_type, HasSubstr("gzip"));
  ImageStoreStats after_first = store_->stats();
  EXPECT_EQ(after_first.unpacks, 1u);
  EXPECT_EQ(after_first.blobs_downloaded, 3u);  // config + 2 layers
  EXPECT_GE(after_first.registry_requests, 4u);

  // Cache layout.
  const fs::path root = store_->root();
  EXPECT_TRUE(fs::exists(root / "blobs/sha256" / img_manifest_.digest.substr(7)));
  EXPECT_TRUE(fs::is_directory(root / "rootfs" / img_manifest_.digest.substr(7)));
  auto refs = json::parse(*readFile(root / "refs.json"));
  EXPECT_EQ(refs["refs"][ref("test/img:v1")], img_manifest_.digest);
  EXPECT_TRUE(fs::is_empty(root / "tmp"));

  // Second pull: no network at all.
  auto again = store_->pull(ref("test/img:v1"), insecure());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->rootfs, image->rootfs);
  EXPECT_EQ(store_->stats().registry_requests, after_first.registry_requests);

  // prefer_cached=false asks for the manifest again but downloads and unpacks nothing.
  PullOptions fresh = insecure();
  fresh.prefer_cached = false;
  auto refreshed = store_->pull(ref("test/img:v1"), fresh);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status().toString();
  EXPECT_GT(store_->stats().registry_requests, after_first.registry_requests);
  EXPECT_EQ(store_->stats().blobs_downloaded, 3u);
  EXPECT_EQ(store_->stats().unpacks, 1u);

  // A reopened store finds the cache on disk.
  store_.reset();
  auto reopened = ImageStore::open(root);
  ASSERT_TRUE(reopened.ok());
  auto cached = (*reopened)->pull(ref("test/img:v1"), insecure());
  ASSERT_TRUE(cached.ok()) << cached.status().toString();
  EXPECT_EQ((*reopened)->stats().registry_requests, 0u);
  EXPECT_EQ(cached->config.cmd, (std::vector<std::string>{"echo hi"}));
}

TEST_F(ImageStoreTest, PullByDigest) {
  auto image = store_->pull(ref("test/img@" + img_manifest_.digest), insecure());
  ASSERT_TRUE(image.ok()) << image.status().toString();
  EXPECT_EQ(image->manifest_digest, img_manifest_.digest);
  expectTestRootfs(*image, "gzip");
  // Pinned by digest and already unpacked (pulled by tag): no network.
  auto by_tag = store_->pull(ref("test/multi:v1"), insecure());
  ASSERT_TRUE(by_tag.ok()) << by_tag.status().toString();
  uint64_t before = store_->stats().registry_requests;
  auto pinned = store_->pull(ref("test/other@" + by_tag->manifest_digest), insecure());
  ASSERT_TRUE(pinned.ok()) << pinned.status().toString();
  EXPECT_EQ(pinned->rootfs, by_tag->rootfs);
  EXPECT_EQ(store_->stats().registry_requests, before);
  auto missing = store_->pull(ref("test/img@sha256:" + std::string(64, '0')), insecure());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::NotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("MANIFEST_UNKNOWN"));
}

TEST_F(ImageStoreTest, ZstdLayers) {
  auto image = store_->pull(ref("test/img:zstd"), insecure());
  ASSERT_TRUE(image.ok()) << image.status().toString();
  expectTestRootfs(*image, "zstd");
  auto recompressed = store_->pull(ref("test/img:skopeo-zstd"), insecure());
  ASSERT_TRUE(recompressed.ok()) << recompressed.status().toString();
  expectTestRootfs(*recompressed, "skopeo-zstd");
  auto manifest = parseManifest(
      *readFile(store_->root() / "blobs/sha256" / recompressed->manifest_digest.substr(7)), "");
  ASSERT_TRUE(manifest.ok());
  for (const Descriptor& layer : manifest->layers) {
    EXPECT_THAT(layer.media_type, HasSubstr("zstd"));
  }
}

TEST_F(ImageStoreTest, MultiArchIndexResolvesHostPlatform) {
  auto image = store_->pull(ref("test/multi:v1"), insecure());
  ASSERT_TRUE(image.ok()) << image.status().toString();
  EXPECT_EQ(hostArchitecture(), "amd64");
  expectTestRootfs(*image, "amd64");
}

TEST_F(ImageStoreTest, UnknownTagAndRepository) {
  auto missing = store_->pull(ref("test/img:nope"), insecure());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::NotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("test/img:nope"));
  auto bad = store_->pull("UPPER/case", insecure());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::InvalidArgument);
}

TEST_F(ImageStoreTest, ConcurrentPullsAreCoalesced) {
  std::vector<std::thread> threads;
  std::vector<Result<PulledImage>> results(6, Result<PulledImage>(internalError("not run")));
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = store_->pull(ref("test/img:v1"), insecure()); });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status().toString();
    EXPECT_EQ(result->rootfs, results[0]->rootfs);
  }
  EXPECT_EQ(store_->stats().unpacks, 1u);
  EXPECT_EQ(store_->stats().blobs_downloaded, 3u);
}

TEST_F(ImageStoreTest, GarbageCollectKeepsOnlyWhatIsAsked) {
  auto img = store_->pull(ref("test/img:v1"), insecure());
  auto multi = store_->pull(ref("test/multi:v1"), insecure());
  ASSERT_TRUE(img.ok() && multi.ok());
  auto freed = store_->garbageCollect({img->manifest_digest});
  ASSERT_TRUE(freed.ok()) << freed.status().toString();
  EXPECT_GT(*freed, 1000000u);  // multi's busybox layer and rootfs
  EXPECT_TRUE(fs::is_directory(img->rootfs));
  EXPECT_FALSE(fs::exists(multi->rootfs));
  auto refs = json::parse(*readFile(store_->root() / "refs.json"));
  EXPECT_FALSE(refs["refs"].contains(ref("test/multi:v1")));
  // img is still served from the cache; multi needs the network again.
  uint64_t before = store_->stats().registry_requests;
  ASSERT_TRUE(store_->pull(ref("test/img:v1"), insecure()).ok());
  EXPECT_EQ(store_->stats().registry_requests, before);
  ASSERT_TRUE(store_->pull(ref("test/multi:v1"), insecure()).ok());
  EXPECT_GT(store_->stats().registry_requests, before);
  EXPECT_FALSE(store_->garbageCollect({"sha256:nope"}).ok());
  auto all = store_->garbageCollect({});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(fs::is_empty(store_->root() / "rootfs"));
  EXPECT_TRUE(fs::is_empty(store_->root() / "blobs/sha256"));
}

// What a crash leaves behind (a partial download, a half-unpacked root, a broken refs.json) is
// cleaned up by open(); a rootfs that is complete stays.
TEST(ImageStoreStandalone, OpenCleansCrashLeftovers) {
  TempDir work;
  fs::path root = work.path() / "images";
  {
    auto store = ImageStore::open(root);
    ASSERT_TRUE(store.ok());
  }
  std::string hex(64, 'a');
  fs::create_directories(root / "rootfs" / (hex + ".tmp") / "etc");
  fs::create_directories(root / "rootfs" / hex);
  ASSERT_TRUE(writeFileAtomic(root / "tmp" / "partial", "x").ok());
  ASSERT_TRUE(writeFileAtomic(root / "refs.json", "{broken").ok());
  auto store = ImageStore::open(root);
  ASSERT_TRUE(store.ok()) << store.status().toString();
  EXPECT_FALSE(fs::exists(root / "rootfs" / (hex + ".tmp")));
  EXPECT_TRUE(fs::exists(root / "rootfs" / hex));
  EXPECT_TRUE(fs::is_empty(root / "tmp"));
  auto missing = (*store)->pull("127.0.0.1:1/never/pulled:v1", insecure());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::Unavailable);
}

// A registry serving a blob whose bytes do not match its digest: the pull fails naming the blob,
// nothing lands in blobs/ or rootfs/, and tmp/ is clean.
TEST(ImageStoreStandalone, DigestMismatchRejected) {
  if (!haveTools()) GTEST_SKIP() << "docker-registry or skopeo not installed";
  TempDir work;
  Registry registry;
  OciLayout layout(work.path() / "layout");
  std::vector<std::string> diff_ids;
  BlobRef layer = layout.addLayer({testing::file("unique", "corrupt me " + randomHex(8))},
                                  Compression::Gzip, diff_ids);
  layout.tag(layout.addImage({layer}, diff_ids, "amd64", kConfig), "v1");
  push(layout, "v1", registry.host() + "/test/corrupt:v1");
  // Same size, different bytes, behind the registry's back.
  fs::path data = registry.blobData(layer.digest);
  std::string bytes = *readFile(data);
  bytes[bytes.size() / 2] ^= 0x55;
  ASSERT_TRUE(writeFileAtomic(data, bytes).ok());

  auto store = ImageStore::open(work.path() / "images");
  ASSERT_TRUE(store.ok());
  auto image = (*store)->pull(registry.host() + "/test/corrupt:v1", insecure());
  ASSERT_FALSE(image.ok());
  EXPECT_EQ(image.status().code(), Code::InvalidArgument);
  EXPECT_THAT(image.status().message(), HasSubstr("blob " + layer.digest));
  EXPECT_THAT(image.status().message(), HasSubstr("digest mismatch"));
  EXPECT_FALSE(fs::exists(work.path() / "images/blobs/sha256" / layer.digest.substr(7)));
  EXPECT_TRUE(fs::is_empty(work.path() / "images/rootfs"));
  EXPECT_TRUE(fs::is_empty(work.path() / "images/tmp"));
}

// https with a private CA: verified with ca_bundle_path, refused without it.
TEST(ImageStoreStandalone, TlsRegistryWithExtraCa) {
  if (!haveTools()) GTEST_SKIP() << "docker-registry or skopeo not installed";
  TempDir work;
  Registry registry("", /*tls=*/true);
  OciLayout layout(work.path() / "layout");
  layout.tag(buildImage(layout, "tls", Compression::Gzip), "v1");
  push(layout, "v1", registry.host() + "/test/tls:v1");
  auto store = ImageStore::open(work.path() / "images");
  ASSERT_TRUE(store.ok());
  std::string reference = registry.host() + "/test/tls:v1";
  PullOptions options;
  options.timeout = std::chrono::seconds(60);
  auto untrusted = (*store)->pull(reference, options);
  ASSERT_FALSE(untrusted.ok());
  EXPECT_THAT(untrusted.status().message(), HasSubstr("certificate"));
  options.ca_bundle_path = registry.certPath().string();
  auto image = (*store)->pull(reference, options);
  ASSERT_TRUE(image.ok()) << image.status().toString();
  expectTestRootfs(*image, "tls");
}

// A config whose diff_id does not match the layer's uncompressed content: rejected before
// anything is unpacked.
TEST(ImageStoreStandalone, DiffIdMismatchRejected) {
  if (!haveTools()) GTEST_SKIP() << "docker-registry or skopeo not installed";
  TempDir work;
  Registry registry;
  OciLayout layout(work.path() / "layout");
  std::vector<std::string> diff_ids;
  BlobRef layer =
      layout.addLayer({testing::file("f", "diff id " + randomHex(8))}, Compression::Gzip, diff_ids);
  diff_ids[0] = "sha256:" + std::string(64, 'e');
  layout.tag(layout.addImage({layer}, diff_ids, "amd64", kConfig), "v1");
  push(layout, "v1", registry.host() + "/test/diffid:v1");
  auto store = ImageStore::open(work.path() / "images");
  ASSERT_TRUE(store.ok());
  auto image = (*store)->pull(registry.host() + "/test/diffid:v1", insecure());
  ASSERT_FALSE(image.ok());
  EXPECT_THAT(image.status().message(), HasSubstr("does not match the config's diff_id"));
  EXPECT_TRUE(fs::is_empty(work.path() / "images/rootfs"));
}

// With the registry stopped, prefer_cached still serves the image; a forced refresh fails with
// a clear Unavailable error.
TEST(ImageStoreStandalone, CachedPullWorksWithRegistryStopped) {
  if (!haveTools()) GTEST_SKIP() << "docker-registry or skopeo not installed";
  TempDir work;
  Registry registry;
  OciLayout layout(work.path() / "layout");
  layout.tag(buildImage(layout, "offline", Compression::Gzip), "v1");
  push(layout, "v1", registry.host() + "/test/offline:v1");
  auto store = ImageStore::open(work.path() / "images");
  ASSERT_TRUE(store.ok());
  std::string reference = registry.host() + "/test/offline:v1";
  ASSERT_TRUE((*store)->pull(reference, insecure()).ok());
  registry.stop();
  auto cached = (*store)->pull(reference, insecure());
  ASSERT_TRUE(cached.ok()) << cached.status().toString();
  expectTestRootfs(*cached, "offline");
  PullOptions fresh = insecure();
  fresh.prefer_cached = false;
  auto refreshed = (*store)->pull(reference, fresh);
  ASSERT_FALSE(refreshed.ok());
  EXPECT_EQ(refreshed.status().code(), Code::Unavailable);
  EXPECT_THAT(refreshed.status().message(), HasSubstr("cannot reach registry " + registry.host()));
}

// htpasswd (Basic) auth: no credentials -> clear 401 error; wrong password -> refused; right
// credentials -> pulled. Also via a parsed .dockerconfigjson.
TEST(ImageStoreStandalone, BasicAuthRegistry) {
  if (!haveTools()) GTEST_SKIP() << "docker-registry or skopeo not installed";
  std::string hash;
  int rc =
      run("/usr/bin/python3 -W ignore -c \"import crypt; "
          "print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)), end='')\"",
          &hash);
  ASSERT_EQ(rc, 0) << hash;
  ASSERT_TRUE(hash.starts_with("$2")) << hash;
  TempDir work;
  Registry registry("alice:" + hash);
  OciLayout layout(work.path() / "layout");
  layout.tag(buildImage(layout, "private", Compression::Gzip), "v1");
  push(layout, "v1", registry.host() + "/test/private:v1", "--dest-creds alice:s3cret");
  auto store = ImageStore::open(work.path() / "images");
  ASSERT_TRUE(store.ok());
  std::string reference = registry.host() + "/test/private:v1";

  auto anonymous = (*store)->pull(reference, insecure());
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), Code::Unauthenticated);
  EXPECT_THAT(anonymous.status().message(), HasSubstr("requires authentication"));
  EXPECT_THAT(anonymous.status().message(), HasSubstr("no credentials were given"));

  PullOptions wrong = insecure();
  wrong.auth = RegistryAuth{"alice", "wrong"};
  auto refused = (*store)->pull(reference, wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::Unauthenticated);
  EXPECT_THAT(refused.status().message(), HasSubstr("user \"alice\""));

  auto auths = parseDockerConfigJson(R"({"auths": {")" + registry.host() +
                                     R"(": {"auth": "YWxpY2U6czNjcmV0"}}})");
  ASSERT_TRUE(auths.ok()) << auths.status().toString();
  PullOptions right = insecure();
  right.auth = auths->at(registry.host());
  auto image = (*store)->pull(reference, right);
  ASSERT_TRUE(image.ok()) << image.status().toString();
  expectTestRootfs(*image, "private");
  EXPECT_TRUE(fs::is_empty(work.path() / "images/tmp"));
}

// Bearer tokens: the challenge names a token realm; the token is fetched with Basic credentials
// (or anonymously), manifests come through the front, blobs through a 307 redirect.
TEST_F(ImageStoreTest, BearerTokenAuthAndBlobRedirects) {
  TokenFront with_creds(registry_->host(), "bob:hunter2");
  std::string reference = with_creds.host() + "/test/img:v1";
  auto anonymous = store_->pull(reference, insecure());
  ASSERT_FALSE(anonymous.ok());
  EXPECT_EQ(anonymous.status().code(), Code::Unauthenticated);
  EXPECT_THAT(anonymous.status().message(), HasSubstr("no credentials were given"));
  PullOptions wrong = insecure();
  wrong.auth = RegistryAuth{"bob", "nope"};
  auto refused = store_->pull(reference, wrong);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("rejected the credentials of user \"bob\""));
  PullOptions right = insecure();
  right.auth = RegistryAuth{"bob", "hunter2"};
  auto image = store_->pull(reference, right);
  ASSERT_TRUE(image.ok()) << image.status().toString();
  expectTestRootfs(*image, "gzip");
  EXPECT_EQ(image->manifest_digest, img_manifest_.digest);

  TokenFront anonymous_tokens(registry_->host(), "-");
  auto multi = store_->pull(anonymous_tokens.host() + "/test/multi:v1", insecure());
  ASSERT_TRUE(multi.ok()) << multi.status().toString();
  expectTestRootfs(*multi, "amd64");

  // Tokens that expire after two requests: the client negotiates a new one and carries on.
  TokenFront expiring(registry_->host(), "bob:hunter2", 2);
  auto renewed = store_->pull(expiring.host() + "/test/img:zstd", right);
  ASSERT_TRUE(renewed.ok()) << renewed.status().toString();
  expectTestRootfs(*renewed, "zstd");
}

}  // namespace
}  // namespace clrk::sandbox::image
