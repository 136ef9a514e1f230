// Internal helpers shared by the tls sources: OpenSSL RAII, error text, host name checks.
// Not part of the library's contract; include only from src/clrk/egress/tls/*.cc.
#pragma once

#include "clrk/base/status.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>

namespace clrk::egress::tls {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Drains the thread's OpenSSL error queue into "what: reason; reason" (just "what" if empty).
std::string opensslError(std::string_view what);

// A read-only memory BIO over `data` (valid while `data` lives).
BioPtr memBio(std::string_view data);
// The contents written to a memory BIO.
std::string bioString(BIO* bio);

// Generates an ECDSA P-256 key.
Result<PkeyPtr> generateP256Key();

// Sets a random positive 128-bit serial number.
Status setRandomSerial(X509* cert);
// Adds one v3 extension given in openssl.cnf syntax ("critical,CA:TRUE"), issuer may be cert.
Status addCertExtension(X509* cert, X509* issuer, int nid, const char* value);

// A host as given to the leaf cache or the upstream helpers, normalised.
struct HostName {
  std::string name;    // lower-cased, no trailing dot, IPv6 without brackets
  bool is_ip = false;  // an IPv4 or IPv6 literal
};
// Validates and normalises a DNS name (letters, digits, '-', '_', '.', labels 1..63, total
// <= 253) or an IP literal ("10.0.0.1", "::1", "[::1]").
Result<HostName> normalizeHost(std::string_view host);

}  // namespace clrk::egress::tls
