// OtlpHttpExporter: a Sink that sends records to an OpenTelemetry collector over OTLP/HTTP.
//
// Each batch becomes one ExportTraceServiceRequest (Signal::Traces, POST {endpoint}/v1/traces;
// every record is a span) or ExportLogsServiceRequest (Signal::Logs, POST {endpoint}/v1/logs;
// every record is a log record with the record's name as its body and its attributes, times and
// trace/span ids), encoded as OTLP/JSON (application/json) or binary protobuf
// (application/x-protobuf), in one ResourceSpans/ResourceLogs with one scope.
// 2xx = delivered; 400 = the collector rejects the payload for good: InvalidArgument (the
// pipeline drops the batch); any other status, a connect/TLS/timeout failure: Unavailable (the
// pipeline retries). A 2xx with partialSuccess.rejected* is logged and counts as delivered.
// Header values (they may hold API keys) are never logged.
//
// Thread model: deliver() is called from one thread at a time (pipeline.h); it keeps one
// keep-alive connection, reconnecting when the collector closed it.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/record.h"
#include "clrk/telemetry/sink.h"

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace clrk::telemetry {

enum class OtlpEncoding { Json, Protobuf };
enum class OtlpSignal { Traces, Logs };

struct OtlpExporterOptions {
  // Base URL "http(s)://host[:port][/prefix]"; the signal path (/v1/traces, /v1/logs) is
  // appended. Port defaults to 80 / 443.
  std::string endpoint;
  OtlpEncoding encoding = OtlpEncoding::Protobuf;
  OtlpSignal signal = OtlpSignal::Traces;
  // Extra request headers (e.g. {"authorization", "Bearer ..."}).
  std::vector<std::pair<std::string, std::string>> headers;
  // PEM CA certificates to trust for https endpoints; empty = the system store. The collector's
  // certificate chain and host name are always verified.
  std::string ca_pem;
  // Connect + write + read limit for one export.
  std::chrono::milliseconds timeout{10000};
  // Resource attributes; service.name = "clrk-egress" is added when absent.
  std::vector<Attribute> resource_attributes;
  std::string scope_name = "clrk.egress";
  std::string scope_version = "0.1.0";
  // Sink name (cursor file name in the pipeline); default "otlp-traces" / "otlp-logs".
  std::string name;
};

// The OTLP payload pieces shared by the encoders.
struct OtlpResource {
  std::vector<Attribute> attributes;
  std::string scope_name;
  std::string scope_version;
};

// OTLP/JSON (proto3 JSON mapping with the OTLP rules: lowerCamelCase field names, trace and span
// ids as lower-case hex, 64-bit integers as decimal strings, enums as integers).
std::string encodeTracesJson(const OtlpResource& resource, std::span<const Record> records);
std::string encodeLogsJson(const OtlpResource& resource, std::span<const Record> records);
// Binary protobuf (opentelemetry-proto v1 field numbers, listed in otlp_exporter.cc).
std::string encodeTracesProtobuf(const OtlpResource& resource, std::span<const Record> records);
std::string encodeLogsProtobuf(const OtlpResource& resource, std::span<const Record> records);

class OtlpHttpExporter : public Sink {
 public:
  // InvalidArgument for a malformed endpoint or a bad ca_pem. Does not connect.
  static Result<std::unique_ptr<OtlpHttpExporter>> create(OtlpExporterOptions options);
  ~OtlpHttpExporter() override;

  // telemetry::Sink
  std::string name() const override;
  Status deliver(std::span<const Record> batch) override;

  class Impl;

 private:
  explicit OtlpHttpExporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clrk::telemetry
