// `clrk traces [AGENT] [--invocation NAME] [--limit N] [-o json]`: inbound request → execution →
// LLM/MCP/tool calls. Invocations come from the API; egress calls from the controller-manager's
// trace store ($CLRK_HOME/state/traces.db, fed by every worker over OTLP), matched by execution
// id.
#include "clrk/cli/traces.h"

#include "clrk/api/builtin_types.h"
#include "clrk/base/files.h"
#include "clrk/base/time.h"
#include "clrk/cli/common.h"
#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/local_store.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>

namespace clrk::cli {
namespace {

namespace attr = telemetry::attr;
namespace fs = std::filesystem;

std::string text(const telemetry::Record& record, std::string_view key) {
  const std::string* value = telemetry::findString(record, key);
  return value != nullptr ? *value : std::string();
}

std::string integer(const telemetry::Record& record, std::string_view key) {
  auto value = telemetry::findInt(record, key);
  return value ? std::to_string(*value) : std::string();
}

std::string millis(std::chrono::nanoseconds duration) {
  double ms = static_cast<double>(duration.count()) / 1e6;
  return ms >= 1000 ? fmt::format("{:.2f}s", ms / 1000) : fmt::format("{:.0f}ms", ms);
}

// The name of a gRPC status code (0-16), else the number.
std::string grpcStatusName(int64_t code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  if (code >= 0 && code < static_cast<int64_t>(std::size(kNames))) return kNames[code];
  return std::to_string(code);
}

// The one-line summary of an egress call and an optional detail line.
std::pair<std::string, std::string> describe(const telemetry::Record& record) {
  std::string line = record.name;
  std::string url = text(record, attr::kUrlFull);
  std::string method = text(record, attr::kHttpRequestMethod);
  if (!url.empty()) line = (method.empty() ? "" : method + " ") + url;
  std::string decision = text(record, attr::kClrkDecision);
  if (decision == attr::kDecisionDeny) {
    std::string rule = text(record, attr::kClrkRule);
    std::string reason = text(record, attr::kClrkReason);
    line += "  denied";
    if (!rule.empty()) line += " by " + rule;
    // The egress's reason often repeats the rule ("... by R: R: no route ..."): keep what follows.
    if (size_t at = rule.empty() ? std::string::npos : reason.rfind(rule + ": ");
        at != std::string::npos) {
      reason = reason.substr(at + rule.size() + 2);
    }
    if (!reason.empty()) line += ": " + reason;
    return {line, ""};
  }
  std::string status = integer(record, attr::kHttpResponseStatusCode);
  if (!status.empty()) line += "  " + status;
  std::string provider = text(record, attr::kGenAiSystem);
  std::string request_model = text(record, attr::kGenAiRequestModel);
  std::string response_model = text(record, attr::kGenAiResponseModel);
  if (!provider.empty()) line += "  " + provider;
  if (!request_model.empty() || !response_model.empty()) {
    line += " " + (request_model.empty() ? std::string("?") : request_model);
    if (!response_model.empty() && response_model != request_model) line += "→" + response_model;
  }
  std::string tool = text(record, attr::kGenAiToolName);
  std::string mcp_method = text(record, attr::kMcpMethodName);
  if (!mcp_method.empty()) line += "  mcp " + mcp_method + (tool.empty() ? "" : " " + tool);
  if (text(record, attr::kRpcSystem) == "grpc") {
    std::optional<int64_t> code = telemetry::findInt(record, attr::kRpcGrpcStatusCode);
    line += "  grpc " + (code ? grpcStatusName(*code) : std::string("(no status)"));
  }
  if (record.status_code == static_cast<int>(telemetry::StatusCode::Error) &&
      !record.status_message.empty()) {
    line += "  error: " + record.status_message;
  }
  std::string detail;
  std::string in = integer(record, attr::kGenAiUsageInputTokens);
  std::string out = integer(record, attr::kGenAiUsageOutputTokens);
  std::string total = integer(record, attr::kClrkUsageTotalTokens);
  if (!in.empty() || !out.empty() || !total.empty()) {
    detail += "tokens in " + (in.empty() ? "-" : in) + " out " + (out.empty() ? "-" : out) +
              " total " + (total.empty() ? "-" : total) + "  ";
  }
  std::string ttfb = integer(record, attr::kClrkTtfbMs);
  if (!ttfb.empty()) detail += "ttfb " + ttfb + "ms  ";
  detail += millis(record.end - record.start);
  return {line, detail};
}

std::string shortId(const std::string& id) { return id.size() > 12 ? id.substr(0, 8) + "…" : id; }

}  // namespace

std::string renderInvocationTrace(const api::Json& invocation,
                                  std::vector<telemetry::Record> records) {
  const api::Json metadata = invocation.value("metadata", api::Json::object());
  const api::Json spec = invocation.value("spec", api::Json::object());
  const api::Json status = invocation.value("status", api::Json::object());
  std::string name = metadata.value("name", "");
  std::string prefix =
      invocation.value("kind", "") == "DaemonAgent" ? "daemonagent/" : "invocation/";
  std::string out = prefix + name + "  " + status.value("phase", "Pending") + "  " +
                    spec.value("trigger", api::Json::object()).value("type", "?");
  std::string request_id = spec.value("requestId", "");
  if (!request_id.empty()) out += "  request " + shortId(request_id);
  std::string worker = status.value("worker", "");
  if (!worker.empty()) out += "  worker " + worker;
  // How long the agent ran (worker start to completion), else since the invocation was created.
  auto started = parseRfc3339(status.value("startTime", ""));
  if (!started) started = parseRfc3339(metadata.value("creationTimestamp", ""));
  auto completed = parseRfc3339(status.value("completionTime", ""));
  if (started && completed && *completed >= *started) out += "  " + millis(*completed - *started);
  out += "\n";
  std::string execution = status.value("executionId", "");
  if (execution.empty()) {
    std::string message = status.value("message", "");
    out += "└─ no execution" + (message.empty() ? std::string() : ": " + message) + "\n";
    return out;
  }
  out += "└─ execution " + execution;
  if (status.contains("exitCode")) out += "  exit " + std::to_string(status.value("exitCode", 0));
  std::string phase = status.value("phase", "");
  if (phase != "Succeeded" && !status.value("message", "").empty()) {
    out += "  " + status.value("message", "");
  }
  out += "\n";
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.start < b.start; });
  if (records.empty()) out += "   (no egress calls recorded)\n";
  for (size_t i = 0; i < records.size(); ++i) {
    bool last = i + 1 == records.size();
    auto [line, detail] = describe(records[i]);
    out += std::string("   ") + (last ? "└─ " : "├─ ") + line + "\n";
    if (!detail.empty()) out += std::string("   ") + (last ? "     " : "│    ") + detail + "\n";
  }
  return out;
}

api::Json invocationTraceJson(const api::Json& invocation,
                              const std::vector<telemetry::Record>& records) {
  api::Json calls = api::Json::array();
  for (const auto& record : records) calls.push_back(api::Json::parse(telemetry::toJson(record)));
  return {{"kind", invocation.value("kind", "Invocation")},
          {"invocation", invocation.value("metadata", api::Json::object()).value("name", "")},
          {"spec", invocation.value("spec", api::Json::object())},
          {"status", invocation.value("status", api::Json::object())},
          {"calls", std::move(calls)}};
}

namespace {

struct TracesFlags {
  std::string agent;
  std::string invocation;
  int limit = 10;
  std::string output;
  std::string store;
};

int runTraces(const Globals& globals, const TracesFlags& flags) {
  if (!flags.output.empty() && flags.output != "json") {
    printError("-o " + flags.output + ": only json is supported");
    return kExitUsage;
  }
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  const api::ResourceType* type = &api::clrkType("Invocation");
  std::vector<api::Json> invocations;
  if (!flags.invocation.empty()) {
    auto one = session->client->get(*type, session->namespace_name, flags.invocation);
    if (!one.ok()) {
      printError(one.status());
      return kExitError;
    }
    invocations.push_back(std::move(one).value());
  } else {
    kube::ListOptions options;
    if (!flags.agent.empty()) options.label_selector = "clrk.apoxy.dev/agent=" + flags.agent;
    auto list = session->client->list(*type, session->namespace_name, options);
    if (!list.ok()) {
      printError(list.status());
      return kExitError;
    }
    for (auto& item : (*list)["items"]) invocations.push_back(std::move(item));
    auto key = [](const api::Json& inv) {
      return inv["metadata"].value("creationTimestamp", "") + inv["metadata"].value("name", "");
    };
    std::sort(invocations.begin(), invocations.end(),
              [&](const auto& a, const auto& b) { return key(a) > key(b); });
    if (invocations.size() > static_cast<size_t>(std::max(1, flags.limit))) {
      invocations.resize(static_cast<size_t>(std::max(1, flags.limit)));
    }
    std::reverse(invocations.begin(), invocations.end());  // oldest of the newest N first
  }
  if (invocations.empty() && !flags.agent.empty()) {
    // A DaemonAgent: its current (or last) instance stands in for an invocation.
    auto daemon =
        session->client->get(api::clrkType("DaemonAgent"), session->namespace_name, flags.agent);
    if (daemon.ok()) {
      const api::Json status = daemon->value("status", api::Json::object());
      api::Json instance = {{"kind", "DaemonAgent"},
                            {"metadata", daemon->value("metadata", api::Json::object())},
                            {"spec", {{"trigger", {{"type", "Daemon"}}}}},
                            {"status",
                             {{"phase", status.value("phase", "Pending")},
                              {"worker", status.value("worker", "")},
                              {"executionId", status.value("executionId", "")},
                              {"startTime", status.value("upSince", "")}}}};
      invocations.push_back(std::move(instance));
    }
  }
  if (invocations.empty()) {
    std::cerr << "no invocations" << (flags.agent.empty() ? "" : " of TaskAgent " + flags.agent)
              << " in namespace " << session->namespace_name << "\n";
    return kExitOk;
  }

  fs::path store_path = flags.store;
  if (store_path.empty()) {
    auto home = clrkHome();
    if (home.ok()) store_path = *home / "state" / "traces.db";
  }
  std::unique_ptr<telemetry::LocalStore> store;
  std::error_code ec;
  if (!store_path.empty() && fs::exists(store_path, ec)) {
    auto opened = telemetry::LocalStore::open(store_path);
    if (opened.ok()) store = std::move(opened).value();
  }
  if (!store) {
    std::cerr << "note: no trace store at " << store_path.string()
              << "; egress calls are not shown (pass --store)\n";
  }
  api::Json json_out = api::Json::array();
  for (const auto& invocation : invocations) {
    std::vector<telemetry::Record> records;
    std::string execution =
        invocation.value("status", api::Json::object()).value("executionId", "");
    if (store && !execution.empty()) {
      telemetry::Query query;
      query.execution_id = execution;
      query.limit = 1000;
      auto found = store->query(query);
      if (found.ok()) records = std::move(found).value();
    }
    if (flags.output == "json") {
      json_out.push_back(invocationTraceJson(invocation, records));
    } else {
      std::cout << renderInvocationTrace(invocation, std::move(records)) << "\n";
    }
  }
  if (flags.output == "json") std::cout << json_out.dump(2) << "\n";
  return kExitOk;
}

}  // namespace

void addTracesCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<TracesFlags>();
  CLI::App* command =
      app.add_subcommand("traces", "Show invocations with the LLM, MCP and tool calls they caused");
  command->add_option("agent", flags->agent,
                      "Only this TaskAgent's invocations, or this DaemonAgent's instance");
  command->add_option("--invocation", flags->invocation, "One invocation by name");
  command->add_option("--limit", flags->limit, "Newest invocations shown (default 10)");
  command->add_option("-o,--output", flags->output, "Output format: json");
  command->add_option("--store", flags->store,
                      "Trace store (default $CLRK_HOME/state/traces.db of clrk dev)");
  command->callback([&globals, flags] { globals.exit_code = runTraces(globals, *flags); });
}

}  // namespace clrk::cli
