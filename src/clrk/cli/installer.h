// `clrk install` / `clrk upgrade`: the deploy/ manifests (embedded, deploy_manifests.h) turned into
// the objects to apply, in dependency order, and applied to a cluster with server-side apply.
// Thread model: single-threaded (called from the CLI verb).
#pragma once

#include "clrk/api/registry.h"
#include "clrk/base/status.h"
#include "clrk/kube/client.h"

#include <chrono>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace clrk::cli {

inline constexpr std::string_view kImageRepository = "ghcr.io/apoxy-dev/clrk";
inline constexpr std::string_view kSystemNamespace = "clrk-system";
inline constexpr std::string_view kControllerManagerName = "clrk-controller-manager";
inline constexpr std::string_view kDefaultWorkerPoolName = "default-workers";
inline constexpr std::string_view kDefaultWorkerPoolNamespace = "default";
// Annotation on the controller-manager Deployment: the clrk version installed.
inline constexpr std::string_view kVersionAnnotation = "clrk.apoxy.dev/version";
inline constexpr std::string_view kInstallFieldManager = "clrk-install";

// The version this binary installs by default ("0.1.0").
std::string_view buildVersion();
// "ghcr.io/apoxy-dev/clrk:v0.1.0" for version "0.1.0" (a leading "v" is accepted).
std::string imageForVersion(std::string_view version);

struct InstallOptions {
  std::string version;         // empty: buildVersion()
  std::string image;           // empty: imageForVersion(version)
  std::optional<int> workers;  // replicas of the default WorkerPool; empty: as in deploy/
  std::chrono::milliseconds crd_timeout{std::chrono::seconds(60)};
};

// The objects of deploy/, images and version set, ordered: CustomResourceDefinitions, Namespace,
// ServiceAccounts, (Cluster)Roles, (Cluster)RoleBindings, Services and Deployments, then clrk
// kinds (the default WorkerPool). Errors name the manifest file that does not parse.
Result<std::vector<api::Json>> installObjects(const InstallOptions& options);

// The objects as one multi-document YAML stream (what --dry-run prints).
std::string renderYaml(const std::vector<api::Json>& objects);

// "Deployment clrk-system/clrk-controller-manager".
std::string describeObject(const api::Json& object);

// Applies `objects` in order (server-side apply, field manager clrk-install, forced), printing
// one kubectl-style line per object to `out`; after the last CRD waits until every CRD is
// Established (or, on servers that do not report that condition, served by discovery).
// Stops at the first failure; the error names the object.
Status applyObjects(kube::Client& client, const std::vector<api::Json>& objects,
                    const InstallOptions& options, std::ostream& out);

// The controller-manager Deployment of an install, or NotFound when clrk is not installed.
Result<api::Json> installedControllerManager(kube::Client& client);

}  // namespace clrk::cli
