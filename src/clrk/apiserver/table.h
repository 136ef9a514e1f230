// meta.k8s.io Table rendering for `kubectl get` (Accept:
// application/json;as=Table;v=v1;g=meta.k8s.io): column definitions (Name, the type's printer
// columns, Age) and one row per object. Thread model: pure functions.
#pragma once

#include "clrk/api/registry.h"

#include <string>
#include <string_view>
#include <vector>

namespace clrk::apiserver {

enum class IncludeObject { None, Metadata, Object };

// "None" | "Metadata" | "Object" (default Metadata).
IncludeObject parseIncludeObject(std::string_view text);

// Builds a Table of `objects` (full resource JSON objects). `table_api_version` is
// "meta.k8s.io/v1" or "meta.k8s.io/v1beta1". `list_metadata` becomes the table's metadata.
api::Json buildTable(const api::ResourceType& type, const std::vector<api::Json>& objects,
                     IncludeObject include, std::string_view table_api_version,
                     api::Json list_metadata);

}  // namespace clrk::apiserver
