// libFuzzer target: arbitrary bytes through the manifest decoder, validation and YAML rendering.
// Invariants: no crash, no exception, and what toYaml renders decodes back to the same JSON.
#include "clrk/api/codec.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto documents = clrk::api::decodeManifests(text, "fuzz.yaml");
  if (!documents.ok()) return 0;
  for (auto& document : *documents) {
    clrk::api::Json original = document.object;
    std::string yaml = clrk::api::toYaml(original);
    auto again = clrk::api::decodeManifests(yaml, "roundtrip.yaml");
    // Round trip must be lossless (invalid UTF-8 is rendered as U+FFFD on both sides). Objects
    // with `items` may be lists, which decode into several documents.
    auto canonical = [](const clrk::api::Json& value) {
      return clrk::api::Json::parse(
                 value.dump(-1, ' ', false, clrk::api::Json::error_handler_t::replace))
          .dump();
    };
    if (!original.contains("items") && (!again.ok() || again->size() != 1 ||
                                        canonical((*again)[0].object) != canonical(original))) {
      std::abort();
    }
    (void)clrk::api::checkDocument(clrk::api::Registry::builtin(), document);
    (void)clrk::api::toYaml(document.object);
  }
  return 0;
}
