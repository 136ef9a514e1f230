#include "clrk/controller/worker_pool_deployment.h"

#include "clrk/api/builtin_types.h"
#include "clrk/controller/reconcilers.h"

#include <set>

namespace clrk::controller {
namespace {

using Json = kube::Json;

constexpr std::string_view kStateDir = "/var/lib/clrk";
const std::set<std::string> kReservedVolumes = {"state", "run", "varlog"};
const std::set<std::string> kControllerEnv = {"POD_NAME", "POD_IP", "POD_NAMESPACE"};

Json selectorLabels(const std::string& pool) {
  return {{"app.kubernetes.io/name", "clrk-worker"}, {std::string(kWorkerPoolLabel), pool}};
}

Json objectLabels(const std::string& pool) {
  Json labels = selectorLabels(pool);
  labels["app.kubernetes.io/part-of"] = "clrk";
  labels["app.kubernetes.io/managed-by"] = "clrk-controller-manager";
  return labels;
}

Json ownedMetadata(const Json& pool, const std::string& name) {
  const Json& meta = pool["metadata"];
  return {
      {"name", name},
      {"namespace", meta.value("namespace", "")},
      {"labels", objectLabels(meta.value("name", ""))},
      {"ownerReferences", Json::array({{{"apiVersion", pool.value("apiVersion", "")},
                                        {"kind", "WorkerPool"},
                                        {"name", meta.value("name", "")},
                                        {"uid", meta.value("uid", "")},
                                        {"controller", true},
                                        {"blockOwnerDeletion", true}}})},
  };
}

Json fieldEnv(const std::string& name, const std::string& path) {
  return {{"name", name}, {"valueFrom", {{"fieldRef", {{"fieldPath", path}}}}}};
}

// Copies template[key] into out[key] when present and not null.
void copyIfSet(const Json& from, const char* key, Json& out) {
  auto it = from.find(key);
  if (it != from.end() && !it->is_null()) out[key] = *it;
}

}  // namespace

Result<std::string> workerObjectName(std::string_view pool) {
  std::string name = "clrk-worker-" + std::string(pool);
  if (name.size() > 63) {
    return invalidArgument("WorkerPool name \"" + std::string(pool) + "\" is longer than 51 " +
                           "characters: the worker Service name " + name + " would exceed 63");
  }
  return name;
}

Json workerDeployment(const Json& pool, const WorkerDeploymentOptions& options) {
  const Json& meta = pool["metadata"];
  std::string pool_name = meta.value("name", "");
  std::string pool_namespace = meta.value("namespace", "");
  const Json spec = pool.value("spec", Json::object());
  const Json tmpl = spec.value("template", Json::object());
  std::string port = std::to_string(kWorkerApiPort);

  Json args = {"--pool=" + pool_name,
               "--namespace=" + pool_namespace,
               "--system-namespace=" + options.system_namespace,
               "--name=$(POD_NAME)",
               "--listen=0.0.0.0:" + port,
               "--advertise=$(POD_IP):" + port,
               "--state-dir=" + std::string(kStateDir) + "/state",
               "--runtime=" + options.runtime};
  if (spec.contains("maxExecutionsPerWorker") && spec["maxExecutionsPerWorker"].is_number() &&
      spec["maxExecutionsPerWorker"].get<int>() > 0) {
    args.push_back("--max-executions=" + std::to_string(spec["maxExecutionsPerWorker"].get<int>()));
  }

  Json env = {fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_IP", "status.podIP"),
              fieldEnv("POD_NAMESPACE", "metadata.namespace")};
  for (const auto& var : tmpl.value("env", Json::array())) {
    if (!kControllerEnv.count(var.value("name", ""))) env.push_back(var);
  }
  Json mounts = {{{"name", "state"}, {"mountPath", std::string(kStateDir)}},
                 {{"name", "run"}, {"mountPath", "/run/clrk"}},
                 {{"name", "varlog"}, {"mountPath", "/var/log/clrk"}}};
  for (const auto& mount : tmpl.value("extraVolumeMounts", Json::array())) mounts.push_back(mount);
  Json volumes = {{{"name", "state"}, {"emptyDir", Json::object()}},
                  {{"name", "run"}, {"emptyDir", {{"medium", "Memory"}}}},
                  {{"name", "varlog"}, {"emptyDir", Json::object()}}};
  for (const auto& volume : tmpl.value("extraVolumes", Json::array())) {
    if (!kReservedVolumes.count(volume.value("name", ""))) volumes.push_back(volume);
  }

  Json container = {
      {"name", "worker"},
      {"image", tmpl.value("image", "")},
      {"imagePullPolicy", tmpl.value("imagePullPolicy", "IfNotPresent")},
      {"command", Json::array({"clrk-worker"})},
      {"args", args},
      {"env", env},
      {"ports",
       Json::array({{{"name", "worker"}, {"containerPort", kWorkerApiPort}, {"protocol", "TCP"}}})},
      {"readinessProbe",
       {{"tcpSocket", {{"port", "worker"}}}, {"periodSeconds", 5}, {"failureThreshold", 3}}},
      {"securityContext", {{"privileged", true}}},
      {"volumeMounts", mounts},
  };
  copyIfSet(tmpl, "resources", container);

  Json pod_labels = tmpl.value("metadata", Json::object()).value("labels", Json::object());
  const Json owned_labels = objectLabels(pool_name);
  for (const auto& [key, value] : owned_labels.items()) pod_labels[key] = value;
  Json pod_meta = {{"labels", pod_labels}};
  Json annotations = tmpl.value("metadata", Json::object()).value("annotations", Json::object());
  if (!annotations.empty()) pod_meta["annotations"] = annotations;

  Json pod_spec = {
      {"serviceAccountName", tmpl.value("serviceAccountName", "clrk-worker")},
      // A draining worker waits up to 30 s (clrk-worker --drain-timeout) for its executions.
      {"terminationGracePeriodSeconds", 60},
      {"containers", Json::array({container})},
      {"volumes", volumes},
  };
  for (const char* key : {"imagePullSecrets", "nodeSelector", "tolerations", "affinity",
                          "priorityClassName", "topologySpreadConstraints"}) {
    copyIfSet(tmpl, key, pod_spec);
  }

  std::string name = workerObjectName(pool_name).value();
  return {
      {"apiVersion", "apps/v1"},
      {"kind", "Deployment"},
      {"metadata", ownedMetadata(pool, name)},
      {"spec",
       {{"replicas", spec.value("replicas", 1)},
        {"selector", {{"matchLabels", selectorLabels(pool_name)}}},
        {"template", {{"metadata", pod_meta}, {"spec", pod_spec}}}}},
  };
}

Json workerService(const Json& pool) {
  std::string pool_name = pool["metadata"].value("name", "");
  return {
      {"apiVersion", "v1"},
      {"kind", "Service"},
      {"metadata", ownedMetadata(pool, workerObjectName(pool_name).value())},
      {"spec",
       {{"clusterIP", "None"},
        {"selector", selectorLabels(pool_name)},
        {"ports", Json::array({{{"name", "worker"},
                                {"port", kWorkerApiPort},
                                {"targetPort", "worker"},
                                {"protocol", "TCP"}}})}}},
  };
}

Result<Json> applyWorkerObjects(kube::Client& client, const Json& pool,
                                const WorkerDeploymentOptions& options) {
  CLRK_ASSIGN_OR_RETURN(std::string name, workerObjectName(pool["metadata"].value("name", "")));
  std::string ns = pool["metadata"].value("namespace", "");
  kube::PatchOptions patch;
  patch.field_manager = std::string(kWorkerFieldManager);
  patch.force = true;
  auto service = client.patch(api::builtinType("v1", "Service"), ns, name,
                              kube::PatchType::ApplyPatch, workerService(pool).dump(), patch);
  if (!service.ok()) return service.status().withContext("Service " + ns + "/" + name);
  auto deployment =
      client.patch(api::builtinType("apps/v1", "Deployment"), ns, name, kube::PatchType::ApplyPatch,
                   workerDeployment(pool, options).dump(), patch);
  if (!deployment.ok()) return deployment.status().withContext("Deployment " + ns + "/" + name);
  return deployment;
}

void setAvailableCondition(Json& status, const Json& deployment) {
  std::string name = deployment["metadata"].value("name", "");
  int64_t generation = deployment["metadata"].value("generation", int64_t{0});
  int desired = deployment["spec"].value("replicas", 1);
  const Json observed = deployment.value("status", Json::object());
  int available = observed.value("availableReplicas", 0);
  int updated = observed.value("updatedReplicas", 0);
  bool current = observed.value("observedGeneration", int64_t{0}) >= generation;
  std::string counts = std::to_string(available) + "/" + std::to_string(desired);
  if (current && available >= desired && updated >= desired) {
    setStatusCondition(status, "Available", true, "DeploymentAvailable",
                       "Deployment " + name + ": " + counts + " worker pods available");
  } else {
    setStatusCondition(status, "Available", false, "DeploymentProgressing",
                       "Deployment " + name + ": " + counts + " worker pods available");
  }
}

}  // namespace clrk::controller
