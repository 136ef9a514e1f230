// Generated artefacts from the registry: CRD manifests and the OpenAPI v3 documents the API
// server publishes for kubectl.
#pragma once

#include "clrk/api/registry.h"

#include <string>

namespace clrk::api {

// apiextensions.k8s.io/v1 CustomResourceDefinition for one clrk.apoxy.dev type: structural
// openAPIV3Schema, additionalPrinterColumns, status subresource, names.
Json crdFor(const ResourceType& type);

// YAML text of crdFor(type), as committed under deploy/crds/<qualifiedName>.yaml.
std::string crdYaml(const ResourceType& type);

// The OpenAPI v3 document for one group/version ("clrk.apoxy.dev/v1alpha1", "v1",
// "coordination.k8s.io/v1"): components.schemas keyed like "dev.apoxy.clrk.v1alpha1.TaskAgent"
// with x-kubernetes-group-version-kind, and paths for each resource's collection and item
// including a PATCH operation that declares the `fieldValidation` query parameter (kubectl
// needs it to use server-side field validation, see environment.md §3).
Json openApiV3(const Registry& registry, std::string_view group_version);

// Value of a printer column's json_path in `object`; null when absent.
Json evalJsonPath(const Json& object, std::string_view json_path);

}  // namespace clrk::api
