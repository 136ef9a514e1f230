#include "clrk/apiserver/storage/common.h"

#include <exception>

namespace clrk::apiserver::storage {

std::string describeKey(const ObjectKey& key) {
  std::string out = key.resource + " \"";
  if (!key.ns.empty()) out += key.ns + "/";
  out += key.name + "\"";
  return out;
}

Status renderValue(const RenderFn& render, int64_t revision, std::string& out) {
  try {
    out = render(revision);
  } catch (const std::exception& e) {
    return internalError(std::string("rendering the stored value failed: ") + e.what());
  } catch (...) {
    return internalError("rendering the stored value failed");
  }
  if (out.size() > kMaxValueBytes) {
    return invalidArgument("object is too large to store: " + std::to_string(out.size()) +
                           " bytes (limit " + std::to_string(kMaxValueBytes) + ")");
  }
  return {};
}

Status conflictError(const ObjectKey& key, int64_t expected, int64_t actual) {
  return {Code::Conflict, "Operation cannot be fulfilled on " + describeKey(key) +
                              ": the object has been modified; please apply your changes to the "
                              "latest version and try again (expected resourceVersion " +
                              std::to_string(expected) + ", current " + std::to_string(actual) +
                              ")"};
}

}  // namespace clrk::apiserver::storage
