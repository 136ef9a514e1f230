#include "clrk/cli/installer.h"

#include "clrk/api/codec.h"
#include "clrk/cli/deploy_manifests.h"
#include "clrk/cli/printer.h"

#include <algorithm>
#include <thread>

#ifndef CLRK_VERSION
#define CLRK_VERSION "0.0.0"
#endif

namespace clrk::cli {
namespace {

using Json = api::Json;

// Apply order: what an object needs exists before it.
int rank(const Json& object) {
  std::string kind = object.value("kind", "");
  if (kind == "CustomResourceDefinition") return 0;
  if (kind == "Namespace") return 1;
  if (kind == "ServiceAccount") return 2;
  if (kind == "ClusterRole" || kind == "Role") return 3;
  if (kind == "ClusterRoleBinding" || kind == "RoleBinding") return 4;
  if (kind == "Service" || kind == "Deployment") return 5;
  return 6;
}

const api::ResourceType* typeOf(const Json& object) {
  return api::Registry::builtin().byKind(object.value("apiVersion", ""), object.value("kind", ""));
}

bool conditionTrue(const Json& object, std::string_view type) {
  auto status = object.find("status");
  if (status == object.end() || !status->is_object()) return false;
  auto conditions = status->find("conditions");
  if (conditions == status->end() || !conditions->is_array()) return false;
  return std::any_of(conditions->begin(), conditions->end(), [&](const Json& condition) {
    return condition.is_object() && condition.value("type", "") == type &&
           condition.value("status", "") == "True";
  });
}

// True iff discovery of the CRD's group/version lists its plural.
bool served(kube::Client& client, const Json& crd) {
  const Json& spec = crd["spec"];
  std::string plural = spec["names"].value("plural", "");
  for (const auto& version : spec.value("versions", Json::array())) {
    if (!version.value("served", false)) continue;
    auto response =
        client.request("GET", "/apis/" + spec.value("group", "") + "/" + version.value("name", ""));
    if (!response.ok() || response->status != 200) return false;
    Json list = Json::parse(response->body, nullptr, false);
    if (list.is_discarded()) return false;
    bool found = false;
    for (const auto& resource : list.value("resources", Json::array())) {
      if (resource.value("name", "") == plural) found = true;
    }
    if (!found) return false;
  }
  return true;
}

Status waitForCrds(kube::Client& client, const std::vector<Json>& crds,
                   std::chrono::milliseconds timeout) {
  const api::ResourceType* type =
      api::Registry::builtin().byKind("apiextensions.k8s.io/v1", "CustomResourceDefinition");
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const auto& crd : crds) {
    std::string name = crd["metadata"].value("name", "");
    while (true) {
      auto current = client.get(*type, "", name);
      if (current.ok() && (conditionTrue(*current, "Established") || served(client, crd))) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        return Status(Code::Timeout, "CustomResourceDefinition " + name +
                                         " is not Established after " +
                                         std::to_string(timeout.count() / 1000) + " s");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  return {};
}

}  // namespace

std::string_view buildVersion() { return CLRK_VERSION; }

std::string imageForVersion(std::string_view version) {
  if (!version.empty() && version.front() == 'v') version.remove_prefix(1);
  return std::string(kImageRepository) + ":v" + std::string(version);
}

Result<std::vector<Json>> installObjects(const InstallOptions& options) {
  std::string version = options.version.empty() ? std::string(buildVersion()) : options.version;
  if (!version.empty() && version.front() == 'v') version.erase(0, 1);
  std::string image = options.image.empty() ? imageForVersion(version) : options.image;
  std::vector<Json> objects;
  for (const auto& file : deployManifests()) {
    CLRK_ASSIGN_OR_RETURN(auto documents,
                          api::decodeManifests(file.text, "deploy/" + std::string(file.path)));
    for (auto& document : documents) objects.push_back(std::move(document.object));
  }
  for (auto& object : objects) {
    if (typeOf(object) == nullptr) {
      return invalidArgument(describeObject(object) + ": kind unknown to this clrk build");
    }
    std::string kind = object.value("kind", "");
    Json& metadata = object["metadata"];
    if (kind == "Deployment" && metadata.value("name", "") == kControllerManagerName) {
      metadata["annotations"][std::string(kVersionAnnotation)] = version;
      metadata["labels"]["app.kubernetes.io/version"] = version;
      for (auto& container : object["spec"]["template"]["spec"]["containers"]) {
        container["image"] = image;
      }
    } else if (kind == "WorkerPool" && metadata.value("name", "") == kDefaultWorkerPoolName) {
      object["spec"]["template"]["image"] = image;
      if (options.workers) object["spec"]["replicas"] = *options.workers;
    }
  }
  std::stable_sort(objects.begin(), objects.end(),
                   [](const Json& a, const Json& b) { return rank(a) < rank(b); });
  return objects;
}

std::string renderYaml(const std::vector<Json>& objects) {
  std::string out;
  for (const auto& object : objects) {
    out += "---\n";
    out += api::toYaml(object);
    if (!out.empty() && out.back() != '\n') out += '\n';
  }
  return out;
}

std::string describeObject(const Json& object) {
  const Json& metadata = object.contains("metadata") ? object["metadata"] : Json::object();
  std::string ns = metadata.value("namespace", "");
  std::string name = metadata.value("name", "");
  return object.value("kind", "object") + " " + (ns.empty() ? name : ns + "/" + name);
}

Status applyObjects(kube::Client& client, const std::vector<Json>& objects,
                    const InstallOptions& options, std::ostream& out) {
  std::vector<Json> crds;
  for (size_t i = 0; i < objects.size(); ++i) {
    const Json& object = objects[i];
    const api::ResourceType* type = typeOf(object);
    if (type == nullptr) return invalidArgument(describeObject(object) + ": unknown kind");
    std::string ns = type->namespaced ? object["metadata"].value("namespace", "") : "";
    std::string name = object["metadata"].value("name", "");
    std::optional<Json> before;
    auto existing = client.get(*type, ns, name);
    if (existing.ok()) {
      before = std::move(existing).value();
    } else if (existing.status().code() != Code::NotFound) {
      return existing.status().withContext("reading " + describeObject(object));
    }
    kube::PatchOptions patch_options;
    patch_options.field_manager = std::string(kInstallFieldManager);
    patch_options.force = true;
    auto applied =
        client.patch(*type, ns, name, kube::PatchType::ApplyPatch, object.dump(), patch_options);
    if (!applied.ok()) return applied.status().withContext("applying " + describeObject(object));
    std::string display = type->group.empty() ? type->singular : type->singular + "." + type->group;
    out << display << "/" << name << " " << applyOutcomeName(decideApplyOutcome(before, *applied))
        << std::endl;
    if (type->kind == "CustomResourceDefinition") crds.push_back(object);
    bool last_crd = !crds.empty() &&
                    (i + 1 == objects.size() || objects[i + 1].value("kind", "") != type->kind);
    if (last_crd) {
      CLRK_RETURN_IF_ERROR(waitForCrds(client, crds, options.crd_timeout));
      out << crds.size() << " CustomResourceDefinitions established" << std::endl;
      crds.clear();
    }
  }
  return {};
}

Result<Json> installedControllerManager(kube::Client& client) {
  const api::ResourceType* type = api::Registry::builtin().byKind("apps/v1", "Deployment");
  return client.get(*type, kSystemNamespace, kControllerManagerName);
}

}  // namespace clrk::cli
