#include "clrk/api/cluster_types.h"

#include "clrk/api/core_types.h"

namespace clrk::api {
namespace {

ResourceType kind(std::string group, std::string kind_name, std::string plural,
                  std::vector<std::string> short_names, bool namespaced) {
  ResourceType t;
  t.group = std::move(group);
  t.version = "v1";
  t.list_kind = kind_name + "List";
  t.kind = std::move(kind_name);
  t.singular = plural.substr(0, plural.size() - 1);
  t.plural = std::move(plural);
  t.short_names = std::move(short_names);
  t.namespaced = namespaced;
  return t;
}

ResourceType withFields(ResourceType t, std::vector<Field> extra, std::string doc) {
  auto fields = objectEnvelope();
  for (auto& f : extra) fields.push_back(std::move(f));
  t.schema = obj(std::move(fields)).doc(std::move(doc));
  return t;
}

ResourceType serviceAccountType() {
  return withFields(
      kind("", "ServiceAccount", "serviceaccounts", {"sa"}, true),
      {
          field("secrets", arr(anyJson()).doc("Secrets pods of this account may use.")),
          field("imagePullSecrets", arr(anyJson()).doc("Secrets used to pull images.")),
          field("automountServiceAccountToken",
                boolean().doc("Whether pods mount the account's API token.")),
      },
      "ServiceAccount binds an identity to pods.");
}

ResourceType serviceType() {
  ResourceType t = kind("", "Service", "services", {"svc"}, true);
  t.has_status_subresource = true;
  t.printer_columns = {
      {"Type", "string", ".spec.type", "Service type.", "", 0},
      {"Cluster-IP", "string", ".spec.clusterIP", "Cluster IP (None: headless).", "", 0},
  };
  return withFields(std::move(t),
                    {field("spec", anyJson().doc("Behavior of the Service.")),
                     field("status", anyJson().doc("Most recently observed status."))},
                    "Service exposes a set of pods under one name.");
}

ResourceType deploymentType() {
  ResourceType t = kind("apps", "Deployment", "deployments", {"deploy"}, true);
  t.has_status_subresource = true;
  t.printer_columns = {
      {"Ready", "integer", ".status.readyReplicas", "Ready pods.", "", 0},
      {"Up-to-date", "integer", ".status.updatedReplicas", "Pods of the current template.", "", 0},
      {"Available", "integer", ".status.availableReplicas", "Available pods.", "", 0},
  };
  return withFields(std::move(t),
                    {field("spec", anyJson().doc("Desired behavior of the Deployment.")),
                     field("status", anyJson().doc("Most recently observed status."))},
                    "Deployment runs replicas of a pod template.");
}

std::vector<Field> roleFields() {
  return {field("rules", arr(anyJson()).doc("PolicyRules of this role.")),
          field("aggregationRule", anyJson().doc("How to build the rules from other roles."))};
}

std::vector<Field> bindingFields() {
  return {field("roleRef", anyJson().doc("The role granted.")),
          field("subjects", arr(anyJson()).doc("Who is granted the role."))};
}

ResourceType crdType() {
  ResourceType t = kind("apiextensions.k8s.io", "CustomResourceDefinition",
                        "customresourcedefinitions", {"crd", "crds"}, false);
  t.has_status_subresource = true;
  return withFields(std::move(t),
                    {field("spec", anyJson().doc("The resource type to serve.")),
                     field("status", anyJson().doc("Most recently observed status."))},
                    "CustomResourceDefinition declares a resource type the server serves.");
}

}  // namespace

std::vector<ResourceType> clusterTypes() {
  const std::string rbac = "rbac.authorization.k8s.io";
  return {
      serviceAccountType(),
      serviceType(),
      deploymentType(),
      withFields(kind(rbac, "ClusterRole", "clusterroles", {}, false), roleFields(),
                 "ClusterRole is a cluster-wide set of permissions."),
      withFields(kind(rbac, "ClusterRoleBinding", "clusterrolebindings", {}, false),
                 bindingFields(), "ClusterRoleBinding grants a ClusterRole cluster-wide."),
      withFields(kind(rbac, "Role", "roles", {}, true), roleFields(),
                 "Role is a namespaced set of permissions."),
      withFields(kind(rbac, "RoleBinding", "rolebindings", {}, true), bindingFields(),
                 "RoleBinding grants a Role or ClusterRole in one namespace."),
      crdType(),
  };
}

}  // namespace clrk::api
