// CertificateAuthority: the MITM CA that signs leaf certificates minted for intercepted hosts.
//
// Immutable once built; share it as std::shared_ptr<const CertificateAuthority> across threads.
// The raw OpenSSL pointers it hands out stay owned by it and live as long as it does.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

// OpenSSL forward declarations (keep <openssl/*> out of this header).
typedef struct x509_st X509;
typedef struct evp_pkey_st EVP_PKEY;

namespace clrk::egress::tls {

class CertificateAuthority {
 public:
  // Loads a CA from PEM (typically the tls.crt / tls.key of a Secret). Errors (InvalidArgument)
  // when the certificate or key do not parse, the key does not match the certificate, or the
  // certificate is not a CA (basicConstraints CA:TRUE required). Extra certificates after the
  // first in cert_pem are ignored.
  static Result<std::shared_ptr<const CertificateAuthority>> fromPem(std::string_view cert_pem,
                                                                     std::string_view key_pem);

  // Generates a fresh self-signed CA: ECDSA P-256, CN=common_name, basicConstraints CA:TRUE
  // (critical), keyUsage keyCertSign+cRLSign (critical), random serial, valid from now-1h to
  // now+validity.
  static Result<std::shared_ptr<const CertificateAuthority>> generate(std::string_view common_name,
                                                                      std::chrono::hours validity);

  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  std::string certPem() const;  // the CA certificate (what agents must trust)
  std::string keyPem() const;   // the private key, PKCS#8 PEM (secret: never log it)

  // Owned by this object; valid while it lives. Treat as read-only (used to sign leaves).
  X509* cert() const { return cert_; }
  EVP_PKEY* key() const { return key_; }

  // The CA certificate's notAfter as a system_clock time (leaves never outlive it).
  std::chrono::system_clock::time_point notAfter() const { return not_after_; }

 private:
  CertificateAuthority(X509* cert, EVP_PKEY* key);  // takes ownership of both

  X509* cert_ = nullptr;
  EVP_PKEY* key_ = nullptr;
  std::chrono::system_clock::time_point not_after_;
};

}  // namespace clrk::egress::tls
