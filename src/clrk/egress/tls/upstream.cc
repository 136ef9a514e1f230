#include "clrk/egress/tls/upstream.h"

#include "clrk/egress/tls/tls_util.h"

#include <boost/asio/ssl/context.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <arpa/inet.h>

namespace clrk::egress::tls {
namespace {

constexpr const char* kClientCiphers =
    "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:ECDHE+AES:!aNULL:!eNULL:!MD5:!DSS:!PSK:"
    "!SRP:!3DES:!RC4";
constexpr size_t kMaxNamesInReason = 4;

bool onlyWhitespace(std::string_view text) {
  return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// "a, b, c" from the certificate's DNS/IP SANs (or its CN when it has none).
std::string certificateNames(X509* cert) {
  std::string names;
  size_t count = 0;
  auto add = [&](std::string name) {
    if (count++ >= kMaxNamesInReason) {
      if (count == kMaxNamesInReason + 1) names += ", ...";
      return;
    }
    if (!names.empty()) names += ", ";
    names += name;
  };
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans != nullptr) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type == GEN_DNS) {
        const ASN1_IA5STRING* s = gn->d.dNSName;
        add(std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(std::max(0, ASN1_STRING_length(s)))));
      } else if (gn->type == GEN_IPADD) {
        const ASN1_OCTET_STRING* ip = gn->d.iPAddress;
        const int len = ASN1_STRING_length(ip);
        char text[INET6_ADDRSTRLEN] = {};
        if ((len == 4 || len == 16) &&
            inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(ip), text,
                      sizeof(text)) != nullptr) {
          add(text);
        }
      }
    }
    GENERAL_NAMES_free(sans);
  }
  if (names.empty()) {
    char cn[256];
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
        0) {
      add(cn);
    }
  }
  return names.empty() ? "no names" : names;
}

}  // namespace

Result<std::shared_ptr<boost::asio::ssl::context>> makeUpstreamContext(
    std::string_view extra_trust_pem) {
  std::shared_ptr<boost::asio::ssl::context> context;
  try {
    context = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_client);
  } catch (const std::exception& e) {
    return internalError(std::string("creating a TLS client context: ") + e.what());
  }
  SSL_CTX* ctx = context->native_handle();
  ERR_clear_error();
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(ctx, kClientCiphers) != 1) {
    return internalError(opensslError("configuring the TLS client context"));
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return internalError(opensslError("loading the system trust store"));
  }
  ERR_clear_error();  // a missing default directory only warns
  if (!onlyWhitespace(extra_trust_pem)) {
    BioPtr bio = memBio(extra_trust_pem);
    if (!bio) return invalidArgument("extra trust PEM is too large");
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    while (true) {
      X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
      if (!cert) break;
      if (X509_STORE_add_cert(store, cert.get()) != 1) {
        // A duplicate of a system certificate is fine; anything else is an error.
        const unsigned long err = ERR_peek_last_error();
        if (ERR_GET_REASON(err) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
          return internalError(opensslError("adding a trusted certificate"));
        }
        ERR_clear_error();
      }
      ++added;
    }
    const unsigned long err = ERR_peek_last_error();
    if (added == 0 || (err != 0 && ERR_GET_REASON(err) != PEM_R_NO_START_LINE)) {
      return invalidArgument(
          opensslError("extra trust PEM: " +
                       std::string(added == 0 ? "no certificate could be parsed"
                                              : "a certificate could not be parsed") +
                       " (after " + std::to_string(added) + " certificates)"));
    }
    ERR_clear_error();
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
  return context;
}

Status prepareUpstreamSsl(SSL* ssl, std::string_view host, bool offer_h2) {
  if (ssl == nullptr) return invalidArgument("prepareUpstreamSsl: ssl is null");
  CLRK_ASSIGN_OR_RETURN(HostName name, normalizeHost(host));
  ERR_clear_error();
  SSL_set_verify(ssl, SSL_VERIFY_PEER, nullptr);
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  if (name.is_ip) {
    if (X509_VERIFY_PARAM_set1_ip_asc(param, name.name.c_str()) != 1) {
      return invalidArgument(opensslError("upstream IP address " + name.name));
    }
  } else {
    // SSL_set_tlsext_host_name is a macro with a C cast; call what it expands to.
    if (SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                 const_cast<char*>(name.name.c_str())) != 1) {
      return internalError(opensslError("setting SNI " + name.name));
    }
    SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl, name.name.c_str()) != 1) {
      return internalError(opensslError("setting the verified host name " + name.name));
    }
  }
  static const unsigned char kHttp1[] = "\x08http/1.1";
  static const unsigned char kH2Http1[] = "\x02h2\x08http/1.1";
  const int rc = offer_h2 ? SSL_set_alpn_protos(ssl, kH2Http1, sizeof(kH2Http1) - 1)
                          : SSL_set_alpn_protos(ssl, kHttp1, sizeof(kHttp1) - 1);
  if (rc != 0) return internalError(opensslError("setting ALPN"));  // 0 means success here
  return {};
}

std::string verifyFailureReason(const SSL* ssl) {
  if (ssl == nullptr) return {};
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return {};
  // SSL_get0_param is not const-qualified but only reads here.
  X509_VERIFY_PARAM* param = SSL_get0_param(const_cast<SSL*>(ssl));
  std::string host;
  if (const char* h = X509_VERIFY_PARAM_get0_host(param, 0)) {
    host = h;
  } else if (char* ip = X509_VERIFY_PARAM_get1_ip_asc(param)) {
    host = ip;
    OPENSSL_free(ip);
  }
  std::string reason = "certificate verify failed: ";
  reason += X509_verify_cert_error_string(result);
  if (!host.empty()) reason += " for host " + host;
  if (result == X509_V_ERR_HOSTNAME_MISMATCH || result == X509_V_ERR_IP_ADDRESS_MISMATCH) {
    // After a failed verification the session has no peer certificate yet, but the received
    // chain (leaf first) is kept.
    X509* peer = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    if (peer == nullptr && chain != nullptr && sk_X509_num(chain) > 0)
      peer = sk_X509_value(chain, 0);
    if (peer != nullptr) reason += " (certificate is for " + certificateNames(peer) + ")";
  }
  return reason;
}

}  // namespace clrk::egress::tls
