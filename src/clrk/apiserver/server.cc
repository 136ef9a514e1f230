// makeServer(): wires storage, the registry, the ResourceHandler, discovery and the HTTP(S)
// transport together.
#include "clrk/apiserver/server.h"

#include "clrk/api/registry.h"
#include "clrk/apiserver/discovery.h"
#include "clrk/apiserver/http_server.h"
#include "clrk/apiserver/pki.h"
#include "clrk/apiserver/resource_handler.h"
#include "clrk/apiserver/storage/storage.h"
#include "clrk/base/ids.h"
#include "clrk/base/log.h"

#include <cerrno>
#include <cstring>
#include <mutex>
#include <sys/stat.h>

namespace clrk::apiserver {
namespace {

class ServerImpl : public Server {
 public:
  explicit ServerImpl(ServerOptions options) : options_(std::move(options)) {}
  ~ServerImpl() override { stop(); }

  Status start() override {
    std::lock_guard lock(mu_);
    if (started_) return Status(Code::Internal, "server already started");
    if (stopped_) return Status(Code::Internal, "server was stopped; make a new one");
    Status status = startLocked();
    if (!status.ok()) {
      stopLocked();
      stopped_ = false;
      return status;
    }
    started_ = true;
    return {};
  }

  void stop() override {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    stopLocked();
  }

  uint16_t port() const override { return http_ ? http_->port() : 0; }

  std::string url() const override {
    std::string host = options_.bind_address;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    return std::string(options_.tls ? "https://" : "http://") + host + ":" + std::to_string(port());
  }

  std::string caCertificatePem() const override { return pki_.ca.cert_pem; }
  std::string token() const override { return token_; }

 private:
  Status startLocked() {
    const auto& dir = options_.state_dir;
    if (dir.empty() && !options_.in_memory) {
      return invalidArgument("ServerOptions.state_dir is required unless in_memory is set");
    }
    if (!dir.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) return internalError("creating " + dir.string() + ": " + ec.message());
      if (::chmod(dir.c_str(), 0700) != 0) {
        return internalError("chmod 0700 " + dir.string() + ": " + std::strerror(errno));
      }
      CLRK_ASSIGN_OR_RETURN(pki_, loadOrCreateServingPki(dir / "pki"));
      CLRK_ASSIGN_OR_RETURN(token_, loadOrCreateToken(dir / "token"));
    } else {
      // Nothing persisted: a throwaway CA and token for this process.
      CLRK_ASSIGN_OR_RETURN(pki_.ca, generateCa("clrk-ca"));
      CLRK_ASSIGN_OR_RETURN(pki_.serving, issueServingCertificate(pki_.ca, "clrk-apiserver"));
      token_ = randomHex(32);
    }

    if (options_.in_memory) {
      storage_ = storage::makeMemoryStorage();
    } else {
      storage::SqliteOptions sqlite;
      sqlite.path = (dir / "state.db").string();
      CLRK_ASSIGN_OR_RETURN(storage_, storage::openSqliteStorage(sqlite));
    }
    const api::Registry& registry = api::Registry::builtin();
    handler_ = makeResourceHandler(*storage_, registry);
    CLRK_ASSIGN_OR_RETURN(discovery_, Discovery::build(registry));

    HttpServerOptions http;
    http.bind_address = options_.bind_address;
    http.port = options_.port;
    http.tls = options_.tls;
    http.serving = pki_.serving;
    http.client_ca_pem = pki_.ca.cert_pem;
    http.bearer_token = token_;
    http.io_threads = options_.io_threads;
    handler_->start();
    CLRK_ASSIGN_OR_RETURN(
        http_, HttpServer::start(std::move(http), [this](const Request& r) { return route(r); }));
    std::string host = options_.bind_address;
    if (host.find(':') != std::string::npos) host = "[" + host + "]";
    discovery_->setServerAddress(host + ":" + std::to_string(http_->port()));
    logger("apiserver")->info("API server serving at {}", url());
    return {};
  }

  void stopLocked() {
    if (http_) http_->stop();  // no request reaches the handler after this
    if (handler_) handler_->stop();
    // Release the database (its lock) so the same state_dir can be served again.
    handler_.reset();
    storage_.reset();
  }

  Response route(const Request& request) {
    if (auto response = discovery_->serve(request)) return std::move(*response);
    if (Discovery::isResourcePath(request.path)) return handler_->handle(request);
    return statusResponse(404, "NotFound", "the server could not find the requested resource");
  }

  ServerOptions options_;
  mutable std::mutex mu_;
  bool started_ = false;
  bool stopped_ = false;
  ServingPki pki_;
  std::string token_;
  storage::StoragePtr storage_;
  ResourceHandlerPtr handler_;
  DiscoveryPtr discovery_;
  HttpServerPtr http_;
};

}  // namespace

ServerPtr makeServer(ServerOptions options) {
  return std::make_unique<ServerImpl>(std::move(options));
}

}  // namespace clrk::apiserver
