// The worker API server: HTTPS (Boost.Beast, TLS 1.2+, the worker's self-signed certificate)
// serving the endpoints of api.h for the controller, authenticated with a bearer token compared
// in constant time (401 otherwise; /healthz is anonymous). Long polls and log follows wait on
// timers, never block an event loop. Request heads are bounded to 64 KiB, bodies to 4 MiB, and
// a whole request must arrive within 30 s.
// Thread model: start() runs `threads` event loops; stop() is idempotent and thread-safe.
#pragma once

#include "clrk/base/status.h"
#include "clrk/worker/api.h"
#include "clrk/worker/executions.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace clrk::worker {

struct ServerOptions {
  std::string listen = "127.0.0.1:0";  // ip:port; port 0 picks one
  std::string cert_pem;
  std::string key_pem;
  std::string token;  // bearer token clients must send
  int threads = 2;
  int max_wait_seconds = 300;  // cap on ?waitSeconds
};

class ApiServer {
 public:
  // `status` builds the GET /v1/status document (capacity, egress stats ...).
  static Result<std::unique_ptr<ApiServer>> start(ServerOptions options,
                                                  ExecutionManager& executions,
                                                  std::function<Json()> status);
  virtual ~ApiServer() = default;
  virtual uint16_t port() const = 0;
  virtual std::string host() const = 0;  // the bound IP
  // Closes the listener and every connection (follows and long polls end), joins the threads.
  virtual void stop() = 0;
};

}  // namespace clrk::worker
