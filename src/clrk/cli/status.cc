// `clrk status`: the health of the stack at a glance: the API server, the workers (from their
// Leases: alive, state, free slots, runtime), the agents (Ready condition, active executions) and
// the most recent failed or rejected invocations. Exit code 1 when no worker is alive or an agent
// is not Ready, so scripts can wait on it.
#include "clrk/api/builtin_types.h"
#include "clrk/base/time.h"
#include "clrk/cli/common.h"
#include "clrk/worker/api.h"

#include <fmt/format.h>

#include <algorithm>
#include <iostream>

namespace clrk::cli {
namespace {

using Json = api::Json;

struct StatusFlags {
  std::string system_namespace = "clrk-system";
  int failures = 5;
};

std::string annotation(const Json& object, std::string_view key) {
  const Json annotations =
      object.value("metadata", Json::object()).value("annotations", Json::object());
  auto it = annotations.find(key);
  return it != annotations.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string readyOf(const Json& object) {
  for (const auto& cond :
       object.value("status", Json::object()).value("conditions", Json::array())) {
    if (cond.value("type", "") == "Ready") {
      return cond.value("status", "") == "True"
                 ? "Ready"
                 : "NotReady (" + cond.value("reason", "") + ": " + cond.value("message", "") + ")";
    }
  }
  return "Unknown (not reconciled yet)";
}

int runStatus(const Globals& globals, const StatusFlags& flags) {
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  kube::Client& client = *session->client;
  int exit_code = kExitOk;
  auto readyz = client.request("GET", "/readyz");
  std::cout << "API server  " << client.config().server << "  "
            << (readyz.ok() && readyz->status == 200 ? "ready" : "NOT READY") << "\n\n";

  kube::ListOptions workers_only;
  workers_only.label_selector = std::string(worker::kLabelComponent) + "=worker";
  auto leases = client.list(api::builtinType("coordination.k8s.io/v1", "Lease"),
                            flags.system_namespace, workers_only);
  if (!leases.ok()) {
    printError(leases.status());
    return kExitError;
  }
  auto now = std::chrono::system_clock::now();
  int alive = 0;
  std::cout << fmt::format("{:<20} {:<8} {:<9} {:<10} {:<11} {}\n", "WORKER", "ALIVE", "STATE",
                           "FREE/MAX", "RUNTIME", "POOL");
  for (const auto& lease : (*leases)["items"]) {
    const Json spec = lease.value("spec", Json::object());
    auto renewed = parseRfc3339(spec.value("renewTime", ""));
    bool is_alive =
        renewed && now <= *renewed + std::chrono::seconds(spec.value("leaseDurationSeconds", 15));
    alive += is_alive ? 1 : 0;
    Json capacity = Json::parse(annotation(lease, worker::kAnnotationCapacity), nullptr, false);
    if (!capacity.is_object()) capacity = Json::object();
    std::string pool = annotation(lease, worker::kAnnotationAnyPool) == "true"
                           ? "(any pool)"
                           : lease["metadata"]
                                 .value("labels", Json::object())
                                 .value(std::string(worker::kLabelPool), "");
    std::cout << fmt::format("{:<20} {:<8} {:<9} {:<10} {:<11} {}\n",
                             spec.value("holderIdentity", "?"), is_alive ? "yes" : "NO",
                             annotation(lease, worker::kAnnotationState),
                             std::to_string(capacity.value("free", 0)) + "/" +
                                 std::to_string(capacity.value("maxExecutions", 0)),
                             capacity.value("runtime", ""), pool);
  }
  if (alive == 0) {
    std::cout << "(no live worker: executions cannot run)\n";
    exit_code = kExitError;
  }

  auto agents = client.list(api::clrkType("TaskAgent"), session->namespace_name);
  if (!agents.ok()) {
    printError(agents.status());
    return kExitError;
  }
  std::cout << "\n" << fmt::format("{:<24} {:<7} {}\n", "TASKAGENT", "ACTIVE", "READY");
  for (const auto& agent : (*agents)["items"]) {
    std::string ready = readyOf(agent);
    if (ready != "Ready") exit_code = kExitError;
    std::cout << fmt::format("{:<24} {:<7} {}\n", agent["metadata"].value("name", ""),
                             agent.value("status", Json::object()).value("activeExecutions", 0),
                             ready);
  }

  auto daemons = client.list(api::clrkType("DaemonAgent"), session->namespace_name);
  if (!daemons.ok()) {
    printError(daemons.status());
    return kExitError;
  }
  if (!(*daemons)["items"].empty()) {
    std::cout << "\n"
              << fmt::format("{:<24} {:<17} {:<9} {}\n", "DAEMONAGENT", "PHASE", "RESTARTS",
                             "READY");
  }
  for (const auto& agent : (*daemons)["items"]) {
    const Json status = agent.value("status", Json::object());
    std::string ready = readyOf(agent);
    // A daemon that stopped as its restart policy says is healthy; one failing is not.
    std::string phase = status.value("phase", "Pending");
    bool completed = phase == "Stopped" && ready.rfind("NotReady (Completed:", 0) == 0;
    if (phase != "Running" && !completed) exit_code = kExitError;
    std::cout << fmt::format("{:<24} {:<17} {:<9} {}\n", agent["metadata"].value("name", ""), phase,
                             status.value("restartCount", 0), ready);
  }

  auto invocations = client.list(api::clrkType("Invocation"), session->namespace_name);
  if (!invocations.ok()) {
    printError(invocations.status());
    return kExitError;
  }
  std::vector<Json> failed;
  for (auto& item : (*invocations)["items"]) {
    std::string phase = item.value("status", Json::object()).value("phase", "");
    if (phase == "Failed" || phase == "Timeout" || phase == "Rejected") {
      failed.push_back(std::move(item));
    }
  }
  std::sort(failed.begin(), failed.end(), [](const Json& a, const Json& b) {
    return a["metadata"].value("creationTimestamp", "") >
           b["metadata"].value("creationTimestamp", "");
  });
  std::cout << "\nRECENT FAILURES (" << failed.size() << " in all)\n";
  for (size_t i = 0; i < failed.size() && i < static_cast<size_t>(flags.failures); ++i) {
    const Json status = failed[i].value("status", Json::object());
    std::cout << "  " << failed[i]["metadata"].value("creationTimestamp", "") << "  invocation/"
              << failed[i]["metadata"].value("name", "") << "  " << status.value("phase", "")
              << "  " << status.value("message", "") << "\n";
  }
  return exit_code;
}

}  // namespace

void addStatusCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<StatusFlags>();
  CLI::App* command =
      app.add_subcommand("status", "Stack health: API server, workers, agents, recent failures");
  command->add_option("--system-namespace", flags->system_namespace,
                      "Namespace of the worker Leases (default clrk-system)");
  command->add_option("--failures", flags->failures, "Recent failures shown (default 5)");
  command->callback([&globals, flags] { globals.exit_code = runStatus(globals, *flags); });
}

}  // namespace clrk::cli
