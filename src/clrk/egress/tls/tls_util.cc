#include "clrk/egress/tls/tls_util.h"

#include <climits>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

namespace clrk::egress::tls {

std::string opensslError(std::string_view what) {
  std::string out(what);
  bool first = true;
  while (unsigned long code = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof(buf));
    out += first ? ": " : "; ";
    out += buf;
    first = false;
  }
  return out;
}

BioPtr memBio(std::string_view data) {
  if (data.size() > INT_MAX) return nullptr;
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string bioString(BIO* bio) {
  char* ptr = nullptr;
  const long len = BIO_get_mem_data(bio, &ptr);
  if (len <= 0 || ptr == nullptr) return {};
  return std::string(ptr, static_cast<size_t>(len));
}

Result<PkeyPtr> generateP256Key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return internalError(opensslError("generating an ECDSA P-256 key"));
  return key;
}

Result<HostName> normalizeHost(std::string_view host) {
  if (host.empty()) return invalidArgument("host name is empty");
  if (host.size() > 255) {
    return invalidArgument("host name of " + std::to_string(host.size()) + " bytes is too long");
  }
  std::string_view bare = host;
  if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']') {
    bare = bare.substr(1, bare.size() - 2);
  }
  std::string text(bare);
  unsigned char addr[16];
  if (inet_pton(AF_INET, text.c_str(), addr) == 1 || inet_pton(AF_INET6, text.c_str(), addr) == 1) {
    for (char& c : text) c = static_cast<char>((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    return HostName{std::move(text), true};
  }
  if (bare.size() != host.size())
    return invalidArgument("host \"" + text + "\" in brackets is not an IPv6 address");
  if (text.back() == '.') text.pop_back();
  if (text.empty()) return invalidArgument("host name is only a dot");
  if (text.size() > 253) return invalidArgument("host name exceeds 253 bytes");
  size_t label = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char& c = text[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) {
      return invalidArgument("host name contains an invalid character at index " +
                             std::to_string(i));
    }
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c == '.') {
      if (label == 0) return invalidArgument("host name has an empty label");
      label = 0;
    } else {
      if (label == 0 && c == '-') return invalidArgument("host name label starts with '-'");
      if (++label > 63) return invalidArgument("host name label exceeds 63 bytes");
    }
  }
  if (label == 0) return invalidArgument("host name has an empty label");
  return HostName{std::move(text), false};
}

Status setRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return internalError(opensslError("RAND_bytes"));
  bytes[0] &= 0x7f;  // positive
  bytes[0] |= 0x01;  // non-zero first byte: always encoded on 16 bytes
  BIGNUM* bn = BN_bin2bn(bytes, sizeof(bytes), nullptr);
  if (bn == nullptr) return internalError(opensslError("serial number"));
  ASN1_INTEGER* serial = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
  BN_free(bn);
  if (serial == nullptr) return internalError(opensslError("serial number"));
  return {};
}

Status addCertExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr)
    return internalError(opensslError(std::string("building extension ") + value));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return internalError(opensslError("adding a certificate extension"));
  return {};
}

}  // namespace clrk::egress::tls
