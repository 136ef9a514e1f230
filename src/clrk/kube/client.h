// REST client for Kubernetes-compatible API servers (the embedded one or a real cluster):
// HTTPS with server verification (CA + hostname/IP), client certificates, bearer tokens,
// keep-alive connection reuse and per-request timeouts, plus typed helpers on unstructured JSON
// objects addressed by api::ResourceType + namespace + name.
// Thread model: a Client is thread-safe; concurrent requests use separate pooled connections.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/base/status.h"
#include "clrk/kube/config.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::kube {

using Json = api::Json;

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// Maps an error response (a Kubernetes `Status` body or anything else) to a clrk Status whose
// message is the server's message, e.g. 404 + `taskagents.clrk.apoxy.dev "x" not found` ->
// NotFound. REQUIRES: http_status >= 400.
Status statusFromResponse(int http_status, std::string_view body);

struct ListOptions {
  std::string label_selector;
  std::string field_selector;
  std::string resource_version;
  int64_t limit = 0;  // > 0: page size; list() follows `continue` tokens and merges the pages
};

enum class PatchType { JsonPatch, MergePatch, StrategicMergePatch, ApplyPatch };

struct PatchOptions {
  std::string field_manager;
  bool force = false;  // server-side apply: take ownership of conflicting fields
};

class Connection;

class Client {
 public:
  // Validates the config (URL, PEMs) and builds the TLS context; does not connect yet.
  static Result<std::shared_ptr<Client>> create(RestConfig config);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const RestConfig& config() const { return config_; }
  void setTimeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  struct Impl;  // transport state (defined in client.cc)

  // Raw request: `target` is the path and query ("/api/v1/namespaces"), without the server's path
  // prefix. Returns any HTTP response (also 4xx/5xx); errors only for transport failures.
  Result<HttpResponse> request(std::string_view method, std::string_view target,
                               std::string_view body = {}, std::string_view content_type = {},
                               std::chrono::milliseconds timeout = {});

  // Typed helpers. `ns` is ignored for cluster-scoped types and required for namespaced ones
  // except list/watch, where empty means all namespaces. Errors carry the server's message.
  Result<Json> get(const api::ResourceType& type, std::string_view ns, std::string_view name);
  Result<Json> list(const api::ResourceType& type, std::string_view ns,
                    const ListOptions& options = {});
  Result<Json> create(const api::ResourceType& type, std::string_view ns, const Json& object);
  // PUT of the object (namespace and name from its metadata; resourceVersion as given).
  Result<Json> update(const api::ResourceType& type, const Json& object);
  Result<Json> updateStatus(const api::ResourceType& type, const Json& object);
  Result<Json> patch(const api::ResourceType& type, std::string_view ns, std::string_view name,
                     PatchType patch_type, std::string_view body, const PatchOptions& options = {});
  // DELETE with propagationPolicy Background; returns the server's response body.
  Result<Json> remove(const api::ResourceType& type, std::string_view ns, std::string_view name);

  // "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents[/name]" (or /api/v1/...).
  static std::string resourcePath(const api::ResourceType& type, std::string_view ns,
                                  std::string_view name = {});

  // Opens a streaming GET (used by Watcher). `on_open` first receives a handle whose cancel()
  // aborts the stream from any thread. `on_data` then receives the HTTP status and body bytes as
  // they arrive (error responses too) and returns false to stop. Returns the HTTP status.
  class StreamHandle {
   public:
    virtual ~StreamHandle() = default;
    virtual void cancel() = 0;
  };
  Result<int> stream(std::string_view target,
                     const std::function<bool(int, std::string_view)>& on_data,
                     const std::function<void(std::shared_ptr<StreamHandle>)>& on_open);

 private:
  explicit Client(RestConfig config);
  Result<Json> jsonCall(std::string_view method, const std::string& target,
                        std::string_view body = {},
                        std::string_view content_type = "application/json");
  std::unique_ptr<Connection> takeConnection();
  void returnConnection(std::unique_ptr<Connection> connection);

  RestConfig config_;
  std::unique_ptr<Impl> impl_;
  std::chrono::milliseconds timeout_{std::chrono::seconds(30)};
  std::mutex mutex_;
  std::vector<std::unique_ptr<Connection>> idle_;
};
using ClientPtr = std::shared_ptr<Client>;

// Percent-encodes a query parameter value.
std::string urlEncode(std::string_view value);

}  // namespace clrk::kube
