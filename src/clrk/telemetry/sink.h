// Sink: a destination for telemetry records (the OTLP exporter, the local store, test fakes).
//
// The pipeline (pipeline.h) calls deliver() from one thread per sink, with batches in the order
// records were emitted. A sink that returns a non-ok Status gets the same batch again later
// (exponential backoff), so deliver() must be idempotent enough for at-least-once delivery.
// Returning Code::InvalidArgument means the batch can never be accepted (e.g. a collector's
// 400): the pipeline logs it, counts it (Stats::dropped_permanent) and moves on.
// Thread model: deliver() is never called concurrently on one sink by one pipeline.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/record.h"

#include <span>
#include <string>

namespace clrk::telemetry {

class Sink {
 public:
  virtual ~Sink() = default;

  // Stable name; the pipeline uses it for the sink's cursor file, so it must be unique within
  // one pipeline and match [A-Za-z0-9_.-]+.
  virtual std::string name() const = 0;

  // Delivers `batch` (non-empty). OK iff every record was accepted.
  virtual Status deliver(std::span<const Record> batch) = 0;
};

}  // namespace clrk::telemetry
