// `clrk delete KIND NAME... | -f FILE` with --wait (poll until the object is gone).
#include "clrk/base/time.h"
#include "clrk/cli/common.h"

#include <chrono>
#include <iostream>
#include <thread>

namespace clrk::cli {
namespace {

struct DeleteFlags {
  std::vector<std::string> args;
  std::vector<std::string> files;
  bool wait = true;
  std::string timeout = "60s";
  bool ignore_not_found = false;
};

struct Target {
  const api::ResourceType* type;
  std::string ns;
  std::string name;
};

Status waitGone(const Session& session, const Target& target, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto delay = std::chrono::milliseconds(50);
  while (true) {
    auto object = session.client->get(*target.type, target.ns, target.name);
    if (!object.ok() && object.status().code() == Code::NotFound) return {};
    if (!object.ok()) return object.status();
    if (std::chrono::steady_clock::now() >= deadline) {
      return {Code::Timeout, "timed out waiting for " + typeDisplayName(*target.type) + " \"" +
                                 target.name + "\" to be deleted"};
    }
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(1000));
  }
}

int runDelete(const Globals& globals, const DeleteFlags& flags) {
  auto timeout = parseDuration(flags.timeout);
  if (!timeout) {
    printError("invalid --timeout \"" + flags.timeout + "\"");
    return kExitUsage;
  }
  if (flags.files.empty() == flags.args.empty()) {
    printError("specify either KIND NAME... or -f FILE");
    return kExitUsage;
  }
  std::vector<Target> targets;
  std::string default_ns;
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  if (!flags.files.empty()) {
    auto documents = readManifests(flags.files);
    if (!documents.ok()) {
      printError(documents.status());
      return kExitError;
    }
    for (const auto& document : *documents) {
      const api::Json& object = document.object;
      const api::Json meta = object.value("metadata", api::Json::object());
      const api::ResourceType* type =
          api::Registry::builtin().byKind(object.value("apiVersion", ""), object.value("kind", ""));
      if (type == nullptr || !meta.is_object() || meta.value("name", "").empty()) {
        printError(document.source + ": document " + std::to_string(document.index + 1) +
                   ": needs a known apiVersion/kind and metadata.name");
        return kExitError;
      }
      std::string ns = type->namespaced ? meta.value("namespace", session->namespace_name) : "";
      targets.push_back({type, ns, meta.value("name", "")});
    }
  } else {
    if (flags.args.size() < 2) {
      printError("specify the names of the objects to delete");
      return kExitUsage;
    }
    auto type = resolveType(flags.args.front());
    if (!type.ok()) {
      printError(type.status());
      return kExitError;
    }
    for (size_t i = 1; i < flags.args.size(); ++i) {
      targets.push_back({*type, (*type)->namespaced ? session->namespace_name : "", flags.args[i]});
    }
  }
  int exit_code = kExitOk;
  for (const auto& target : targets) {
    std::string display = typeDisplayName(*target.type) + " \"" + target.name + "\"";
    auto removed = session->client->remove(*target.type, target.ns, target.name);
    if (!removed.ok()) {
      if (removed.status().code() == Code::NotFound && flags.ignore_not_found) continue;
      std::cerr << "Error from server (" << codeName(removed.status().code())
                << "): " << removed.status().message() << "\n";
      exit_code = kExitError;
      continue;
    }
    std::cout << display << " deleted" << std::endl;
    if (flags.wait) {
      Status gone = waitGone(*session, target, *timeout);
      if (!gone.ok()) {
        printError(gone);
        exit_code = kExitError;
      }
    }
  }
  return exit_code;
}

}  // namespace

void addDeleteCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<DeleteFlags>();
  CLI::App* cmd = app.add_subcommand("delete", "Delete objects by kind and name or from manifests");
  cmd->add_option("args", flags->args, "KIND NAME...");
  cmd->add_option("-f,--filename", flags->files, "Manifest file, directory or - (repeatable)");
  cmd->add_flag("--wait", flags->wait,
                "Wait until the objects are gone (default true; --wait=false to skip)");
  cmd->add_option("--timeout", flags->timeout, "How long to wait for deletion (default 60s)");
  cmd->add_flag("--ignore-not-found", flags->ignore_not_found, "Treat \"not found\" as success");
  cmd->callback([&globals, flags] { globals.exit_code = runDelete(globals, *flags); });
}

}  // namespace clrk::cli
