// The Kubernetes kinds `clrk install` and the cluster-mode WorkerPool controller write, with
// permissive schemas (the envelope is checked, the rest is kept as given): ServiceAccount and
// Service (core/v1), Deployment (apps/v1), ClusterRole, ClusterRoleBinding, Role and RoleBinding
// (rbac.authorization.k8s.io/v1) and CustomResourceDefinition (apiextensions.k8s.io/v1).
// The embedded API server stores them like any other kind, so the install and the controllers can
// be tested against it acting as the cluster; it runs no pods and grants no permissions.
#pragma once

#include "clrk/api/registry.h"

#include <vector>

namespace clrk::api {

// In a stable order: ServiceAccount, Service, Deployment, ClusterRole, ClusterRoleBinding, Role,
// RoleBinding, CustomResourceDefinition.
std::vector<ResourceType> clusterTypes();

}  // namespace clrk::api
