#include "clrk/api/v1alpha1/shared.h"

#include "clrk/api/core_types.h"
#include "clrk/base/ascii.h"

#include <algorithm>
#include <cctype>
#include <utility>

namespace clrk::api::v1alpha1 {
namespace {

// RFC 1123 label / subdomain shapes used by the Gateway API types.
constexpr const char* kDnsSubdomainPattern =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
constexpr const char* kDnsLabelPattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

SchemaBuilder keySelector(std::string what) {
  return obj({
      field("name", str().doc("Name of the " + what + " in the pod's namespace.")),
      field("key", str().required().doc("Key within the " + what + " to select.")),
      field("optional", boolean().doc("Whether the " + what + " or its key may be missing.")),
  });
}

}  // namespace

ResourceType newKind(std::string kind, std::string plural, std::vector<std::string> short_names,
                     bool has_status_subresource) {
  ResourceType type;
  type.group = std::string(kGroup);
  type.version = std::string(kVersion);
  type.singular = asciiLowerCopy(kind);
  type.list_kind = kind + "List";
  type.kind = std::move(kind);
  type.plural = std::move(plural);
  type.short_names = std::move(short_names);
  type.namespaced = true;
  type.has_status_subresource = has_status_subresource;
  return type;
}

SchemaConstSharedPtr objectSchema(std::string doc, SchemaBuilder spec,
                                  std::optional<SchemaBuilder> status) {
  std::vector<Field> fields = objectEnvelope();
  fields.push_back(field("spec", spec.required()));
  if (status) fields.push_back(field("status", *status));
  return obj(std::move(fields)).doc(std::move(doc));
}

PrinterColumn column(std::string name, std::string type, std::string json_path,
                     std::string description, int priority) {
  PrinterColumn c;
  c.name = std::move(name);
  c.type = std::move(type);
  c.json_path = std::move(json_path);
  c.description = std::move(description);
  c.priority = priority;
  return c;
}

// ---- Kubernetes core shapes --------------------------------------------------------------

SchemaBuilder envVar() {
  auto value_from = obj({
      field("secretKeyRef", keySelector("Secret").doc("Selects a key of a Secret.")),
      field("configMapKeyRef", keySelector("ConfigMap").doc("Selects a key of a ConfigMap.")),
      field("fieldRef",
            obj({
                    field("apiVersion", str().doc("Version of the schema the field path is in.")),
                    field("fieldPath", str().required().doc("Path of the field to select.")),
                })
                .doc("Selects a field of the pod (metadata.name, metadata.namespace, ...).")),
      field(
          "resourceFieldRef",
          obj({
                  field("containerName", str().doc("Container whose resource is read.")),
                  field("resource", str().required().doc("Resource to select (limits.cpu, ...).")),
                  field("divisor", quantity().doc("Output unit for the exposed value.")),
              })
              .doc("Selects a container resource limit or request.")),
  });
  return obj({
      field("name", str().required().minLength(1).doc("Name of the environment variable.")),
      field("value", str().doc("Literal value; $(VAR) references are expanded.")),
      field("valueFrom", value_from.doc("Source for the value when `value` is not set.")),
  });
}

SchemaBuilder resourceRequirements() {
  return obj({
      field("limits", mapOf(quantity()).doc("Maximum amount of each resource allowed.")),
      field("requests", mapOf(quantity()).doc("Minimum amount of each resource required.")),
      field("claims", arr(obj({
                              field("name", str().required().doc("Name of a pod resource claim.")),
                              field("request", str().doc("Request within that claim.")),
                          }))
                          .doc("Dynamically allocated resources used by the container.")),
  });
}

SchemaBuilder coreLocalObjectReference() {
  return obj({field("name", str().doc("Name of the referent in the same namespace."))});
}

SchemaBuilder labelSelector() {
  auto requirement = obj({
      field("key", str().required().doc("Label key the selector applies to.")),
      field("operator",
            str().required().doc("Relationship of the key to the values: In, NotIn, Exists or "
                                 "DoesNotExist.")),
      field("values", arr(str()).doc("Values for In/NotIn; empty for Exists/DoesNotExist.")),
  });
  return obj({
      field("matchLabels", mapOf(str()).doc("Labels that must all match exactly.")),
      field("matchExpressions", arr(requirement).doc("Label requirements that must all hold.")),
  });
}

SchemaBuilder embeddedObjectMeta() {
  return obj({
                 field("labels", mapOf(str()).doc("Labels set on the created object.")),
                 field("annotations", mapOf(str()).doc("Annotations set on the created object.")),
             })
      .preserveUnknownFields();
}

// ---- Agent sandbox -----------------------------------------------------------------------

std::vector<Field> agentSandboxFields() {
  return {
      field("image",
            str()
                .required()
                .minLength(1)
                // A permissive OCI reference check: no whitespace, scheme, leading or trailing
                // '/', and no empty path component.
                .pattern("^[A-Za-z0-9][A-Za-z0-9._:@+-]*(/[A-Za-z0-9._:@+-]+)*$")
                .doc("OCI image reference the agent runs.")),
      field("command", arr(str()).doc("Replaces the image entrypoint.")),
      field("args", arr(str()).doc("Arguments passed to the entrypoint.")),
      field("env", arr(envVar()).doc("Environment variables set in the sandbox.")),
  };
}

SchemaBuilder sandboxRevisionTemplate() {
  return obj({
      field("metadata", embeddedObjectMeta().doc("Labels and annotations for the created "
                                                 "revision; its name is generated.")),
      field("spec", obj(agentSandboxFields())
                        .required()
                        .doc("The sandbox the revision captures: image and process settings.")),
  });
}

SchemaBuilder executionResources() {
  return obj({
      field("cpu", quantity().doc("CPU limit of one execution (default 1).")),
      field("memory", quantity().doc("Memory limit of one execution (default 512Mi).")),
      field("ephemeralStorage", quantity().doc("Scratch storage limit of one execution.")),
  });
}

SchemaBuilder agentEgressRef() {
  return obj({field("gatewayRef", str().required().minLength(1).doc(
                                      "Name of an EgressGateway in the same namespace."))});
}

SchemaBuilder workerSandboxStatus() {
  return obj({
      field("podName", str().required().doc("Worker pod this entry describes.")),
      field("imagePulled", boolean().required().doc("Whether the worker has pulled the image.")),
      field("warmCount", i32().doc("Warm sandbox instances held on this worker.")),
      field("lastHeartbeat", timestamp().doc("Last time the worker reported.")),
  });
}

// ---- Gateway API reference types ---------------------------------------------------------

SchemaBuilder gatewayGroup() {
  return str().maxLength(253).pattern(std::string("^$|") + kDnsSubdomainPattern);
}

SchemaBuilder gatewayKind() {
  return str().minLength(1).maxLength(63).pattern("^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$");
}

SchemaBuilder objectName() { return str().minLength(1).maxLength(253); }

SchemaBuilder namespaceName() { return str().minLength(1).maxLength(63).pattern(kDnsLabelPattern); }

SchemaBuilder sectionName() {
  return str().minLength(1).maxLength(253).pattern(kDnsSubdomainPattern);
}

SchemaBuilder portNumber() { return i32().minimum(1).maximum(65535); }

SchemaBuilder hostname() {
  return str().minLength(1).maxLength(253).pattern(
      "^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$");
}

SchemaBuilder parentReference() {
  return obj({
      field("group", gatewayGroup().doc("API group of the parent (clrk.apoxy.dev for clrk "
                                        "parents).")),
      field("kind", gatewayKind().doc("Kind of the parent, e.g. EgressGateway.")),
      field("namespace", namespaceName().doc("Namespace of the parent; defaults to the route's.")),
      field("name", objectName().required().doc("Name of the parent.")),
      field("sectionName", sectionName().doc("Listener of the parent to attach to.")),
      field("port", portNumber().doc("Port of the parent to attach to.")),
  });
}

SchemaBuilder headerModifier(const std::string& what) {
  auto header = obj({
      field("name", str()
                        .required()
                        .minLength(1)
                        .maxLength(256)
                        .pattern("^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
                        .doc("Header name (case-insensitive).")),
      field("value", str().required().maxLength(4096).doc("Header value.")),
  });
  return obj({
      field("set", arr(header).maxItems(16).doc("Headers set on the " + what +
                                                ", replacing any value already present.")),
      field("add", arr(header).maxItems(16).doc("Headers appended to the " + what + ".")),
      field("remove", arr(str().minLength(1).maxLength(256))
                          .maxItems(16)
                          .doc("Names of headers removed from the " + what + ".")),
  });
}

SchemaBuilder backendRef() {
  return obj({
      field("group", gatewayGroup().doc("API group of the backend (clrk.apoxy.dev for a "
                                        "Backend).")),
      field("kind", gatewayKind().doc("Kind of the backend, e.g. Backend or Service.")),
      field("name", objectName().required().doc("Name of the backend.")),
      field("namespace", namespaceName().doc("Namespace of the backend; defaults to the "
                                             "route's.")),
      field("port", portNumber().doc("Destination port, for kinds that need one.")),
      field("weight", i32().minimum(0).maximum(1000000).doc(
                          "Relative share of requests sent to this backend (default 1).")),
  });
}

SchemaBuilder secretObjectReference() {
  return obj({
      field("group", gatewayGroup().doc("API group of the referent; empty for core.")),
      field("kind", gatewayKind().doc("Kind of the referent; Secret.")),
      field("name", objectName().required().doc("Name of the Secret.")),
      field("namespace", namespaceName().doc("Namespace of the Secret; defaults to the "
                                             "referrer's.")),
  });
}

SchemaBuilder typedLocalObjectReference() {
  return obj({
      field("group", gatewayGroup().required().doc("API group of the referent.")),
      field("kind", gatewayKind().required().doc("Kind of the referent.")),
      field("name", objectName().required().doc("Name of the referent in the same namespace.")),
  });
}

SchemaBuilder policyTargetReference() {
  return obj({
      field("group", gatewayGroup().required().doc("API group of the target.")),
      field("kind", gatewayKind().required().doc("Kind of the target, e.g. AIProviderRoute.")),
      field("name", objectName().required().doc("Name of the target in the same namespace.")),
      field("sectionName", sectionName().doc("Section of the target; empty means the whole "
                                             "target.")),
  });
}

SchemaBuilder allowedRoutes() {
  return obj({
      field(
          "namespaces",
          obj({
                  field("from", str()
                                    .oneOf({"All", "Selector", "Same"})
                                    .doc("Which namespaces routes may attach from (All, Selector, "
                                         "Same).")),
                  field("selector", labelSelector().doc("Namespaces selected when from=Selector.")),
              })
              .doc("Namespaces routes may attach from.")),
      field("kinds", arr(obj({
                             field("group", gatewayGroup().doc("API group of the route kind.")),
                             field("kind", gatewayKind().required().doc("Route kind.")),
                         }))
                         .maxItems(8)
                         .doc("Route kinds that may attach.")),
  });
}

SchemaBuilder routeStatus() {
  auto parent = obj({
      field("parentRef", parentReference().required().doc("The parent this entry is about.")),
      field("controllerName",
            str().required().minLength(1).maxLength(253).doc("Controller that wrote this entry.")),
      field("conditions", conditions().maxItems(8).doc("Attachment state for this parent.")),
  });
  return obj({field("parents", arr(parent).maxItems(32).doc(
                                   "Parents the route is (or tried to be) attached to."))});
}

SchemaBuilder policyStatus() {
  auto ancestor = obj({
      field("ancestorRef", parentReference().required().doc("The ancestor this entry is about.")),
      field("controllerName",
            str().required().minLength(1).maxLength(253).doc("Controller that wrote this entry.")),
      field("conditions", conditions().maxItems(8).doc("Acceptance state for this ancestor.")),
  });
  return obj({field("ancestors", arr(ancestor).required().maxItems(16).doc(
                                     "One entry per resolved attachment of the policy."))});
}

}  // namespace clrk::api::v1alpha1
