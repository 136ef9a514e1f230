// Helpers shared by the Storage backends: error messages and the guarded call of a RenderFn.
// Thread model: pure functions.
#pragma once

#include "clrk/apiserver/storage/storage.h"
#include "clrk/base/status.h"

#include <cstddef>
#include <cstdint>
#include <string>

namespace clrk::apiserver::storage {

// Largest value a store accepts (the API server bounds request bodies far below this).
inline constexpr size_t kMaxValueBytes = size_t{256} << 20;

// `taskagents "ns/name"` (or `"name"` when cluster-scoped), for error messages.
std::string describeKey(const ObjectKey& key);

// Calls `render(revision)` into `out`. A throwing RenderFn becomes Internal; a value larger
// than kMaxValueBytes becomes InvalidArgument.
Status renderValue(const RenderFn& render, int64_t revision, std::string& out);

// The Conflict status for a stale expected revision (wording follows Kubernetes).
Status conflictError(const ObjectKey& key, int64_t expected, int64_t actual);

}  // namespace clrk::apiserver::storage
