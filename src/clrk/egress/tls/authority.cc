#include "clrk/egress/tls/authority.h"

#include "clrk/egress/tls/tls_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <ctime>

namespace clrk::egress::tls {
namespace {

std::chrono::system_clock::time_point asn1ToTimePoint(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

}  // namespace

CertificateAuthority::CertificateAuthority(X509* cert, EVP_PKEY* key)
    : cert_(cert), key_(key), not_after_(asn1ToTimePoint(X509_get0_notAfter(cert))) {}

CertificateAuthority::~CertificateAuthority() {
  X509_free(cert_);
  EVP_PKEY_free(key_);
}

Result<std::shared_ptr<const CertificateAuthority>> CertificateAuthority::fromPem(
    std::string_view cert_pem, std::string_view key_pem) {
  ERR_clear_error();
  if (cert_pem.empty()) return invalidArgument("CA certificate: PEM is empty");
  if (key_pem.empty()) return invalidArgument("CA private key: PEM is empty");
  BioPtr cert_bio = memBio(cert_pem);
  BioPtr key_bio = memBio(key_pem);
  if (!cert_bio || !key_bio) return invalidArgument("CA: PEM input too large");
  X509Ptr cert(PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return invalidArgument(opensslError("CA certificate: no PEM certificate could be parsed"));
  }
  // Passphrase callbacks are disabled: an encrypted key fails instead of prompting.
  PkeyPtr key(PEM_read_bio_PrivateKey(
      key_bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  if (!key) {
    return invalidArgument(
        opensslError("CA private key: no unencrypted PEM private key could be parsed"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return invalidArgument("CA private key does not match the CA certificate's public key");
  }
  const uint32_t flags = X509_get_extension_flags(cert.get());
  if ((flags & EXFLAG_INVALID) != 0) {
    return invalidArgument("CA certificate has invalid or duplicate extensions");
  }
  if ((flags & EXFLAG_BCONS) == 0 || (flags & EXFLAG_CA) == 0) {
    return invalidArgument(
        "CA certificate is not a certificate authority (basicConstraints CA:TRUE is missing)");
  }
  if ((flags & EXFLAG_KUSAGE) != 0 && (X509_get_key_usage(cert.get()) & KU_KEY_CERT_SIGN) == 0) {
    return invalidArgument("CA certificate's keyUsage does not allow keyCertSign");
  }
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) <= 0) {
    return invalidArgument("CA certificate has expired");
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert.get())) > 0) {
    return invalidArgument("CA certificate is not valid yet (notBefore is in the future)");
  }
  std::shared_ptr<const CertificateAuthority> ca(
      new CertificateAuthority(cert.release(), key.release()));
  return ca;
}

Result<std::shared_ptr<const CertificateAuthority>> CertificateAuthority::generate(
    std::string_view common_name, std::chrono::hours validity) {
  ERR_clear_error();
  if (common_name.empty()) return invalidArgument("CA common name is empty");
  if (common_name.size() > 64) return invalidArgument("CA common name exceeds 64 bytes");
  if (validity.count() <= 0) return invalidArgument("CA validity must be positive");
  if (validity > std::chrono::hours(24 * 365 * 100)) {
    return invalidArgument("CA validity exceeds 100 years");
  }
  CLRK_ASSIGN_OR_RETURN(PkeyPtr key, generateP256Key());
  X509Ptr cert(X509_new());
  if (!cert) return internalError(opensslError("X509_new"));
  if (X509_set_version(cert.get(), 2) != 1) return internalError(opensslError("X509 version"));
  CLRK_RETURN_IF_ERROR(setRandomSerial(cert.get()));
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn(common_name);
  if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>("clrk"), -1, -1, 0) != 1 ||
      X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1,
                                 0) != 1) {
    return invalidArgument(opensslError("CA common name"));
  }
  if (X509_set_issuer_name(cert.get(), name) != 1) return internalError(opensslError("issuer"));
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                      static_cast<long>(std::chrono::seconds(validity).count())) == nullptr) {
    return internalError(opensslError("CA validity"));
  }
  if (X509_set_pubkey(cert.get(), key.get()) != 1) return internalError(opensslError("pubkey"));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE"));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign"));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), cert.get(), NID_subject_key_identifier, "hash"));
  CLRK_RETURN_IF_ERROR(
      addCertExtension(cert.get(), cert.get(), NID_authority_key_identifier, "keyid:always"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) {
    return internalError(opensslError("signing the CA certificate"));
  }
  std::shared_ptr<const CertificateAuthority> ca(
      new CertificateAuthority(cert.release(), key.release()));
  return ca;
}

std::string CertificateAuthority::certPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert_) != 1) return {};
  return bioString(bio.get());
}

std::string CertificateAuthority::keyPem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key_, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return {};
  }
  return bioString(bio.get());
}

}  // namespace clrk::egress::tls
