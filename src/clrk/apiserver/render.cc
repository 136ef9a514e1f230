#include "clrk/apiserver/render.h"

namespace clrk::apiserver {
namespace {

void appendKey(std::string& out, const std::string& key) {
  out += api::Json(key).dump(-1, ' ', false, api::Json::error_handler_t::replace);
  out += ':';
}

}  // namespace

std::string dumpJson(const api::Json& value) {
  return value.dump(-1, ' ', false, api::Json::error_handler_t::replace);
}

RenderedObject renderObject(const api::Json& object) {
  RenderedObject rendered;
  std::string out = "{";
  bool first = true;
  bool metadata_seen = false;
  auto emitMetadata = [&](const api::Json& metadata) {
    if (!first) out += ',';
    first = false;
    appendKey(out, "metadata");
    out += '{';
    bool meta_first = true;
    bool rv_done = false;
    auto emitRv = [&]() {
      if (!meta_first) out += ',';
      meta_first = false;
      appendKey(out, "resourceVersion");
      out += '"';
      rendered.prefix = out;
      out.clear();
      out += '"';
      rv_done = true;
    };
    if (metadata.is_object()) {
      for (const auto& [key, value] : metadata.items()) {
        if (key == "resourceVersion") continue;
        if (!rv_done && key > std::string("resourceVersion")) emitRv();
        if (!meta_first) out += ',';
        meta_first = false;
        appendKey(out, key);
        out += dumpJson(value);
      }
    }
    if (!rv_done) emitRv();
    out += '}';
  };
  for (const auto& [key, value] : object.items()) {
    if (key == "metadata") {
      emitMetadata(value);
      metadata_seen = true;
      continue;
    }
    if (!metadata_seen && key > std::string("metadata")) {
      emitMetadata(api::Json::object());
      metadata_seen = true;
    }
    if (!first) out += ',';
    first = false;
    appendKey(out, key);
    out += dumpJson(value);
  }
  if (!metadata_seen) emitMetadata(api::Json::object());
  out += '}';
  rendered.suffix = std::move(out);
  return rendered;
}

}  // namespace clrk::apiserver
