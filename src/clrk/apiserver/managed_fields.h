// metadata.managedFields bookkeeping (server-side apply field ownership), FieldsV1 format:
//   {"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:env":{"k:{\"name\":\"A\"}":{".":{},
//    "f:value":{}}},"f:args":{}}}
// Objects are owned field by field; lists with x-kubernetes-list-type=map element by key ("."
// marks the element itself), list-type=set by value ("v:<json>"), other lists atomically.
// Thread model: pure functions.
#pragma once

#include "clrk/api/schema.h"

#include <string>
#include <vector>

namespace clrk::apiserver {

// One owned leaf: a sequence of "f:<name>", "k:<json keys>", "v:<json value>" or ".".
using FieldPath = std::vector<std::string>;

// The field set of `object` (a whole resource): every set field except apiVersion, kind and the
// server-managed metadata (name, namespace, uid, resourceVersion, generation, timestamps,
// managedFields). `schema` is the resource's schema (may be null).
api::Json fieldSetOf(const api::Json& object, const api::Schema* schema);

// Leaves of a FieldsV1 tree.
std::vector<FieldPath> fieldLeaves(const api::Json& set);

// The value at `path` in `object`; nullptr when absent. "." returns the element itself.
const api::Json* valueAtPath(const api::Json& object, const FieldPath& path);

// Removes the field at `path` from `object` ("." removes the list element). True if removed.
bool removeAtPath(api::Json& object, const FieldPath& path);

// Adds / removes one leaf path in a FieldsV1 tree (empty parents are pruned on removal).
void addToSet(api::Json& set, const FieldPath& path);
void removeFromSet(api::Json& set, const FieldPath& path);
bool setContains(const api::Json& set, const FieldPath& path);

// ".spec.env[name=\"A\"].value": the way the real server names fields in apply conflicts.
std::string formatFieldPath(const FieldPath& path);

struct ManagerUpdate {
  std::string manager;
  std::string operation;    // "Apply" or "Update"
  std::string api_version;  // "clrk.apoxy.dev/v1alpha1"
  std::string subresource;  // "" or "status"
  std::string time;         // RFC 3339
};

// Records a non-apply write from `old_object` (null for a create) to `new_object`: fields whose
// value changed are given to `update`'s manager (operation Update) and taken from every other
// manager; removed fields leave every set. Returns the new managedFields array.
api::Json recordUpdate(const api::Json& managed_fields, const api::Json& old_object,
                       const api::Json& new_object, const api::Schema* schema,
                       const ManagerUpdate& update);

}  // namespace clrk::apiserver
