// `clrk logs NAME [-f] [--timestamps]`: the sandbox stdout/stderr of an Invocation (NAME is an
// Invocation, a TaskAgent whose newest Invocation is shown, or a DaemonAgent whose current (or
// last) instance is shown). Lines come from the worker that
// ran the execution (its API, located through its Lease and authenticated with the worker
// token); agent stdout goes to stdout and agent stderr to stderr. When that worker is gone, the
// output recorded in the Invocation's status is printed instead, with a note.
#include "clrk/api/builtin_types.h"
#include "clrk/cli/common.h"
#include "clrk/worker/api.h"
#include "clrk/worker/client.h"

#include <iostream>

namespace clrk::cli {
namespace {

struct LogsFlags {
  std::string name;
  bool follow = false;
  bool timestamps = false;
  std::string system_namespace = "clrk-system";
};

std::string annotation(const api::Json& object, std::string_view key) {
  const api::Json annotations =
      object.value("metadata", api::Json::object()).value("annotations", api::Json::object());
  auto it = annotations.find(key);
  return it != annotations.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// The Invocation named `name`, else the DaemonAgent `name`, else the newest Invocation of
// TaskAgent `name`. Both kinds carry status.worker and status.executionId.
Result<api::Json> findInvocation(kube::Client& client, const std::string& ns,
                                 const std::string& name) {
  const auto& type = api::builtinType("clrk.apoxy.dev/v1alpha1", "Invocation");
  auto direct = client.get(type, ns, name);
  if (direct.ok() || direct.status().code() != Code::NotFound) return direct;
  auto daemon = client.get(api::builtinType("clrk.apoxy.dev/v1alpha1", "DaemonAgent"), ns, name);
  if (daemon.ok() || daemon.status().code() != Code::NotFound) return daemon;
  kube::ListOptions options;
  options.label_selector = "clrk.apoxy.dev/agent=" + name;
  CLRK_ASSIGN_OR_RETURN(api::Json list, client.list(type, ns, options));
  if (!list.contains("items") || !list["items"].is_array())
    return internalError("list without items");
  const api::Json* newest = nullptr;
  for (const auto& item : list["items"]) {
    // RFC 3339 UTC timestamps order as strings; the name breaks ties.
    auto key = [](const api::Json& inv) {
      return inv["metadata"].value("creationTimestamp", "") + inv["metadata"].value("name", "");
    };
    if (newest == nullptr || key(item) > key(*newest)) newest = &item;
  }
  if (newest == nullptr) {
    return notFound("no Invocation or TaskAgent invocations named \"" + name + "\" in namespace " +
                    ns);
  }
  return *newest;
}

int runLogs(const Globals& globals, const LogsFlags& flags) {
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  auto invocation = findInvocation(*session->client, session->namespace_name, flags.name);
  if (!invocation.ok()) {
    printError(invocation.status());
    return kExitError;
  }
  const api::Json status = invocation->value("status", api::Json::object());
  // "invocation/NAME" or "daemonagent/NAME", for messages.
  std::string invocation_name =
      (invocation->value("kind", "") == "DaemonAgent" ? "daemonagent/" : "invocation/") +
      (*invocation)["metadata"].value("name", "");
  std::string worker_name = status.value("worker", "");
  std::string execution_id = status.value("executionId", "");
  auto fallback = [&](const std::string& why) {
    std::cerr << "note: " << why << "; showing the output recorded in " << invocation_name << "\n";
    std::cout << status.value("output", "");
    std::cerr << status.value("stderrTail", "");
    return kExitOk;
  };
  if (worker_name.empty() || execution_id.empty()) {
    std::string phase = status.value("phase", "Pending");
    if (phase == "Pending" || phase.empty()) {
      printError(invocation_name + " has not been placed on a worker yet");
      return kExitError;
    }
    return fallback(invocation_name + " never ran (" + phase + ")");
  }
  auto lease = session->client->get(api::builtinType("coordination.k8s.io/v1", "Lease"),
                                    flags.system_namespace, "worker-" + worker_name);
  if (!lease.ok()) return fallback("worker " + worker_name + " is gone");
  auto secret = session->client->get(api::builtinType("v1", "Secret"), flags.system_namespace,
                                     std::string(worker::kTokenSecretName));
  if (!secret.ok()) {
    printError(secret.status().withContext("reading the worker token"));
    return kExitError;
  }
  std::string token_b64 = secret->value("data", api::Json::object()).value("token", "");
  auto token = base64Decode(token_b64);
  if (!token) {
    printError("Secret " + flags.system_namespace + "/clrk-worker-token: data.token is not base64");
    return kExitError;
  }
  worker::WorkerEndpoint endpoint;
  endpoint.url = annotation(*lease, worker::kAnnotationEndpoint);
  endpoint.fingerprint = annotation(*lease, worker::kAnnotationFingerprint);
  endpoint.token = *token;
  auto client = worker::WorkerClient::create(endpoint);
  if (!client.ok()) {
    printError(client.status());
    return kExitError;
  }
  Status streamed = (*client)->logs(execution_id, flags.follow, [&](const worker::LogEntry& entry) {
    std::ostream& out = entry.stream == "stderr" ? std::cerr : std::cout;
    if (flags.timestamps) out << entry.time << " ";
    out << entry.text << "\n";
    out.flush();
    return true;
  });
  if (streamed.code() == Code::NotFound) {
    return fallback("worker " + worker_name + " no longer has execution " + execution_id);
  }
  if (!streamed.ok()) {
    printError(streamed);
    return kExitError;
  }
  return kExitOk;
}

}  // namespace

void addLogsCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<LogsFlags>();
  CLI::App* command =
      app.add_subcommand("logs",
                         "Print the sandbox output of an Invocation, a TaskAgent's newest "
                         "Invocation or a DaemonAgent's instance");
  command->add_option("name", flags->name, "Invocation, TaskAgent or DaemonAgent name")->required();
  command->add_flag("-f,--follow", flags->follow, "Stream until the execution ends");
  command->add_flag("--timestamps", flags->timestamps, "Prefix each line with its time");
  command->add_option("--system-namespace", flags->system_namespace,
                      "Namespace of the worker Leases (default clrk-system)");
  command->callback([&globals, flags] { globals.exit_code = runLogs(globals, *flags); });
}

}  // namespace clrk::cli
