// The resource types clrk serves and understands: the clrk.apoxy.dev/v1alpha1 group plus the core
// and coordination kinds the embedded API server hosts. The API server, the client, the CLI and
// the CRD generator all read this one registry.
// Thread model: the builtin registry is built once (thread-safe static) and immutable afterwards.
#pragma once

#include "clrk/api/schema.h"

#include <string>
#include <string_view>
#include <vector>

namespace clrk::api {

inline constexpr std::string_view kGroup = "clrk.apoxy.dev";
inline constexpr std::string_view kVersion = "v1alpha1";

// A column of `kubectl get` (CRD additionalPrinterColumns semantics).
struct PrinterColumn {
  std::string name;       // "Image"
  std::string type;       // "string" | "integer" | "number" | "boolean" | "date"
  std::string json_path;  // ".spec.template.spec.image" (simple JSONPath: dotted fields, [n])
  std::string description;
  std::string format;  // optional OpenAPI format
  int priority = 0;    // > 0: shown only with -o wide
};

struct ResourceType {
  std::string group;    // "" for the core group
  std::string version;  // "v1alpha1", "v1"
  std::string kind;     // "TaskAgent"
  std::string list_kind;
  std::string plural;    // "taskagents"
  std::string singular;  // "taskagent"
  std::vector<std::string> short_names;
  std::vector<std::string> categories;  // e.g. {"clrk", "all"}
  bool namespaced = true;
  bool has_status_subresource = false;
  std::vector<PrinterColumn> printer_columns;  // Name and Age are implicit, as for CRDs
  // Full object schema: apiVersion, kind, metadata (ObjectMeta is validated by the server),
  // spec, status and any top-level fields (Secret: data, stringData, type, immutable ...).
  SchemaConstSharedPtr schema;
  // Verbs announced in discovery.
  std::vector<std::string> verbs = {"create", "delete", "deletecollection", "get",
                                    "list",   "patch",  "update",           "watch"};

  // "clrk.apoxy.dev/v1alpha1" or "v1".
  std::string apiVersion() const { return group.empty() ? version : group + "/" + version; }
  // "taskagents.clrk.apoxy.dev" (CRD name); "secrets" for core.
  std::string qualifiedName() const { return group.empty() ? plural : plural + "." + group; }
};

class Registry {
 public:
  // Every type clrk knows: clrk.apoxy.dev/v1alpha1, core v1 (Namespace, Secret, ConfigMap,
  // Event), coordination.k8s.io/v1 (Lease), and the kinds of a cluster install (cluster_types.h).
  static const Registry& builtin();

  explicit Registry(std::vector<ResourceType> types);

  const std::vector<ResourceType>& types() const { return types_; }
  // nullptr when unknown.
  const ResourceType* byPlural(std::string_view group, std::string_view version,
                               std::string_view plural) const;
  const ResourceType* byKind(std::string_view api_version, std::string_view kind) const;
  // Case-insensitive match on kind, plural, singular or short name, optionally qualified with
  // ".group" ("ta", "taskagents", "TaskAgent", "taskagents.clrk.apoxy.dev"): what CLI users type.
  const ResourceType* resolve(std::string_view name) const;
  // Group/versions served, e.g. {"clrk.apoxy.dev/v1alpha1", "coordination.k8s.io/v1"}; "v1" first.
  std::vector<std::string> groupVersions() const;

 private:
  std::vector<ResourceType> types_;
};

}  // namespace clrk::api
