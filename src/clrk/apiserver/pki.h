// The API server's small public-key infrastructure: a self-signed CA (ECDSA P-256), the serving
// certificate it signs, client certificates for users, and the bearer token. Everything is PEM.
// Thread model: free functions without shared state; safe to call from any thread.
#pragma once

#include "clrk/base/status.h"

#include <filesystem>
#include <string>
#include <vector>

namespace clrk::apiserver {

// A certificate and its private key, both PEM (key in PKCS#8).
struct CertKeyPem {
  std::string cert_pem;
  std::string key_pem;
};

// A self-signed CA: CN=`common_name`, basicConstraints critical CA:TRUE, keyUsage critical
// keyCertSign|cRLSign|digitalSignature, valid 10 years (backdated 1 hour for clock skew).
Result<CertKeyPem> generateCa(const std::string& common_name);

// A serving certificate signed by `ca`: CN=`common_name`, extendedKeyUsage serverAuth, valid
// 1 year, SANs IP 127.0.0.1, IP ::1, DNS localhost plus `extra_names` (each an IP literal or a
// DNS name). Fails when `ca` does not parse or an extra name is empty.
Result<CertKeyPem> issueServingCertificate(const CertKeyPem& ca, const std::string& common_name,
                                           const std::vector<std::string>& extra_names = {});

// A client certificate signed by `ca` for user `user` (CN) in `group` (O, omitted when empty):
// extendedKeyUsage clientAuth, valid 1 year. The API server authenticates it as `user`.
Result<CertKeyPem> issueClientCertificate(const CertKeyPem& ca, const std::string& user,
                                          const std::string& group = "");

// OK iff `cert_pem` is signed by (a chain ending at) `ca_cert_pem` and valid now, checked with
// X509_verify_cert. `purpose_server` selects the serverAuth purpose, otherwise clientAuth.
Status verifyCertificate(const std::string& ca_cert_pem, const std::string& cert_pem,
                         bool purpose_server);

// Common name of the subject of `cert_pem`; InvalidArgument when it does not parse.
Result<std::string> certificateCommonName(const std::string& cert_pem);

struct ServingPki {
  CertKeyPem ca;
  CertKeyPem serving;
};

// Loads `dir`/{ca.crt,ca.key,apiserver.crt,apiserver.key} or creates what is missing: the CA
// when either CA file is absent (then the serving certificate too), the serving certificate when
// it is absent, does not verify against the CA, expires within 30 days or lacks one of
// `extra_names`. `dir` is created 0700; keys are written 0600, certificates 0644.
Result<ServingPki> loadOrCreateServingPki(const std::filesystem::path& dir,
                                          const std::vector<std::string>& extra_names = {});

// Reads the bearer token from `path`, or creates a random one (randomHex(32)) written 0600.
// Fails when the file exists but holds no token.
Result<std::string> loadOrCreateToken(const std::filesystem::path& path);

}  // namespace clrk::apiserver
