#include "clrk/telemetry/span_exporter.h"

#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/otlp_receiver.h"
#include "clrk/telemetry/trace_spans.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

namespace clrk::telemetry {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr auto kDeadline = 30s;  // a failsafe for waits that normally end at once

// The collector's side: keeps what the receiver decoded.
class CollectingSink : public Sink {
 public:
  std::string name() const override { return "collected"; }
  Status deliver(std::span<const Record> batch) override {
    std::lock_guard lock(mutex);
    records.insert(records.end(), batch.begin(), batch.end());
    return {};
  }
  std::vector<Record> take() {
    std::lock_guard lock(mutex);
    return records;
  }
  std::mutex mutex;
  std::vector<Record> records;
};

// Fails the first `failures` deliveries with `code`, then accepts; can hold deliveries.
class ScriptedSink : public Sink {
 public:
  explicit ScriptedSink(int failures = 0, Code code = Code::Unavailable)
      : failures_(failures), code_(code) {}
  std::string name() const override { return "scripted"; }
  Status deliver(std::span<const Record> batch) override {
    std::unique_lock lock(mutex_);
    ++calls;
    cv_.wait(lock, [&] { return !held_; });
    if (failures_ > 0) {
      --failures_;
      return Status(code_, "collector down");
    }
    for (const Record& record : batch) names.push_back(record.name);
    return {};
  }
  void hold(bool held) {
    std::lock_guard lock(mutex_);
    held_ = held;
    cv_.notify_all();
  }
  std::atomic<int> calls{0};
  std::vector<std::string> names;  // read after the exporter stopped

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool held_ = false;
  int failures_;
  Code code_;
};

Record named(const std::string& name) {
  Record record;
  record.name = name;
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  return record;
}

// One invocation's Invocation object (terminal) and two egress calls of its execution.
nlohmann::json invocationObject(const std::string& name, const std::string& phase) {
  return {
      {"metadata",
       {{"name", name}, {"namespace", "default"}, {"creationTimestamp", "2027-01-15T08:00:00Z"}}},
      {"spec",
       {{"parentRef", {{"kind", "TaskAgent"}, {"name", "openai-bot"}}},
        {"trigger", {{"type", "CLI"}}},
        {"requestId", "req-" + name}}},
      {"status",
       {{"phase", phase},
        {"worker", "dev-1"},
        {"executionId", name},
        {"exitCode", phase == "Succeeded" ? 0 : 1},
        {"startTime", "2027-01-15T08:00:00.200000Z"},
        {"completionTime", "2027-01-15T08:00:03.000000Z"}}}};
}

Record egressCall(const std::string& execution, int index) {
  Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = newTraceId();
  record.span_id = newSpanId();
  record.start = std::chrono::system_clock::time_point(1'800'000'000s) + index * 1s;
  record.end = record.start + 300ms;
  set(record, attr::kHttpRequestMethod, std::string("POST"));
  set(record, attr::kUrlFull, std::string("https://api.openai.com/v1/chat/completions"));
  set(record, attr::kHttpResponseStatusCode, int64_t{200});
  set(record, attr::kGenAiSystem, std::string("openai"));
  set(record, attr::kGenAiOperationName, std::string("chat"));
  set(record, attr::kGenAiRequestModel, std::string("gpt-4o-mini"));
  set(record, attr::kGenAiUsageInputTokens, int64_t{10 + index});
  set(record, attr::kClrkExecutionId, execution);
  return record;
}

// The controller-manager's wiring, against a loopback collector (an OtlpReceiver): egress
// records pass through an EgressSpanTap in front of the local store, terminal Invocations become
// invocation spans, and the collector receives one trace per invocation.
void exportsOneTracePerInvocation(const std::string& protocol) {
  CollectingSink collected;
  OtlpReceiverOptions receiver_options;
  receiver_options.token = "collector-token";
  auto receiver = OtlpReceiver::create(receiver_options, collected);
  ASSERT_TRUE(receiver.ok()) << receiver.status().toString();
  ASSERT_TRUE((*receiver)->start().ok());

  auto options = tracesExporterOptions(
      "http://127.0.0.1:" + std::to_string((*receiver)->port()) + "/v1/traces",
      {"authorization=Bearer collector-token"}, protocol, [](const char*) { return nullptr; });
  ASSERT_TRUE(options.ok()) << options.status().toString();
  ASSERT_TRUE(options->has_value());
  auto otlp = OtlpHttpExporter::create(**options);
  ASSERT_TRUE(otlp.ok()) << otlp.status().toString();
  auto exporter = SpanExporter::start(std::move(*otlp), {.max_batch = 4, .batch_delay = 20ms});

  CollectingSink store;  // stands in for the LocalStore
  EgressSpanTap tap(store, *exporter);
  const std::vector<std::string> runs = {"openai-bot-aaaaaaaaaa", "openai-bot-bbbbbbbbbb"};
  for (const std::string& run : runs) {
    std::vector<Record> batch = {egressCall(run, 0), egressCall(run, 1), egressCall(run, 2)};
    ASSERT_TRUE(tap.deliver(batch).ok());
  }
  EXPECT_EQ(store.take().size(), 6u);  // the store still gets every record
  exporter->emit(invocationSpans(*invocationSpanInput(invocationObject(runs[0], "Succeeded"))));
  exporter->emit(invocationSpans(*invocationSpanInput(invocationObject(runs[1], "Failed"))));
  ASSERT_TRUE(exporter->flush(kDeadline));
  SpanExporterStats stats = exporter->stats();
  EXPECT_EQ(stats.exported, 10u);
  EXPECT_EQ(stats.dropped_overflow + stats.dropped_failed, 0u);
  exporter.reset();
  (*receiver)->stop();

  std::map<TraceId, std::vector<Record>> traces;
  for (Record& span : collected.take()) traces[span.trace_id].push_back(std::move(span));
  ASSERT_EQ(traces.size(), 2u);
  for (const std::string& run : runs) {
    SCOPED_TRACE(run);
    ASSERT_TRUE(traces.contains(traceIdFor(run)));
    const std::vector<Record>& spans = traces[traceIdFor(run)];
    ASSERT_EQ(spans.size(), 5u);
    const Record* root = nullptr;
    const Record* execution = nullptr;
    std::vector<const Record*> calls;
    for (const Record& span : spans) {
      if (span.kind == SpanKind::Server) root = &span;
      if (span.kind == SpanKind::Internal) execution = &span;
      if (span.kind == SpanKind::Client) calls.push_back(&span);
    }
    ASSERT_NE(root, nullptr);
    ASSERT_NE(execution, nullptr);
    ASSERT_EQ(calls.size(), 3u);
    EXPECT_EQ(root->name, "invoke openai-bot");
    EXPECT_EQ(root->parent_span_id, SpanId{});
    EXPECT_EQ(*findString(*root, attr::kClrkRequestId), "req-" + run);
    EXPECT_EQ(*findString(*root, "service.name"), "clrk");  // the resource, copied on
    EXPECT_EQ(execution->parent_span_id, root->span_id);
    EXPECT_EQ(*findString(*execution, attr::kClrkWorker), "dev-1");
    for (const Record* call : calls) {
      EXPECT_EQ(call->parent_span_id, execution->span_id);
      EXPECT_EQ(call->name, "chat gpt-4o-mini");
      EXPECT_EQ(*findString(*call, attr::kGenAiRequestModel), "gpt-4o-mini");
      EXPECT_TRUE(findInt(*call, attr::kGenAiUsageInputTokens).has_value());
      EXPECT_EQ(*findString(*call, attr::kUrlFull), "https://api.openai.com/v1/chat/completions");
    }
  }
  EXPECT_EQ(traces[traceIdFor(runs[0])][0].status_code, 0);
  for (const Record& span : traces[traceIdFor(runs[1])]) {
    if (span.kind != SpanKind::Client) {
      EXPECT_EQ(span.status_code, static_cast<int>(StatusCode::Error)) << span.name;
    }
  }
}

TEST(SpanExporter, ExportsOneTracePerInvocationAsProtobuf) {
  exportsOneTracePerInvocation("http/protobuf");
}

TEST(SpanExporter, ExportsOneTracePerInvocationAsJson) {
  exportsOneTracePerInvocation("http/json");
}

TEST(SpanExporter, DropsTheOldestWhenTheCollectorIsSlow) {
  auto owned = std::make_unique<ScriptedSink>();
  ScriptedSink& sink = *owned;
  sink.hold(true);
  auto exporter =
      SpanExporter::start(std::move(owned), {.max_queue = 3, .max_batch = 1, .batch_delay = 1ms});
  exporter->emit(named("first"));  // taken by the sending thread, then held in deliver()
  for (int spins = 0; sink.calls == 0 && spins < 5000; ++spins) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(sink.calls, 1);
  for (int index = 0; index < 10; ++index) exporter->emit(named("span-" + std::to_string(index)));
  SpanExporterStats stats = exporter->stats();  // emit() never waited for the held sink
  EXPECT_EQ(stats.queued, 3u);
  EXPECT_EQ(stats.dropped_overflow, 7u);
  sink.hold(false);
  ASSERT_TRUE(exporter->flush(kDeadline));
  exporter->stop();
  EXPECT_THAT(sink.names, ::testing::ElementsAre("first", "span-7", "span-8", "span-9"));
  EXPECT_EQ(exporter->stats().exported, 4u);
}

TEST(SpanExporter, RetriesWithBackoffThenDelivers) {
  auto owned = std::make_unique<ScriptedSink>(2);
  ScriptedSink& sink = *owned;
  auto exporter =
      SpanExporter::start(std::move(owned), {.batch_delay = 1ms, .initial_backoff = 5ms});
  exporter->emit(named("a"));
  ASSERT_TRUE(exporter->flush(kDeadline));
  SpanExporterStats stats = exporter->stats();
  EXPECT_EQ(stats.exported, 1u);
  EXPECT_EQ(stats.retries, 2u);
  EXPECT_EQ(sink.calls, 3);
}

TEST(SpanExporter, GivesUpOnRejectedAndExhaustedBatches) {
  auto rejecting = SpanExporter::start(std::make_unique<ScriptedSink>(1, Code::InvalidArgument),
                                       {.batch_delay = 1ms, .initial_backoff = 1ms});
  rejecting->emit(named("bad"));
  ASSERT_TRUE(rejecting->flush(kDeadline));
  EXPECT_EQ(rejecting->stats().dropped_failed, 1u);
  EXPECT_EQ(rejecting->stats().retries, 0u);

  auto down = SpanExporter::start(
      std::make_unique<ScriptedSink>(100),
      {.batch_delay = 1ms, .initial_backoff = 1ms, .max_backoff = 2ms, .max_attempts = 3});
  down->emit({named("x"), named("y")});
  ASSERT_TRUE(down->flush(kDeadline));
  EXPECT_EQ(down->stats().dropped_failed, 2u);
  EXPECT_EQ(down->stats().retries, 2u);
}

TEST(SpanExporter, StopSendsWhatIsQueued) {
  auto owned = std::make_unique<ScriptedSink>();
  ScriptedSink& sink = *owned;
  auto exporter = SpanExporter::start(std::move(owned), {.batch_delay = 1h});
  exporter->emit({named("a"), named("b")});
  exporter->stop();
  EXPECT_THAT(sink.names, ::testing::ElementsAre("a", "b"));
}

TEST(TracesExporterOptions, FlagThenEnvironmentLikeTheOtelSdks) {
  std::map<std::string, std::string> env;
  auto getenv = [&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto none = tracesExporterOptions("", {}, "", getenv);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());  // tracing off

  env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "https://collector.example:4318/";
  env["OTEL_EXPORTER_OTLP_HEADERS"] = "x-team=agents, authorization=Bearer%20abc";
  auto base = tracesExporterOptions("", {}, "", getenv);
  ASSERT_TRUE(base.ok()) << base.status().toString();
  EXPECT_EQ((*base)->endpoint, "https://collector.example:4318");
  EXPECT_EQ((*base)->encoding, OtlpEncoding::Protobuf);
  EXPECT_EQ((*base)->signal, OtlpSignal::Traces);
  using Headers = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ((*base)->headers, (Headers{{"x-team", "agents"}, {"authorization", "Bearer abc"}}));

  env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://traces.example:4318/v1/traces";
  env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = "http/json";
  auto traces = tracesExporterOptions("", {}, "", getenv);
  ASSERT_TRUE(traces.ok()) << traces.status().toString();
  EXPECT_EQ((*traces)->endpoint, "http://traces.example:4318");
  EXPECT_EQ((*traces)->encoding, OtlpEncoding::Json);

  auto flag = tracesExporterOptions("http://127.0.0.1:4318", {"authorization=Bearer t=1"},
                                    "http/protobuf", getenv);
  ASSERT_TRUE(flag.ok()) << flag.status().toString();
  EXPECT_EQ((*flag)->endpoint, "http://127.0.0.1:4318");
  EXPECT_EQ((*flag)->encoding, OtlpEncoding::Protobuf);
  EXPECT_EQ((*flag)->headers, (Headers{{"authorization", "Bearer t=1"}}));

  auto bad_url = tracesExporterOptions("ftp://x", {}, "", getenv);
  ASSERT_FALSE(bad_url.ok());
  EXPECT_THAT(bad_url.status().message(), HasSubstr("--otlp-traces-endpoint"));
  auto bad_header = tracesExporterOptions("http://x:1", {"novalue"}, "", getenv);
  ASSERT_FALSE(bad_header.ok());
  EXPECT_THAT(bad_header.status().message(), HasSubstr("--otlp-traces-header"));
  auto bad_protocol = tracesExporterOptions("http://x:1", {}, "grpc", getenv);
  ASSERT_FALSE(bad_protocol.ok());
  EXPECT_THAT(bad_protocol.status().message(), HasSubstr("grpc"));
}

}  // namespace
}  // namespace clrk::telemetry
