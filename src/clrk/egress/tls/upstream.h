// Upstream (proxy -> real server) TLS: client contexts that verify the real certificate chain and
// host name, and helpers to prepare each SSL connection and explain verification failures.
#pragma once

#include "clrk/base/status.h"

#include <memory>
#include <string>
#include <string_view>

typedef struct ssl_st SSL;

namespace boost::asio::ssl {
class context;
}

namespace clrk::egress::tls {

// A TLS 1.2+ client context with verify_peer, trusting the system default store
// (SSL_CTX_set_default_verify_paths: Debian's /etc/ssl/certs, SSL_CERT_FILE/SSL_CERT_DIR honoured)
// plus every PEM certificate in extra_trust_pem (may be empty; InvalidArgument if it is non-empty
// and holds no certificate or one that does not parse). Thread-safe to share between connections.
// The context keeps client sessions (bounded: 1024 hosts x 4) from handshakes that verified,
// keyed by the verified host; prepareUpstreamSsl offers one to resume (TLS 1.3 tickets once).
Result<std::shared_ptr<boost::asio::ssl::context>> makeUpstreamContext(
    std::string_view extra_trust_pem);

// Prepares one client SSL before the handshake: SNI = host (not for IP literals), hostname
// verification (SSL_set1_host, or the IP address check for IP literals), ALPN "http/1.1"
// (preceded by "h2" when offer_h2), and a stored session for that host if the context has one
// (see makeUpstreamContext). InvalidArgument for an empty/invalid host.
Status prepareUpstreamSsl(SSL* ssl, std::string_view host, bool offer_h2 = false);

// After a failed handshake: a human-readable reason, e.g. "certificate verify failed:
// self-signed certificate in certificate chain for host api.openai.com" or "certificate verify
// failed: hostname mismatch for host x (certificate is for ...)". Empty when verification passed.
std::string verifyFailureReason(const SSL* ssl);

}  // namespace clrk::egress::tls
