#include "clrk/sandbox/image/unpack.h"

#include "clrk/base/files.h"
#include "clrk/sandbox/image/manifest.h"
#include "clrk/sandbox/image/test_tar.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/stat.h>

namespace clrk::sandbox::image {
namespace {

namespace fs = std::filesystem;
using testing::Compression;
using ::testing::HasSubstr;
using testing::TarEntry;
using testing::TempDir;

std::string sha256HexOfFile(const fs::path& path) { return sha256Hex(*readFile(path)); }

class UnpackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = tmp_.path() / "root";
    outside_ = tmp_.path() / "outside";
    fs::create_directories(root_);
    fs::create_directories(outside_);
    ASSERT_TRUE(writeFileAtomic(outside_ / "victim", "original").ok());
  }

  // Writes and applies the layers in order; returns the first error.
  Status unpack(const std::vector<std::vector<TarEntry>>& layers,
                Compression compression = Compression::Gzip) {
    auto unpacker = LayerUnpacker::open(root_);
    if (!unpacker.ok()) return unpacker.status();
    for (size_t i = 0; i < layers.size(); ++i) {
      std::string index = std::to_string(i);
      fs::path layer = tmp_.path() / ("layer" + index);
      testing::writeTar(layer, layers[i], compression);
      std::string label = "L";
      label += index;
      CLRK_RETURN_IF_ERROR((*unpacker)->apply(layer, label));
    }
    stats_ = (*unpacker)->stats();
    return (*unpacker)->finish();
  }

  std::string read(const fs::path& rel) {
    auto text = readFile(root_ / rel);
    return text.ok() ? *text : "<missing>";
  }
  bool exists(const fs::path& rel) {
    struct stat st {};
    return ::lstat((root_ / rel).c_str(), &st) == 0;
  }
  void expectOutsideUntouched() {
    EXPECT_EQ(*readFile(outside_ / "victim"), "original");
    size_t count = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(outside_)) ++count;
    EXPECT_EQ(count, 1u) << "something was written next to the victim";
  }

  TempDir tmp_;
  fs::path root_;
  fs::path outside_;
  UnpackStats stats_;
};

TEST_F(UnpackTest, FilesDirsLinksModesAndOwnership) {
  TarEntry owned = testing::file("etc/owned", "x", 0640);
  owned.uid = 1234;
  owned.gid = 5678;
  Status status = unpack({{
      testing::dir("./"),
      testing::dir("bin"),
      testing::file("./bin/tool", "#!/bin/sh\necho hi\n", 04755),
      testing::symlink("bin/sh", "tool"),
      testing::symlink("bin/abs", "/bin/tool"),
      testing::hardlink("bin/tool2", "bin/tool"),
      testing::file("deep/a/b/c.txt", "deep"),  // parents not listed
      owned,
      testing::dir("ro", 0555),
      testing::file("ro/inside", "in ro"),
      TarEntry{TarEntry::Fifo, "run/fifo", "", 0600, 0, 0},
  }});
  ASSERT_TRUE(status.ok()) << status.toString();
  EXPECT_EQ(read("bin/tool"), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(read("deep/a/b/c.txt"), "deep");
  EXPECT_EQ(fs::read_symlink(root_ / "bin/sh"), "tool");
  EXPECT_EQ(fs::read_symlink(root_ / "bin/abs"), "/bin/tool");
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat((root_ / "bin/tool").c_str(), &a), 0);
  ASSERT_EQ(::stat((root_ / "bin/tool2").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mode & 07777, 04755u);
  EXPECT_EQ(a.st_mtime, 1700000000);
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "ro").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0555u);
  EXPECT_EQ(read("ro/inside"), "in ro");
  ASSERT_EQ(::lstat((root_ / "run/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(::stat((root_ / "etc/owned").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  if (::geteuid() == 0) {
    EXPECT_EQ(st.st_uid, 1234u);
    EXPECT_EQ(st.st_gid, 5678u);
  }
}

TEST_F(UnpackTest, WhiteoutsDeleteLowerEntries) {
  Status status = unpack({
      {
          testing::file("etc/keep", "keep"),
          testing::file("etc/remove-me", "bye"),
          testing::dir("var/cache"),
          testing::file("var/cache/a", "a"),
          testing::file("var/cache/sub/b", "b"),
          testing::file("opaque/old1", "old"),
          testing::dir("opaque/olddir"),
          testing::file("opaque/olddir/x", "x"),
      },
      {
          testing::file("etc/.wh.remove-me", ""),
          testing::file("var/.wh.cache", ""),
          testing::file("etc/.wh.never-existed", ""),
          testing::file("nodir/.wh.x", ""),
          testing::dir("opaque"),
          testing::file("opaque/new-before", "nb"),
          testing::file("opaque/.wh..wh..opq", ""),
          testing::file("opaque/new", "new"),
      },
  });
  ASSERT_TRUE(status.ok()) << status.toString();
  EXPECT_EQ(read("etc/keep"), "keep");
  EXPECT_FALSE(exists("etc/remove-me"));
  EXPECT_FALSE(exists("etc/.wh.remove-me"));
  EXPECT_FALSE(exists("var/cache"));
  EXPECT_TRUE(exists("var"));
  EXPECT_FALSE(exists("opaque/old1"));
  EXPECT_FALSE(exists("opaque/olddir"));
  EXPECT_FALSE(exists("opaque/.wh..wh..opq"));
  EXPECT_EQ(read("opaque/new"), "new");
  EXPECT_EQ(read("opaque/new-before"), "nb");  // same layer: not hidden by the opaque marker
  EXPECT_EQ(stats_.whiteouts, 4u + 1u);
}

TEST_F(UnpackTest, LaterLayerReplacesFileDirAndSymlink) {
  Status status = unpack({
      {
          testing::file("a", "file"),
          testing::dir("b"),
          testing::file("b/child", "c"),
          testing::symlink("c", "/outside-target"),
      },
      {
          testing::dir("a"),
          testing::file("b", "now a file"),
          testing::file("c", "now a file too"),
      },
  });
  ASSERT_TRUE(status.ok()) << status.toString();
  EXPECT_TRUE(fs::is_directory(root_ / "a"));
  EXPECT_EQ(read("b"), "now a file");
  EXPECT_FALSE(fs::is_symlink(root_ / "c"));
  EXPECT_EQ(read("c"), "now a file too");
}

TEST_F(UnpackTest, CompressionFormats) {
  for (Compression compression : {Compression::None, Compression::Gzip, Compression::Zstd}) {
    fs::remove_all(root_);
    fs::create_directories(root_);
    Status status = unpack({{testing::file("hello", "world")}}, compression);
    ASSERT_TRUE(status.ok()) << status.toString();
    EXPECT_EQ(read("hello"), "world");
  }
}

TEST_F(UnpackTest, DotDotRejected) {
  std::string rel_victim = "../outside/victim";
  Status status = unpack({{testing::file(rel_victim, "pwned")}});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.code(), Code::InvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("entry \"../outside/victim\""));
  EXPECT_THAT(status.message(), HasSubstr("path traversal"));
  EXPECT_THAT(status.message(), HasSubstr("layer L0"));
  expectOutsideUntouched();

  status = unpack({{testing::file("a/b/../../../outside/victim", "pwned")}});
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("\"..\" component"));
  expectOutsideUntouched();
}

TEST_F(UnpackTest, AbsolutePathRejected) {
  std::string absolute = (outside_ / "victim").string();
  Status status = unpack({{testing::file(absolute, "pwned")}});
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("absolute path"));
  expectOutsideUntouched();
}

TEST_F(UnpackTest, HardlinkTraversalRejected) {
  Status status = unpack({{testing::hardlink("stolen", "../outside/victim")}});
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("hard link target"));
  EXPECT_THAT(status.message(), HasSubstr("path traversal"));
  EXPECT_FALSE(exists("stolen"));
}

// A symlink pointing out of the root must not let later entries (same or later layer) escape:
// parents resolve inside the root, as they will in the sandbox.
TEST_F(UnpackTest, SymlinkParentsStayInsideRoot) {
  Status status = unpack({
      {
          testing::dir(outside_.relative_path().string()),
          testing::symlink("escape", outside_.string()),
          testing::symlink("up", "../../../../../../../.."),
          testing::file("escape/victim", "pwned-1"),
      },
      {
          testing::file("up" + outside_.string() + "/victim", "pwned-2"),
          testing::hardlink("link-through", "escape/victim"),
      },
  });
  ASSERT_TRUE(status.ok()) << status.toString();
  expectOutsideUntouched();
  // What the sandbox would see: the paths resolved with the root as "/".
  fs::path inside = root_ / outside_.relative_path() / "victim";
  EXPECT_EQ(*readFile(inside), "pwned-2");
  struct stat a {
  }, b{};
  ASSERT_EQ(::stat(inside.c_str(), &a), 0);
  ASSERT_EQ(::lstat((root_ / "link-through").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST_F(UnpackTest, DanglingSymlinkParentRejected) {
  Status status = unpack(
      {{testing::symlink("escape", outside_.string()), testing::file("escape/victim", "pwned")}});
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("entry \"escape/victim\""));
  expectOutsideUntouched();
}

TEST_F(UnpackTest, ExistingSymlinkLeafIsReplacedNotFollowed) {
  Status status = unpack({
      {testing::symlink("target", (outside_ / "victim").string())},
      {testing::file("target", "replaced")},
  });
  ASSERT_TRUE(status.ok()) << status.toString();
  expectOutsideUntouched();
  EXPECT_FALSE(fs::is_symlink(root_ / "target"));
  EXPECT_EQ(read("target"), "replaced");
}

TEST_F(UnpackTest, WhiteoutThroughSymlinkStaysInside) {
  Status status = unpack({
      {testing::symlink("escape", outside_.string())},
      {testing::file("escape/.wh.victim", "")},
  });
  ASSERT_TRUE(status.ok()) << status.toString();
  expectOutsideUntouched();
}

TEST_F(UnpackTest, DevicesSkipped) {
  Status status = unpack(
      {{TarEntry{TarEntry::CharDevice, "dev/null", "", 0666, 0, 0}, testing::file("after", "ok")}});
  ASSERT_TRUE(status.ok()) << status.toString();
  EXPECT_FALSE(exists("dev/null"));
  EXPECT_EQ(stats_.skipped_devices, 1u);
  EXPECT_EQ(read("after"), "ok");
}

TEST_F(UnpackTest, CorruptLayerRejected) {
  fs::path layer = tmp_.path() / "junk";
  ASSERT_TRUE(writeFileAtomic(layer, std::string("\x1f\x8b\x08\x00garbage garbage", 20)).ok());
  auto unpacker = LayerUnpacker::open(root_);
  ASSERT_TRUE(unpacker.ok());
  Status status = (*unpacker)->apply(layer, "sha256:junk");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("layer sha256:junk"));
}

TEST_F(UnpackTest, SizeLimitEnforced) {
  fs::path layer = tmp_.path() / "big";
  testing::writeTar(layer, {testing::file("big", std::string(10000, 'x'))});
  auto unpacker = LayerUnpacker::open(root_, UnpackLimits{.max_bytes = 1000, .max_entries = 10});
  ASSERT_TRUE(unpacker.ok());
  Status status = (*unpacker)->apply(layer, "big");
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("exceeds 1000 bytes"));
}

TEST_F(UnpackTest, ModesDoNotDependOnUmask) {
  mode_t saved = ::umask(077);
  Status status =
      unpack({{testing::file("implicit/parent/f", "x", 0644), testing::dir("explicit", 0751)}});
  ::umask(saved);
  ASSERT_TRUE(status.ok()) << status.toString();
  struct stat st {};
  ASSERT_EQ(::stat((root_ / "implicit").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((root_ / "implicit/parent").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  ASSERT_EQ(::stat((root_ / "implicit/parent/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(::stat((root_ / "explicit").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0751u);
}

TEST_F(UnpackTest, UncompressedDigestIsTheDiffId) {
  std::vector<TarEntry> entries = {testing::file("a", std::string(100000, 'a')),
                                   testing::symlink("b", "a")};
  fs::path plain = tmp_.path() / "plain.tar";
  testing::writeTar(plain, entries, Compression::None);
  std::string expected = "sha256:" + sha256HexOfFile(plain);
  for (Compression compression : {Compression::None, Compression::Gzip, Compression::Zstd}) {
    fs::path layer = tmp_.path() / "layer";
    testing::writeTar(layer, entries, compression);
    auto digest = uncompressedDigest(layer);
    ASSERT_TRUE(digest.ok()) << digest.status().toString();
    EXPECT_EQ(*digest, expected);
  }
  fs::path junk = tmp_.path() / "junk.gz";
  ASSERT_TRUE(writeFileAtomic(junk, std::string("\x1f\x8b\x08\x00garbage garbage", 20)).ok());
  EXPECT_FALSE(uncompressedDigest(junk).ok());
}

TEST(NormaliseEntryPath, Cases) {
  EXPECT_EQ(*normaliseEntryPath("./a//b/./c/"), "a/b/c");
  EXPECT_EQ(*normaliseEntryPath("./"), "");
  EXPECT_FALSE(normaliseEntryPath("").ok());
  EXPECT_FALSE(normaliseEntryPath("/etc/passwd").ok());
  EXPECT_FALSE(normaliseEntryPath("a/../b").ok());
  EXPECT_TRUE(normaliseEntryPath("a/..b/c..").ok());
}

}  // namespace
}  // namespace clrk::sandbox::image
