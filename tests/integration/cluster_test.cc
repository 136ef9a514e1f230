// Cluster mode end to end, with an API-only clrk-controller-manager (--no-controllers) acting as
// the cluster: `clrk install` / `clrk upgrade` through a kubeconfig, checked with the real
// kubectl, then a cluster-mode controller-manager (--kubeconfig FILE) that runs the default
// WorkerPool as an owned clrk-worker Deployment and Service, follows its scale, reports the
// Deployment's availability and loses both when the pool is deleted (garbage collection).
// The embedded server runs no pods: the test plays the Deployment controller by writing status.
#include "harness.h"

#include "clrk/base/files.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Runs `binary args...` in the background with output to `log`; returns its PID.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t pid = ::fork();
  if (pid == 0) {
    FILE* out = std::freopen(log.c_str(), "a", stdout);
    FILE* err = std::freopen(log.c_str(), "a", stderr);
    (void)out;
    (void)err;
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

void stop(pid_t pid) {
  if (pid <= 0) return;
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 20s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return condition();
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("clrk-cluster-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "apiserver");
    fs::create_directories(dir_ / "manager");
    apiserver_ =
        spawn({binaryPath("clrk-controller-manager"), "--state-dir", (dir_ / "apiserver").string(),
               "--in-memory", "--no-controllers", "--otlp-listen", ""},
              dir_ / "apiserver.log");
    std::string url;
    ASSERT_TRUE(eventually([&] {
      auto read = readFile(dir_ / "apiserver" / "apiserver.url");
      if (!read.ok() || read->empty()) return false;
      url = read->substr(0, read->find('\n'));
      return fs::exists(dir_ / "apiserver" / "token");
    })) << "the API server did not start";
    std::string token = readFile(dir_ / "apiserver" / "token").value();
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
    kubeconfig_ = (dir_ / "kubeconfig").string();
    std::string text =
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n"
        "    server: " +
        url + "\n    certificate-authority: " + (dir_ / "apiserver" / "pki" / "ca.crt").string() +
        "\nusers:\n- name: u\n  user:\n    token: " + token +
        "\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
        "current-context: c\n";
    ASSERT_TRUE(writeFileAtomic(kubeconfig_, text, 0600).ok());
    ASSERT_TRUE(eventually([&] { return kubectl("get --raw /readyz").exit_code == 0; }));
  }

  void TearDown() override {
    stop(manager_);
    stop(apiserver_);
    if (HasFailure()) {
      for (const char* log : {"apiserver.log", "manager.log"}) {
        auto text = readFile(dir_ / log);
        if (text.ok()) std::cerr << "---- " << log << "\n" << *text;
      }
    }
    fs::remove_all(dir_);
  }

  CommandResult clrk(const std::string& args) {
    return runCommand(binaryPath("clrk") + " " + args + " --kubeconfig '" + kubeconfig_ + "'");
  }
  CommandResult kubectl(const std::string& args) {
    return runCommand("kubectl --kubeconfig='" + kubeconfig_ + "' --cache-dir='" +
                      (dir_ / "kubectl-cache").string() + "' " + args);
  }
  // The object as JSON, or null when kubectl fails (e.g. NotFound).
  json getJson(const std::string& args) {
    CommandResult result = kubectl("get " + args + " -o json");
    if (result.exit_code != 0) return nullptr;
    return json::parse(result.output, nullptr, false);
  }

  fs::path dir_;
  std::string kubeconfig_;
  pid_t apiserver_ = -1;
  pid_t manager_ = -1;
};

std::string containerImage(const json& deployment) {
  return deployment["spec"]["template"]["spec"]["containers"][0].value("image", "");
}

TEST_F(ClusterTest, InstallUpgradeAndWorkerPoolDeployments) {
  // --dry-run prints the manifests without a cluster.
  CommandResult dry = runCommand(binaryPath("clrk") + " install --dry-run --image example/clrk:0");
  ASSERT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_TRUE(contains(dry.output, "kind: CustomResourceDefinition")) << dry.output;
  EXPECT_TRUE(contains(dry.output, "image: example/clrk:0")) << dry.output;

  CommandResult early = clrk("upgrade --image example/clrk:1");
  EXPECT_NE(early.exit_code, 0);
  EXPECT_TRUE(contains(early.output, "not installed")) << early.output;

  CommandResult install = clrk("install --image example/clrk:1");
  ASSERT_EQ(install.exit_code, 0) << install.output;
  EXPECT_TRUE(contains(install.output,
                       "customresourcedefinition.apiextensions.k8s.io/"
                       "workerpools.clrk.apoxy.dev created"))
      << install.output;
  EXPECT_TRUE(contains(install.output, "CustomResourceDefinitions established")) << install.output;
  EXPECT_TRUE(contains(install.output, "deployment.apps/clrk-controller-manager created"))
      << install.output;
  EXPECT_LT(install.output.find("namespace/clrk-system"),
            install.output.find("deployment.apps/clrk-controller-manager"));

  // What kubectl sees.
  json manager = getJson("deployment -n clrk-system clrk-controller-manager");
  ASSERT_TRUE(manager.is_object());
  EXPECT_EQ(containerImage(manager), "example/clrk:1");
  auto args = manager["spec"]["template"]["spec"]["containers"][0]["args"];
  EXPECT_NE(std::find(args.begin(), args.end(), "--kubeconfig=in-cluster"), args.end());
  EXPECT_TRUE(getJson("serviceaccount -n clrk-system clrk-worker").is_object());
  EXPECT_TRUE(getJson("clusterrole clrk-controller-manager").is_object());
  EXPECT_TRUE(getJson("clusterrolebinding clrk-worker").is_object());
  EXPECT_TRUE(getJson("crd taskagents.clrk.apoxy.dev").is_object());
  json pool = getJson("workerpool -n default default-workers");
  ASSERT_TRUE(pool.is_object());
  EXPECT_EQ(pool["spec"]["template"]["image"], "example/clrk:1");

  // Re-installing is idempotent.
  CommandResult again = clrk("install --image example/clrk:1");
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "deployment.apps/clrk-controller-manager unchanged"))
      << again.output;

  // The operator scales the default pool; an upgrade changes images and keeps the scale.
  ASSERT_EQ(kubectl("patch workerpool -n default default-workers --type merge -p "
                    "'{\"spec\":{\"replicas\":2}}'")
                .exit_code,
            0);
  CommandResult upgrade = clrk("upgrade --image example/clrk:2 --version 0.2.0");
  ASSERT_EQ(upgrade.exit_code, 0) << upgrade.output;
  EXPECT_TRUE(contains(upgrade.output, "0.1.0 -> 0.2.0")) << upgrade.output;
  manager = getJson("deployment -n clrk-system clrk-controller-manager");
  EXPECT_EQ(containerImage(manager), "example/clrk:2");
  EXPECT_EQ(manager["metadata"]["annotations"]["clrk.apoxy.dev/version"], "0.2.0");
  pool = getJson("workerpool -n default default-workers");
  EXPECT_EQ(pool["spec"]["template"]["image"], "example/clrk:2");
  EXPECT_EQ(pool["spec"]["replicas"], 2);

  // A cluster-mode controller-manager runs the pool as a Deployment and a Service it owns.
  manager_ = spawn({binaryPath("clrk-controller-manager"), "--kubeconfig", kubeconfig_,
                    "--state-dir", (dir_ / "manager").string(), "--leader-elect", "true",
                    "--otlp-listen", "", "--worker-runtime", "namespaces"},
                   dir_ / "manager.log");
  json workers;
  ASSERT_TRUE(eventually([&] {
    workers = getJson("deployment -n default clrk-worker-default-workers");
    return workers.is_object();
  })) << "no worker Deployment";
  std::string uid = pool["metadata"]["uid"];
  EXPECT_EQ(workers["metadata"]["ownerReferences"][0]["uid"], uid);
  EXPECT_EQ(workers["spec"]["replicas"], 2);
  EXPECT_EQ(containerImage(workers), "example/clrk:2");
  auto container = workers["spec"]["template"]["spec"]["containers"][0];
  EXPECT_EQ(container["securityContext"]["privileged"], true);
  auto worker_args = container["args"];
  EXPECT_NE(std::find(worker_args.begin(), worker_args.end(), "--pool=default-workers"),
            worker_args.end());
  EXPECT_NE(std::find(worker_args.begin(), worker_args.end(), "--runtime=namespaces"),
            worker_args.end());
  json service = getJson("service -n default clrk-worker-default-workers");
  ASSERT_TRUE(service.is_object());
  EXPECT_EQ(service["spec"]["clusterIP"], "None");
  EXPECT_EQ(service["metadata"]["ownerReferences"][0]["uid"], uid);

  CommandResult table = kubectl("get deployments,services -n default");
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(contains(table.output, "deployment.apps/clrk-worker-default-workers"))
      << table.output;
  EXPECT_TRUE(contains(table.output, "service/clrk-worker-default-workers")) << table.output;

  // Scaling the pool scales the Deployment.
  ASSERT_EQ(kubectl("patch workerpool -n default default-workers --type merge -p "
                    "'{\"spec\":{\"replicas\":3}}'")
                .exit_code,
            0);
  EXPECT_TRUE(eventually([&] {
    workers = getJson("deployment -n default clrk-worker-default-workers");
    return workers.is_object() && workers["spec"]["replicas"] == 3;
  }));

  // Availability: not yet, then (the test plays the Deployment controller) every replica.
  auto available = [&](const std::string& want) {
    json current = getJson("workerpool -n default default-workers");
    if (!current.is_object()) return false;
    for (const auto& condition : current["status"].value("conditions", json::array())) {
      if (condition["type"] == "Available") return condition["status"] == want;
    }
    return false;
  };
  EXPECT_TRUE(eventually([&] { return available("False"); }));
  int64_t generation = workers["metadata"].value("generation", int64_t{1});
  std::string status = "{\"status\":{\"observedGeneration\":" + std::to_string(generation) +
                       ",\"replicas\":3,\"updatedReplicas\":3,\"readyReplicas\":3,"
                       "\"availableReplicas\":3}}";
  CommandResult patched = kubectl(
      "patch deployment -n default clrk-worker-default-workers --subresource=status --type "
      "merge -p '" +
      status + "'");
  ASSERT_EQ(patched.exit_code, 0) << patched.output;
  EXPECT_TRUE(eventually([&] { return available("True"); }, 30s))
      << getJson("workerpool -n default default-workers").dump(2);

  // Deleting the pool deletes its worker objects.
  ASSERT_EQ(kubectl("delete workerpool -n default default-workers").exit_code, 0);
  EXPECT_TRUE(eventually([&] {
    return kubectl("get deployment -n default clrk-worker-default-workers").exit_code != 0 &&
           kubectl("get service -n default clrk-worker-default-workers").exit_code != 0;
  })) << "the worker Deployment and Service outlived their WorkerPool";
}

}  // namespace
}  // namespace clrk::testing
