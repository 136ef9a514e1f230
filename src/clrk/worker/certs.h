// The worker API's TLS identity: a self-signed ECDSA P-256 certificate generated at every start
// and pinned by clients through its SHA-256 fingerprint (published in the worker's Lease), so no
// CA is involved. Also small PEM/base64 helpers the worker needs.
// Thread model: free functions without shared state.
#pragma once

#include "clrk/base/base64.h"
#include "clrk/base/status.h"

#include <string>
#include <string_view>
#include <vector>

namespace clrk::worker {

struct SelfSignedCertificate {
  std::string cert_pem;
  std::string key_pem;      // PKCS#8; secret
  std::string fingerprint;  // sha256 of the DER certificate, 64 lower-case hex digits
};

// CN=`common_name`, SANs from `names` (IP literals become IP SANs, the rest DNS), serverAuth,
// valid from now-1h for `days` days.
Result<SelfSignedCertificate> generateSelfSigned(const std::string& common_name,
                                                 const std::vector<std::string>& names,
                                                 int days = 365);

// SHA-256 fingerprint (lower-case hex) of the first certificate in `cert_pem`.
Result<std::string> certificateFingerprint(std::string_view cert_pem);
// SHA-256 fingerprint of DER bytes.
std::string fingerprintOfDer(std::string_view der);

// Constant-time equality (length leaks, content does not).
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace clrk::worker
