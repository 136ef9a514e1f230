// Building blocks shared by the clrk.apoxy.dev/v1alpha1 kinds: the object envelope, the agent
// sandbox template, Kubernetes core shapes (env vars, resource requirements) and the Gateway API
// reference types the egress routes and policies reuse. Each function returns a fresh builder,
// so callers may add .required() / .doc() without affecting other users.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/api/schema.h"

#include <optional>
#include <string>
#include <vector>

namespace clrk::api::v1alpha1 {

// ---- Kind scaffolding --------------------------------------------------------------------

// A ResourceType of this group with list kind "<Kind>List", singular = lowercased kind,
// namespaced, no categories (the reference declares none).
ResourceType newKind(std::string kind, std::string plural, std::vector<std::string> short_names,
                     bool has_status_subresource);

// The full object schema: apiVersion, kind, metadata (ObjectMeta), spec (required, as in the
// reference where `spec` has no omitempty) and, when given, status.
SchemaConstSharedPtr objectSchema(std::string doc, SchemaBuilder spec,
                                  std::optional<SchemaBuilder> status);

// A printer column (Name and Age are implicit and must not be listed).
PrinterColumn column(std::string name, std::string type, std::string json_path,
                     std::string description, int priority = 0);

// ---- Kubernetes core shapes --------------------------------------------------------------

// corev1.EnvVar: name, value, valueFrom (secretKeyRef, configMapKeyRef, fieldRef,
// resourceFieldRef).
SchemaBuilder envVar();
// corev1.ResourceRequirements: limits, requests (quantities), claims.
SchemaBuilder resourceRequirements();
// corev1.LocalObjectReference ({name}).
SchemaBuilder coreLocalObjectReference();
// metav1.LabelSelector: matchLabels, matchExpressions.
SchemaBuilder labelSelector();
// Only labels and annotations of an embedded ObjectMeta; other ObjectMeta keys are kept as is.
SchemaBuilder embeddedObjectMeta();

// ---- Agent sandbox -----------------------------------------------------------------------

// AgentSandbox: image (required), command, args, env.
std::vector<Field> agentSandboxFields();
// The template both agent kinds embed: metadata (labels/annotations) + spec (an AgentSandbox).
SchemaBuilder sandboxRevisionTemplate();
// Per-execution CPU / memory / ephemeral storage limits.
SchemaBuilder executionResources();
// One element of egressRefs: {gatewayRef}.
SchemaBuilder agentEgressRef();
// Per-worker sandbox readiness (AgentSandboxRevision / SandboxState status).
SchemaBuilder workerSandboxStatus();

// ---- Gateway API reference types ---------------------------------------------------------

SchemaBuilder gatewayGroup();
SchemaBuilder gatewayKind();
SchemaBuilder objectName();
SchemaBuilder namespaceName();
SchemaBuilder sectionName();
SchemaBuilder portNumber();
// A DNS hostname, optionally with a leading "*." wildcard label.
SchemaBuilder hostname();
// gwapiv1.ParentReference: group, kind, namespace, name (required), sectionName, port.
SchemaBuilder parentReference();
// gwapiv1.BackendRef: group, kind, name (required), namespace, port, weight.
SchemaBuilder backendRef();
// Gateway API HTTPHeaderFilter shape (set, add, remove) for the `what` ("request"/"response").
SchemaBuilder headerModifier(const std::string& what);
// gwapiv1.SecretObjectReference: group, kind, name (required), namespace.
SchemaBuilder secretObjectReference();
// gwapiv1.LocalObjectReference: group, kind, name (all required).
SchemaBuilder typedLocalObjectReference();
// gwapiv1a2.LocalPolicyTargetReferenceWithSectionName: group, kind, name, sectionName.
SchemaBuilder policyTargetReference();
// gwapiv1.AllowedRoutes: namespaces {from, selector}, kinds [{group, kind}].
SchemaBuilder allowedRoutes();
// A route status: {parents: [RouteParentStatus]}.
SchemaBuilder routeStatus();
// gwapiv1a2.PolicyStatus: {ancestors: [PolicyAncestorStatus]}.
SchemaBuilder policyStatus();

}  // namespace clrk::api::v1alpha1
