#include "clrk/telemetry/local_store.h"

#include "clrk/base/ids.h"
#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/pipeline.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

namespace clrk::telemetry {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const auto kBase = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));

Record callRecord(int seq, std::string ns, std::string agent, std::string execution,
                  std::string request) {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.start = kBase + std::chrono::seconds(seq);
  record.end = record.start + 100ms;
  set(record, attr::kClrkNamespace, std::move(ns));
  set(record, attr::kClrkAgent, std::move(agent));
  set(record, attr::kClrkExecutionId, std::move(execution));
  set(record, attr::kClrkRequestId, std::move(request));
  set(record, "test.seq", int64_t{seq});
  return record;
}

std::vector<int64_t> seqs(const std::vector<Record>& records) {
  std::vector<int64_t> out;
  for (const Record& record : records) out.push_back(findInt(record, "test.seq").value_or(-1));
  return out;
}

class LocalStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("clrk-store-test-" + randomHex(6));
    fs::create_directories(dir_);
    auto store = LocalStore::open(dir_ / "traces.db");
    ASSERT_TRUE(store.ok()) << store.status().toString();
    store_ = std::move(store).value();
    std::vector<Record> records{
        callRecord(1, "team-a", "writer", "exec-1", "req-1"),
        callRecord(2, "team-a", "writer", "exec-1", "req-1"),
        callRecord(3, "team-a", "writer", "exec-2", "req-2"),
        callRecord(4, "team-a", "reviewer", "exec-3", "req-2"),
        callRecord(5, "team-b", "writer", "exec-4", "req-3"),
    };
    ASSERT_TRUE(store_->deliver(records).ok());
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  fs::path dir_;
  std::unique_ptr<LocalStore> store_;
};

TEST_F(LocalStoreTest, QueriesFilterAndReturnNewestFirst) {
  auto all = store_->query(Query{});
  ASSERT_TRUE(all.ok()) << all.status().toString();
  EXPECT_EQ(seqs(*all), (std::vector<int64_t>{5, 4, 3, 2, 1}));

  Query by_execution;
  by_execution.execution_id = "exec-1";
  EXPECT_EQ(seqs(*store_->query(by_execution)), (std::vector<int64_t>{2, 1}));

  Query by_agent;
  by_agent.ns = "team-a";
  by_agent.agent = "writer";
  EXPECT_EQ(seqs(*store_->query(by_agent)), (std::vector<int64_t>{3, 2, 1}));

  Query by_request;
  by_request.request_id = "req-2";
  EXPECT_EQ(seqs(*store_->query(by_request)), (std::vector<int64_t>{4, 3}));

  Query since;
  since.since = kBase + std::chrono::seconds(3);
  EXPECT_EQ(seqs(*store_->query(since)), (std::vector<int64_t>{5, 4, 3}));

  Query limited;
  limited.limit = 2;
  EXPECT_EQ(seqs(*store_->query(limited)), (std::vector<int64_t>{5, 4}));

  Query none;
  none.agent = "nobody";
  EXPECT_TRUE(store_->query(none)->empty());

  // A value that looks like SQL is only ever a bound parameter.
  Query injection;
  injection.agent = "x' OR '1'='1";
  EXPECT_TRUE(store_->query(injection)->empty());
}

TEST_F(LocalStoreTest, RecordsRoundTripWhole) {
  Record record = callRecord(9, "team-c", "a", "exec-9", "req-9");
  record.status_code = 2;
  record.status_message = "denied";
  set(record, attr::kClrkTtfbMs, 1.25);
  set(record, attr::kClrkStreaming, false);
  ASSERT_TRUE(store_->deliver(std::vector<Record>{record}).ok());
  Query query;
  query.execution_id = "exec-9";
  auto found = store_->query(query);
  ASSERT_TRUE(found.ok());
  ASSERT_EQ(found->size(), 1u);
  EXPECT_EQ((*found)[0], record);
}

TEST_F(LocalStoreTest, RedeliveryReplacesInsteadOfDuplicating) {
  Record record = callRecord(7, "team-a", "writer", "exec-7", "req-7");
  ASSERT_TRUE(store_->deliver(std::vector<Record>{record, record}).ok());
  ASSERT_TRUE(store_->deliver(std::vector<Record>{record}).ok());
  Query query;
  query.execution_id = "exec-7";
  EXPECT_EQ(store_->query(query)->size(), 1u);
}

TEST_F(LocalStoreTest, PruneDeletesOldRecords) {
  auto pruned = store_->pruneBefore(kBase + std::chrono::seconds(3));
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 2u);
  EXPECT_EQ(seqs(*store_->query(Query{})), (std::vector<int64_t>{5, 4, 3}));
}

TEST_F(LocalStoreTest, DatabaseFilesArePrivateAndReopenable) {
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "traces.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  if (::stat((dir_ / "traces.db-wal").c_str(), &st) == 0) {
    EXPECT_EQ(st.st_mode & 0777, 0600u);
  }
  store_.reset();
  auto reopened = LocalStore::open(dir_ / "traces.db");
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->query(Query{})->size(), 5u);
}

TEST_F(LocalStoreTest, OpenFailsClearlyForAMissingDirectory) {
  auto store = LocalStore::open(dir_ / "missing" / "traces.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.status().message().find("missing"), std::string::npos);
}

TEST_F(LocalStoreTest, WorksAsAPipelineSink) {
  auto store = LocalStore::open(dir_ / "pipeline.db");
  ASSERT_TRUE(store.ok());
  std::shared_ptr<LocalStore> shared(std::move(store).value());
  PipelineOptions options;
  options.spool_dir = dir_ / "spool";
  options.sinks = {shared};
  options.fsync = false;
  auto pipeline = Pipeline::start(options);
  ASSERT_TRUE(pipeline.ok());
  for (int n = 0; n < 50; ++n) {
    ASSERT_TRUE((*pipeline)->emit(callRecord(n, "ns", "agent", "exec-p", "req")));
  }
  ASSERT_TRUE((*pipeline)->flush(10s));
  Query query;
  query.execution_id = "exec-p";
  query.limit = 1000;
  auto found = shared->query(query);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->size(), 50u);
  EXPECT_EQ(findInt(found->front(), "test.seq"), 49);
}

}  // namespace
}  // namespace clrk::telemetry
