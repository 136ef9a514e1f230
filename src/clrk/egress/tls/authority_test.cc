#include "clrk/egress/tls/authority.h"

#include "clrk/egress/tls/leaf_cache.h"
#include "clrk/egress/tls/test_util.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

namespace clrk::egress::tls {
namespace {

using testing::parseCert;
using testing::runCommand;
using testing::TempDir;

TEST(AuthorityTest, GenerateIsAnEcdsaCa) {
  auto ca = CertificateAuthority::generate("clrk test CA", std::chrono::hours(24 * 30));
  ASSERT_TRUE(ca.ok()) << ca.status().toString();
  const auto& authority = **ca;
  EXPECT_EQ(X509_check_ca(authority.cert()), 1);
  EXPECT_NE(X509_get_key_usage(authority.cert()) & KU_KEY_CERT_SIGN, 0u);
  EXPECT_EQ(EVP_PKEY_get_base_id(authority.key()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(authority.key()), 256);
  EXPECT_EQ(X509_verify(authority.cert(), authority.key()), 1);  // self-signed
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(authority.cert()), NID_commonName, cn,
                            sizeof(cn));
  EXPECT_STREQ(cn, "clrk test CA");
  const auto left = authority.notAfter() - std::chrono::system_clock::now();
  EXPECT_GT(left, std::chrono::hours(24 * 30 - 1));
  EXPECT_LE(left, std::chrono::hours(24 * 30));

  // Round trip through PEM.
  const std::string cert_pem = authority.certPem();
  const std::string key_pem = authority.keyPem();
  EXPECT_NE(cert_pem.find("BEGIN CERTIFICATE"), std::string::npos);
  EXPECT_NE(key_pem.find("BEGIN PRIVATE KEY"), std::string::npos);
  auto loaded = CertificateAuthority::fromPem(cert_pem, key_pem);
  ASSERT_TRUE(loaded.ok()) << loaded.status().toString();
  EXPECT_EQ(X509_cmp((*loaded)->cert(), authority.cert()), 0);
  EXPECT_EQ((*loaded)->notAfter(), authority.notAfter());
}

TEST(AuthorityTest, GenerateRejectsBadArguments) {
  EXPECT_FALSE(CertificateAuthority::generate("", std::chrono::hours(1)).ok());
  EXPECT_FALSE(CertificateAuthority::generate(std::string(65, 'x'), std::chrono::hours(1)).ok());
  auto zero = CertificateAuthority::generate("x", std::chrono::hours(0));
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), Code::InvalidArgument);
}

TEST(AuthorityTest, MismatchedKeyIsRejected) {
  auto a = CertificateAuthority::generate("a", std::chrono::hours(24));
  auto b = CertificateAuthority::generate("b", std::chrono::hours(24));
  ASSERT_TRUE(a.ok() && b.ok());
  auto mixed = CertificateAuthority::fromPem((*a)->certPem(), (*b)->keyPem());
  ASSERT_FALSE(mixed.ok());
  EXPECT_EQ(mixed.status().code(), Code::InvalidArgument);
  EXPECT_NE(mixed.status().message().find("does not match"), std::string::npos)
      << mixed.status().toString();
}

TEST(AuthorityTest, LeafIsNotACa) {
  auto ca = CertificateAuthority::generate("a", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  auto leaf = mintLeafPem(**ca, "example.com");
  ASSERT_TRUE(leaf.ok()) << leaf.status().toString();
  auto loaded = CertificateAuthority::fromPem(leaf->cert_pem, leaf->key_pem);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("not a certificate authority"), std::string::npos)
      << loaded.status().toString();
}

TEST(AuthorityTest, GarbageAndEmptyPem) {
  auto ca = CertificateAuthority::generate("a", std::chrono::hours(24));
  ASSERT_TRUE(ca.ok());
  auto r = CertificateAuthority::fromPem("not a pem", (*ca)->keyPem());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("CA certificate: no PEM certificate"), std::string::npos)
      << r.status().toString();
  r = CertificateAuthority::fromPem((*ca)->certPem(), "-----BEGIN PRIVATE KEY-----\nAAAA\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("CA private key"), std::string::npos)
      << r.status().toString();
  EXPECT_FALSE(CertificateAuthority::fromPem("", "").ok());
  // A truncated certificate.
  std::string cert = (*ca)->certPem();
  EXPECT_FALSE(
      CertificateAuthority::fromPem(cert.substr(0, cert.size() / 2), (*ca)->keyPem()).ok());
}

// CAs made by the openssl CLI, as a user would put in a Secret: RSA works, CA:FALSE and encrypted
// keys are rejected with clear errors.
TEST(AuthorityTest, OpensslCliCertificates) {
  TempDir dir;
  const std::string d = dir.path().string();
  std::string out;
  ASSERT_EQ(
      runCommand("openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=rsa-ca -days 2 "
                 "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
                 "-keyout " +
                     d + "/ca.key -out " + d + "/ca.crt",
                 &out),
      0)
      << out;
  auto rsa = CertificateAuthority::fromPem(testing::readText(d + "/ca.crt"),
                                           testing::readText(d + "/ca.key"));
  ASSERT_TRUE(rsa.ok()) << rsa.status().toString();
  auto leaf = mintLeafPem(**rsa, "api.openai.com");
  ASSERT_TRUE(leaf.ok()) << leaf.status().toString();
  testing::writeText(d + "/leaf.crt", leaf->cert_pem);
  out.clear();
  EXPECT_EQ(runCommand("openssl verify -CAfile " + d +
                           "/ca.crt -purpose sslserver -verify_hostname "
                           "api.openai.com " +
                           d + "/leaf.crt",
                       &out),
            0)
      << out;

  out.clear();
  ASSERT_EQ(runCommand("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                       "-subj /CN=notca -days 2 -addext basicConstraints=critical,CA:FALSE "
                       "-keyout " +
                           d + "/n.key -out " + d + "/n.crt",
                       &out),
            0)
      << out;
  auto notca = CertificateAuthority::fromPem(testing::readText(d + "/n.crt"),
                                             testing::readText(d + "/n.key"));
  ASSERT_FALSE(notca.ok());
  EXPECT_NE(notca.status().message().find("basicConstraints CA:TRUE"), std::string::npos);

  out.clear();
  ASSERT_EQ(runCommand("openssl pkey -in " + d + "/ca.key -aes256 -passout pass:secret -out " + d +
                           "/enc.key",
                       &out),
            0)
      << out;
  auto enc = CertificateAuthority::fromPem(testing::readText(d + "/ca.crt"),
                                           testing::readText(d + "/enc.key"));
  ASSERT_FALSE(enc.ok());
  EXPECT_NE(enc.status().message().find("unencrypted"), std::string::npos)
      << enc.status().toString();
}

}  // namespace
}  // namespace clrk::egress::tls
