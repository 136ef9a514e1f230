// Fuzz target: OTLP/HTTP request bodies as a collector (the OTLP receiver) reads them. The first
// byte picks the signal and encoding, the rest is the body.
// Properties: nothing crashes; a body that decodes re-encodes (with our encoder, no resource) to
// a body that decodes, and from there the encoded form is stable (encode->decode round-trips).
#include "clrk/telemetry/otlp_decode.h"

#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

using clrk::telemetry::OtlpEncoding;
using clrk::telemetry::OtlpSignal;
using clrk::telemetry::Record;

std::string encode(OtlpSignal signal, OtlpEncoding encoding, const std::vector<Record>& records) {
  clrk::telemetry::OtlpResource resource;
  bool json = encoding == OtlpEncoding::Json;
  if (signal == OtlpSignal::Traces) {
    return json ? clrk::telemetry::encodeTracesJson(resource, records)
                : clrk::telemetry::encodeTracesProtobuf(resource, records);
  }
  return json ? clrk::telemetry::encodeLogsJson(resource, records)
              : clrk::telemetry::encodeLogsProtobuf(resource, records);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto signal = (data[0] & 1) != 0 ? OtlpSignal::Logs : OtlpSignal::Traces;
  auto encoding = (data[0] & 2) != 0 ? OtlpEncoding::Json : OtlpEncoding::Protobuf;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  clrk::telemetry::OtlpDecodeLimits limits{.max_records = 1000, .max_attributes = 64};
  auto records = clrk::telemetry::decodeOtlp(signal, encoding, body, limits);
  if (!records.ok()) {
    if (records.status().code() != clrk::Code::InvalidArgument) std::abort();
    return 0;
  }
  // Strings may change once (invalid UTF-8 replaced in JSON), after that the form is stable.
  std::string once = encode(signal, encoding, *records);
  auto again = clrk::telemetry::decodeOtlp(signal, encoding, once, limits);
  if (!again.ok()) std::abort();
  std::string twice = encode(signal, encoding, *again);
  auto third = clrk::telemetry::decodeOtlp(signal, encoding, twice, limits);
  if (!third.ok() || encode(signal, encoding, *third) != twice) std::abort();
  return 0;
}
