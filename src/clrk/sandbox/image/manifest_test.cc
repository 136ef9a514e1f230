#include "clrk/sandbox/image/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::sandbox::image {
namespace {

using ::testing::HasSubstr;

std::string digestOf(char c) { return "sha256:" + std::string(64, c); }

TEST(Digest, CheckAndHash) {
  EXPECT_EQ(checkDigest(digestOf('a')), "");
  EXPECT_THAT(checkDigest("sha256:abc"), HasSubstr("64 hex"));
  EXPECT_THAT(checkDigest("md5:" + std::string(32, 'a')), HasSubstr("unsupported"));
  EXPECT_THAT(checkDigest("abc"), HasSubstr("no algorithm"));
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ParseManifest, OciImageManifest) {
  std::string body = R"({"schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ")" +
                     digestOf('c') + R"(", "size": 123},
    "layers": [
      {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ")" +
                     digestOf('1') + R"(", "size": 10},
      {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": ")" +
                     digestOf('2') + R"(", "size": 20}]})";
  auto manifest = parseManifest(body, "");
  ASSERT_TRUE(manifest.ok()) << manifest.status().toString();
  EXPECT_EQ(manifest->kind, ManifestKind::Image);
  EXPECT_EQ(manifest->config.digest, digestOf('c'));
  EXPECT_EQ(manifest->config.size, 123u);
  ASSERT_EQ(manifest->layers.size(), 2u);
  EXPECT_EQ(manifest->layers[1].digest, digestOf('2'));
  EXPECT_EQ(manifest->layers[1].size, 20u);
}

TEST(ParseManifest, MediaTypeFromHeaderOrShape) {
  std::string docker = R"({"schemaVersion": 2, "config": {"digest": ")" + digestOf('c') +
                       R"(", "size": 1}, "layers": [{"mediaType":
      "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ")" +
                       digestOf('1') + R"(", "size": 1}]})";
  auto manifest = parseManifest(docker, std::string(kDockerManifest) + "; charset=utf-8");
  ASSERT_TRUE(manifest.ok()) << manifest.status().toString();
  EXPECT_EQ(manifest->media_type, kDockerManifest);
  std::string index = R"({"schemaVersion": 2, "manifests": []})";
  manifest = parseManifest(index, "application/json");
  ASSERT_TRUE(manifest.ok()) << manifest.status().toString();
  EXPECT_EQ(manifest->kind, ManifestKind::Index);
}

TEST(ParseManifest, IndexAndPlatformSelection) {
  std::string body = R"({"schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
      {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": ")" +
                     digestOf('a') + R"(", "size": 5,
       "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
      {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": ")" +
                     digestOf('b') + R"(", "size": 6,
       "platform": {"os": "linux", "architecture": "amd64"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ")" +
                     digestOf('d') + R"(", "size": 7,
       "platform": {"os": "unknown", "architecture": "unknown"}}]})";
  auto index = parseManifest(body, "");
  ASSERT_TRUE(index.ok()) << index.status().toString();
  ASSERT_EQ(index->manifests.size(), 3u);
  auto amd = selectPlatform(*index, "linux", "amd64", "");
  ASSERT_TRUE(amd.ok());
  EXPECT_EQ(amd->digest, digestOf('b'));
  auto arm = selectPlatform(*index, "linux", "arm64", "v8");
  ASSERT_TRUE(arm.ok());
  EXPECT_EQ(arm->digest, digestOf('a'));
  auto none = selectPlatform(*index, "linux", "s390x", "");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::NotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("linux/s390x"));
  EXPECT_THAT(none.status().message(), HasSubstr("offered: linux/arm64/v8, linux/amd64"));
}

TEST(ParseManifest, Rejections) {
  struct Case {
    std::string body;
    std::string expected;
  };
  std::string good_config = R"("config": {"digest": ")" + digestOf('c') + R"(", "size": 1})";
  std::vector<Case> cases = {
      {"not json", "not valid JSON"},
      {"[]", "not an object"},
      {R"({"schemaVersion": 1, "fsLayers": []})", "schema 1"},
      {R"({"schemaVersion": 3})", "unsupported schemaVersion 3"},
      {R"({"mediaType": "application/x-evil", "layers": []})", "unsupported media type"},
      {R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []})",
       "\"config\" missing"},
      {R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest":
       "sha256:xyz", "size": 1}, "layers": []})",
       "manifest.config.digest: sha256 digest must have 64 hex"},
      {R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", "config": {"digest": ")" +
           digestOf('c') + R"(", "size": 2000000}, "layers": []})",
       "over the 1 MiB limit"},
      {R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", )" + good_config +
           R"(, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+encrypted",
           "digest": ")" +
           digestOf('1') + R"(", "size": 1}]})",
       "layers[0]: unsupported layer media type"},
      {R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", )" + good_config +
           R"(, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
           "digest": ")" +
           digestOf('1') + R"(", "size": -5}]})",
       "layers[0].size: negative"},
      {R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", )" + good_config +
           R"(, "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
           "digest": ")" +
           digestOf('1') + R"("}]})",
       "layers[0].size: missing"},
      {R"({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": {}})",
       "\"manifests\" missing or not an array"},
      {R"({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [{"digest": ")" +
           digestOf('a') + R"(", "size": 1, "platform": "linux"}]})",
       "index.manifests[0].platform: not an object"},
  };
  for (const Case& c : cases) {
    auto result = parseManifest(c.body, "");
    ASSERT_FALSE(result.ok()) << c.body;
    EXPECT_THAT(result.status().message(), HasSubstr(c.expected)) << c.body;
  }
  EXPECT_THAT(parseManifest(std::string(kMaxManifestBytes + 1, ' '), "").status().message(),
              HasSubstr("larger than 4 MiB"));
}

TEST(ParseImageConfig, Fields) {
  auto config = parseImageConfig(R"({"architecture": "amd64", "os": "linux", "config": {
      "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/bin", "A=b"],
      "WorkingDir": "/work", "User": "1000:1000"}})");
  ASSERT_TRUE(config.ok()) << config.status().toString();
  EXPECT_EQ(config->entrypoint, (std::vector<std::string>{"/bin/sh", "-c"}));
  EXPECT_EQ(config->cmd, (std::vector<std::string>{"echo hi"}));
  EXPECT_EQ(config->env.size(), 2u);
  EXPECT_EQ(config->working_dir, "/work");
  EXPECT_EQ(config->user, "1000:1000");
  EXPECT_TRUE(parseImageConfig(R"({"config": null})").ok());
  EXPECT_THAT(parseImageConfig(R"({"config": {"Env": "x"}})").status().message(),
              HasSubstr("config.Env: not an array"));
  EXPECT_THAT(parseImageConfig(R"({"config": {"Cmd": [1]}})").status().message(),
              HasSubstr("config.Cmd[0]: not a string"));
}

TEST(ParseAuthChallenge, BearerAndBasic) {
  auto bearer = parseAuthChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(bearer.ok()) << bearer.status().toString();
  EXPECT_EQ(bearer->scheme, "bearer");
  EXPECT_EQ(bearer->params.at("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(bearer->params.at("service"), "registry.docker.io");
  EXPECT_EQ(bearer->params.at("scope"), "repository:library/busybox:pull");
  auto basic = parseAuthChallenge(R"(Basic realm="Registry \"Realm\"")");
  ASSERT_TRUE(basic.ok());
  EXPECT_EQ(basic->scheme, "basic");
  EXPECT_EQ(basic->params.at("realm"), "Registry \"Realm\"");
  EXPECT_FALSE(parseAuthChallenge("").ok());
  EXPECT_THAT(parseAuthChallenge(R"(Bearer realm="x)").status().message(),
              HasSubstr("unterminated"));
  EXPECT_THAT(parseAuthChallenge("Bearer realm").status().message(), HasSubstr("no value"));
}

}  // namespace
}  // namespace clrk::sandbox::image
