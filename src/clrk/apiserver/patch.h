// Patch application: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and the structural merge
// server-side apply uses. Never throws.
#pragma once

#include "clrk/api/schema.h"
#include "clrk/base/status.h"

namespace clrk::apiserver {

// RFC 7386 merge patch of `patch` onto `target` (in place). InvalidArgument when `patch` is not
// an object.
Status applyMergePatch(api::Json& target, const api::Json& patch);

// RFC 6902 JSON patch. InvalidArgument when `patch` is not an array of operations or an
// operation fails (the message names the operation and the reason).
Result<api::Json> applyJsonPatch(const api::Json& target, const api::Json& patch);

// Server-side apply merge of an applied configuration onto `current`: objects merge field by
// field, lists declared x-kubernetes-list-type=map merge element by key, every other list and
// scalar is replaced; explicit nulls remove the field. `schema` may be null (free-form).
api::Json applyMerge(const api::Json& current, const api::Json& applied, const api::Schema* schema);

}  // namespace clrk::apiserver
