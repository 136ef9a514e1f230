// Client connection settings: kubeconfig files (clusters, users, contexts) and in-cluster
// service-account configuration, resolved into one RestConfig.
// Thread model: plain values and free functions without shared state.
#pragma once

#include "clrk/base/status.h"

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::kube {

// Everything the REST client needs to reach and authenticate to one API server.
struct RestConfig {
  std::string server;  // "https://127.0.0.1:6443" (optionally with a path prefix)
  std::string ca_pem;  // PEM bundle to verify the server; empty = system trust store
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;  // name to verify (and send as SNI) instead of the URL host
  std::string token;            // bearer token
  std::string client_certificate_pem;
  std::string client_key_pem;
  std::string namespace_name;  // the context's namespace; empty when unset
  std::string context_name;    // the selected context; "" for in-cluster
  std::string source;          // where the config came from (file list or "in-cluster")
};

struct ConfigOptions {
  std::string kubeconfig;  // --kubeconfig: one file, overrides $KUBECONFIG
  std::string context;     // --context: overrides current-context
};

// Parses kubeconfig text. `source` names the file in errors; relative file references are resolved
// against `base_dir`. Selects `context` (or current-context when empty).
Result<RestConfig> parseKubeconfig(std::string_view text, std::string_view source,
                                   const std::filesystem::path& base_dir,
                                   std::string_view context = {});

// Loads and merges kubeconfig files: `paths` in order, the first file that sets a map key (a
// cluster, user or context name) or current-context wins, like kubectl's $KUBECONFIG merging.
// Missing files in the list are skipped; errors when none exists.
Result<RestConfig> loadKubeconfigFiles(const std::vector<std::filesystem::path>& paths,
                                       std::string_view context = {});

// In-cluster configuration: $KUBERNETES_SERVICE_HOST/$KUBERNETES_SERVICE_PORT and the service
// account files under `root` + /var/run/secrets/kubernetes.io/serviceaccount/ (token, ca.crt,
// namespace). `root` is "/" in production; tests pass a temp directory.
Result<RestConfig> inClusterConfig(const std::filesystem::path& root = "/");

// The kubeconfig files in effect: options.kubeconfig, else $KUBECONFIG (colon-separated), else
// ~/.kube/config.
std::vector<std::filesystem::path> kubeconfigPaths(const ConfigOptions& options);

// kubectl's resolution order: --kubeconfig, $KUBECONFIG, in-cluster (when
// KUBERNETES_SERVICE_HOST is set and no kubeconfig file exists), ~/.kube/config.
Result<RestConfig> loadConfig(const ConfigOptions& options);

}  // namespace clrk::kube
