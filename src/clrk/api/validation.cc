#include "clrk/api/validation.h"

namespace clrk::api {
std::string FieldError::toString() const { return path + ": " + detail; }
std::vector<FieldError> validateObject(const ResourceType&, Json&, UnknownFields) { return {}; }
void applyDefaults(const ResourceType&, Json&) {}
}  // namespace clrk::api
