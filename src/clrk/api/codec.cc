#include "clrk/api/codec.h"

namespace clrk::api {
Result<std::vector<Document>> decodeManifests(std::string_view, std::string_view) {
  return internalError("decodeManifests: not implemented yet");
}
Status checkDocument(const Registry&, Document&) { return internalError("not implemented yet"); }
std::string toYaml(const Json& value) { return value.dump(2); }
}  // namespace clrk::api
