#include "clrk/sandbox/image/image_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::sandbox::image {
namespace {

using ::testing::HasSubstr;

const std::string kDigest =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST(ParseImageReference, DockerHubShortForms) {
  auto ref = parseImageReference("busybox");
  ASSERT_TRUE(ref.ok()) << ref.status().toString();
  EXPECT_EQ(ref->registry, "registry-1.docker.io");
  EXPECT_EQ(ref->repository, "library/busybox");
  EXPECT_EQ(ref->tag, "latest");
  EXPECT_EQ(ref->digest, "");
  EXPECT_EQ(ref->str(), "registry-1.docker.io/library/busybox:latest");

  ref = parseImageReference("library/busybox:1.36");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->str(), "registry-1.docker.io/library/busybox:1.36");

  ref = parseImageReference("docker.io/bitnami/redis");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->str(), "registry-1.docker.io/bitnami/redis:latest");

  ref = parseImageReference("index.docker.io/ubuntu");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->str(), "registry-1.docker.io/library/ubuntu:latest");
}

TEST(ParseImageReference, RegistryWithPortAndNestedPath) {
  auto ref = parseImageReference("localhost:5000/x/y:tag");
  ASSERT_TRUE(ref.ok()) << ref.status().toString();
  EXPECT_EQ(ref->registry, "localhost:5000");
  EXPECT_EQ(ref->repository, "x/y");
  EXPECT_EQ(ref->tag, "tag");

  ref = parseImageReference("localhost/x");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->registry, "localhost");
  EXPECT_EQ(ref->repository, "x");

  ref = parseImageReference("127.0.0.1:41000/test/img:v1");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->str(), "127.0.0.1:41000/test/img:v1");

  ref = parseImageReference("ghcr.io/a-b/c__d/e.f:v1.2-rc_3");
  ASSERT_TRUE(ref.ok()) << ref.status().toString();
  EXPECT_EQ(ref->repository, "a-b/c__d/e.f");
  EXPECT_EQ(ref->tag, "v1.2-rc_3");

  ref = parseImageReference("[::1]:5000/x:1");
  ASSERT_TRUE(ref.ok()) << ref.status().toString();
  EXPECT_EQ(ref->registry, "[::1]:5000");
}

TEST(ParseImageReference, Digests) {
  auto ref = parseImageReference("busybox@" + kDigest);
  ASSERT_TRUE(ref.ok()) << ref.status().toString();
  EXPECT_EQ(ref->tag, "");
  EXPECT_EQ(ref->digest, kDigest);
  EXPECT_EQ(ref->str(), "registry-1.docker.io/library/busybox@" + kDigest);

  ref = parseImageReference("localhost:5000/x:v1@" + kDigest);
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(ref->tag, "v1");
  EXPECT_EQ(ref->digest, kDigest);

  auto bad = parseImageReference("busybox@sha256:abc");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("64 hex"));
  bad = parseImageReference("busybox@sha512:" + std::string(128, 'a'));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unsupported digest algorithm \"sha512\""));
  bad = parseImageReference("busybox@sha256:" + std::string(64, 'A'));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("lower-case hex"));
}

TEST(ParseImageReference, ErrorsNameTheBadPart) {
  struct Case {
    std::string input;
    std::string expected;
  };
  std::vector<Case> cases = {
      {"", "empty"},
      {"Foo//bar", "empty path component"},
      {"example.com/Foo", "must be lowercase"},
      {"foo bar", "whitespace"},
      {"foo:", "empty tag"},
      {"foo:-x", "must start with"},
      {"foo:a$b", "invalid character \"$\" in tag"},
      {"example.com:99999/x", "port out of range"},
      {"example.com:ab/x", "port is not a number"},
      {"exa_mple.com/x", "invalid character \"_\" in host"},
      {"x/-y", "must start and end"},
      {"x/y..z", "invalid separator"},
      {"x/y___z", "invalid separator"},
      {"x/y$z", "invalid character \"$\""},
      {"example.com/", "empty repository path"},
      {"foo:" + std::string(129, 'a'), "longer than 128"},
  };
  for (const Case& c : cases) {
    auto result = parseImageReference(c.input);
    ASSERT_FALSE(result.ok()) << c.input;
    EXPECT_EQ(result.status().code(), Code::InvalidArgument);
    EXPECT_THAT(result.status().message(), HasSubstr(c.expected)) << c.input;
    EXPECT_THAT(result.status().message(), HasSubstr("image reference")) << c.input;
  }
}

TEST(ParseDockerConfigJson, AuthFieldAndUsernamePassword) {
  // "alice:s3cr:et" base64-encoded.
  std::string json = R"({"auths": {
      "127.0.0.1:5000": {"auth": "YWxpY2U6czNjcjpldA=="},
      "https://index.docker.io/v1/": {"username": "bob", "password": "pw"},
      "ghcr.io": {"username": "carol", "identitytoken": "tok"}
  }})";
  auto parsed = parseDockerConfigJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  ASSERT_EQ(parsed->size(), 3u);
  EXPECT_EQ(parsed->at("127.0.0.1:5000").username, "alice");
  EXPECT_EQ(parsed->at("127.0.0.1:5000").password, "s3cr:et");
  EXPECT_EQ(parsed->at("registry-1.docker.io").username, "bob");
  EXPECT_EQ(parsed->at("registry-1.docker.io").password, "pw");
  EXPECT_EQ(parsed->at("ghcr.io").password, "tok");
}

TEST(ParseDockerConfigJson, FindRegistryAuth) {
  auto parsed = parseDockerConfigJson(
      R"({"auths": {"docker.io": {"auth": "dTpw"}, "localhost:5000": {"auth": "eDp5"}}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  auto hub = findRegistryAuth(*parsed, *parseImageReference("busybox"));
  ASSERT_TRUE(hub.has_value());
  EXPECT_EQ(hub->username, "u");
  auto local = findRegistryAuth(*parsed, *parseImageReference("localhost:5000/a/b"));
  ASSERT_TRUE(local.has_value());
  EXPECT_EQ(local->password, "y");
  EXPECT_FALSE(findRegistryAuth(*parsed, *parseImageReference("localhost:5001/a/b")).has_value());
}

TEST(ParseDockerConfigJson, LegacyFormatWithoutAuths) {
  auto parsed = parseDockerConfigJson(R"({"quay.io": {"auth": "dTpw"}})");
  ASSERT_TRUE(parsed.ok()) << parsed.status().toString();
  EXPECT_EQ(parsed->at("quay.io").username, "u");
  EXPECT_EQ(parsed->at("quay.io").password, "p");
}

TEST(ParseDockerConfigJson, Errors) {
  EXPECT_THAT(parseDockerConfigJson("{").status().message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(parseDockerConfigJson("[]").status().message(), HasSubstr("not an object"));
  EXPECT_THAT(parseDockerConfigJson(R"({"auths": {"h": {"auth": "!!"}}})").status().message(),
              HasSubstr("auths.h.auth: invalid base64"));
  EXPECT_THAT(
      parseDockerConfigJson(R"({"auths": {"h": {"auth": "bm9jb2xvbg=="}}})").status().message(),
      HasSubstr("not \"user:password\""));
  EXPECT_THAT(parseDockerConfigJson(R"({"auths": {"h": {"username": 3}}})").status().message(),
              HasSubstr("auths.h.username: not a string"));
  EXPECT_THAT(parseDockerConfigJson(R"({"auths": {"h": {}}})").status().message(),
              HasSubstr("auths.h: no \"auth\""));
}

}  // namespace
}  // namespace clrk::sandbox::image
