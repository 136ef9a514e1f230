#include "clrk/telemetry/pipeline.h"

#include "clrk/base/ids.h"
#include "clrk/telemetry/spool_format.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <set>
#include <sys/stat.h>
#include <thread>

namespace clrk::telemetry {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// An in-process sink that can be told to fail.
class FakeSink : public Sink {
 public:
  explicit FakeSink(std::string name) : name_(std::move(name)) {}

  std::string name() const override { return name_; }

  Status deliver(std::span<const Record> batch) override {
    calls_.fetch_add(1);
    if (fail_.load()) return {fail_code_.load(), "collector down"};
    std::lock_guard lock(mu_);
    received_.insert(received_.end(), batch.begin(), batch.end());
    return {};
  }

  void setFailing(bool failing, Code code = Code::Unavailable) {
    fail_code_ = code;
    fail_ = failing;
  }
  std::vector<Record> received() const {
    std::lock_guard lock(mu_);
    return received_;
  }
  int calls() const { return calls_.load(); }

 private:
  std::string name_;
  std::atomic<bool> fail_{false};
  std::atomic<Code> fail_code_{Code::Unavailable};
  std::atomic<int> calls_{0};
  mutable std::mutex mu_;
  std::vector<Record> received_;
};

Record numbered(int64_t n) {
  Record record;
  record.name = "GET example.com /" + std::to_string(n);
  record.start = std::chrono::system_clock::now();
  record.end = record.start + 1ms;
  set(record, "test.seq", n);
  return record;
}

std::vector<int64_t> seqs(const std::vector<Record>& records) {
  std::vector<int64_t> out;
  for (const Record& record : records) out.push_back(findInt(record, "test.seq").value_or(-1));
  return out;
}

std::vector<int64_t> range(int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t n = from; n < to; ++n) out.push_back(n);
  return out;
}

std::vector<fs::path> segmentFiles(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().filename().string().rfind("seg-", 0) == 0) out.push_back(entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

uint64_t parseSeq(const fs::path& segment) {
  return std::stoull(segment.filename().string().substr(4, 20));
}

// Polls `done` for up to 10 s (the machine may be heavily loaded).
template <typename F>
bool waitFor(F done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return done();
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("clrk-pipeline-test-" + randomHex(6));
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  PipelineOptions options(std::vector<std::shared_ptr<Sink>> sinks) {
    PipelineOptions opts;
    opts.spool_dir = dir_ / "spool";
    opts.sinks = std::move(sinks);
    opts.retry_initial = 5ms;
    opts.retry_max = 20ms;
    opts.shutdown_drain = 100ms;
    opts.fsync = false;
    return opts;
  }

  fs::path dir_;
};

TEST_F(PipelineTest, DeliversEverythingInOrder) {
  auto sink = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
  for (int n = 0; n < 2000; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
  ASSERT_TRUE((*pipeline)->flush(10s));
  auto received = sink->received();
  EXPECT_EQ(seqs(received), range(0, 2000));
  // emit() assigned ids.
  EXPECT_NE(received[0].trace_id, TraceId{});
  EXPECT_NE(received[0].span_id, SpanId{});
  Stats stats = (*pipeline)->stats();
  EXPECT_EQ(stats.emitted, 2000u);
  EXPECT_EQ(stats.spooled, 2000u);
  ASSERT_EQ(stats.sinks.size(), 1u);
  EXPECT_EQ(stats.sinks[0].delivered, 2000u);
  EXPECT_EQ(stats.sinks[0].pending, 0u);
}

TEST_F(PipelineTest, FailingSinkIsRetriedAndLosesNothing) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true);
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok());
  for (int n = 0; n < 100; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
  EXPECT_FALSE((*pipeline)->flush(200ms));
  EXPECT_TRUE(sink->received().empty());
  Stats during = (*pipeline)->stats();
  EXPECT_GE(during.sinks[0].failures, 1u);
  EXPECT_EQ(during.sinks[0].pending, 100u);
  EXPECT_NE(during.sinks[0].last_error.find("collector down"), std::string::npos);
  sink->setFailing(false);
  ASSERT_TRUE((*pipeline)->flush(10s));
  EXPECT_EQ(seqs(sink->received()), range(0, 100));
}

TEST_F(PipelineTest, BackoffGrowsUpToTheCap) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true);
  PipelineOptions opts = options({sink});
  opts.retry_initial = 10ms;
  opts.retry_max = 80ms;
  auto pipeline = Pipeline::start(opts);
  ASSERT_TRUE(pipeline.ok());
  ASSERT_TRUE((*pipeline)->emit(numbered(0)));
  std::this_thread::sleep_for(600ms);
  // 10+20+40+80+80+... : about 9 attempts in 600 ms; without backoff it would be hundreds,
  // without the cap about 6.
  int calls = sink->calls();
  EXPECT_GE(calls, 4);
  EXPECT_LE(calls, 14);
}

TEST_F(PipelineTest, PermanentRejectionIsCountedAndSkipped) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true, Code::InvalidArgument);
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok());
  for (int n = 0; n < 10; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
  ASSERT_TRUE((*pipeline)->flush(5s));
  Stats stats = (*pipeline)->stats();
  EXPECT_EQ(stats.sinks[0].dropped_permanent, 10u);
  EXPECT_EQ(stats.sinks[0].delivered, 0u);
  sink->setFailing(false);
  ASSERT_TRUE((*pipeline)->emit(numbered(10)));
  ASSERT_TRUE((*pipeline)->flush(5s));
  EXPECT_EQ(seqs(sink->received()), std::vector<int64_t>{10});
}

TEST_F(PipelineTest, RestartDeliversWhatWasSpooledWhileTheSinkWasDown) {
  auto down = std::make_shared<FakeSink>("collector");
  auto up = std::make_shared<FakeSink>("local");
  down->setFailing(true);
  {
    auto pipeline = Pipeline::start(options({down, up}));
    ASSERT_TRUE(pipeline.ok());
    for (int n = 0; n < 300; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
    EXPECT_FALSE((*pipeline)->flush(100ms));
    ASSERT_TRUE(waitFor([&] { return up->received().size() == 300; }));
    // Destroyed with the collector still down.
  }
  EXPECT_EQ(up->received().size(), 300u);
  EXPECT_EQ(seqs(up->received()), range(0, 300));
  EXPECT_TRUE(down->received().empty());

  auto collector = std::make_shared<FakeSink>("collector");
  auto local = std::make_shared<FakeSink>("local");
  auto pipeline = Pipeline::start(options({collector, local}));
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
  for (int n = 300; n < 310; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
  ASSERT_TRUE((*pipeline)->flush(10s));
  // Everything reaches the collector; the sink that already had the records is not sent them
  // again (its cursor was saved).
  EXPECT_EQ(seqs(collector->received()), range(0, 310));
  EXPECT_EQ(seqs(local->received()), range(300, 310));
  // Delivered segments are deleted.
  pipeline->reset();
  EXPECT_TRUE(segmentFiles(dir_ / "spool").empty());
}

TEST_F(PipelineTest, TornTailIsSkippedAtRestart) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true);
  {
    auto pipeline = Pipeline::start(options({sink}));
    ASSERT_TRUE(pipeline.ok());
    for (int n = 0; n < 20; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
    EXPECT_FALSE((*pipeline)->flush(100ms));
  }
  auto files = segmentFiles(dir_ / "spool");
  ASSERT_EQ(files.size(), 1u);
  {
    // A torn write: a frame header promising 1000 bytes followed by 10.
    std::ofstream out(files[0], std::ios::binary | std::ios::app);
    std::string frame;
    spool::appendFrame(frame, std::string(1000, 'x'));
    out.write(frame.data(), 18);
  }
  auto fresh = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({fresh}));
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
  ASSERT_TRUE((*pipeline)->flush(5s));
  EXPECT_EQ(seqs(fresh->received()), range(0, 20));
  EXPECT_EQ((*pipeline)->stats().spool_corrupt, 1u);
}

TEST_F(PipelineTest, CorruptRecordEndsTheReadablePartOfItsSegment) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true);
  {
    auto pipeline = Pipeline::start(options({sink}));
    ASSERT_TRUE(pipeline.ok());
    for (int n = 0; n < 20; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(n)));
    EXPECT_FALSE((*pipeline)->flush(100ms));
  }
  auto files = segmentFiles(dir_ / "spool");
  ASSERT_EQ(files.size(), 1u);
  // Find the 11th frame and flip a byte of its payload.
  std::string content;
  {
    std::ifstream in(files[0], std::ios::binary);
    content.assign(std::istreambuf_iterator<char>(in), {});
  }
  size_t offset = 0;
  for (int n = 0; n < 10; ++n) {
    std::string_view payload;
    size_t frame_bytes = 0;
    ASSERT_EQ(spool::decodeFrame(std::string_view(content).substr(offset), payload, frame_bytes),
              spool::FrameResult::Ok);
    offset += frame_bytes;
  }
  content[offset + spool::kFrameHeaderBytes + 5] ^= 0x20;
  {
    std::ofstream out(files[0], std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
  }
  auto fresh = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({fresh}));
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
  ASSERT_TRUE((*pipeline)->flush(5s));
  EXPECT_EQ(seqs(fresh->received()), range(0, 10));
  EXPECT_EQ((*pipeline)->stats().spool_corrupt, 1u);
  // New records after the recovery still flow.
  ASSERT_TRUE((*pipeline)->emit(numbered(99)));
  ASSERT_TRUE((*pipeline)->flush(5s));
  EXPECT_EQ(seqs(fresh->received()).back(), 99);
}

TEST_F(PipelineTest, GarbageSpoolFilesNeverCrash) {
  fs::create_directories(dir_ / "spool");
  {
    std::ofstream out(dir_ / "spool" / "seg-00000000000000000001.log", std::ios::binary);
    out << std::string("\xff\xff\xff\xff garbage that is not a frame", 32);
  }
  {
    std::ofstream out(dir_ / "spool" / "cursor-fake");
    out << "not a cursor";
  }
  {
    std::ofstream out(dir_ / "spool" / "seg-00000000000000000002.log", std::ios::binary);
    std::string frame;
    spool::appendFrame(frame, "{not json");
    spool::appendFrame(frame, toJson(numbered(7)));
    out << frame;
  }
  auto sink = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
  ASSERT_TRUE((*pipeline)->flush(5s));
  EXPECT_EQ(seqs(sink->received()), std::vector<int64_t>{7});
  EXPECT_EQ((*pipeline)->stats().spool_corrupt, 2u);  // bad frame + bad JSON
}

TEST_F(PipelineTest, SpoolOverItsLimitDropsTheOldestSegment) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true);
  PipelineOptions opts = options({sink});
  opts.spool_max_bytes = 8192;
  opts.segment_max_bytes = 2048;
  auto pipeline = Pipeline::start(opts);
  ASSERT_TRUE(pipeline.ok());
  const int total = 300;
  for (int n = 0; n < total; ++n) {
    ASSERT_TRUE((*pipeline)->emit(numbered(n)));
    // One record per spool write, so segments fill one record at a time.
    for (int wait = 0; wait < 1000 && (*pipeline)->stats().spooled < uint64_t(n + 1); ++wait) {
      std::this_thread::sleep_for(1ms);
    }
  }
  Stats stats = (*pipeline)->stats();
  EXPECT_GT(stats.spool_dropped, 0u);
  EXPECT_LE(stats.spool_bytes, 8192u);
  sink->setFailing(false);
  ASSERT_TRUE((*pipeline)->flush(10s));
  auto received = seqs(sink->received());
  // The newest records survive, the oldest were dropped, and the counts add up.
  EXPECT_EQ(received.size() + stats.spool_dropped, static_cast<size_t>(total));
  ASSERT_FALSE(received.empty());
  EXPECT_EQ(received.back(), total - 1);
  EXPECT_GT(received.front(), 0);
}

TEST_F(PipelineTest, FullQueueRefusesAndCounts) {
  auto sink = std::make_shared<FakeSink>("fake");
  PipelineOptions opts = options({sink});
  opts.queue_capacity = 1;
  opts.fsync = true;  // keeps the writer slower than the emitting loop
  auto pipeline = Pipeline::start(opts);
  ASSERT_TRUE(pipeline.ok());
  int accepted = 0;
  for (int n = 0; n < 5000; ++n) accepted += (*pipeline)->emit(numbered(n)) ? 1 : 0;
  ASSERT_TRUE((*pipeline)->flush(10s));
  Stats stats = (*pipeline)->stats();
  EXPECT_GT(stats.dropped_queue_full, 0u);
  EXPECT_EQ(stats.emitted, static_cast<uint64_t>(accepted));
  EXPECT_EQ(stats.emitted + stats.dropped_queue_full, 5000u);
  EXPECT_EQ(sink->received().size(), static_cast<size_t>(accepted));
}

TEST_F(PipelineTest, SpoolIsPrivateAndExclusive) {
  auto sink = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok());
  ASSERT_TRUE((*pipeline)->emit(numbered(1)));
  ASSERT_TRUE((*pipeline)->flush(5s));
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "spool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const auto& entry : fs::directory_iterator(dir_ / "spool")) {
    ASSERT_EQ(::stat(entry.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << entry.path();
  }
  auto second = Pipeline::start(options({sink}));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::Unavailable);
}

TEST_F(PipelineTest, BadOptionsAreRejected) {
  auto sink = std::make_shared<FakeSink>("bad/name");
  EXPECT_EQ(Pipeline::start(options({sink})).status().code(), Code::InvalidArgument);
  auto a = std::make_shared<FakeSink>("same");
  auto b = std::make_shared<FakeSink>("same");
  EXPECT_EQ(Pipeline::start(options({a, b})).status().code(), Code::InvalidArgument);
  PipelineOptions no_dir;
  EXPECT_EQ(Pipeline::start(no_dir).status().code(), Code::InvalidArgument);
  EXPECT_EQ(Pipeline::start(options({nullptr})).status().code(), Code::InvalidArgument);
}

TEST_F(PipelineTest, ConcurrentEmittersAllArriveInTheirOwnOrder) {
  auto sink = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 500; ++n) (*pipeline)->emit(numbered(t * 1000 + n));
    });
  }
  for (auto& thread : threads) thread.join();
  ASSERT_TRUE((*pipeline)->flush(10s));
  auto got = seqs(sink->received());
  std::set<int64_t> unique(got.begin(), got.end());
  EXPECT_EQ(got.size(), 2000u);
  EXPECT_EQ(unique.size(), 2000u);
  // Each thread's records keep their order (the queue is sharded by emitting thread).
  std::vector<int64_t> last(4, -1);
  for (int64_t seq : got) {
    auto thread = static_cast<size_t>(seq / 1000);
    ASSERT_LT(thread, last.size());
    EXPECT_GT(seq, last[thread]);
    last[thread] = seq;
  }
  EXPECT_EQ((*pipeline)->stats().queued, 0u);
}

// A record only a JSON round trip would change: invalid UTF-8, a NaN, a repeated key.
Record oddRecord(int64_t n) {
  Record record = numbered(n);
  record.name += "\xff";
  record.status_message = "bad \xc0 byte";
  set(record, "clrk.nan", std::numeric_limits<double>::quiet_NaN());
  record.attributes.push_back(Attribute{"test.seq", AttributeValue{n}});
  record.attributes.push_back(Attribute{"clrk.raw", AttributeValue{std::string("\xfe")}});
  return record;
}

Record viaJson(const Record& record) {
  auto parsed = recordFromJson(toJson(record));
  EXPECT_TRUE(parsed.ok()) << parsed.status().toString();
  return parsed.ok() ? *parsed : Record{};
}

TEST_F(PipelineTest, SinksSeeTheSameRecordFromMemoryAndFromTheSpool) {
  auto live = std::make_shared<FakeSink>("live");
  auto down = std::make_shared<FakeSink>("down");
  down->setFailing(true);
  Record sent = oddRecord(1);
  sent.trace_id = newTraceId();
  sent.span_id = newSpanId();
  {
    auto pipeline = Pipeline::start(options({live, down}));
    ASSERT_TRUE(pipeline.ok());
    ASSERT_TRUE((*pipeline)->emit(sent));
    ASSERT_TRUE(waitFor([&] { return live->received().size() == 1; }));
  }
  // After a restart the record comes from the spool.
  auto later = std::make_shared<FakeSink>("down");
  auto pipeline = Pipeline::start(options({later}));
  ASSERT_TRUE(pipeline.ok());
  ASSERT_TRUE((*pipeline)->flush(5s));
  ASSERT_EQ(later->received().size(), 1u);
  Record expected = viaJson(sent);
  EXPECT_EQ(live->received()[0], expected);
  EXPECT_EQ(later->received()[0], expected);
  EXPECT_EQ(findInt(expected, "test.seq"), 1);
}

TEST_F(PipelineTest, SinkLaggingPastTheInMemoryRecordsReadsTheSpoolInOrder) {
  auto fast = std::make_shared<FakeSink>("fast");
  auto slow = std::make_shared<FakeSink>("slow");
  slow->setFailing(true);
  auto pipeline = Pipeline::start(options({fast, slow}));
  ASSERT_TRUE(pipeline.ok());
  // About 10 MiB of records: more than the pipeline keeps in memory for readers.
  const int total = 160;
  for (int n = 0; n < total; ++n) {
    Record record = numbered(n);
    set(record, "test.padding", std::string(64 * 1024, 'p'));
    ASSERT_TRUE((*pipeline)->emit(std::move(record)));
  }
  ASSERT_TRUE(waitFor([&] { return fast->received().size() == size_t{total}; }));
  slow->setFailing(false);
  ASSERT_TRUE((*pipeline)->flush(10s));
  EXPECT_EQ(seqs(fast->received()), range(0, total));
  EXPECT_EQ(seqs(slow->received()), range(0, total));
  EXPECT_EQ((*pipeline)->stats().spool_corrupt, 0u);
}

TEST_F(PipelineTest, SpoolInTheOlderJsonFormIsStillDelivered) {
  fs::create_directories(dir_ / "spool");
  {
    std::ofstream out(dir_ / "spool" / "seg-00000000000000000003.log", std::ios::binary);
    std::string frames;
    for (int n = 0; n < 5; ++n) spool::appendFrame(frames, toJson(numbered(n)));
    out << frames;
  }
  auto sink = std::make_shared<FakeSink>("fake");
  auto pipeline = Pipeline::start(options({sink}));
  ASSERT_TRUE(pipeline.ok()) << pipeline.status().toString();
  ASSERT_TRUE((*pipeline)->emit(numbered(5)));
  ASSERT_TRUE((*pipeline)->flush(5s));
  EXPECT_EQ(seqs(sink->received()), range(0, 6));
  EXPECT_EQ((*pipeline)->stats().spool_corrupt, 0u);
}

TEST_F(PipelineTest, SpoolHoldsBinaryFrames) {
  auto sink = std::make_shared<FakeSink>("fake");
  sink->setFailing(true);
  Record sent = numbered(4);
  {
    auto pipeline = Pipeline::start(options({sink}));
    ASSERT_TRUE(pipeline.ok());
    ASSERT_TRUE((*pipeline)->emit(sent));
    EXPECT_FALSE((*pipeline)->flush(100ms));
  }
  auto files = segmentFiles(dir_ / "spool");
  ASSERT_EQ(files.size(), 1u);
  std::ifstream in(files[0], std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string_view payload;
  size_t frame_bytes = 0;
  ASSERT_EQ(spool::decodeFrame(content, payload, frame_bytes), spool::FrameResult::Ok);
  EXPECT_EQ(frame_bytes, content.size());
  auto record = recordFromBinary(payload);
  ASSERT_TRUE(record.ok()) << record.status().toString();
  EXPECT_EQ(record->name, sent.name);
  EXPECT_EQ(findInt(*record, "test.seq"), 4);
}

TEST_F(PipelineTest, CursorReachesTheDiskWhileThePipelineRuns) {
  auto sink = std::make_shared<FakeSink>("fake");
  PipelineOptions opts = options({sink});
  opts.fsync = true;  // group commit and cursor syncs as in production
  auto pipeline = Pipeline::start(opts);
  ASSERT_TRUE(pipeline.ok());
  for (int round = 0; round < 3; ++round) {
    for (int n = 0; n < 50; ++n) ASSERT_TRUE((*pipeline)->emit(numbered(round * 50 + n)));
    ASSERT_TRUE((*pipeline)->flush(10s));
  }
  EXPECT_EQ(seqs(sink->received()), range(0, 150));
  auto files = segmentFiles(dir_ / "spool");
  ASSERT_EQ(files.size(), 1u);
  std::string expected =
      std::to_string(parseSeq(files[0])) + " " + std::to_string(fs::file_size(files[0])) + "\n";
  // Without a restart or more records, the cursor of the caught-up sink is written anyway.
  EXPECT_TRUE(waitFor([&] {
    std::ifstream in(dir_ / "spool" / "cursor-fake");
    std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return content == expected;
  }));
}

}  // namespace
}  // namespace clrk::telemetry
