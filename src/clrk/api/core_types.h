// The core/v1 and coordination.k8s.io/v1 kinds the embedded API server hosts, with their
// Kubernetes shapes: Namespace, Secret, ConfigMap, Event and Lease.
#pragma once

#include "clrk/api/registry.h"

#include <vector>

namespace clrk::api {

// Core types in a stable order: Namespace, Secret, ConfigMap, Event, Lease.
std::vector<ResourceType> coreTypes();

// Shared building blocks for kinds that embed Kubernetes object shapes.
// The object envelope: apiVersion, kind, metadata (ObjectMeta is checked by validateObject).
std::vector<Field> objectEnvelope();
// The ObjectMeta schema (name, namespace, labels, ...), as served to kubectl.
SchemaConstSharedPtr objectMetaSchema();
// An ObjectReference (apiVersion, kind, name, namespace, uid, resourceVersion, fieldPath).
SchemaBuilder objectReference();

}  // namespace clrk::api
