#include "clrk/apiserver/pki.h"

#include "clrk/base/files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>

namespace clrk::apiserver {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "clrk-pki-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

unsigned modeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(PkiTest, ServingChainVerifies) {
  auto ca = generateCa("test-ca");
  ASSERT_TRUE(ca.ok()) << ca.status().toString();
  auto serving = issueServingCertificate(*ca, "srv", {"example.internal", "10.1.2.3"});
  ASSERT_TRUE(serving.ok()) << serving.status().toString();
  EXPECT_TRUE(verifyCertificate(ca->cert_pem, serving->cert_pem, true).ok());
  // A serving certificate is not a client certificate.
  EXPECT_FALSE(verifyCertificate(ca->cert_pem, serving->cert_pem, false).ok());
  // Another CA does not verify it.
  auto other = generateCa("other-ca");
  ASSERT_TRUE(other.ok());
  Status wrong = verifyCertificate(other->cert_pem, serving->cert_pem, true);
  EXPECT_FALSE(wrong.ok());
  EXPECT_NE(wrong.message().find("does not verify"), std::string::npos) << wrong.message();
  EXPECT_EQ(certificateCommonName(serving->cert_pem).value(), "srv");
}

TEST(PkiTest, ClientCertificateCarriesUser) {
  auto ca = generateCa("test-ca");
  ASSERT_TRUE(ca.ok());
  auto client = issueClientCertificate(*ca, "alice", "system:masters");
  ASSERT_TRUE(client.ok()) << client.status().toString();
  EXPECT_TRUE(verifyCertificate(ca->cert_pem, client->cert_pem, false).ok());
  EXPECT_EQ(certificateCommonName(client->cert_pem).value(), "alice");
  EXPECT_FALSE(issueClientCertificate(*ca, "").ok());
}

TEST(PkiTest, RejectsBadInput) {
  auto ca = generateCa("test-ca");
  ASSERT_TRUE(ca.ok());
  auto bad_name = issueServingCertificate(*ca, "srv", {"bad name,DNS:evil"});
  ASSERT_FALSE(bad_name.ok());
  EXPECT_NE(bad_name.status().message().find("bad name"), std::string::npos);
  EXPECT_FALSE(issueServingCertificate({"garbage", "garbage"}, "srv").ok());
  EXPECT_FALSE(certificateCommonName("not a pem").ok());
  auto other = generateCa("other");
  ASSERT_TRUE(other.ok());
  // CA certificate and key that don't belong together.
  auto mismatched = issueServingCertificate({ca->cert_pem, other->key_pem}, "srv");
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("does not match"), std::string::npos);
}

TEST(PkiTest, LoadOrCreateReusesFiles) {
  TempDir tmp;
  fs::path dir = tmp.path() / "pki";
  auto first = loadOrCreateServingPki(dir);
  ASSERT_TRUE(first.ok()) << first.status().toString();
  EXPECT_EQ(modeOf(dir), 0700u);
  EXPECT_EQ(modeOf(dir / "ca.key"), 0600u);
  EXPECT_EQ(modeOf(dir / "apiserver.key"), 0600u);
  EXPECT_TRUE(verifyCertificate(first->ca.cert_pem, first->serving.cert_pem, true).ok());

  auto second = loadOrCreateServingPki(dir);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->ca.cert_pem, first->ca.cert_pem);
  EXPECT_EQ(second->ca.key_pem, first->ca.key_pem);
  EXPECT_EQ(second->serving.cert_pem, first->serving.cert_pem);

  // A new extra name reissues the serving certificate under the same CA.
  auto third = loadOrCreateServingPki(dir, {"clrk.example"});
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->ca.cert_pem, first->ca.cert_pem);
  EXPECT_NE(third->serving.cert_pem, first->serving.cert_pem);
  EXPECT_TRUE(verifyCertificate(first->ca.cert_pem, third->serving.cert_pem, true).ok());

  // A corrupt CA is an error, not silently replaced (it would invalidate kubeconfigs).
  ASSERT_TRUE(writeFileAtomic(dir / "ca.crt", "junk", 0644).ok());
  EXPECT_FALSE(loadOrCreateServingPki(dir).ok());
}

TEST(PkiTest, TokenIsStable) {
  TempDir tmp;
  auto token = loadOrCreateToken(tmp.path() / "token");
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->size(), 64u);
  EXPECT_EQ(modeOf(tmp.path() / "token"), 0600u);
  auto again = loadOrCreateToken(tmp.path() / "token");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *token);
  ASSERT_TRUE(writeFileAtomic(tmp.path() / "empty", "\n", 0600).ok());
  EXPECT_FALSE(loadOrCreateToken(tmp.path() / "empty").ok());
}

}  // namespace
}  // namespace clrk::apiserver
