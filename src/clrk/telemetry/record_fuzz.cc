// Fuzz target: spool bytes (frames + record JSON) as read back after a crash or corruption.
// Properties: nothing crashes; a record that parses re-serializes to JSON that parses to the same
// record (the spool and the local store depend on this round trip).
#include "clrk/telemetry/record.h"
#include "clrk/telemetry/spool_format.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

void checkRecord(std::string_view json) {
  auto record = clrk::telemetry::recordFromJson(json);
  if (!record.ok()) return;
  std::string again = clrk::telemetry::toJson(*record);
  auto reparsed = clrk::telemetry::recordFromJson(again);
  if (!reparsed.ok()) std::abort();
  // Strings may change once (invalid UTF-8 replaced), after that the form is stable.
  if (clrk::telemetry::toJson(*reparsed) != again) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  checkRecord(input);
  size_t offset = 0;
  while (offset < input.size()) {
    std::string_view payload;
    size_t frame_bytes = 0;
    auto result = clrk::telemetry::spool::decodeFrame(input.substr(offset), payload, frame_bytes);
    if (result != clrk::telemetry::spool::FrameResult::Ok) break;
    if (frame_bytes == 0 || frame_bytes > input.size() - offset) std::abort();
    checkRecord(payload);
    offset += frame_bytes;
  }
  return 0;
}
