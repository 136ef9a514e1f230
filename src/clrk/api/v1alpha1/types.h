// The clrk.apoxy.dev/v1alpha1 kinds: names, schemas, printer columns.
#pragma once

#include "clrk/api/registry.h"

#include <vector>

namespace clrk::api::v1alpha1 {

// Every kind of the group, in a stable order (TaskAgent first).
std::vector<ResourceType> types();

}  // namespace clrk::api::v1alpha1
