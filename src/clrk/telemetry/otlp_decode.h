// OTLP decoders: the inverse of the encoders in otlp_exporter.h. They read an OTLP/HTTP
// ExportTraceServiceRequest or ExportLogsServiceRequest, as OTLP/JSON or binary protobuf, into
// records, so that decode(encode(records)) gives back every field a Record has.
//
// Mapping (the encoders' in reverse):
// - Spans: ids, name, kind (an integer, or in JSON also the enum name; an unknown number is
//   Unspecified), start/end time, status code and message, attributes. Trace state, events and
//   links are not part of a Record and are skipped.
// - Log records have no kind: their records are Client (the egress's).
// - Log records: body string -> name, time -> start, observed time -> end, severity >= ERROR (17)
//   -> status 2 (else 0), the "clrk.status_message" attribute -> status_message, trace/span ids.
//   Logs carry no parent span id and no "ok" status, so those two do not round-trip.
// - Resource attributes (service.name, ...) are appended to each record's attributes unless the
//   record has an attribute of the same key; scope name and version are dropped.
// - Attribute values: string, bool, int, double. Array, kvlist, bytes and empty values have no
//   Record equivalent: such an attribute is skipped. Repeated keys keep the last value.
//
// The input is untrusted. Protobuf is read by hand with bounds on every length (varints of at
// most 10 bytes, each nested length within its parent), unknown fields are skipped, and groups
// (wire types 3 and 4) are rejected. Errors are InvalidArgument naming the field path and, for
// protobuf and JSON syntax errors, the byte offset:
//   "otlp protobuf: resource_spans[0].scope_spans[0].spans[2].trace_id: want 16 bytes, got 3
//    (at byte 57)". Nothing throws.
// Thread model: pure functions, thread-safe.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/otlp_exporter.h"
#include "clrk/telemetry/record.h"

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::telemetry {

struct OtlpDecodeLimits {
  size_t max_records = 100000;            // spans or log records in one request
  size_t max_attributes = 256;            // per span / log record / resource
  size_t max_attribute_bytes = 64 << 10;  // key + string value of one attribute
};

Result<std::vector<Record>> decodeTracesJson(std::string_view body,
                                             const OtlpDecodeLimits& limits = {});
Result<std::vector<Record>> decodeTracesProtobuf(std::string_view body,
                                                 const OtlpDecodeLimits& limits = {});
Result<std::vector<Record>> decodeLogsJson(std::string_view body,
                                           const OtlpDecodeLimits& limits = {});
Result<std::vector<Record>> decodeLogsProtobuf(std::string_view body,
                                               const OtlpDecodeLimits& limits = {});

// One of the four above.
Result<std::vector<Record>> decodeOtlp(OtlpSignal signal, OtlpEncoding encoding,
                                       std::string_view body, const OtlpDecodeLimits& limits = {});

// The body of a successful Export*ServiceResponse without partial success: "{}" for JSON, empty
// for protobuf.
std::string emptyExportResponse(OtlpEncoding encoding);

}  // namespace clrk::telemetry
