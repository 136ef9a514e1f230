// The API server's non-resource endpoints: /version, health checks, legacy discovery (/api,
// /apis, /api/v1, /apis/<group>[/<version>]) and OpenAPI v3 (/openapi/v3 and one document per
// group/version). Every document is generated once from the registry and served from memory.
//
// Aggregated discovery (Accept ...;as=APIGroupDiscoveryList) is not offered: the plain
// APIGroupList is returned as application/json and kubectl falls back to per-group discovery.
// Thread model: immutable after build() except setServerAddress(); serve() is thread-safe.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/apiserver/handler.h"
#include "clrk/base/status.h"

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

namespace clrk::apiserver {

// gitVersion reported by /version; kubectl's version dispatcher reads major/minor.
inline constexpr std::string_view kServerGitVersion = "v1.32.0-clrk";

class Discovery;
using DiscoveryPtr = std::unique_ptr<Discovery>;

class Discovery {
 public:
  // Generates every document for `registry` (which must outlive nothing: all is copied).
  // Fails when an OpenAPI document can't be generated.
  static Result<DiscoveryPtr> build(const api::Registry& registry);

  // "127.0.0.1:6443": announced in APIVersions.serverAddressByClientCIDRs.
  void setServerAddress(std::string address);

  // The response for a discovery, OpenAPI, version or health path; nullopt when `request.path`
  // is none of those (resource paths, unknown paths).
  std::optional<Response> serve(const Request& request) const;

  // True iff `path` addresses resources under /api/v1/... or /apis/<group>/<version>/...
  // (something after the group/version), i.e. belongs to the ResourceHandler.
  static bool isResourcePath(std::string_view path);

 private:
  Discovery() = default;

  std::string version_doc_;
  std::string group_list_doc_;                    // /apis
  std::map<std::string, std::string> groups_;     // "/apis/<g>" -> APIGroup
  std::map<std::string, std::string> resources_;  // "/api/v1", "/apis/<g>/<v>" -> APIResourceList
  std::string openapi_index_doc_;                 // /openapi/v3
  std::map<std::string, std::string> openapi_;    // "/openapi/v3/apis/<g>/<v>" -> document
  mutable std::mutex mu_;
  std::string server_address_ = "127.0.0.1:0";
};

}  // namespace clrk::apiserver
