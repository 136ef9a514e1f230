#include "clrk/apiserver/discovery.h"

#include "clrk/api/generate.h"
#include "clrk/apiserver/http_server.h"

#include <openssl/evp.h>

#include <array>
#include <cstdio>

namespace clrk::apiserver {
namespace {

using Json = nlohmann::json;

std::array<unsigned char, 32> sha256(std::string_view data) {
  std::array<unsigned char, 32> out{};
  unsigned len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string hexUpper(const unsigned char* data, size_t size) {
  std::string out;
  out.reserve(size * 2);
  for (size_t idx = 0; idx < size; ++idx) {
    char buf[3];
    std::snprintf(buf, sizeof(buf), "%02X", data[idx]);
    out += buf;
  }
  return out;
}

// As the real server: base64 of the first 8 bytes of sha256("<group>/<version>/<kind>").
std::string storageVersionHash(const api::ResourceType& type) {
  auto digest = sha256(type.group + "/" + type.version + "/" + type.kind);
  unsigned char out[16] = {};
  int len = EVP_EncodeBlock(out, digest.data(), 8);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(len));
}

std::string dump(const Json& json) {
  return json.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json resourceList(const api::Registry& registry, const std::string& group_version) {
  Json resources = Json::array();
  for (const api::ResourceType& type : registry.types()) {
    if (type.apiVersion() != group_version) continue;
    resources.push_back({{"name", type.plural},
                         {"singularName", type.singular},
                         {"namespaced", type.namespaced},
                         {"kind", type.kind},
                         {"verbs", type.verbs},
                         {"storageVersionHash", storageVersionHash(type)}});
    if (!type.short_names.empty()) resources.back()["shortNames"] = type.short_names;
    if (!type.categories.empty()) resources.back()["categories"] = type.categories;
    bool is_namespace = type.group.empty() && type.kind == "Namespace";
    if (type.has_status_subresource || is_namespace) {
      resources.push_back({{"name", type.plural + "/status"},
                           {"singularName", ""},
                           {"namespaced", type.namespaced},
                           {"kind", type.kind},
                           {"verbs", {"get", "patch", "update"}}});
    }
    if (is_namespace) {
      resources.push_back({{"name", type.plural + "/finalize"},
                           {"singularName", ""},
                           {"namespaced", false},
                           {"kind", type.kind},
                           {"verbs", {"update"}}});
    }
  }
  return {{"kind", "APIResourceList"},
          {"apiVersion", "v1"},
          {"groupVersion", group_version},
          {"resources", resources}};
}

Response jsonResponse(std::string body) {
  Response response;
  response.body = std::move(body);
  return response;
}

std::string_view trimTrailingSlash(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  return path;
}

}  // namespace

Result<DiscoveryPtr> Discovery::build(const api::Registry& registry) {
  DiscoveryPtr d(new Discovery());
  d->version_doc_ = dump({{"major", "1"},
                          {"minor", "32"},
                          {"gitVersion", std::string(kServerGitVersion)},
                          {"gitCommit", "0000000000000000000000000000000000000000"},
                          {"gitTreeState", "clean"},
                          {"buildDate", "2026-01-01T00:00:00Z"},
                          {"goVersion", "go1.23.0"},
                          {"compiler", "gc"},
                          {"platform", "linux/amd64"}});

  // Groups in registry order, each with its versions in registry order.
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  Json index_paths = Json::object();
  try {
    for (const std::string& gv : registry.groupVersions()) {
      std::string key;
      if (gv.find('/') == std::string::npos) {
        key = "/api/" + gv;
      } else {
        key = "/apis/" + gv;
        std::string group = gv.substr(0, gv.find('/'));
        std::string version = gv.substr(gv.find('/') + 1);
        auto it = std::find_if(groups.begin(), groups.end(),
                               [&](const auto& g) { return g.first == group; });
        if (it == groups.end()) {
          groups.push_back({group, {version}});
        } else {
          it->second.push_back(version);
        }
      }
      d->resources_[key] = dump(resourceList(registry, gv));
      std::string doc = dump(api::openApiV3(registry, gv));
      auto digest = sha256(doc);
      std::string path = "/openapi/v3" + key;
      d->openapi_[path] = std::move(doc);
      index_paths[key.substr(1)] = {
          {"serverRelativeURL", path + "?hash=" + hexUpper(digest.data(), digest.size())}};
    }
  } catch (const std::exception& e) {
    return internalError(std::string("generating discovery documents: ") + e.what());
  }
  d->openapi_index_doc_ = dump({{"paths", index_paths}});

  Json group_list = Json::array();
  for (const auto& [group, versions] : groups) {
    Json version_list = Json::array();
    for (const std::string& version : versions) {
      version_list.push_back({{"groupVersion", group + "/" + version}, {"version", version}});
    }
    Json entry = {
        {"name", group}, {"versions", version_list}, {"preferredVersion", version_list[0]}};
    Json single = entry;
    single["kind"] = "APIGroup";
    single["apiVersion"] = "v1";
    d->groups_["/apis/" + group] = dump(single);
    group_list.push_back(std::move(entry));
  }
  d->group_list_doc_ =
      dump({{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", group_list}});
  return d;
}

void Discovery::setServerAddress(std::string address) {
  std::lock_guard lock(mu_);
  server_address_ = std::move(address);
}

bool Discovery::isResourcePath(std::string_view path) {
  if (path.starts_with("/api/v1/")) return path.size() > 8;
  if (!path.starts_with("/apis/")) return false;
  // /apis/<group>/<version>/<something>
  std::string_view rest = path.substr(6);
  size_t group_end = rest.find('/');
  if (group_end == std::string_view::npos || group_end == 0) return false;
  rest = rest.substr(group_end + 1);
  size_t version_end = rest.find('/');
  return version_end != std::string_view::npos && version_end > 0 && version_end + 1 < rest.size();
}

std::optional<Response> Discovery::serve(const Request& request) const {
  std::string_view path = trimTrailingSlash(request.path);
  const bool known = path == "/version" || path == "/healthz" || path == "/livez" ||
                     path == "/readyz" || path.starts_with("/healthz/") ||
                     path.starts_with("/livez/") || path.starts_with("/readyz/") ||
                     path == "/api" || path == "/apis" || path.starts_with("/openapi/") ||
                     path == "/openapi" || resources_.count(std::string(path)) > 0 ||
                     groups_.count(std::string(path)) > 0;
  if (!known) return std::nullopt;
  if (request.method != "GET") {
    return statusResponse(405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource");
  }
  if (path == "/version") return jsonResponse(version_doc_);
  if (path == "/healthz" || path == "/livez" || path == "/readyz" ||
      path.starts_with("/healthz/") || path.starts_with("/livez/") ||
      path.starts_with("/readyz/")) {
    Response response;
    response.content_type = "text/plain; charset=utf-8";
    response.body = "ok";
    return response;
  }
  if (path == "/api") {
    std::lock_guard lock(mu_);
    return jsonResponse(
        dump({{"kind", "APIVersions"},
              {"versions", {"v1"}},
              {"serverAddressByClientCIDRs",
               {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", server_address_}}}}}));
  }
  if (path == "/apis") return jsonResponse(group_list_doc_);
  if (auto it = resources_.find(std::string(path)); it != resources_.end()) {
    return jsonResponse(it->second);
  }
  if (auto it = groups_.find(std::string(path)); it != groups_.end()) {
    return jsonResponse(it->second);
  }
  if (path == "/openapi/v3") return jsonResponse(openapi_index_doc_);
  if (auto it = openapi_.find(std::string(path)); it != openapi_.end()) {
    Response response = jsonResponse(it->second);
    if (request.param("hash")) {
      response.headers.emplace_back("Cache-Control", "public, immutable");
    }
    return response;
  }
  return statusResponse(404, "NotFound", "the server could not find the requested resource");
}

}  // namespace clrk::apiserver
