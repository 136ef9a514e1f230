// Serialization of resource objects for storage: the JSON text with metadata.resourceVersion
// spliced in at the revision the store assigns (storage::RenderFn), so stored bytes are served
// as they are.
// Thread model: pure functions.
#pragma once

#include "clrk/api/schema.h"
#include "clrk/apiserver/storage/storage.h"

#include <cstdint>
#include <string>

namespace clrk::apiserver {

// The object's compact JSON split around the value of metadata.resourceVersion.
struct RenderedObject {
  std::string prefix;  // ... "resourceVersion":"
  std::string suffix;  // ",...}
  std::string withRevision(int64_t revision) const {
    std::string out;
    std::string number = std::to_string(revision);
    out.reserve(prefix.size() + number.size() + suffix.size());
    out += prefix;
    out += number;
    out += suffix;
    return out;
  }
};

// REQUIRES: object is a JSON object; metadata (if present) is an object. Any existing
// metadata.resourceVersion is ignored.
RenderedObject renderObject(const api::Json& object);

// Compact JSON with invalid UTF-8 replaced (never throws).
std::string dumpJson(const api::Json& value);

}  // namespace clrk::apiserver
