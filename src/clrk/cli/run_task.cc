// `clrk run-task NAME [--input JSON | --input-file FILE] [--content-type T] [--no-wait]`:
// creates an Invocation of TaskAgent NAME (trigger CLI; the input in spec.input), which the
// controller dispatches to a worker, then waits for it and prints the agent's output (its
// stdout) to stdout. Exit code: 0 when the invocation Succeeded, 1 otherwise (the reason and the
// agent's stderr tail go to stderr). Works the same against `clrk dev` and a cluster.
#include "clrk/api/builtin_types.h"
#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/base/time.h"
#include "clrk/cli/common.h"

#include <cstdlib>
#include <iostream>
#include <iterator>
#include <thread>

namespace clrk::cli {
namespace {

using namespace std::chrono_literals;

struct RunTaskFlags {
  std::string name;
  std::string input;
  std::string input_file;
  std::string content_type = "application/json";
  std::string timeout = "10m";
  bool no_wait = false;
};

bool isTerminalPhase(const std::string& phase) {
  return phase == "Succeeded" || phase == "Failed" || phase == "Timeout" || phase == "Rejected";
}

int runTask(const Globals& globals, const RunTaskFlags& flags) {
  if (!flags.input.empty() && !flags.input_file.empty()) {
    printError("give --input or --input-file, not both");
    return kExitUsage;
  }
  auto wait_limit = parseDuration(flags.timeout);
  if (!wait_limit) {
    printError("invalid --timeout \"" + flags.timeout + "\"");
    return kExitUsage;
  }
  std::string input = flags.input;
  if (!flags.input_file.empty()) {
    if (flags.input_file == "-") {
      input.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      auto text = readFile(flags.input_file);
      if (!text.ok()) {
        printError(text.status());
        return kExitError;
      }
      input = std::move(text).value();
    }
  }
  if (input.empty()) input = "{}";
  if (flags.content_type.find("json") != std::string::npos &&
      api::Json::parse(input, nullptr, false).is_discarded()) {
    printError("the input is not valid JSON; pass --content-type text/plain for other text");
    return kExitUsage;
  }
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  const std::string& ns = session->namespace_name;
  const api::ResourceType* agent_type = &api::clrkType("TaskAgent");
  const api::ResourceType* invocation_type = &api::clrkType("Invocation");
  auto agent = session->client->get(*agent_type, ns, flags.name);
  if (!agent.ok()) {
    printError(agent.status());
    return kExitError;
  }
  const char* user = std::getenv("USER");
  std::string name = flags.name.substr(0, 48) + "-" + randomHex(5);
  api::Json invocation = {
      {"apiVersion", "clrk.apoxy.dev/v1alpha1"},
      {"kind", "Invocation"},
      {"metadata",
       {{"name", name},
        {"namespace", ns},
        {"labels",
         {{"clrk.apoxy.dev/agent", flags.name}, {"clrk.apoxy.dev/agent-kind", "TaskAgent"}}},
        {"ownerReferences", api::Json::array({{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                                               {"kind", "TaskAgent"},
                                               {"name", flags.name},
                                               {"uid", (*agent)["metadata"].value("uid", "")},
                                               {"controller", true},
                                               {"blockOwnerDeletion", false}}})}}},
      {"spec",
       {{"parentRef", {{"kind", "TaskAgent"}, {"name", flags.name}}},
        {"trigger", {{"type", "CLI"}, {"source", user != nullptr ? user : "clrk"}}},
        {"requestId", newUuid()},
        {"input", {{"contentType", flags.content_type}, {"data", input}}}}},
      {"status", {{"phase", "Pending"}}},
  };
  auto created = session->client->create(*invocation_type, ns, invocation);
  if (!created.ok()) {
    printError(created.status());
    return kExitError;
  }
  std::cerr << "invocation/" << name << " created (request id "
            << invocation["spec"]["requestId"].get<std::string>() << ")\n";
  if (flags.no_wait) {
    std::cout << name << "\n";
    return kExitOk;
  }
  auto deadline = std::chrono::steady_clock::now() + *wait_limit;
  api::Json last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto current = session->client->get(*invocation_type, ns, name);
    if (current.ok()) {
      last = std::move(current).value();
      std::string phase = last.value("status", api::Json::object()).value("phase", "");
      if (isTerminalPhase(phase)) break;
    }
    std::this_thread::sleep_for(100ms);
  }
  const api::Json status = last.value("status", api::Json::object());
  std::string phase = status.value("phase", "");
  if (!isTerminalPhase(phase)) {
    printError("invocation/" + name + " still " + (phase.empty() ? "Pending" : phase) + " after " +
               flags.timeout + "; see `clrk get invocation " + name + " -o yaml`");
    return kExitError;
  }
  std::cout << status.value("output", "");
  std::cout.flush();
  if (phase == "Succeeded") return kExitOk;
  std::cerr << "invocation/" << name << " " << phase << ": " << status.value("message", "") << "\n";
  std::string stderr_tail = status.value("stderrTail", "");
  if (!stderr_tail.empty()) std::cerr << "--- agent stderr (tail) ---\n" << stderr_tail << "\n";
  return kExitError;
}

}  // namespace

void addRunTaskCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<RunTaskFlags>();
  CLI::App* command = app.add_subcommand(
      "run-task", "Run a TaskAgent once and print its output (creates an Invocation)");
  command->add_option("name", flags->name, "TaskAgent name")->required();
  command->add_option("--input", flags->input, "Input delivered to the agent (default {})");
  command->add_option("--input-file", flags->input_file, "Read the input from a file (- = stdin)");
  command->add_option("--content-type", flags->content_type,
                      "Media type of the input (default application/json)");
  command->add_option("--timeout", flags->timeout, "How long to wait (default 10m)");
  command->add_flag("--no-wait", flags->no_wait, "Print the Invocation name and return");
  command->callback([&globals, flags] { globals.exit_code = runTask(globals, *flags); });
}

}  // namespace clrk::cli
