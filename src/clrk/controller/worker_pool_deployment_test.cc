// The cluster-mode worker objects of a WorkerPool: the Deployment and Service builders (pod base
// plus the curated template), the Available condition, and applyWorkerObjects against the
// embedded API server, whose garbage collector deletes them with their pool.
#include "clrk/controller/worker_pool_deployment.h"

#include "clrk/api/builtin_types.h"
#include "clrk/apiserver/server.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <thread>

namespace clrk::controller {
namespace {

using Json = kube::Json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

Json pool(const std::string& name = "team-pool") {
  return Json::parse(R"({
    "apiVersion": "clrk.apoxy.dev/v1alpha1", "kind": "WorkerPool",
    "metadata": {"name": ")" +
                     name + R"(", "namespace": "team-a", "uid": "u-1", "generation": 2},
    "spec": {
      "replicas": 3, "maxExecutionsPerWorker": 6,
      "template": {
        "image": "registry.example/clrk:v1", "imagePullPolicy": "Always",
        "resources": {"limits": {"memory": "2Gi"}},
        "env": [{"name": "EXTRA", "value": "1"}, {"name": "POD_IP", "value": "spoofed"}],
        "nodeSelector": {"clrk.apoxy.dev/sandbox": "true"},
        "tolerations": [{"key": "sandbox", "operator": "Exists"}],
        "serviceAccountName": "team-worker",
        "extraVolumes": [{"name": "cache", "emptyDir": {}}, {"name": "state", "hostPath": {"path": "/"}}],
        "extraVolumeMounts": [{"name": "cache", "mountPath": "/cache"}],
        "metadata": {"labels": {"team": "a", "app.kubernetes.io/name": "spoofed"},
                     "annotations": {"note": "x"}}
      }
    }
  })");
}

bool hasArg(const Json& container, const std::string& arg) {
  for (const auto& value : container["args"]) {
    if (value == arg) return true;
  }
  return false;
}

TEST(WorkerPoolDeploymentTest, NamesAreBoundedByServiceNames) {
  EXPECT_EQ(workerObjectName("default-workers").value(), "clrk-worker-default-workers");
  EXPECT_TRUE(workerObjectName(std::string(51, 'a')).ok());
  auto too_long = workerObjectName(std::string(52, 'a'));
  ASSERT_FALSE(too_long.ok());
  EXPECT_NE(too_long.status().message().find("63"), std::string::npos);
}

TEST(WorkerPoolDeploymentTest, DeploymentMergesTheTemplateOntoTheBase) {
  Json deployment = workerDeployment(pool(), {"clrk-system", "gvisor"});
  EXPECT_EQ(deployment["apiVersion"], "apps/v1");
  EXPECT_EQ(deployment["metadata"]["name"], "clrk-worker-team-pool");
  EXPECT_EQ(deployment["metadata"]["namespace"], "team-a");
  const Json& owner = deployment["metadata"]["ownerReferences"][0];
  EXPECT_EQ(owner["kind"], "WorkerPool");
  EXPECT_EQ(owner["name"], "team-pool");
  EXPECT_EQ(owner["uid"], "u-1");
  EXPECT_EQ(owner["controller"], true);
  EXPECT_EQ(deployment["spec"]["replicas"], 3);
  const Json& selector = deployment["spec"]["selector"]["matchLabels"];
  const Json& pod = deployment["spec"]["template"];
  for (const auto& [key, value] : selector.items())
    EXPECT_EQ(pod["metadata"]["labels"][key], value);
  EXPECT_EQ(pod["metadata"]["labels"]["team"], "a");
  EXPECT_EQ(pod["metadata"]["labels"]["app.kubernetes.io/name"], "clrk-worker");
  EXPECT_EQ(pod["metadata"]["annotations"]["note"], "x");
  EXPECT_EQ(pod["spec"]["serviceAccountName"], "team-worker");
  EXPECT_EQ(pod["spec"]["nodeSelector"]["clrk.apoxy.dev/sandbox"], "true");
  EXPECT_EQ(pod["spec"]["tolerations"].size(), 1u);

  const Json& container = pod["spec"]["containers"][0];
  EXPECT_EQ(container["image"], "registry.example/clrk:v1");
  EXPECT_EQ(container["imagePullPolicy"], "Always");
  EXPECT_EQ(container["securityContext"]["privileged"], true);
  EXPECT_EQ(container["resources"]["limits"]["memory"], "2Gi");
  EXPECT_EQ(container["command"][0], "clrk-worker");
  EXPECT_TRUE(hasArg(container, "--pool=team-pool"));
  EXPECT_TRUE(hasArg(container, "--namespace=team-a"));
  EXPECT_TRUE(hasArg(container, "--system-namespace=clrk-system"));
  EXPECT_TRUE(hasArg(container, "--advertise=$(POD_IP):7443"));
  EXPECT_TRUE(hasArg(container, "--max-executions=6"));
  EXPECT_TRUE(hasArg(container, "--runtime=gvisor"));
  int pod_ip = 0;
  bool extra = false;
  for (const auto& var : container["env"]) {
    if (var["name"] == "POD_IP") {
      ++pod_ip;
      EXPECT_TRUE(var.contains("valueFrom")) << "the template cannot override POD_IP";
    }
    if (var["name"] == "EXTRA") extra = true;
  }
  EXPECT_EQ(pod_ip, 1);
  EXPECT_TRUE(extra);
  std::vector<std::string> volumes;
  for (const auto& volume : pod["spec"]["volumes"]) {
    volumes.push_back(volume["name"].get<std::string>());
    if (volume["name"] == "state") {
      EXPECT_TRUE(volume.contains("emptyDir"));
    }
  }
  EXPECT_EQ(volumes, (std::vector<std::string>{"state", "run", "varlog", "cache"}));
  EXPECT_EQ(container["volumeMounts"].back()["mountPath"], "/cache");
}

TEST(WorkerPoolDeploymentTest, ServiceIsHeadlessAndSelectsThePods) {
  Json service = workerService(pool());
  EXPECT_EQ(service["metadata"]["name"], "clrk-worker-team-pool");
  EXPECT_EQ(service["spec"]["clusterIP"], "None");
  EXPECT_EQ(service["spec"]["selector"]["clrk.apoxy.dev/worker-pool"], "team-pool");
  EXPECT_EQ(service["spec"]["ports"][0]["port"], kWorkerApiPort);
  EXPECT_EQ(service["metadata"]["ownerReferences"][0]["uid"], "u-1");
}

TEST(WorkerPoolDeploymentTest, AvailableConditionFollowsTheDeployment) {
  Json deployment = workerDeployment(pool(), {});
  deployment["metadata"]["generation"] = 4;
  Json status = Json::object();
  setAvailableCondition(status, deployment);
  EXPECT_EQ(status["conditions"][0]["type"], "Available");
  EXPECT_EQ(status["conditions"][0]["status"], "False");
  EXPECT_NE(status["conditions"][0]["message"].get<std::string>().find("0/3"), std::string::npos);
  deployment["status"] = {{"observedGeneration", 4},
                          {"availableReplicas", 3},
                          {"updatedReplicas", 3},
                          {"readyReplicas", 3}};
  setAvailableCondition(status, deployment);
  EXPECT_EQ(status["conditions"][0]["status"], "True");
  EXPECT_EQ(status["conditions"][0]["reason"], "DeploymentAvailable");
  deployment["metadata"]["generation"] = 5;  // a new template not yet rolled out
  setAvailableCondition(status, deployment);
  EXPECT_EQ(status["conditions"][0]["status"], "False");
}

TEST(WorkerPoolDeploymentTest, AppliedObjectsAreOwnedAndCollectedWithThePool) {
  std::string tmpl = (fs::temp_directory_path() / "clrk-wpd-XXXXXX").string();
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  auto server = apiserver::makeServer({.state_dir = tmpl, .in_memory = true});
  ASSERT_TRUE(server->start().ok());
  kube::RestConfig config;
  config.server = server->url();
  config.ca_pem = server->caCertificatePem();
  config.token = server->token();
  auto client = kube::Client::create(config).value();

  Json ns = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "team-a"}}}};
  ASSERT_TRUE(client->create(api::builtinType("v1", "Namespace"), "", ns).ok());
  Json object = pool();
  object["metadata"].erase("uid");
  object["metadata"].erase("generation");
  auto created = client->create(api::clrkType("WorkerPool"), "team-a", object);
  ASSERT_TRUE(created.ok()) << created.status().message();

  auto deployment = applyWorkerObjects(*client, *created, {});
  ASSERT_TRUE(deployment.ok()) << deployment.status().message();
  EXPECT_EQ((*deployment)["metadata"]["ownerReferences"][0]["uid"], (*created)["metadata"]["uid"]);
  const auto& service_type = api::builtinType("v1", "Service");
  const auto& deployment_type = api::builtinType("apps/v1", "Deployment");
  ASSERT_TRUE(client->get(service_type, "team-a", "clrk-worker-team-pool").ok());

  // Idempotent; a changed pool changes the Deployment.
  (*created)["spec"]["replicas"] = 5;
  auto again = applyWorkerObjects(*client, *created, {});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)["spec"]["replicas"], 5);

  ASSERT_TRUE(client->remove(api::clrkType("WorkerPool"), "team-a", "team-pool").ok());
  bool collected = false;
  for (int attempt = 0; attempt < 100 && !collected; ++attempt) {
    collected = !client->get(deployment_type, "team-a", "clrk-worker-team-pool").ok() &&
                !client->get(service_type, "team-a", "clrk-worker-team-pool").ok();
    if (!collected) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(collected) << "the garbage collector did not delete the pool's worker objects";
  server->stop();
  std::error_code ec;
  fs::remove_all(tmpl, ec);
}

}  // namespace
}  // namespace clrk::controller
