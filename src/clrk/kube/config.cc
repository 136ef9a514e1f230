#include "clrk/kube/config.h"

#include "clrk/base/files.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <map>
#include <optional>

namespace clrk::kube {
namespace {

constexpr std::string_view kServiceAccountDir = "var/run/secrets/kubernetes.io/serviceaccount";

// One named entry (cluster, user or context) and the file that defined it.
struct Entry {
  YAML::Node node;
  std::string source;
  std::filesystem::path base_dir;
};

struct Merged {
  std::map<std::string, Entry> clusters;
  std::map<std::string, Entry> users;
  std::map<std::string, Entry> contexts;
  std::string current_context;
  std::string current_context_source;
  std::vector<std::string> sources;
};

std::optional<std::string> decodeBase64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
  };
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : in) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    int v = value(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xFF));
    }
  }
  return out;
}

// Reads a string scalar; empty when absent. Errors when present but not a scalar.
Result<std::string> scalar(const YAML::Node& node, std::string_view key, std::string_view where) {
  YAML::Node child = node[std::string(key)];
  if (!child || child.IsNull()) return std::string();
  if (!child.IsScalar()) {
    return invalidArgument(std::string(where) + ": " + std::string(key) + " must be a string");
  }
  return child.as<std::string>();
}

Status collect(const YAML::Node& root, std::string_view list_key, std::string_view item_key,
               const std::string& source, const std::filesystem::path& base_dir,
               std::map<std::string, Entry>& into) {
  YAML::Node list = root[std::string(list_key)];
  if (!list || list.IsNull()) return {};
  if (!list.IsSequence()) {
    return invalidArgument(source + ": " + std::string(list_key) + " must be a list");
  }
  for (size_t i = 0; i < list.size(); ++i) {
    YAML::Node item = list[i];
    std::string where = source + ": " + std::string(list_key) + "[" + std::to_string(i) + "]";
    if (!item.IsMap()) return invalidArgument(where + " must be a mapping");
    CLRK_ASSIGN_OR_RETURN(std::string name, scalar(item, "name", where));
    if (name.empty()) return invalidArgument(where + ": name is required");
    YAML::Node body = item[std::string(item_key)];
    if (!body || !body.IsMap()) {
      return invalidArgument(where + " (\"" + name + "\"): " + std::string(item_key) +
                             " must be a mapping");
    }
    into.try_emplace(name, Entry{body, source, base_dir});  // first definition wins
  }
  return {};
}

Status mergeText(std::string_view text, const std::string& source,
                 const std::filesystem::path& base_dir, Merged& merged) {
  if (text.size() > 16 * 1024 * 1024) return invalidArgument(source + ": file too large");
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return invalidArgument(source + ": invalid YAML: " + e.what());
  }
  merged.sources.push_back(source);
  if (!root || root.IsNull()) return {};  // empty file
  if (!root.IsMap()) return invalidArgument(source + ": kubeconfig must be a mapping");
  try {
    CLRK_RETURN_IF_ERROR(collect(root, "clusters", "cluster", source, base_dir, merged.clusters));
    CLRK_RETURN_IF_ERROR(collect(root, "users", "user", source, base_dir, merged.users));
    CLRK_RETURN_IF_ERROR(collect(root, "contexts", "context", source, base_dir, merged.contexts));
    CLRK_ASSIGN_OR_RETURN(std::string current, scalar(root, "current-context", source));
    if (merged.current_context.empty() && !current.empty()) {
      merged.current_context = current;
      merged.current_context_source = source;
    }
  } catch (const YAML::Exception& e) {
    return invalidArgument(source + ": " + e.what());
  }
  return {};
}

// Reads either `<key>-data` (base64) or the file named by `<key>`.
Result<std::string> dataOrFile(const Entry& entry, std::string_view key, std::string_view where) {
  CLRK_ASSIGN_OR_RETURN(std::string data, scalar(entry.node, std::string(key) + "-data", where));
  if (!data.empty()) {
    auto decoded = decodeBase64(data);
    if (!decoded) {
      return invalidArgument(std::string(where) + ": " + std::string(key) +
                             "-data is not valid base64");
    }
    return *decoded;
  }
  CLRK_ASSIGN_OR_RETURN(std::string file, scalar(entry.node, key, where));
  if (file.empty()) return std::string();
  std::filesystem::path path(file);
  if (path.is_relative()) path = entry.base_dir / path;
  auto content = readFile(path);
  if (!content.ok()) {
    return invalidArgument(std::string(where) + ": " + std::string(key) + " \"" + path.string() +
                           "\": " + content.status().message());
  }
  return std::move(content).value();
}

Result<RestConfig> resolve(const Merged& merged, std::string_view context_override) {
  std::string sources;
  for (const auto& s : merged.sources) sources += (sources.empty() ? "" : ":") + s;
  std::string context_name =
      context_override.empty() ? merged.current_context : std::string(context_override);
  if (context_name.empty()) {
    return invalidArgument(sources + ": no current-context set (use --context)");
  }
  auto ctx_it = merged.contexts.find(context_name);
  if (ctx_it == merged.contexts.end()) {
    return invalidArgument(sources + ": context \"" + context_name + "\" not found");
  }
  const Entry& ctx = ctx_it->second;
  std::string ctx_where = ctx.source + ": context \"" + context_name + "\"";
  RestConfig config;
  config.context_name = context_name;
  config.source = sources;
  try {
    CLRK_ASSIGN_OR_RETURN(std::string cluster_name, scalar(ctx.node, "cluster", ctx_where));
    CLRK_ASSIGN_OR_RETURN(std::string user_name, scalar(ctx.node, "user", ctx_where));
    CLRK_ASSIGN_OR_RETURN(config.namespace_name, scalar(ctx.node, "namespace", ctx_where));
    if (cluster_name.empty()) return invalidArgument(ctx_where + ": cluster is required");
    auto cl_it = merged.clusters.find(cluster_name);
    if (cl_it == merged.clusters.end()) {
      return invalidArgument(ctx_where + ": cluster \"" + cluster_name + "\" not found");
    }
    const Entry& cluster = cl_it->second;
    std::string cl_where = cluster.source + ": cluster \"" + cluster_name + "\"";
    CLRK_ASSIGN_OR_RETURN(config.server, scalar(cluster.node, "server", cl_where));
    if (config.server.empty()) return invalidArgument(cl_where + ": server is required");
    if (config.server.rfind("https://", 0) != 0 && config.server.rfind("http://", 0) != 0) {
      return invalidArgument(cl_where + ": server \"" + config.server +
                             "\" must start with https:// or http://");
    }
    CLRK_ASSIGN_OR_RETURN(config.ca_pem, dataOrFile(cluster, "certificate-authority", cl_where));
    CLRK_ASSIGN_OR_RETURN(config.tls_server_name,
                          scalar(cluster.node, "tls-server-name", cl_where));
    CLRK_ASSIGN_OR_RETURN(std::string insecure,
                          scalar(cluster.node, "insecure-skip-tls-verify", cl_where));
    if (!insecure.empty() && insecure != "true" && insecure != "false") {
      return invalidArgument(cl_where + ": insecure-skip-tls-verify must be true or false");
    }
    config.insecure_skip_tls_verify = insecure == "true";
    if (cluster.node["proxy-url"]) {
      return invalidArgument(cl_where + ": proxy-url is not supported");
    }

    if (!user_name.empty()) {
      auto us_it = merged.users.find(user_name);
      if (us_it == merged.users.end()) {
        return invalidArgument(ctx_where + ": user \"" + user_name + "\" not found");
      }
      const Entry& user = us_it->second;
      std::string us_where = user.source + ": user \"" + user_name + "\"";
      if (user.node["exec"]) {
        return invalidArgument(us_where + ": exec credential plugins are not supported");
      }
      if (user.node["auth-provider"]) {
        return invalidArgument(us_where + ": auth-provider is not supported");
      }
      if (user.node["username"] || user.node["password"]) {
        return invalidArgument(us_where + ": basic authentication is not supported");
      }
      CLRK_ASSIGN_OR_RETURN(config.token, scalar(user.node, "token", us_where));
      if (config.token.empty()) {
        CLRK_ASSIGN_OR_RETURN(std::string token_file, scalar(user.node, "tokenFile", us_where));
        if (!token_file.empty()) {
          std::filesystem::path path(token_file);
          if (path.is_relative()) path = user.base_dir / path;
          auto token = readFile(path);
          if (!token.ok()) {
            return invalidArgument(us_where + ": tokenFile \"" + path.string() +
                                   "\": " + token.status().message());
          }
          config.token = *token;
          while (!config.token.empty() &&
                 (config.token.back() == '\n' || config.token.back() == '\r')) {
            config.token.pop_back();
          }
        }
      }
      CLRK_ASSIGN_OR_RETURN(config.client_certificate_pem,
                            dataOrFile(user, "client-certificate", us_where));
      CLRK_ASSIGN_OR_RETURN(config.client_key_pem, dataOrFile(user, "client-key", us_where));
      if (config.client_certificate_pem.empty() != config.client_key_pem.empty()) {
        return invalidArgument(us_where +
                               ": client-certificate and client-key must be set together");
      }
    }
  } catch (const YAML::Exception& e) {
    return invalidArgument(ctx_where + ": " + e.what());
  }
  return config;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

}  // namespace

Result<RestConfig> parseKubeconfig(std::string_view text, std::string_view source,
                                   const std::filesystem::path& base_dir,
                                   std::string_view context) {
  Merged merged;
  CLRK_RETURN_IF_ERROR(mergeText(text, std::string(source), base_dir, merged));
  return resolve(merged, context);
}

Result<RestConfig> loadKubeconfigFiles(const std::vector<std::filesystem::path>& paths,
                                       std::string_view context) {
  Merged merged;
  for (const auto& path : paths) {
    auto text = readFile(path);
    if (!text.ok()) {
      if (text.status().code() == Code::NotFound) continue;
      return text.status().withContext(path.string());
    }
    CLRK_RETURN_IF_ERROR(mergeText(*text, path.string(), path.parent_path(), merged));
  }
  if (merged.sources.empty()) {
    std::string list;
    for (const auto& p : paths) list += (list.empty() ? "" : ":") + p.string();
    return notFound("no kubeconfig file found (looked at " + list + ")");
  }
  return resolve(merged, context);
}

Result<RestConfig> inClusterConfig(const std::filesystem::path& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return invalidArgument(
        "not running in a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be "
        "set");
  }
  std::filesystem::path dir = root / kServiceAccountDir;
  RestConfig config;
  std::string host_text(host);
  if (host_text.find(':') != std::string::npos) host_text = "[" + host_text + "]";  // IPv6
  config.server = "https://" + host_text + ":" + port;
  auto token = readFile(dir / "token");
  if (!token.ok()) {
    return invalidArgument("in-cluster config: " + (dir / "token").string() + ": " +
                           token.status().message());
  }
  config.token = trimmed(*token);
  auto ca = readFile(dir / "ca.crt");
  if (!ca.ok()) {
    return invalidArgument("in-cluster config: " + (dir / "ca.crt").string() + ": " +
                           ca.status().message());
  }
  config.ca_pem = *ca;
  auto ns = readFile(dir / "namespace");
  if (ns.ok()) config.namespace_name = trimmed(*ns);
  config.source = "in-cluster";
  return config;
}

std::vector<std::filesystem::path> kubeconfigPaths(const ConfigOptions& options) {
  if (!options.kubeconfig.empty()) return {options.kubeconfig};
  std::vector<std::filesystem::path> paths;
  if (const char* env = std::getenv("KUBECONFIG"); env != nullptr && *env != '\0') {
    std::string_view rest(env);
    while (!rest.empty()) {
      size_t colon = rest.find(':');
      std::string_view part = rest.substr(0, colon);
      if (!part.empty()) paths.emplace_back(std::string(part));
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
    if (!paths.empty()) return paths;
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    paths.emplace_back(std::filesystem::path(home) / ".kube" / "config");
  }
  return paths;
}

Result<RestConfig> loadConfig(const ConfigOptions& options) {
  if (!options.kubeconfig.empty()) {
    auto text = readFile(options.kubeconfig);
    if (!text.ok()) return text.status().withContext("kubeconfig");
    return parseKubeconfig(*text, options.kubeconfig,
                           std::filesystem::path(options.kubeconfig).parent_path(),
                           options.context);
  }
  const char* env = std::getenv("KUBECONFIG");
  bool have_env = env != nullptr && *env != '\0';
  const char* service_host = std::getenv("KUBERNETES_SERVICE_HOST");
  auto paths = kubeconfigPaths(options);
  if (!have_env && service_host != nullptr && *service_host != '\0') {
    std::error_code ec;
    if (paths.empty() || !std::filesystem::exists(paths.front(), ec)) return inClusterConfig();
  }
  return loadKubeconfigFiles(paths, options.context);
}

}  // namespace clrk::kube
