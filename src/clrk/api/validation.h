// Validation and defaulting of objects against their ResourceType's schema.
#pragma once

#include "clrk/api/registry.h"

#include <string>
#include <vector>

namespace clrk::api {

enum class FieldErrorType {
  Unknown,       // field not declared by the schema (strict decoding)
  Required,      // required field missing
  TypeMismatch,  // e.g. string where an integer is expected
  Invalid,       // value fails a constraint (enum, pattern, range, format, name rules)
};

struct FieldError {
  FieldErrorType type;
  std::string path;    // "spec.template.spec.image", "spec.env[2].name"
  std::string detail;  // "Required value", "Unsupported value: \"x\": supported values: ..."
  // Kubernetes-style one-liner, e.g. `spec.timeout: Invalid value: "abc": not a duration`.
  std::string toString() const;
};

enum class UnknownFields { Reject, Drop };

// Checks `object` against `type.schema` and Kubernetes object rules (metadata.name is a DNS
// subdomain, labels/annotations are string maps with valid keys, apiVersion/kind match).
// With UnknownFields::Drop, undeclared fields are removed from `object` instead of reported
// (structural pruning). Never throws on any JSON input.
std::vector<FieldError> validateObject(const ResourceType& type, Json& object,
                                       UnknownFields unknown_fields = UnknownFields::Reject);

// Fills schema defaults into `object` in place (only where the field is absent).
void applyDefaults(const ResourceType& type, Json& object);

}  // namespace clrk::api
