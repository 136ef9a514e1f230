// libFuzzer target: arbitrary bytes through the Kubernetes protobuf envelope reader and the
// object decoder. Invariants: no crash, no exception, every decoded object is a JSON object
// carrying apiVersion and kind, and it serialises (all strings are valid UTF-8).
#include "clrk/apiserver/protobuf.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // The wire reader on its own must consume any input without reading out of bounds.
  clrk::apiserver::WireReader reader(bytes);
  while (!reader.done()) {
    clrk::apiserver::WireField field;
    if (!reader.next(&field).ok()) break;
    if (field.bytes.data() != nullptr &&
        (field.bytes.data() < bytes.data() ||
         field.bytes.data() + field.bytes.size() > bytes.data() + bytes.size())) {
      std::abort();
    }
  }
  auto envelope = clrk::apiserver::readProtobufEnvelope(bytes);
  if (!envelope.ok()) return 0;
  if (!clrk::apiserver::isDecodableProtobufKind(envelope->api_version, envelope->kind)) return 0;
  auto object = clrk::apiserver::decodeProtobufObject(*envelope);
  if (!object.ok()) return 0;
  if (!object->is_object() || (*object)["kind"] != envelope->kind) std::abort();
  try {
    (void)object->dump();
  } catch (...) {
    std::abort();
  }
  return 0;
}
