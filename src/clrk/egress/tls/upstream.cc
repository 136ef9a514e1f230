#include "clrk/egress/tls/upstream.h"

#include "clrk/egress/tls/tls_util.h"

#include <boost/asio/ssl/context.hpp>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <arpa/inet.h>
#include <deque>
#include <mutex>
#include <unordered_map>

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

// The host (or IP) a client SSL verifies against, as prepareUpstreamSsl set it.
std::string verifiedHost(const SSL* ssl) {
  // SSL_get0_param is not const-qualified but only reads here.
  X509_VERIFY_PARAM* param = SSL_get0_param(const_cast<SSL*>(ssl));
  if (const char* host = X509_VERIFY_PARAM_get0_host(param, 0)) return host;
  std::string out;
  if (char* ip = X509_VERIFY_PARAM_get1_ip_asc(param)) {
    out = ip;
    OPENSSL_free(ip);
  }
  return out;
}

// Client sessions kept per verified host so new upstream connections resume instead of paying
// a full handshake. Only sessions from handshakes that verified are stored (the new-session
// callback runs after verification), keyed by the host they verified for. TLS 1.3 tickets are
// used once (RFC 8446 C.4); TLS 1.2 sessions are reused. Copies are stored and handed out, so
// OpenSSL marking a connection's session bad on an unclean close does not poison the store.
class SessionStore {
 public:
  static constexpr size_t kMaxHosts = 1024;
  static constexpr size_t kMaxPerHost = 4;

  ~SessionStore() {
    for (auto& [host, sessions] : by_host_) {
      for (SSL_SESSION* s : sessions) SSL_SESSION_free(s);
    }
  }

  void put(const std::string& host, SSL_SESSION* session) {  // takes ownership
    std::lock_guard<std::mutex> lock(mutex_);
    if (by_host_.size() >= kMaxHosts && by_host_.find(host) == by_host_.end()) {
      auto victim = by_host_.begin();
      for (SSL_SESSION* s : victim->second) SSL_SESSION_free(s);
      by_host_.erase(victim);
    }
    auto& sessions = by_host_[host];
    sessions.push_back(session);
    if (sessions.size() > kMaxPerHost) {
      SSL_SESSION_free(sessions.front());
      sessions.pop_front();
    }
  }

  // A resumable session for host (caller owns it) or null.
  SSL_SESSION* take(const std::string& host) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_host_.find(host);
    if (it == by_host_.end()) return nullptr;
    auto& sessions = it->second;
    SSL_SESSION* found = nullptr;
    while (!sessions.empty() && found == nullptr) {
      SSL_SESSION* s = sessions.back();
      sessions.pop_back();
      if (SSL_SESSION_is_resumable(s) != 1) {
        SSL_SESSION_free(s);
        continue;
      }
      if (SSL_SESSION_get_protocol_version(s) < TLS1_3_VERSION) {
        found = SSL_SESSION_dup(s);  // TLS 1.2: keep it for further connections too
        sessions.push_back(s);
      } else {
        found = s;
      }
    }
    if (sessions.empty()) by_host_.erase(it);
    return found;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::deque<SSL_SESSION*>> by_host_;
};

void freeSessionStore(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<SessionStore*>(ptr);
}

int sessionStoreIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, &freeSessionStore);
  return index;
}

SessionStore* sessionStore(const SSL* ssl) {
  const int index = sessionStoreIndex();
  if (index < 0) return nullptr;
  return static_cast<SessionStore*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), index));
}

int onNewSession(SSL* ssl, SSL_SESSION* session) {
  SessionStore* store = sessionStore(ssl);
  if (store == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return 0;
  const std::string host = verifiedHost(ssl);
  if (host.empty()) return 0;
  SSL_SESSION* copy = SSL_SESSION_dup(session);
  if (copy == nullptr) return 0;
  store->put(host, copy);
  return 0;  // we kept a copy, not the callback's reference
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
  // Idle connections give their ~34 KiB of record buffers back (the 64 KiB per idle MITM
  // connection budget covers both TLS ends).
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
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
  const int index = sessionStoreIndex();
  if (index < 0) return internalError(opensslError("allocating the session store index"));
  auto* store = new SessionStore();
  if (SSL_CTX_set_ex_data(ctx, index, store) != 1) {
    delete store;
    return internalError(opensslError("attaching the session store"));
  }
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx, onNewSession);
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
  if (SessionStore* store = sessionStore(ssl)) {
    if (SSL_SESSION* session = store->take(name.name)) {
      SSL_set_session(ssl, session);  // takes its own reference
      SSL_SESSION_free(session);
    }
  }
  return {};
}

std::string verifyFailureReason(const SSL* ssl) {
  if (ssl == nullptr) return {};
  const long result = SSL_get_verify_result(ssl);
  if (result == X509_V_OK) return {};
  const std::string host = verifiedHost(ssl);
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
