// Fuzz target: spool bytes (frames + record payloads, binary or JSON) as read back after a crash
// or corruption.
// Properties: nothing crashes; a record that parses re-serializes to a form that parses to the
// same record (the spool and the local store depend on these round trips); normalize() gives
// exactly what a JSON round trip gives (sinks see the same record from memory or from disk).
#include "clrk/telemetry/record.h"
#include "clrk/telemetry/spool_format.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

namespace telemetry = clrk::telemetry;

void checkJson(std::string_view json) {
  auto record = telemetry::recordFromJson(json);
  if (!record.ok()) return;
  std::string again = telemetry::toJson(*record);
  auto reparsed = telemetry::recordFromJson(again);
  if (!reparsed.ok()) std::abort();
  // Strings may change once (invalid UTF-8 replaced), after that the form is stable.
  if (telemetry::toJson(*reparsed) != again) std::abort();
}

void checkBinary(std::string_view data) {
  auto record = telemetry::recordFromBinary(data);
  if (!record.ok()) return;
  // Exact round trip (compared as bytes: a NaN attribute is not == itself).
  std::string encoded;
  telemetry::appendBinary(encoded, *record);
  auto decoded = telemetry::recordFromBinary(encoded);
  if (!decoded.ok()) std::abort();
  std::string again;
  telemetry::appendBinary(again, *decoded);
  if (again != encoded) std::abort();
  // normalize() == JSON round trip.
  auto through_json = telemetry::recordFromJson(telemetry::toJson(*record));
  if (!through_json.ok()) std::abort();
  telemetry::Record normalized = *record;
  telemetry::normalize(normalized);
  if (!(normalized == *through_json)) std::abort();
}

void checkPayload(std::string_view payload) {
  if (!payload.empty() && static_cast<uint8_t>(payload.front()) == telemetry::kBinaryRecordTag) {
    checkBinary(payload);
  } else {
    checkJson(payload);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  checkPayload(input);
  size_t offset = 0;
  while (offset < input.size()) {
    std::string_view payload;
    size_t frame_bytes = 0;
    auto result = telemetry::spool::decodeFrame(input.substr(offset), payload, frame_bytes);
    if (result != telemetry::spool::FrameResult::Ok) break;
    if (frame_bytes == 0 || frame_bytes > input.size() - offset) std::abort();
    checkPayload(payload);
    offset += frame_bytes;
  }
  return 0;
}
