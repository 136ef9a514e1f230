// LocalStore: a Sink that keeps records in a SQLite database for `clrk traces` and the worker.
//
// One row per record keyed by (trace_id, span_id), so redelivery (the pipeline is
// at-least-once) replaces instead of duplicating. Identity attributes (clrk.namespace,
// clrk.agent, clrk.execution_id, clrk.request_id) are indexed columns; the whole record is kept
// as toJson() text. The database is opened in WAL mode; the file is created 0600.
//
// Thread model: all methods are thread-safe (one connection behind a mutex).
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/record.h"
#include "clrk/telemetry/sink.h"

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace clrk::telemetry {

// Empty strings / nullopt match everything. Results are newest first (by start time).
struct Query {
  std::string execution_id;
  std::string agent;
  std::string ns;  // clrk.namespace
  std::string request_id;
  std::optional<std::chrono::system_clock::time_point> since;  // start >= since
  size_t limit = 100;                                          // clamped to 10000
};

class LocalStore : public Sink {
 public:
  // Opens or creates the database at `path` (parent directory must exist).
  static Result<std::unique_ptr<LocalStore>> open(const std::filesystem::path& path);
  ~LocalStore() override;

  // telemetry::Sink. name() is "local".
  std::string name() const override;
  Status deliver(std::span<const Record> batch) override;

  Result<std::vector<Record>> query(const Query& query) const;

  // Deletes records that started before `cutoff`; returns how many.
  Result<uint64_t> pruneBefore(std::chrono::system_clock::time_point cutoff);

  class Impl;

 private:
  explicit LocalStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clrk::telemetry
