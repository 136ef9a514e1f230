// The real clrk-controller-manager exporting invocation traces to a user's collector: a loopback
// OTLP collector (an OtlpReceiver) in this test, the controller-manager started with
// --otlp-traces-endpoint pointing at it. Egress records arrive at the controller-manager's intake
// the way workers send them; Invocations reach terminal phases through the API and the
// controllers (a Dispatched one whose worker is gone fails as WorkerLost). The collector must get
// one trace per invocation: a SERVER root, an INTERNAL execution child and the egress CLIENT spans
// under the execution span. No worker or root needed.
#include "harness.h"

#include "clrk/api/builtin_types.h"
#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/base/time.h"
#include "clrk/kube/client.h"
#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/otlp_exporter.h"
#include "clrk/telemetry/otlp_receiver.h"
#include "clrk/telemetry/trace_spans.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <signal.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace clrk::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Json = kube::Json;

class CollectingSink : public telemetry::Sink {
 public:
  std::string name() const override { return "collector"; }
  Status deliver(std::span<const telemetry::Record> batch) override {
    std::lock_guard lock(mutex_);
    records_.insert(records_.end(), batch.begin(), batch.end());
    return {};
  }
  std::vector<telemetry::Record> records() {
    std::lock_guard lock(mutex_);
    return records_;
  }

 private:
  std::mutex mutex_;
  std::vector<telemetry::Record> records_;
};

std::string trimmed(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  return text;
}

// Waits for <state>/<file> and returns its first line.
Result<std::string> waitForFile(const fs::path& path) {
  for (int attempt = 0; attempt < 600; ++attempt) {
    if (auto text = readFile(path); text.ok() && !trimmed(*text).empty()) return trimmed(*text);
    std::this_thread::sleep_for(50ms);
  }
  return Status(Code::Unavailable, path.string() + " did not appear");
}

class TracesExportTest : public ::testing::Test {
 public:
  void SetUp() override {
    state_dir_ = fs::temp_directory_path() / ("clrk-traces-" + randomHex(6));
    fs::create_directories(state_dir_);
    telemetry::OtlpReceiverOptions options;
    options.token = "collector-token";
    auto collector = telemetry::OtlpReceiver::create(options, collected_);
    ASSERT_TRUE(collector.ok()) << collector.status().toString();
    collector_ = std::move(collector).value();
    ASSERT_TRUE(collector_->start().ok());
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (collector_) collector_->stop();
    if (!HasFailure()) {
      std::error_code ec;
      fs::remove_all(state_dir_, ec);
    } else {
      std::cerr << "controller-manager log: " << (state_dir_ / "controller-manager.log") << "\n";
    }
  }

  void startControllerManager(const std::string& protocol) {
    std::string binary = binaryPath("clrk-controller-manager");
    std::string state_arg = state_dir_.string();
    std::string endpoint = "http://127.0.0.1:" + std::to_string(collector_->port()) + "/v1/traces";
    std::string log = (state_dir_ / "controller-manager.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      FILE* out = std::freopen(log.c_str(), "a", stdout);
      FILE* err = std::freopen(log.c_str(), "a", stderr);
      (void)out;
      (void)err;
      ::execl(binary.c_str(), binary.c_str(), "--state-dir", state_arg.c_str(), "--in-memory",
              "--otlp-traces-endpoint", endpoint.c_str(), "--otlp-traces-header",
              "authorization=Bearer collector-token", "--otlp-traces-protocol", protocol.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ASSERT_GT(pid_, 0);
  }

  Result<kube::ClientPtr> connect() {
    CLRK_ASSIGN_OR_RETURN(std::string trigger, waitForFile(state_dir_ / "trigger.url"));
    (void)trigger;  // written once the controllers run
    kube::RestConfig config;
    CLRK_ASSIGN_OR_RETURN(config.server, waitForFile(state_dir_ / "apiserver.url"));
    CLRK_ASSIGN_OR_RETURN(config.ca_pem, readFile(state_dir_ / "pki" / "ca.crt"));
    CLRK_ASSIGN_OR_RETURN(config.token, waitForFile(state_dir_ / "token"));
    return kube::Client::create(config);
  }

  // Sends egress records to the controller-manager's intake as a worker does (OTLP logs).
  Status sendEgressRecords(const std::vector<telemetry::Record>& records) {
    CLRK_ASSIGN_OR_RETURN(std::string intake, waitForFile(state_dir_ / "otlp.url"));
    CLRK_ASSIGN_OR_RETURN(std::string token, waitForFile(state_dir_ / "otlp.token"));
    telemetry::OtlpExporterOptions options;
    options.endpoint = intake;
    options.signal = telemetry::OtlpSignal::Logs;
    options.headers = {{"authorization", "Bearer " + token}};
    options.resource_attributes = {{std::string(telemetry::attr::kClrkWorker), "dev-1"}};
    CLRK_ASSIGN_OR_RETURN(auto exporter, telemetry::OtlpHttpExporter::create(options));
    return exporter->deliver(records);
  }

  // Spans by trace, once `count` spans arrived (or after a deadline).
  std::map<telemetry::TraceId, std::vector<telemetry::Record>> waitForSpans(size_t count) {
    for (int attempt = 0; attempt < 400 && collected_.records().size() < count; ++attempt) {
      std::this_thread::sleep_for(50ms);
    }
    std::map<telemetry::TraceId, std::vector<telemetry::Record>> traces;
    for (auto& span : collected_.records()) traces[span.trace_id].push_back(std::move(span));
    return traces;
  }

  fs::path state_dir_;
  CollectingSink collected_;
  std::unique_ptr<telemetry::OtlpReceiver> collector_;
  pid_t pid_ = -1;
};

telemetry::Record egressCall(const std::string& execution, const std::string& model) {
  telemetry::Record record;
  record.name = "POST api.openai.com /v1/chat/completions";
  record.trace_id = telemetry::newTraceId();
  record.span_id = telemetry::newSpanId();
  record.start = std::chrono::system_clock::now();
  record.end = record.start + 120ms;
  namespace attr = telemetry::attr;
  telemetry::set(record, attr::kHttpRequestMethod, std::string("POST"));
  telemetry::set(record, attr::kUrlFull, std::string("https://api.openai.com/v1/chat/completions"));
  telemetry::set(record, attr::kHttpResponseStatusCode, int64_t{200});
  telemetry::set(record, attr::kGenAiSystem, std::string("openai"));
  telemetry::set(record, attr::kGenAiOperationName, std::string("chat"));
  telemetry::set(record, attr::kGenAiRequestModel, model);
  telemetry::set(record, attr::kGenAiUsageInputTokens, int64_t{21});
  telemetry::set(record, attr::kClrkDecision, std::string("allow"));
  telemetry::set(record, attr::kClrkNamespace, std::string("default"));
  telemetry::set(record, attr::kClrkAgent, std::string("hello"));
  telemetry::set(record, attr::kClrkExecutionId, execution);
  return record;
}

Json invocation(const std::string& name) {
  return {
      {"apiVersion", "clrk.apoxy.dev/v1alpha1"},
      {"kind", "Invocation"},
      {"metadata",
       {{"name", name}, {"namespace", "default"}, {"labels", {{"clrk.apoxy.dev/agent", "hello"}}}}},
      // Not CLI: the controllers leave a Pending HTTP Invocation alone.
      {"spec",
       {{"parentRef", {{"kind", "TaskAgent"}, {"name", "hello"}}},
        {"trigger", {{"type", "HTTP"}, {"source", "/v1/namespaces/default/taskagents/hello"}}},
        {"requestId", "req-" + name}}}};
}

Result<Json> setStatus(kube::Client& client, Json object, const Json& status) {
  object["status"] = status;
  auto written = client.updateStatus(api::clrkType("Invocation"), object);
  if (written.ok()) return written;
  return client.update(api::clrkType("Invocation"), object);
}

void exportsInvocationTraces(TracesExportTest& test, const std::string& protocol) {
  test.startControllerManager(protocol);
  auto client = test.connect();
  ASSERT_TRUE(client.ok()) << client.status().toString();
  const auto& type = api::clrkType("Invocation");

  // Invocation 1: dispatched to a worker that is gone; the controllers fail it (WorkerLost).
  const std::string lost = "hello-" + randomHex(5);
  auto created = (*client)->create(type, "default", invocation(lost));
  ASSERT_TRUE(created.ok()) << created.status().toString();
  ASSERT_TRUE(
      test.sendEgressRecords({egressCall(lost, "gpt-4o-mini"), egressCall(lost, "gpt-4o")}).ok());
  auto dispatched =
      setStatus(**client, *created,
                {{"phase", "Dispatched"},
                 {"worker", "gone-worker"},
                 {"executionId", lost},
                 {"startTime", formatRfc3339Micro(std::chrono::system_clock::now())}});
  ASSERT_TRUE(dispatched.ok()) << dispatched.status().toString();

  // Invocation 2: rejected before any placement: a root span only.
  const std::string rejected = "hello-" + randomHex(5);
  created = (*client)->create(type, "default", invocation(rejected));
  ASSERT_TRUE(created.ok()) << created.status().toString();
  auto written =
      setStatus(**client, *created,
                {{"phase", "Rejected"},
                 {"message", "no worker has a free slot"},
                 {"completionTime", formatRfc3339Micro(std::chrono::system_clock::now())},
                 {"conditions",
                  {{{"type", "Completed"},
                    {"status", "False"},
                    {"reason", "NoCapacity"},
                    {"lastTransitionTime", formatRfc3339(std::chrono::system_clock::now())}}}}});
  ASSERT_TRUE(written.ok()) << written.status().toString();

  auto traces = test.waitForSpans(5);
  ASSERT_EQ(traces.size(), 2u);

  const auto& lost_spans = traces[telemetry::traceIdFor(lost)];
  ASSERT_EQ(lost_spans.size(), 4u);
  const telemetry::Record* root = nullptr;
  const telemetry::Record* execution = nullptr;
  std::vector<const telemetry::Record*> calls;
  for (const auto& span : lost_spans) {
    if (span.kind == telemetry::SpanKind::Server) root = &span;
    if (span.kind == telemetry::SpanKind::Internal) execution = &span;
    if (span.kind == telemetry::SpanKind::Client) calls.push_back(&span);
  }
  ASSERT_NE(root, nullptr);
  ASSERT_NE(execution, nullptr);
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(root->name, "invoke hello");
  EXPECT_EQ(root->parent_span_id, telemetry::SpanId{});
  EXPECT_EQ(root->status_code, static_cast<int>(telemetry::StatusCode::Error));
  EXPECT_EQ(*telemetry::findString(*root, "clrk.phase"), "Failed");
  EXPECT_EQ(*telemetry::findString(*root, "clrk.phase_reason"), "WorkerLost");
  EXPECT_EQ(*telemetry::findString(*root, "faas.trigger"), "http");
  EXPECT_EQ(*telemetry::findString(*root, telemetry::attr::kClrkRequestId), "req-" + lost);
  EXPECT_EQ(*telemetry::findString(*root, "service.name"), "clrk");
  EXPECT_EQ(execution->parent_span_id, root->span_id);
  EXPECT_EQ(*telemetry::findString(*execution, telemetry::attr::kClrkWorker), "gone-worker");
  for (const auto* call : calls) {
    EXPECT_EQ(call->parent_span_id, execution->span_id);
    EXPECT_EQ(call->name.substr(0, 9), "chat gpt-");
    EXPECT_EQ(*telemetry::findString(*call, telemetry::attr::kClrkWorker), "dev-1");
    EXPECT_EQ(telemetry::findInt(*call, telemetry::attr::kGenAiUsageInputTokens), 21);
  }

  const auto& rejected_spans = traces[telemetry::traceIdFor(rejected)];
  ASSERT_EQ(rejected_spans.size(), 1u);
  EXPECT_EQ(rejected_spans[0].kind, telemetry::SpanKind::Server);
  EXPECT_EQ(rejected_spans[0].status_message, "Rejected: NoCapacity (no worker has a free slot)");

  // `clrk traces` still has the egress records (the local store sits before the export).
  EXPECT_TRUE(fs::exists(test.state_dir_ / "traces.db"));
}

TEST_F(TracesExportTest, ExportsInvocationTracesAsProtobuf) {
  exportsInvocationTraces(*this, "http/protobuf");
}

TEST_F(TracesExportTest, ExportsInvocationTracesAsJson) {
  exportsInvocationTraces(*this, "http/json");
}

TEST_F(TracesExportTest, BadEndpointFailsAtStartup) {
  auto result = runCommand(binaryPath("clrk-controller-manager") + " --state-dir '" +
                           state_dir_.string() + "' --otlp-traces-endpoint ftp://nowhere");
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("--otlp-traces-endpoint"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace clrk::testing
