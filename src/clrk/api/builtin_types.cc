#include "clrk/api/builtin_types.h"

#include <cstdlib>
#include <string>

namespace clrk::api {

const ResourceType& builtinType(std::string_view api_version, std::string_view kind) {
  const ResourceType* type = Registry::builtin().byKind(api_version, kind);
  if (type == nullptr) std::abort();  // the kind is compiled in: a typo, not bad input
  return *type;
}

const ResourceType& clrkType(std::string_view kind) {
  return builtinType(std::string(kGroup) + "/" + std::string(kVersion), kind);
}

}  // namespace clrk::api
