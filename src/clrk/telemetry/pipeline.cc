#include "clrk/telemetry/pipeline.h"

#include "clrk/base/files.h"
#include "clrk/base/log.h"
#include "clrk/base/striped_counter.h"
#include "clrk/telemetry/spool_format.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <set>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>

namespace clrk::telemetry {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kWriterBatchRecords = 4096;
// emit() pushes to one of these in-memory queues, picked by the calling thread, so event loops
// emitting at once do not share a lock.
constexpr size_t kQueueShards = 8;
constexpr size_t kReadChunkBytes = 1u << 20;
constexpr auto kWriteRetryDelay = std::chrono::milliseconds(200);
// Minimum time between the starts of two synced spool writes (PipelineOptions::fsync).
constexpr auto kSyncInterval = std::chrono::milliseconds(10);
// How often a reader writes its cursor to disk while it is delivering (always when it stops).
constexpr auto kCursorPersistInterval = std::chrono::milliseconds(250);
// Spooled bytes of the batches kept in memory for readers that are caught up (see FreshBatch).
constexpr uint64_t kFreshMaxBytes = 4u << 20;

std::shared_ptr<spdlog::logger> log() {
  static std::shared_ptr<spdlog::logger> instance = clrk::logger("telemetry");
  return instance;
}

std::string errnoText(int err) { return std::strerror(err); }

std::string segmentFileName(uint64_t seq) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "seg-%020llu.log", static_cast<unsigned long long>(seq));
  return buf;
}

std::optional<uint64_t> parseSegmentFileName(const std::string& name) {
  if (name.size() != 4 + 20 + 4 || name.rfind("seg-", 0) != 0 ||
      name.compare(name.size() - 4, 4, ".log") != 0) {
    return std::nullopt;
  }
  uint64_t seq = 0;
  for (size_t idx = 4; idx < 24; ++idx) {
    char c = name[idx];
    if (c < '0' || c > '9') return std::nullopt;
    seq = seq * 10 + static_cast<uint64_t>(c - '0');
  }
  return seq;
}

bool validSinkName(const std::string& name) {
  if (name.empty() || name.size() > 100) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

bool isZero(std::span<const uint8_t> bytes) {
  for (uint8_t byte : bytes) {
    if (byte != 0) return false;
  }
  return true;
}

// A spooled payload: the binary form, or the JSON of spools written before it (still read).
Result<Record> decodePayload(std::string_view payload) {
  if (!payload.empty() && static_cast<uint8_t>(payload.front()) == kBinaryRecordTag) {
    return recordFromBinary(payload);
  }
  return recordFromJson(payload);
}

// Reads exactly [offset, offset+length) or less at end of file; false on an I/O error.
bool preadAll(int fd, uint64_t offset, size_t length, std::string& out) {
  out.resize(length);
  size_t got = 0;
  while (got < length) {
    ssize_t n = ::pread(fd, out.data() + got, length - got, static_cast<off_t>(offset + got));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return true;
}

bool writeAll(int fd, std::string_view data) {
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    written += static_cast<size_t>(n);
  }
  return true;
}

void fsyncDir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

struct Cursor {
  uint64_t seq = 0;
  uint64_t offset = 0;
  auto operator<=>(const Cursor&) const = default;
};

struct Segment {
  uint64_t readable_bytes = 0;  // bytes of whole, valid frames
  uint64_t records = 0;
  bool active = false;  // the writer appends to it
};

// Records of one written batch, kept in memory after the batch reached the spool so that readers
// that are caught up deliver them without reading and decoding the spool. Immutable once
// published; shared with the reader delivering from it.
struct FreshBatch {
  uint64_t seq = 0;
  uint64_t begin = 0;           // offset of the first record's frame in segment `seq`
  std::vector<Record> records;  // as spooled (normalized)
  std::vector<uint64_t> ends;   // offset just past each record's frame
  uint64_t bytes() const { return ends.empty() ? 0 : ends.back() - begin; }
};

// Scans one segment file: valid prefix length and record count.
struct ScanResult {
  uint64_t valid_bytes = 0;
  uint64_t records = 0;
  uint64_t file_bytes = 0;
  bool corrupt = false;  // a corrupt frame (not just a torn tail) was found
  bool io_error = false;
};

ScanResult scanSegment(int fd) {
  ScanResult result;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    result.io_error = true;
    return result;
  }
  result.file_bytes = static_cast<uint64_t>(st.st_size);
  // A window always holds at least one whole frame of the largest allowed size.
  constexpr uint64_t kWindow = spool::kFrameHeaderBytes + spool::kMaxPayloadBytes;
  std::string buffer;
  uint64_t offset = 0;
  while (offset < result.file_bytes) {
    size_t want = static_cast<size_t>(std::min(result.file_bytes - offset, kWindow));
    if (!preadAll(fd, offset, want, buffer) || buffer.size() != want) {
      result.io_error = true;
      break;
    }
    std::string_view data = buffer;
    size_t consumed = 0;
    spool::FrameResult fr = spool::FrameResult::Ok;
    while (consumed < data.size()) {
      std::string_view payload;
      size_t frame_bytes = 0;
      fr = spool::decodeFrame(data.substr(consumed), payload, frame_bytes);
      if (fr != spool::FrameResult::Ok) break;
      consumed += frame_bytes;
      ++result.records;
    }
    offset += consumed;
    if (fr == spool::FrameResult::Corrupt) {
      result.corrupt = true;
      break;
    }
    // Truncated at the end of the file is a torn tail; within the file the window merely ended
    // inside a frame, unless nothing fitted (impossible for a valid frame).
    if (fr == spool::FrameResult::Truncated &&
        (offset + (data.size() - consumed) >= result.file_bytes || consumed == 0)) {
      break;
    }
  }
  result.valid_bytes = offset;
  return result;
}

}  // namespace

class Pipeline::Impl {
 public:
  explicit Impl(PipelineOptions options) : options_(std::move(options)) {}

  ~Impl() { shutdown(); }

  Status open();
  bool emit(Record record);
  bool flush(std::chrono::milliseconds timeout);
  Stats stats() const;
  void shutdown();

 private:
  struct Reader {
    std::shared_ptr<Sink> sink;
    std::string name;
    Cursor cursor;                     // in-memory position; guarded by spool_mu_
    Cursor persisted;                  // last cursor written to disk; reader thread only
    Clock::time_point persisted_at{};  // when it was written; reader thread only
    std::thread thread;
    std::atomic<uint64_t> delivered{0};
    std::atomic<uint64_t> failures{0};
    std::atomic<uint64_t> dropped_permanent{0};
    std::string last_error;  // guarded by spool_mu_
  };

  fs::path cursorPath(const std::string& name) const {
    return options_.spool_dir / ("cursor-" + name);
  }
  Status recover();
  Status openActiveSegment(uint64_t seq);  // REQUIRES: spool_mu_ held
  void writerLoop();
  Status writeBatch(std::vector<Record>& batch);
  void readerLoop(Reader& reader);
  bool positionAtData(Reader& reader);  // REQUIRES: spool_mu_ held
  // Writes the cursor if it moved, unless `force` is false and it was written less than
  // kCursorPersistInterval ago.
  void persistCursor(Reader& reader, bool force);
  void collectGarbage();                                           // REQUIRES: spool_mu_ held
  void dropSegment(uint64_t seq);                                  // REQUIRES: spool_mu_ held
  bool readerCaughtUp(const Reader& reader, Cursor target) const;  // REQUIRES: spool_mu_ held
  // The fresh batch holding the record at `cursor` and that record's index, or nullptr.
  // REQUIRES: spool_mu_ held
  std::shared_ptr<const FreshBatch> findFresh(Cursor cursor, size_t& index) const;
  void trimFresh();  // REQUIRES: spool_mu_ held
  // Reads, decodes and appends to `batch` up to batch_max_records records at reader.cursor from
  // the spool; sets `next` to the cursor past them (or past the unreadable rest of the segment).
  // False when there is nothing to deliver (the cursor was moved past an unreadable part).
  bool readFromSpool(Reader& reader, Cursor start, uint64_t readable, int& fd, uint64_t& fd_seq,
                     std::string& buffer, std::vector<Record>& batch, Cursor& next);

  PipelineOptions options_;
  int lock_fd_ = -1;
  bool started_ = false;

  // In-memory queue: sharded by emitting thread (records of one thread stay in order).
  struct alignas(64) QueueShard {
    mutable std::mutex mu;
    std::deque<Record> records;
    uint64_t pushed = 0;  // records ever pushed here (flush() waits for them by shard)
  };
  using PerShard = std::array<uint64_t, kQueueShards>;
  QueueShard& shardOfThisThread();
  // Moves up to `limit` records from the shards into `batch` and counts them by shard in
  // batch_from_shard_; returns how many.
  size_t takeQueued(std::vector<Record>& batch, size_t limit);
  // REQUIRES: spool_mu_ held. The current batch is written or dropped.
  void countProcessed();

  std::array<QueueShard, kQueueShards> shards_;
  size_t next_shard_to_take_ = 0;  // writer thread only
  PerShard batch_from_shard_{};    // writer thread only: the current batch's records by shard
  // Records reserved in or pushed to the shards and not taken yet (capacity and wake-ups).
  std::atomic<uint64_t> queued_{0};
  std::atomic<bool> stopping_{false};
  // The writer sleeps on queue_cv_ (with queue_mu_) while queued_ is 0.
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::atomic<uint64_t> dropped_queue_full_{0};

  // Spool state.
  mutable std::mutex spool_mu_;
  std::condition_variable data_cv_;      // readers: new data, rotation or stop
  std::condition_variable progress_cv_;  // flush(): spooled or delivered records
  std::map<uint64_t, Segment> segments_;
  uint64_t active_seq_ = 0;
  int active_fd_ = -1;  // writer thread only (opened under spool_mu_)
  uint64_t spool_bytes_ = 0;
  PerShard processed_{};  // by shard: records taken off the queue and written or dropped
  bool readers_stopping_ = false;
  Clock::time_point drain_deadline_{};
  std::atomic<uint64_t> spooled_{0};
  std::atomic<uint64_t> spool_dropped_{0};
  std::atomic<uint64_t> spool_corrupt_{0};
  std::atomic<uint64_t> spool_write_errors_{0};
  // Recently written batches in spool order; dropped once every reader is past them or when
  // they hold more than kFreshMaxBytes (a lagging reader then reads the spool).
  std::deque<std::shared_ptr<const FreshBatch>> fresh_;  // guarded by spool_mu_
  uint64_t fresh_bytes_ = 0;                             // guarded by spool_mu_

  std::thread writer_;
  std::vector<std::unique_ptr<Reader>> readers_;
};

Status Pipeline::Impl::open() {
  if (options_.spool_dir.empty()) return invalidArgument("spool_dir: required");
  if (options_.queue_capacity == 0) return invalidArgument("queue_capacity: must be > 0");
  if (options_.batch_max_records == 0) return invalidArgument("batch_max_records: must be > 0");
  if (options_.spool_max_bytes < 4096) return invalidArgument("spool_max_bytes: must be >= 4096");
  if (options_.retry_initial.count() <= 0 || options_.retry_max < options_.retry_initial) {
    return invalidArgument("retry_initial/retry_max: need 0 < retry_initial <= retry_max");
  }
  options_.segment_max_bytes =
      std::max<uint64_t>(1024, std::min(options_.segment_max_bytes, options_.spool_max_bytes / 4));
  std::set<std::string> names;
  for (size_t sink_idx = 0; sink_idx < options_.sinks.size(); ++sink_idx) {
    const auto& sink = options_.sinks[sink_idx];
    if (sink == nullptr) {
      return invalidArgument("sinks[" + std::to_string(sink_idx) + "]: null");
    }
    std::string name = sink->name();
    if (!validSinkName(name)) {
      return invalidArgument("sinks[" + std::to_string(sink_idx) + "]: name \"" + name +
                             "\" must match [A-Za-z0-9_.-]+");
    }
    if (!names.insert(name).second) {
      return invalidArgument("sinks[" + std::to_string(sink_idx) + "]: duplicate name \"" + name +
                             "\"");
    }
  }

  std::error_code ec;
  fs::create_directories(options_.spool_dir, ec);
  if (ec) return internalError(options_.spool_dir.string() + ": " + ec.message());
  ::chmod(options_.spool_dir.c_str(), 0700);
  fs::path lock_path = options_.spool_dir / "lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) return internalError(lock_path.string() + ": " + errnoText(errno));
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(lock_fd_);
    lock_fd_ = -1;
    if (err == EWOULDBLOCK) {
      return {Code::Unavailable,
              options_.spool_dir.string() + ": spool is in use by another pipeline"};
    }
    return internalError(lock_path.string() + ": flock: " + errnoText(err));
  }

  CLRK_RETURN_IF_ERROR(recover());

  for (const auto& sink : options_.sinks) {
    auto reader = std::make_unique<Reader>();
    reader->sink = sink;
    reader->name = sink->name();
    auto content = readFile(cursorPath(reader->name));
    if (content.ok()) {
      unsigned long long seq = 0;
      unsigned long long offset = 0;
      if (std::sscanf(content->c_str(), "%llu %llu", &seq, &offset) == 2) {
        reader->cursor = Cursor{seq, offset};
      } else {
        log()->warn("telemetry spool: cursor for sink {} is unreadable; delivering from the start",
                    reader->name);
      }
    }
    reader->persisted = reader->cursor;
    readers_.push_back(std::move(reader));
  }
  {
    std::lock_guard lock(spool_mu_);
    collectGarbage();
  }
  started_ = true;
  writer_ = std::thread([this] { writerLoop(); });
  for (auto& reader : readers_) {
    Reader* raw = reader.get();
    raw->thread = std::thread([this, raw] { readerLoop(*raw); });
  }
  return {};
}

Status Pipeline::Impl::recover() {
  std::error_code ec;
  std::vector<std::pair<uint64_t, fs::path>> found;
  for (fs::directory_iterator it(options_.spool_dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (auto seq = parseSegmentFileName(name)) {
      found.emplace_back(*seq, it->path());
    } else if (name.find(".tmp") != std::string::npos) {
      fs::remove(it->path(), ec);
      ec.clear();
    }
  }
  if (ec) return internalError(options_.spool_dir.string() + ": " + ec.message());
  std::sort(found.begin(), found.end());

  std::lock_guard lock(spool_mu_);
  uint64_t max_seq = 0;
  for (const auto& [seq, path] : found) {
    max_seq = std::max(max_seq, seq);
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
      log()->error("telemetry spool: cannot open {}: {}; skipping it", path.string(),
                   errnoText(errno));
      continue;
    }
    ScanResult scan = scanSegment(fd);
    if (scan.io_error) {
      log()->error("telemetry spool: cannot read {}; skipping it", path.string());
      ::close(fd);
      continue;
    }
    if (scan.valid_bytes < scan.file_bytes) {
      spool_corrupt_.fetch_add(1);
      log()->warn("telemetry spool: {} has a {} record at offset {}; ignoring its last {} bytes",
                  path.filename().string(), scan.corrupt ? "corrupt" : "torn", scan.valid_bytes,
                  scan.file_bytes - scan.valid_bytes);
      if (::ftruncate(fd, static_cast<off_t>(scan.valid_bytes)) != 0) {
        log()->warn("telemetry spool: cannot truncate {}: {}", path.string(), errnoText(errno));
      }
    }
    ::close(fd);
    if (scan.records == 0) {
      fs::remove(path, ec);
      ec.clear();
      continue;
    }
    segments_[seq] = Segment{scan.valid_bytes, scan.records, false};
    spool_bytes_ += scan.valid_bytes;
  }
  if (!segments_.empty()) {
    log()->info("telemetry spool: recovered {} segment(s), {} bytes", segments_.size(),
                spool_bytes_);
  }
  return openActiveSegment(max_seq + 1);
}

Status Pipeline::Impl::openActiveSegment(uint64_t seq) {
  fs::path path = options_.spool_dir / segmentFileName(seq);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return internalError(path.string() + ": " + errnoText(errno));
  ::fchmod(fd, 0600);
  if (options_.fsync) fsyncDir(options_.spool_dir);
  if (active_fd_ >= 0) ::close(active_fd_);
  if (auto it = segments_.find(active_seq_); it != segments_.end()) it->second.active = false;
  active_fd_ = fd;
  active_seq_ = seq;
  segments_[seq] = Segment{0, 0, true};
  return {};
}

Pipeline::Impl::QueueShard& Pipeline::Impl::shardOfThisThread() {
  return shards_[threadStripe() % kQueueShards];
}

bool Pipeline::Impl::emit(Record record) {
  if (stopping_.load(std::memory_order_acquire)) {
    dropped_queue_full_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (isZero(record.trace_id)) record.trace_id = newTraceId();
  if (isZero(record.span_id)) record.span_id = newSpanId();
  uint64_t queued_before = queued_.fetch_add(1, std::memory_order_acq_rel);
  if (queued_before >= options_.queue_capacity) {
    queued_.fetch_sub(1, std::memory_order_acq_rel);
    dropped_queue_full_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  QueueShard& shard = shardOfThisThread();
  {
    std::lock_guard lock(shard.mu);
    // shutdown() sets stopping_ and then takes every shard's lock once: a record pushed here
    // is pushed before the writer's last drain.
    if (stopping_.load(std::memory_order_acquire)) {
      queued_.fetch_sub(1, std::memory_order_acq_rel);
      dropped_queue_full_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    shard.records.push_back(std::move(record));
    ++shard.pushed;
  }
  // The writer sleeps only while queued_ is 0 (it checks under queue_mu_), so only the record
  // that made it non-zero needs a wake-up; this keeps emit() free of syscalls under load.
  if (queued_before == 0) {
    std::lock_guard lock(queue_mu_);
    queue_cv_.notify_one();
  }
  return true;
}

size_t Pipeline::Impl::takeQueued(std::vector<Record>& batch, size_t limit) {
  size_t taken = 0;
  batch_from_shard_.fill(0);
  for (size_t step = 0; step < kQueueShards && taken < limit; ++step) {
    size_t index = (next_shard_to_take_ + step) % kQueueShards;
    QueueShard& shard = shards_[index];
    std::lock_guard lock(shard.mu);
    while (!shard.records.empty() && taken < limit) {
      batch.push_back(std::move(shard.records.front()));
      shard.records.pop_front();
      ++batch_from_shard_[index];
      ++taken;
    }
  }
  next_shard_to_take_ = (next_shard_to_take_ + 1) % kQueueShards;  // no shard waits behind others
  queued_.fetch_sub(taken, std::memory_order_acq_rel);
  return taken;
}

void Pipeline::Impl::countProcessed() {
  for (size_t index = 0; index < kQueueShards; ++index) {
    processed_[index] += batch_from_shard_[index];
  }
  batch_from_shard_.fill(0);
}

void Pipeline::Impl::writerLoop() {
  std::vector<Record> batch;
  Clock::time_point last_write{};
  while (true) {
    {
      std::unique_lock lock(queue_mu_);
      queue_cv_.wait(lock, [this] { return stopping_.load() || queued_.load() > 0; });
      if (queued_.load() == 0 && stopping_.load()) break;
      if (options_.fsync) {
        // Group commit: at most one synced batch per kSyncInterval, so a busy pipeline pays for
        // a bounded number of fdatasync() calls whatever the record rate.
        queue_cv_.wait_until(lock, last_write + kSyncInterval, [this] { return stopping_.load(); });
      }
    }
    last_write = Clock::now();
    batch.reserve(std::min<uint64_t>(queued_.load(), kWriterBatchRecords));
    if (takeQueued(batch, kWriterBatchRecords) == 0) {
      // Counted but not pushed yet (an emit() between its reservation and its push): retry.
      std::this_thread::yield();
      continue;
    }
    int attempts = 0;
    while (true) {
      Status status = writeBatch(batch);
      if (status.ok()) break;
      spool_write_errors_.fetch_add(1);
      ++attempts;
      bool stopping = stopping_.load();
      if (stopping && attempts >= 3) {
        log()->error("telemetry spool: dropping {} record(s) at shutdown: {}", batch.size(),
                     status.toString());
        std::lock_guard lock(spool_mu_);
        countProcessed();
        progress_cv_.notify_all();
        break;
      }
      log()->error("telemetry spool: write failed (will retry): {}", status.toString());
      std::this_thread::sleep_for(kWriteRetryDelay);
    }
    batch.clear();
  }
}

Status Pipeline::Impl::writeBatch(std::vector<Record>& batch) {
  std::string buffer;
  std::vector<uint64_t> ends;  // relative to the start of `buffer` until the offset is known
  ends.reserve(batch.size());
  uint64_t oversized = 0;
  bool all_written = true;
  for (Record& record : batch) {
    normalize(record);
    size_t frame_start = buffer.size();
    buffer.append(spool::kFrameHeaderBytes, '\0');
    appendBinary(buffer, record);
    if (buffer.size() - frame_start - spool::kFrameHeaderBytes > spool::kMaxPayloadBytes) {
      buffer.resize(frame_start);
      ++oversized;
      all_written = false;
      ends.push_back(0);  // marks the record as not written
      continue;
    }
    spool::sealFrame(buffer, frame_start);
    ends.push_back(buffer.size());
  }
  uint64_t records = batch.size() - oversized;
  if (oversized > 0) {
    spool_write_errors_.fetch_add(oversized);
    log()->error("telemetry spool: dropped {} record(s) larger than {} bytes", oversized,
                 spool::kMaxPayloadBytes);
  }

  std::unique_lock lock(spool_mu_);
  Segment& active = segments_[active_seq_];
  if (active.readable_bytes > 0 &&
      active.readable_bytes + buffer.size() > options_.segment_max_bytes) {
    CLRK_RETURN_IF_ERROR(openActiveSegment(active_seq_ + 1));
    data_cv_.notify_all();
  }
  // Enforce the spool size limit by dropping the oldest sealed segments.
  while (spool_bytes_ + buffer.size() > options_.spool_max_bytes) {
    auto oldest = segments_.begin();
    if (oldest == segments_.end() || oldest->second.active) break;
    uint64_t lost = oldest->second.records;
    spool_dropped_.fetch_add(lost);
    log()->warn("telemetry spool: over {} bytes; dropping segment {} ({} record(s))",
                options_.spool_max_bytes, oldest->first, lost);
    dropSegment(oldest->first);
  }
  int fd = active_fd_;
  uint64_t seq = active_seq_;
  uint64_t committed = segments_[seq].readable_bytes;
  // The writer is the only thread appending, so the file is written without the lock; readers
  // only read up to readable_bytes.
  lock.unlock();

  if (!buffer.empty()) {
    if (!writeAll(fd, buffer)) {
      int err = errno;
      if (::ftruncate(fd, static_cast<off_t>(committed)) != 0) {
        // The torn tail is found by the CRC check at the next start.
        log()->error("telemetry spool: cannot truncate after failed write: {}", errnoText(errno));
      }
      return internalError(segmentFileName(seq) + ": write: " + errnoText(err));
    }
    if (options_.fsync && ::fdatasync(fd) != 0) {
      return internalError(segmentFileName(seq) + ": fdatasync: " + errnoText(errno));
    }
  }

  // Keep the records for the readers (the caller drops `batch` after a successful write).
  std::shared_ptr<FreshBatch> fresh;
  if (records > 0 && !readers_.empty() && buffer.size() <= kFreshMaxBytes) {
    fresh = std::make_shared<FreshBatch>();
    fresh->seq = seq;
    fresh->begin = committed;
    fresh->records.reserve(records);
    fresh->ends.reserve(records);
    for (size_t record_idx = 0; record_idx < batch.size(); ++record_idx) {
      if (all_written || ends[record_idx] != 0) {
        fresh->records.push_back(std::move(batch[record_idx]));
        fresh->ends.push_back(committed + ends[record_idx]);
      }
    }
  }

  lock.lock();
  Segment& segment = segments_[seq];
  segment.readable_bytes += buffer.size();
  segment.records += records;
  spool_bytes_ += buffer.size();
  countProcessed();
  spooled_.fetch_add(records);
  if (fresh) {
    fresh_bytes_ += fresh->bytes();
    fresh_.push_back(std::move(fresh));
    trimFresh();
  }
  lock.unlock();
  data_cv_.notify_all();
  progress_cv_.notify_all();
  return {};
}

void Pipeline::Impl::dropSegment(uint64_t seq) {
  auto it = segments_.find(seq);
  if (it == segments_.end()) return;
  spool_bytes_ -= it->second.readable_bytes;
  segments_.erase(it);
  while (!fresh_.empty() && fresh_.front()->seq <= seq) {
    fresh_bytes_ -= fresh_.front()->bytes();
    fresh_.pop_front();
  }
  std::error_code ec;
  fs::remove(options_.spool_dir / segmentFileName(seq), ec);
  if (ec) log()->warn("telemetry spool: cannot remove segment {}: {}", seq, ec.message());
}

void Pipeline::Impl::collectGarbage() {
  // A sealed segment can go once every reader's cursor is past it or at its end.
  while (!segments_.empty()) {
    auto oldest = segments_.begin();
    if (oldest->second.active) break;
    bool all_done = true;
    for (const auto& reader : readers_) {
      const Cursor& cursor = reader->cursor;
      if (cursor.seq < oldest->first ||
          (cursor.seq == oldest->first && cursor.offset < oldest->second.readable_bytes)) {
        all_done = false;
        break;
      }
    }
    if (!all_done) break;
    dropSegment(oldest->first);
  }
  trimFresh();
}

void Pipeline::Impl::trimFresh() {
  while (!fresh_.empty()) {
    const FreshBatch& oldest = *fresh_.front();
    bool all_past = true;
    for (const auto& reader : readers_) {
      if (reader->cursor < Cursor{oldest.seq, oldest.ends.back()}) {
        all_past = false;
        break;
      }
    }
    if (!all_past && fresh_bytes_ <= kFreshMaxBytes) break;
    fresh_bytes_ -= oldest.bytes();
    fresh_.pop_front();
  }
}

std::shared_ptr<const FreshBatch> Pipeline::Impl::findFresh(Cursor cursor, size_t& index) const {
  for (const auto& batch : fresh_) {
    if (batch->seq != cursor.seq || cursor.offset < batch->begin ||
        cursor.offset >= batch->ends.back()) {
      continue;
    }
    if (cursor.offset == batch->begin) {
      index = 0;
      return batch;
    }
    auto it = std::lower_bound(batch->ends.begin(), batch->ends.end(), cursor.offset);
    if (it == batch->ends.end() || *it != cursor.offset) return nullptr;  // not a frame start
    index = static_cast<size_t>(it - batch->ends.begin()) + 1;
    return batch;
  }
  return nullptr;
}

bool Pipeline::Impl::positionAtData(Reader& reader) {
  while (true) {
    auto it = segments_.lower_bound(reader.cursor.seq);
    if (it == segments_.end()) return false;
    if (it->first != reader.cursor.seq) reader.cursor = Cursor{it->first, 0};
    const Segment& segment = it->second;
    if (reader.cursor.offset < segment.readable_bytes) return true;
    if (segment.active) return false;
    auto next = std::next(it);
    if (next == segments_.end()) return false;
    reader.cursor = Cursor{next->first, 0};
  }
}

bool Pipeline::Impl::readerCaughtUp(const Reader& reader, Cursor target) const {
  // Readers move their cursor past exhausted sealed segments before they wait, so a caught-up
  // reader's cursor reaches `target` itself.
  return reader.cursor >= target;
}

void Pipeline::Impl::persistCursor(Reader& reader, bool force) {
  Cursor cursor;
  {
    std::lock_guard lock(spool_mu_);
    cursor = reader.cursor;
  }
  if (cursor == reader.persisted) return;
  auto now = Clock::now();
  if (!force && now < reader.persisted_at + kCursorPersistInterval) return;
  reader.persisted_at = now;
  fs::path path = cursorPath(reader.name);
  fs::path tmp = path;
  tmp += ".tmp";
  std::string content = std::to_string(cursor.seq) + " " + std::to_string(cursor.offset) + "\n";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  bool ok = fd >= 0 && writeAll(fd, content) && (!options_.fsync || ::fdatasync(fd) == 0);
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  ok = ok && ::rename(tmp.c_str(), path.c_str()) == 0;
  if (!ok) {
    // Not fatal: the old cursor means redelivery after a restart, never loss.
    log()->warn("telemetry spool: cannot save cursor for sink {}: {}", reader.name,
                errnoText(errno));
    return;
  }
  reader.persisted = cursor;
}

bool Pipeline::Impl::readFromSpool(Reader& reader, Cursor start, uint64_t readable, int& fd,
                                   uint64_t& fd_seq, std::string& buffer,
                                   std::vector<Record>& batch, Cursor& next) {
  if (fd < 0 || fd_seq != start.seq) {
    if (fd >= 0) ::close(fd);
    fs::path path = options_.spool_dir / segmentFileName(start.seq);
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    fd_seq = start.seq;
    if (fd < 0) {
      // Deleted under us (spool over its limit): positionAtData() moves on next time.
      log()->warn("telemetry spool: cannot open {}: {}", path.filename().string(),
                  errnoText(errno));
      std::lock_guard lock(spool_mu_);
      if (reader.cursor == start && segments_.count(start.seq) != 0) {
        reader.cursor.offset = readable;  // unreadable: skip it
        spool_corrupt_.fetch_add(1);
      }
      return false;
    }
  }

  // Read up to batch_max_records whole frames from [start.offset, readable).
  uint64_t want = std::min<uint64_t>(readable - start.offset, kReadChunkBytes);
  batch.clear();
  uint64_t consumed = 0;
  bool corrupt = false;
  bool io_error = !preadAll(fd, start.offset, static_cast<size_t>(want), buffer);
  while (!io_error && batch.size() < options_.batch_max_records) {
    std::string_view data(buffer);
    if (consumed >= data.size()) break;
    std::string_view payload;
    size_t frame_bytes = 0;
    spool::FrameResult fr = spool::decodeFrame(data.substr(consumed), payload, frame_bytes);
    if (fr == spool::FrameResult::Truncated) {
      if (consumed == 0 && buffer.size() < readable - start.offset) {
        // One frame larger than the read window: read exactly up to the end of the data.
        uint64_t rest = std::min<uint64_t>(readable - start.offset,
                                           spool::kFrameHeaderBytes + spool::kMaxPayloadBytes);
        if (buffer.size() >= rest || !preadAll(fd, start.offset, rest, buffer)) {
          corrupt = true;
          break;
        }
        continue;
      }
      if (consumed == 0) corrupt = true;  // readable_bytes promised a whole frame
      break;
    }
    if (fr == spool::FrameResult::Corrupt) {
      corrupt = true;
      break;
    }
    consumed += frame_bytes;
    auto record = decodePayload(payload);
    if (record.ok()) {
      batch.push_back(std::move(record).value());
    } else {
      spool_corrupt_.fetch_add(1);
      log()->warn("telemetry spool: skipping unreadable record in segment {}: {}", start.seq,
                  record.status().toString());
    }
  }
  next = Cursor{start.seq, start.offset + consumed};
  if (io_error || corrupt) {
    spool_corrupt_.fetch_add(1);
    log()->error("telemetry spool: segment {} unreadable at offset {}; skipping the rest of it",
                 start.seq, start.offset + consumed);
    next.offset = readable;
    if (batch.empty()) {
      std::lock_guard lock(spool_mu_);
      reader.cursor.offset = readable;
      return false;
    }
  }
  return true;
}

void Pipeline::Impl::readerLoop(Reader& reader) {
  auto backoff = options_.retry_initial;
  int fd = -1;
  uint64_t fd_seq = 0;
  std::string buffer;
  std::vector<Record> batch;
  while (true) {
    Cursor start;
    uint64_t readable = 0;
    std::shared_ptr<const FreshBatch> fresh;
    size_t fresh_index = 0;
    {
      std::unique_lock lock(spool_mu_);
      while (!positionAtData(reader)) {
        collectGarbage();
        if (readers_stopping_) {
          lock.unlock();
          persistCursor(reader, true);
          if (fd >= 0) ::close(fd);
          return;
        }
        progress_cv_.notify_all();  // flush() may be waiting for this cursor to reach the end
        if (reader.cursor == reader.persisted) {
          data_cv_.wait(lock);
          continue;
        }
        // Caught up with a cursor not yet on disk: write it once it is due, unless data comes.
        auto due = reader.persisted_at + kCursorPersistInterval;
        if (Clock::now() < due) {
          data_cv_.wait_until(lock, due);
          continue;
        }
        lock.unlock();
        persistCursor(reader, true);
        lock.lock();
      }
      if (readers_stopping_ && Clock::now() >= drain_deadline_) {
        lock.unlock();
        persistCursor(reader, true);
        if (fd >= 0) ::close(fd);
        return;
      }
      start = reader.cursor;
      readable = segments_[start.seq].readable_bytes;
      fresh = findFresh(start, fresh_index);
    }

    // Records written this run that are still in memory go to the sink as they are; the rest
    // (a lagging sink, or what an earlier run spooled) is read back from the spool.
    std::span<const Record> records;
    Cursor next;
    if (fresh) {
      size_t count = std::min(options_.batch_max_records, fresh->records.size() - fresh_index);
      records = std::span<const Record>(fresh->records).subspan(fresh_index, count);
      next = Cursor{start.seq, fresh->ends[fresh_index + count - 1]};
    } else {
      if (!readFromSpool(reader, start, readable, fd, fd_seq, buffer, batch, next)) continue;
      records = batch;
    }

    Status status;
    if (!records.empty()) {
      try {
        status = reader.sink->deliver(records);
      } catch (const std::exception& e) {
        status = internalError(std::string("sink threw: ") + e.what());
      }
    }
    if (status.ok() || status.code() == Code::InvalidArgument) {
      if (!status.ok()) {
        reader.dropped_permanent.fetch_add(records.size());
        log()->error("telemetry: sink {} rejected {} record(s) permanently: {}", reader.name,
                     records.size(), status.toString());
      } else {
        reader.delivered.fetch_add(records.size());
      }
      backoff = options_.retry_initial;
      {
        std::lock_guard lock(spool_mu_);
        if (reader.cursor == start) reader.cursor = next;
        collectGarbage();
      }
      fresh.reset();
      persistCursor(reader, false);
      progress_cv_.notify_all();
      continue;
    }

    reader.failures.fetch_add(1);
    fresh.reset();
    std::unique_lock lock(spool_mu_);
    reader.last_error = status.toString();
    log()->warn("telemetry: sink {} failed to take {} record(s), retrying in {} ms: {}",
                reader.name, records.size(), backoff.count(), status.toString());
    auto wake = Clock::now() + backoff;
    if (readers_stopping_) wake = std::min(wake, drain_deadline_);
    bool was_stopping = readers_stopping_;
    data_cv_.wait_until(lock, wake, [&] {
      return (readers_stopping_ && !was_stopping) ||
             (readers_stopping_ && Clock::now() >= drain_deadline_);
    });
    backoff = std::min(options_.retry_max, backoff * 2);
  }
}

bool Pipeline::Impl::flush(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  // Each shard is first in, first out: once as many records of a shard were processed as had
  // been pushed to it at this point, all of those were.
  PerShard targets{};
  for (size_t index = 0; index < kQueueShards; ++index) {
    std::lock_guard shard_lock(shards_[index].mu);
    targets[index] = shards_[index].pushed;
  }
  std::unique_lock lock(spool_mu_);
  bool processed = progress_cv_.wait_until(lock, deadline, [&] {
    for (size_t index = 0; index < kQueueShards; ++index) {
      if (processed_[index] < targets[index]) return false;
    }
    return true;
  });
  if (!processed) return false;
  Cursor target{active_seq_, segments_[active_seq_].readable_bytes};
  return progress_cv_.wait_until(lock, deadline, [&] {
    for (const auto& reader : readers_) {
      if (!readerCaughtUp(*reader, target)) return false;
    }
    return true;
  });
}

Stats Pipeline::Impl::stats() const {
  Stats out;
  for (const QueueShard& shard : shards_) {
    std::lock_guard lock(shard.mu);
    out.emitted += shard.pushed;
  }
  out.queued = queued_.load();
  out.dropped_queue_full = dropped_queue_full_.load();
  out.spooled = spooled_.load();
  out.spool_dropped = spool_dropped_.load();
  out.spool_corrupt = spool_corrupt_.load();
  out.spool_write_errors = spool_write_errors_.load();
  std::lock_guard lock(spool_mu_);
  out.spool_bytes = spool_bytes_;
  for (const auto& reader : readers_) {
    SinkStats sink;
    sink.name = reader->name;
    sink.delivered = reader->delivered.load();
    sink.failures = reader->failures.load();
    sink.dropped_permanent = reader->dropped_permanent.load();
    sink.last_error = reader->last_error;
    for (auto it = segments_.lower_bound(reader->cursor.seq); it != segments_.end(); ++it) {
      const Segment& segment = it->second;
      if (it->first == reader->cursor.seq && segment.readable_bytes > 0) {
        uint64_t left =
            segment.readable_bytes - std::min(segment.readable_bytes, reader->cursor.offset);
        sink.pending += segment.records * left / segment.readable_bytes;
      } else {
        sink.pending += segment.records;
      }
    }
    out.sinks.push_back(std::move(sink));
  }
  return out;
}

void Pipeline::Impl::shutdown() {
  if (!started_) {
    if (active_fd_ >= 0) ::close(active_fd_);
    active_fd_ = -1;
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
    return;
  }
  started_ = false;
  {
    std::lock_guard lock(queue_mu_);
    stopping_.store(true, std::memory_order_release);
  }
  // An emit() that saw stopping_ false under its shard's lock has pushed once that lock is free.
  for (QueueShard& shard : shards_) {
    std::lock_guard lock(shard.mu);
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  {
    std::lock_guard lock(spool_mu_);
    readers_stopping_ = true;
    drain_deadline_ = Clock::now() + options_.shutdown_drain;
  }
  data_cv_.notify_all();
  for (auto& reader : readers_) {
    if (reader->thread.joinable()) reader->thread.join();
  }
  {
    std::lock_guard lock(spool_mu_);
    // The next start opens a new segment, so the active one is sealed now; it is removed when
    // empty or delivered everywhere.
    if (auto it = segments_.find(active_seq_); it != segments_.end()) it->second.active = false;
    collectGarbage();
    if (auto it = segments_.find(active_seq_); it != segments_.end() && it->second.records == 0) {
      dropSegment(active_seq_);
    }
  }
  if (active_fd_ >= 0) ::close(active_fd_);
  active_fd_ = -1;
  if (lock_fd_ >= 0) ::close(lock_fd_);
  lock_fd_ = -1;
}

Result<std::unique_ptr<Pipeline>> Pipeline::start(PipelineOptions options) {
  try {
    auto impl = std::make_unique<Impl>(std::move(options));
    CLRK_RETURN_IF_ERROR(impl->open());
    return std::unique_ptr<Pipeline>(new Pipeline(std::move(impl)));
  } catch (const std::exception& e) {
    return internalError(std::string("telemetry pipeline: ") + e.what());
  }
}

Pipeline::Pipeline(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pipeline::~Pipeline() = default;

bool Pipeline::emit(Record record) {
  try {
    return impl_->emit(std::move(record));
  } catch (const std::exception&) {
    return false;  // allocation failure: treat like a full queue
  }
}

bool Pipeline::flush(std::chrono::milliseconds timeout) { return impl_->flush(timeout); }

Stats Pipeline::stats() const { return impl_->stats(); }

}  // namespace clrk::telemetry
