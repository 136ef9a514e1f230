// The embedded Kubernetes-compatible API server: HTTPS on loopback, bearer-token auth, REST
// resources from api::Registry::builtin() stored in storage::Storage.
// Thread model: start() spawns the I/O threads; stop() joins them. All methods are thread-safe.
#pragma once

#include "clrk/base/status.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

namespace clrk::apiserver {

struct ServerOptions {
  std::string bind_address = "127.0.0.1";
  uint16_t port = 0;  // 0 = pick a free port (read it back with port())
  // Directory for the database, CA, serving certificate and token (created 0700; secrets 0600):
  //   state.db, pki/ca.crt, pki/ca.key, pki/apiserver.crt, pki/apiserver.key, token
  std::filesystem::path state_dir;
  bool in_memory = false;  // memory storage instead of SQLite (tests)
  bool tls = true;         // false only for tests that need plain HTTP
  int io_threads = 2;
};

class Server {
 public:
  virtual ~Server() = default;
  // Opens storage, generates the CA/serving certificate/token on first start, binds and serves.
  virtual Status start() = 0;
  // Stops accepting, ends watches, drains and joins threads. Idempotent.
  virtual void stop() = 0;
  virtual uint16_t port() const = 0;
  // "https://127.0.0.1:PORT"
  virtual std::string url() const = 0;
  // PEM of the CA that signed the serving certificate.
  virtual std::string caCertificatePem() const = 0;
  // The bearer token clients must present.
  virtual std::string token() const = 0;
};
using ServerPtr = std::unique_ptr<Server>;

ServerPtr makeServer(ServerOptions options);

}  // namespace clrk::apiserver
