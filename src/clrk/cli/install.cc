// `clrk install` and `clrk upgrade`: apply the embedded deploy/ manifests (CRDs, namespace, RBAC,
// controller-manager, default WorkerPool) to the cluster of the kubeconfig (installer.h).
#include "clrk/cli/common.h"
#include "clrk/cli/installer.h"

#include <iostream>

namespace clrk::cli {
namespace {

struct InstallFlags {
  std::string version;
  std::string image;
  int workers = -1;
  int timeout_seconds = 60;
  bool dry_run = false;
};

InstallOptions toOptions(const InstallFlags& flags) {
  InstallOptions options;
  options.version = flags.version;
  options.image = flags.image;
  if (flags.workers >= 0) options.workers = flags.workers;
  options.crd_timeout = std::chrono::seconds(flags.timeout_seconds);
  return options;
}

int runInstall(const Globals& globals, const InstallFlags& flags, bool upgrade) {
  InstallOptions options = toOptions(flags);
  if (flags.dry_run) {
    auto objects = installObjects(options);
    if (!objects.ok()) {
      printError(objects.status());
      return kExitError;
    }
    std::cout << renderYaml(*objects);
    return kExitOk;
  }
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  kube::Client& client = *session->client;
  auto installed = installedControllerManager(client);
  std::string installed_version;
  if (installed.ok()) {
    installed_version = (*installed)["metadata"]
                            .value("annotations", api::Json::object())
                            .value(std::string(kVersionAnnotation), "");
  } else if (installed.status().code() != Code::NotFound) {
    printError(installed.status().withContext("checking for an existing install"));
    return kExitError;
  }
  if (upgrade && !installed.ok()) {
    printError("clrk is not installed in " + client.config().server + " (no Deployment " +
               std::string(kSystemNamespace) + "/" + std::string(kControllerManagerName) +
               "); run `clrk install` first");
    return kExitError;
  }
  if (upgrade && !options.workers) {
    // An upgrade changes versions, not the size the operator chose for the default pool.
    const api::ResourceType& pool_type =
        *api::Registry::builtin().byKind("clrk.apoxy.dev/v1alpha1", "WorkerPool");
    auto pool = client.get(pool_type, kDefaultWorkerPoolNamespace, kDefaultWorkerPoolName);
    if (pool.ok() && (*pool)["spec"].contains("replicas")) {
      options.workers = (*pool)["spec"]["replicas"].get<int>();
    }
  }
  auto objects = installObjects(options);
  if (!objects.ok()) {
    printError(objects.status());
    return kExitError;
  }
  Status applied = applyObjects(client, *objects, options, std::cout);
  if (!applied.ok()) {
    printError(applied);
    return kExitError;
  }
  std::string version = options.version.empty() ? std::string(buildVersion()) : options.version;
  if (upgrade) {
    std::cout << "clrk upgraded in " << client.config().server << " ("
              << (installed_version.empty() ? "unknown version" : installed_version) << " -> "
              << version << ")" << std::endl;
  } else {
    std::cout << "clrk " << version << " installed in " << client.config().server << " (namespace "
              << kSystemNamespace << ")" << std::endl;
  }
  return kExitOk;
}

void addFlags(CLI::App* cmd, InstallFlags& flags) {
  cmd->fallthrough();  // `clrk install --kubeconfig FILE --context NAME` reads naturally
  cmd->add_option(
      "--version", flags.version,
      "clrk version to install (default: this binary's, " + std::string(buildVersion()) + ")");
  cmd->add_option("--image", flags.image,
                  "Image of the controller-manager and the default WorkerPool's workers "
                  "(default: " +
                      std::string(kImageRepository) + ":v<version>)");
  cmd->add_option("--workers", flags.workers,
                  "Replicas of the default WorkerPool (install default: 1; upgrade keeps the "
                  "current count)")
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--timeout", flags.timeout_seconds,
                  "Seconds to wait for the CRDs to be established")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd->add_flag("--dry-run", flags.dry_run,
                "Print the manifests that would be applied; do not contact the cluster");
}

}  // namespace

void addInstallCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<InstallFlags>();
  CLI::App* install = app.add_subcommand(
      "install",
      "Install clrk into the cluster of the kubeconfig (CRDs, clrk-system, RBAC, "
      "controller-manager, WorkerPool default-workers); --kubeconfig and --context choose the "
      "cluster");
  addFlags(install, *flags);
  install->callback(
      [&globals, flags] { globals.exit_code = runInstall(globals, *flags, /*upgrade=*/false); });

  auto upgrade_flags = std::make_shared<InstallFlags>();
  CLI::App* upgrade = app.add_subcommand(
      "upgrade", "Re-apply clrk at a new version/image to a cluster where it is installed");
  addFlags(upgrade, *upgrade_flags);
  upgrade->callback([&globals, upgrade_flags] {
    globals.exit_code = runInstall(globals, *upgrade_flags, /*upgrade=*/true);
  });
}

}  // namespace clrk::cli
