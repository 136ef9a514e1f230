// Pipeline: bounded in-memory queue -> durable disk spool -> one delivery loop per sink.
//
//   emit() --> queue (bounded, in memory) --> writer thread --> spool segments on disk
//                                                                  |  (one cursor per sink)
//                                                                  +--> reader thread -> Sink A
//                                                                  +--> reader thread -> Sink B
//
// * emit() never blocks on I/O and never waits for a sink: it moves the record into the queue,
//   or returns false (counted in Stats::dropped_queue_full) when the queue is full. The queue is
//   sharded by emitting thread (8 shards, one lock each), so event loops emitting at once share
//   no lock; records of one thread keep their order, those of different threads interleave.
// * The writer thread appends what is queued to the current segment file as one batch and then
//   fdatasync()s it (group commit: one sync per batch, not per record, and at most one synced
//   batch every 10 ms, so records wait in the queue up to 10 ms longer; Options::fsync = false
//   skips the sync and the wait, for tests and benchmarks). A record is "spooled" once it is
//   written; with fsync on it survives a machine crash once its batch's sync returned.
// * Spool layout in spool_dir (created 0700; every file 0600):
//     seg-<20-digit sequence>.log   records, each framed as
//                                   u32le payload length | u32le CRC-32 (IEEE) of payload | payload
//                                   where payload is appendBinary(record) (record.h); payloads
//                                   in the older toJson(record) form (spools written before the
//                                   binary form) are still read, told apart by their first byte
//     cursor-<sink name>            "<segment sequence> <byte offset>\n", written atomically
//   Each start opens a new segment; the current segment is rotated at segment_max_bytes.
// * The writer normalizes each record (record.h normalize(): what a JSON round trip would give)
//   before spooling it, so every sink sees the same values on either delivery path below.
// * Each sink has a reader thread that reads batches (<= batch_max_records) from its cursor and
//   calls Sink::deliver(). Records the writer spooled in this run are also kept in memory (up to
//   4 MiB of spooled bytes, and only until every reader is past them): a reader whose cursor is
//   on them delivers them from memory, without reading or decoding the spool; only records
//   already on disk are ever handed over this way (after their batch's fdatasync), so the
//   spool stays the durability path. A lagging reader, and everything a restart recovers, reads
//   the spool. The cursor advances only after deliver() returned OK; it is persisted at most
//   every 250 ms while the reader delivers, within 250 ms once it has caught up, and when the
//   pipeline stops. Delivery is at-least-once: a crash redelivers what was delivered after the
//   last persisted cursor. A failing sink is retried with exponential backoff (retry_initial
//   doubling up to retry_max); records wait in the spool meanwhile, including across restarts
//   with the same spool_dir. Code::InvalidArgument from deliver() is permanent: the batch is
//   logged, counted in Stats::dropped_permanent and skipped.
// * Segments every sink has read past are deleted. When the spool exceeds spool_max_bytes the
//   oldest segment is deleted even if undelivered; its records count in Stats::spool_dropped.
// * At start, each segment is scanned: a torn or corrupt record (bad length or CRC) ends that
//   segment's readable part; it is logged and counted in Stats::spool_corrupt, never fatal.
//
// Thread model: every public method is thread-safe. Sinks are called from the pipeline's reader
// threads only (one thread per sink). No method throws.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/record.h"
#include "clrk/telemetry/sink.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace clrk::telemetry {

struct PipelineOptions {
  // REQUIRED. Created (0700) when absent. One pipeline per directory at a time (enforced with an
  // flock on spool_dir/lock; a second start() fails with Unavailable).
  std::filesystem::path spool_dir;
  size_t queue_capacity = 65536;                 // records held in memory before emit() refuses
  uint64_t spool_max_bytes = 256ull << 20;       // total size of all segments
  uint64_t segment_max_bytes = 8ull << 20;       // clamped to spool_max_bytes / 4
  size_t batch_max_records = 512;                // per Sink::deliver() call
  bool fsync = true;                             // fdatasync after each written batch
  std::chrono::milliseconds retry_initial{100};  // first backoff after a failed deliver()
  std::chrono::milliseconds retry_max{30000};    // backoff cap
  // How long ~Pipeline() keeps delivering what is spooled before it stops (what is left stays in
  // the spool for the next start).
  std::chrono::milliseconds shutdown_drain{2000};
  // Sinks; names must be unique and match [A-Za-z0-9_.-]+.
  std::vector<std::shared_ptr<Sink>> sinks;
};

struct SinkStats {
  std::string name;
  uint64_t delivered = 0;          // records acknowledged by deliver() this run
  uint64_t failures = 0;           // failed deliver() calls (each retried later)
  uint64_t dropped_permanent = 0;  // records in batches refused with InvalidArgument
  uint64_t pending = 0;            // spooled records not yet delivered to this sink (approximate)
  std::string last_error;          // message of the most recent failure, "" if none
};

struct Stats {
  uint64_t emitted = 0;             // accepted by emit()
  uint64_t dropped_queue_full = 0;  // refused by emit()
  uint64_t spooled = 0;             // written to the spool this run
  uint64_t spool_dropped = 0;       // records lost to spool_max_bytes (oldest segment deleted)
  uint64_t spool_corrupt = 0;       // torn or corrupt records found in the spool
  uint64_t spool_write_errors = 0;  // failed segment writes (records stay queued and retry)
  uint64_t spool_bytes = 0;         // current size of all segments
  uint64_t queued = 0;              // records in the in-memory queue now
  std::vector<SinkStats> sinks;     // in PipelineOptions::sinks order
};

class Pipeline {
 public:
  // Opens (or creates) the spool, recovers segments and cursors, starts the writer and one
  // reader per sink. InvalidArgument for bad options; Internal/Unavailable when the spool
  // directory cannot be used.
  static Result<std::unique_ptr<Pipeline>> start(PipelineOptions options);

  // Stops accepting records, spools everything queued, lets the readers deliver for up to
  // shutdown_drain, then joins every thread. Undelivered records stay in the spool. A
  // Sink::deliver() call in progress is not interrupted, so this may also wait for the sink's
  // own timeout (OtlpExporterOptions::timeout).
  ~Pipeline();

  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Queues `record`. Assigns a random trace_id / span_id when they are all zero. Never blocks on
  // I/O; false (counted) iff the queue is full or the pipeline is stopping.
  bool emit(Record record);

  // Waits until everything emitted before the call is spooled and delivered to every sink, or
  // `timeout` passed. True iff everything was delivered.
  bool flush(std::chrono::milliseconds timeout);

  Stats stats() const;

  class Impl;

 private:
  explicit Pipeline(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clrk::telemetry
