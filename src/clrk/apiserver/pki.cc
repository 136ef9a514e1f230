#include "clrk/apiserver/pki.h"

#include "clrk/base/files.h"
#include "clrk/base/ids.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <sys/stat.h>
#include <system_error>

namespace clrk::apiserver {
namespace {

struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct StoreDeleter {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxDeleter {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

constexpr long kHour = 3600;
constexpr long kDay = 24 * kHour;

// The OpenSSL error queue as text (and cleared), for error messages.
std::string sslErrors() {
  std::string out;
  unsigned long err = 0;
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

Status sslFailure(std::string_view what) {
  return internalError(std::string(what) + ": " + sslErrors());
}

PkeyPtr generateKey() { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

Result<std::string> keyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return sslFailure("encoding private key");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> certToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return sslFailure("encoding certificate");
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

Result<X509Ptr> parseCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!cert) {
    ERR_clear_error();
    return invalidArgument("certificate PEM does not parse");
  }
  return cert;
}

Result<PkeyPtr> parseKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) {
    ERR_clear_error();
    return invalidArgument("private key PEM does not parse");
  }
  return key;
}

Status setRandomSerial(X509* cert) {
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_new(), BN_free);
  if (!bn || BN_rand(bn.get(), 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return sslFailure("generating serial number");
  }
  return {};
}

Status addExtension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) return sslFailure("building extension " + value);
  int rc = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (rc != 1) return sslFailure("adding extension " + value);
  return {};
}

struct CertSpec {
  std::string common_name;
  std::string organization;
  long valid_seconds = 0;
  std::vector<std::pair<int, std::string>> extensions;  // applied in order
};

// Builds and signs a certificate for `key`. With `issuer` null the certificate is self-signed.
Result<X509Ptr> buildCert(const CertSpec& spec, EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (!cert) return sslFailure("allocating certificate");
  if (X509_set_version(cert.get(), 2) != 1) return sslFailure("setting version");
  CLRK_RETURN_IF_ERROR(setRandomSerial(cert.get()));
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kHour) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.valid_seconds) == nullptr) {
    return sslFailure("setting validity");
  }
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!spec.organization.empty() &&
      X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.organization.c_str()),
                                 -1, -1, 0) != 1) {
    return sslFailure("setting organization");
  }
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(spec.common_name.c_str()),
                                 -1, -1, 0) != 1) {
    return sslFailure("setting common name");
  }
  X509* signer = issuer != nullptr ? issuer : cert.get();
  EVP_PKEY* signer_key = issuer_key != nullptr ? issuer_key : key;
  if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1 ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return sslFailure("setting issuer or public key");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, signer, cert.get(), nullptr, nullptr, 0);
  for (const auto& [nid, value] : spec.extensions) {
    CLRK_RETURN_IF_ERROR(addExtension(cert.get(), &ctx, nid, value));
  }
  if (X509_sign(cert.get(), signer_key, EVP_sha256()) <= 0) return sslFailure("signing");
  return cert;
}

Result<CertKeyPem> encode(X509* cert, EVP_PKEY* key) {
  CLRK_ASSIGN_OR_RETURN(std::string cert_pem, certToPem(cert));
  CLRK_ASSIGN_OR_RETURN(std::string key_pem, keyToPem(key));
  return CertKeyPem{std::move(cert_pem), std::move(key_pem)};
}

bool isIpLiteral(const std::string& name) {
  unsigned char buf[16];
  return inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
}

// DNS names as certificates carry them: letters, digits, '-', '.', and a leading "*.".
bool isDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  std::string_view rest = name;
  if (rest.starts_with("*.")) rest.remove_prefix(2);
  return !rest.empty() && std::all_of(rest.begin(), rest.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-' || c == '.';
  });
}

Result<CertKeyPem> issueLeaf(const CertKeyPem& ca, CertSpec spec) {
  CLRK_ASSIGN_OR_RETURN(X509Ptr ca_cert, parseCert(ca.cert_pem));
  CLRK_ASSIGN_OR_RETURN(PkeyPtr ca_key, parseKey(ca.key_pem));
  if (X509_check_private_key(ca_cert.get(), ca_key.get()) != 1) {
    ERR_clear_error();
    return invalidArgument("CA private key does not match the CA certificate");
  }
  PkeyPtr key = generateKey();
  if (!key) return sslFailure("generating P-256 key");
  CLRK_ASSIGN_OR_RETURN(X509Ptr cert, buildCert(spec, key.get(), ca_cert.get(), ca_key.get()));
  return encode(cert.get(), key.get());
}

Status ensureDir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return internalError("creating " + dir.string() + ": " + ec.message());
  if (::chmod(dir.c_str(), 0700) != 0) {
    return internalError("chmod 0700 " + dir.string() + ": " + std::strerror(errno));
  }
  return {};
}

bool sanCovers(X509* cert, const std::string& name) {
  if (isIpLiteral(name)) return X509_check_ip_asc(cert, name.c_str(), 0) == 1;
  return X509_check_host(cert, name.c_str(), name.size(), 0, nullptr) == 1;
}

}  // namespace

Result<CertKeyPem> generateCa(const std::string& common_name) {
  PkeyPtr key = generateKey();
  if (!key) return sslFailure("generating P-256 key");
  CertSpec spec;
  spec.common_name = common_name;
  spec.valid_seconds = 10 * 365 * kDay;
  spec.extensions = {
      {NID_basic_constraints, "critical,CA:TRUE"},
      {NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"},
      {NID_subject_key_identifier, "hash"},
  };
  CLRK_ASSIGN_OR_RETURN(X509Ptr cert, buildCert(spec, key.get(), nullptr, nullptr));
  return encode(cert.get(), key.get());
}

Result<CertKeyPem> issueServingCertificate(const CertKeyPem& ca, const std::string& common_name,
                                           const std::vector<std::string>& extra_names) {
  std::string sans = "IP:127.0.0.1,IP:::1,DNS:localhost";
  for (const std::string& name : extra_names) {
    if (isIpLiteral(name)) {
      sans += ",IP:" + name;
    } else if (isDnsName(name)) {
      sans += ",DNS:" + name;
    } else {
      return invalidArgument("serving certificate name \"" + name +
                             "\" is neither an IP address nor a DNS name");
    }
  }
  CertSpec spec;
  spec.common_name = common_name;
  spec.valid_seconds = 365 * kDay;
  spec.extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, "serverAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
      {NID_subject_alt_name, sans},
  };
  return issueLeaf(ca, std::move(spec));
}

Result<CertKeyPem> issueClientCertificate(const CertKeyPem& ca, const std::string& user,
                                          const std::string& group) {
  if (user.empty()) return invalidArgument("client certificate user name is empty");
  CertSpec spec;
  spec.common_name = user;
  spec.organization = group;
  spec.valid_seconds = 365 * kDay;
  spec.extensions = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, "clientAuth"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  return issueLeaf(ca, std::move(spec));
}

Status verifyCertificate(const std::string& ca_cert_pem, const std::string& cert_pem,
                         bool purpose_server) {
  CLRK_ASSIGN_OR_RETURN(X509Ptr ca, parseCert(ca_cert_pem));
  CLRK_ASSIGN_OR_RETURN(X509Ptr cert, parseCert(cert_pem));
  std::unique_ptr<X509_STORE, StoreDeleter> store(X509_STORE_new());
  std::unique_ptr<X509_STORE_CTX, StoreCtxDeleter> ctx(X509_STORE_CTX_new());
  if (!store || !ctx || X509_STORE_add_cert(store.get(), ca.get()) != 1 ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr) != 1) {
    return sslFailure("preparing verification");
  }
  X509_STORE_CTX_set_purpose(ctx.get(),
                             purpose_server ? X509_PURPOSE_SSL_SERVER : X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(ctx.get()) != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return invalidArgument(std::string("certificate does not verify: ") +
                           X509_verify_cert_error_string(err));
  }
  return {};
}

Result<std::string> certificateCommonName(const std::string& cert_pem) {
  CLRK_ASSIGN_OR_RETURN(X509Ptr cert, parseCert(cert_pem));
  char buf[256];
  int len = X509_NAME_get_text_by_NID(X509_get_subject_name(cert.get()), NID_commonName, buf,
                                      sizeof(buf));
  if (len < 0) return invalidArgument("certificate has no common name");
  return std::string(buf, static_cast<size_t>(len));
}

Result<ServingPki> loadOrCreateServingPki(const std::filesystem::path& dir,
                                          const std::vector<std::string>& extra_names) {
  CLRK_RETURN_IF_ERROR(ensureDir(dir));
  const auto ca_crt = dir / "ca.crt";
  const auto ca_key = dir / "ca.key";
  const auto srv_crt = dir / "apiserver.crt";
  const auto srv_key = dir / "apiserver.key";
  ServingPki pki;

  auto ca_cert_text = readFile(ca_crt);
  auto ca_key_text = readFile(ca_key);
  bool new_ca = false;
  if (ca_cert_text.ok() && ca_key_text.ok()) {
    pki.ca = {std::move(ca_cert_text.value()), std::move(ca_key_text.value())};
    CLRK_ASSIGN_OR_RETURN(X509Ptr cert, parseCert(pki.ca.cert_pem));
    CLRK_ASSIGN_OR_RETURN(PkeyPtr key, parseKey(pki.ca.key_pem));
    if (X509_check_private_key(cert.get(), key.get()) != 1) {
      ERR_clear_error();
      return invalidArgument(ca_key.string() + " does not match " + ca_crt.string());
    }
  } else {
    for (const auto* r : {&ca_cert_text, &ca_key_text}) {
      if (!r->ok() && r->status().code() != Code::NotFound) return r->status();
    }
    CLRK_ASSIGN_OR_RETURN(pki.ca, generateCa("clrk-ca"));
    CLRK_RETURN_IF_ERROR(writeFileAtomic(ca_key, pki.ca.key_pem, 0600));
    CLRK_RETURN_IF_ERROR(writeFileAtomic(ca_crt, pki.ca.cert_pem, 0644));
    new_ca = true;
  }

  bool reuse = false;
  if (!new_ca) {
    auto cert_text = readFile(srv_crt);
    auto key_text = readFile(srv_key);
    if (cert_text.ok() && key_text.ok() &&
        verifyCertificate(pki.ca.cert_pem, cert_text.value(), true).ok()) {
      auto cert = parseCert(cert_text.value());
      auto key = parseKey(key_text.value());
      reuse = cert.ok() && key.ok() && X509_check_private_key(cert->get(), key->get()) == 1 &&
              X509_cmp_time(X509_get0_notAfter(cert->get()), nullptr) > 0;
      if (reuse) {
        time_t soon = time(nullptr) + 30 * kDay;
        reuse = X509_cmp_time(X509_get0_notAfter(cert->get()), &soon) > 0;
      }
      for (const std::string& name : extra_names) {
        if (reuse && !sanCovers(cert->get(), name)) reuse = false;
      }
      ERR_clear_error();
      if (reuse) pki.serving = {std::move(cert_text.value()), std::move(key_text.value())};
    }
  }
  if (!reuse) {
    CLRK_ASSIGN_OR_RETURN(pki.serving,
                          issueServingCertificate(pki.ca, "clrk-apiserver", extra_names));
    CLRK_RETURN_IF_ERROR(writeFileAtomic(srv_key, pki.serving.key_pem, 0600));
    CLRK_RETURN_IF_ERROR(writeFileAtomic(srv_crt, pki.serving.cert_pem, 0644));
  }
  return pki;
}

Result<std::string> loadOrCreateToken(const std::filesystem::path& path) {
  auto existing = readFile(path);
  if (existing.ok()) {
    std::string token = existing.value();
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())) != 0) {
      token.pop_back();
    }
    if (token.empty()) return invalidArgument(path.string() + " exists but holds no token");
    return token;
  }
  if (existing.status().code() != Code::NotFound) return existing.status();
  if (!path.parent_path().empty()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return internalError("creating " + path.parent_path().string() + ": " + ec.message());
  }
  std::string token = randomHex(32);
  CLRK_RETURN_IF_ERROR(writeFileAtomic(path, token + "\n", 0600));
  return token;
}

}  // namespace clrk::apiserver
