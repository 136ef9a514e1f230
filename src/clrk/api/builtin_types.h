// Lookups of kinds every build registers (Registry::builtin()): for code that names a kind it
// knows exists, so a missing one is a programming error (abort), not a runtime condition.
#pragma once

#include "clrk/api/registry.h"

#include <string_view>

namespace clrk::api {

// The builtin type `kind` of `api_version` ("v1", "coordination.k8s.io/v1", ...). Aborts when it
// is not registered.
const ResourceType& builtinType(std::string_view api_version, std::string_view kind);

// A clrk.apoxy.dev/v1alpha1 kind ("TaskAgent", "Invocation", ...). Aborts when unknown.
const ResourceType& clrkType(std::string_view kind);

}  // namespace clrk::api
