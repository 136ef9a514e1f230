// WorkerClient: the controller's (and the tests') side of the worker API. Calls go over HTTPS
// keep-alive connections to the worker, taken from a WorkerConnectionPool: a new connection
// checks that the server's certificate has the pinned SHA-256 fingerprint (from the worker's
// Lease annotation clrk.apoxy.dev/tls-sha256; no CA involved); every request sends the bearer
// token. HTTP errors become Status codes with the server's message (400 InvalidArgument, 401
// Unauthenticated, 404 NotFound, 409 AlreadyExists, 429/503 Unavailable).
// Thread model: a WorkerClient is immutable after create(); calls are thread-safe (concurrent
// calls use separate connections).
#pragma once

#include "clrk/base/status.h"
#include "clrk/worker/api.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <vector>

namespace clrk::worker {

struct WorkerEndpoint {
  std::string url;          // "https://10.0.0.5:7443" (the Lease's clrk.apoxy.dev/endpoint)
  std::string fingerprint;  // sha256 hex of the worker's certificate
  std::string token;        // bearer token (Secret clrk-worker-token, key token)
  std::chrono::milliseconds timeout{30000};  // per call, on top of any long-poll wait
};

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// Idle keep-alive connections to one worker (one endpoint, fingerprint and token). Share one
// pool among the clients of a worker (WorkerRegistry does) so that consecutive calls - an
// execution's run() and its long poll, the next execution's run() - skip the TCP and TLS
// handshakes. Idle connections are kept at most kMaxIdleTime (the worker closes them after
// 120 s) and kMaxIdle at a time; a kept connection the worker closed meanwhile is replaced
// transparently. Log streams always use a connection of their own.
// Thread model: thread-safe; a connection serves one call at a time.
class WorkerConnectionPool {
 public:
  static constexpr size_t kMaxIdle = 8;
  static constexpr std::chrono::seconds kMaxIdleTime{30};

  WorkerConnectionPool();
  ~WorkerConnectionPool();
  WorkerConnectionPool(const WorkerConnectionPool&) = delete;
  WorkerConnectionPool& operator=(const WorkerConnectionPool&) = delete;

  // Connections opened so far (each one a TCP connect and a TLS handshake).
  uint64_t opened() const { return opened_.load(); }

  struct Connection;  // opaque (client.cc)

 private:
  friend class WorkerClient;
  // An idle connection (most recently used first), or nullptr.
  std::unique_ptr<Connection> take();
  void giveBack(std::unique_ptr<Connection> connection);

  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::atomic<uint64_t> opened_{0};
};

class WorkerClient {
 public:
  // `pool`: shared with the other clients of the same worker; null: a pool of this client's own
  // (its calls still reuse one connection).
  static Result<std::unique_ptr<WorkerClient>> create(
      WorkerEndpoint endpoint, std::shared_ptr<WorkerConnectionPool> pool = nullptr);

  Result<ExecutionStatus> run(const ExecutionRequest& request) const;
  // `wait` > 0 long-polls until the execution changes or `wait` passed. A stop requested on
  // `cancel` ends the call at once with Unavailable.
  Result<ExecutionStatus> get(const std::string& id,
                              std::chrono::seconds wait = std::chrono::seconds(0),
                              std::stop_token cancel = {}) const;
  Result<ExecutionStatus> stop(const std::string& id) const;
  Result<std::vector<ExecutionStatus>> list() const;
  Result<Json> status() const;
  // PUT /v1/warm-pools: replaces the worker's warm pools; their states after the change.
  Result<std::vector<WarmPoolState>> setWarmPools(const std::vector<WarmPoolSpec>& pools,
                                                  std::stop_token cancel = {}) const;
  // Streams log lines to `on_entry` (return false to stop early). With `follow` the call lasts
  // until the execution ends. A stop requested on `cancel` ends it at once with Unavailable.
  Status logs(const std::string& id, bool follow,
              const std::function<bool(const LogEntry&)>& on_entry,
              std::stop_token cancel = {}) const;

  // Raw request (any status is returned; errors only for transport/TLS/pinning failures).
  Result<HttpReply> request(const std::string& method, const std::string& target,
                            const std::string& body = {},
                            std::chrono::milliseconds extra_timeout = {},
                            std::stop_token cancel = {}) const;

  const WorkerEndpoint& endpoint() const { return endpoint_; }

 private:
  WorkerClient(WorkerEndpoint endpoint, std::string host, uint16_t port,
               std::shared_ptr<WorkerConnectionPool> pool);
  Result<Json> call(const std::string& method, const std::string& target,
                    const std::string& body = {}, std::chrono::milliseconds extra_timeout = {},
                    std::stop_token cancel = {}) const;

  WorkerEndpoint endpoint_;
  std::string host_;
  uint16_t port_ = 0;
  std::shared_ptr<WorkerConnectionPool> pool_;
};

// Maps an error reply of the worker API to a Status carrying the server's message.
Status statusFromReply(int http_status, const std::string& body);

}  // namespace clrk::worker
