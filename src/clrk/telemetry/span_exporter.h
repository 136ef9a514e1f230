// SpanExporter: sends spans to an OpenTelemetry collector from a bounded in-memory queue, for the
// controller-manager's invocation traces (trace_spans.h).
//
// Unlike Pipeline (pipeline.h: disk spool, nothing lost) this is best-effort by design: traces
// for a user's collector must never slow the intake or the controllers, so emit() only appends
// to a bounded queue (the oldest span is dropped and counted when it is full) and one background
// thread sends batches of up to max_batch spans through a Sink (an OtlpHttpExporter with
// OtlpSignal::Traces), waiting up to batch_delay for a batch to fill. A batch the sink reports
// Unavailable is retried with exponential backoff (initial_backoff doubling to max_backoff) up
// to max_attempts times, then dropped and counted; InvalidArgument (a collector's 400) drops it
// at once. stop() sends what is queued once more (no retries) and joins.
//
// Thread model: emit(), stats() and flush() are thread-safe; the sink is called from the
// exporter's thread only.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/otlp_exporter.h"
#include "clrk/telemetry/record.h"
#include "clrk/telemetry/sink.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clrk::telemetry {

struct SpanExporterOptions {
  size_t max_queue = 8192;
  size_t max_batch = 512;
  std::chrono::milliseconds batch_delay{1000};
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  int max_attempts = 6;
};

struct SpanExporterStats {
  uint64_t emitted = 0;           // spans given to emit()
  uint64_t exported = 0;          // spans the collector accepted
  uint64_t dropped_overflow = 0;  // oldest spans dropped because the queue was full
  uint64_t dropped_failed = 0;    // spans of batches given up on (400, or retries exhausted)
  uint64_t retries = 0;           // failed export attempts that were retried
  size_t queued = 0;
};

class SpanExporter {
 public:
  // Starts the sending thread.
  static std::unique_ptr<SpanExporter> start(std::unique_ptr<Sink> sink,
                                             SpanExporterOptions options = {});
  ~SpanExporter();  // stop()

  void emit(Record span);
  void emit(std::vector<Record> spans);

  // Waits until everything emitted so far was sent or dropped; false on timeout.
  bool flush(std::chrono::milliseconds timeout);
  SpanExporterStats stats() const;
  void stop();

  class Impl;

 private:
  explicit SpanExporter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// A Sink in front of another: delivers each batch to `inner` and, once `inner` accepted it,
// emits the batch's egress spans (trace_spans.h egressSpan) to `exporter`. The controller-manager
// puts it between its OTLP intake and its local store, so a batch the store refuses (and the
// worker sends again) is not exported twice. Both must outlive the tap.
class EgressSpanTap : public Sink {
 public:
  EgressSpanTap(Sink& inner, SpanExporter& exporter) : inner_(inner), exporter_(exporter) {}

  // telemetry::Sink
  std::string name() const override { return inner_.name(); }
  Status deliver(std::span<const Record> batch) override;

 private:
  Sink& inner_;
  SpanExporter& exporter_;
};

// Where the controller-manager sends traces, resolved like an OpenTelemetry SDK does:
// `flag_endpoint` when set, else $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL), else
// $OTEL_EXPORTER_OTLP_ENDPOINT + "/v1/traces"; nullopt when none is set (tracing off). The
// endpoint may name the full URL ".../v1/traces" or the base URL (the path is appended).
// Headers: `flag_headers` ("key=value" each) when set, else $OTEL_EXPORTER_OTLP_TRACES_HEADERS or
// $OTEL_EXPORTER_OTLP_HEADERS ("k1=v1,k2=v2", values URL-decoded). Protocol: `flag_protocol`
// ("http/protobuf" or "http/json") when set, else $OTEL_EXPORTER_OTLP_TRACES_PROTOCOL /
// $OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf. InvalidArgument naming the source on a bad
// value. `getenv` is injectable for tests.
Result<std::optional<OtlpExporterOptions>> tracesExporterOptions(
    const std::string& flag_endpoint, const std::vector<std::string>& flag_headers,
    const std::string& flag_protocol,
    const std::function<const char*(const char*)>& getenv = nullptr);

}  // namespace clrk::telemetry
