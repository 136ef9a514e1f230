// `clrk apply -f FILE|DIR|-`: local validation of every document, then server-side apply.
#include "clrk/cli/common.h"
#include "clrk/cli/printer.h"

#include <iostream>

namespace clrk::cli {
namespace {

struct ApplyFlags {
  std::vector<std::string> files;
};

int runApply(const Globals& globals, const ApplyFlags& flags) {
  auto documents = readManifests(flags.files);
  if (!documents.ok()) {
    printError(documents.status());
    return kExitError;
  }
  if (documents->empty()) {
    printError("no objects passed to apply");
    return kExitError;
  }
  // Validate everything before touching the server: nothing is applied if any document is bad.
  const api::Registry& registry = api::Registry::builtin();
  std::vector<api::Json> originals;
  bool invalid = false;
  for (auto& document : *documents) {
    api::Json original = document.object;
    Status status = api::checkDocument(registry, document);
    if (!status.ok()) {
      printError(status);
      invalid = true;
    }
    originals.push_back(std::move(original));
  }
  if (invalid) return kExitError;

  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  int exit_code = kExitOk;
  for (size_t i = 0; i < documents->size(); ++i) {
    const api::Document& document = (*documents)[i];
    api::Json object = originals[i];
    const api::ResourceType* type =
        registry.byKind(object.value("apiVersion", ""), object.value("kind", ""));
    if (type == nullptr) {
      printError(document.source + ": document " + std::to_string(document.index + 1) +
                 ": unknown kind");
      exit_code = kExitError;
      continue;
    }
    std::string name = object["metadata"].value("name", "");
    std::string ns;
    if (type->namespaced) {
      ns = object["metadata"].value("namespace", "");
      if (ns.empty()) {
        ns = session->namespace_name;
        object["metadata"]["namespace"] = ns;
      } else if (session->namespace_from_flag && ns != session->namespace_name) {
        printError(document.source + ": the namespace from the provided object \"" + ns +
                   "\" does not match the namespace \"" + session->namespace_name +
                   "\". You must pass '--namespace=" + ns + "' to perform this operation.");
        exit_code = kExitError;
        continue;
      }
    }
    std::string display = typeDisplayName(*type) + "/" + name;
    std::optional<api::Json> before;
    auto existing = session->client->get(*type, ns, name);
    if (existing.ok()) {
      before = std::move(existing).value();
    } else if (existing.status().code() != Code::NotFound) {
      printError(display + ": " + existing.status().message());
      exit_code = kExitError;
      continue;
    }
    kube::PatchOptions options;
    options.field_manager = "clrk";
    options.force = true;
    auto applied = session->client->patch(*type, ns, name, kube::PatchType::ApplyPatch,
                                          object.dump(), options);
    if (!applied.ok()) {
      printError(display + ": " + applied.status().message());
      exit_code = kExitError;
      continue;
    }
    std::cout << display << " " << applyOutcomeName(decideApplyOutcome(before, *applied))
              << std::endl;
  }
  return exit_code;
}

}  // namespace

void addApplyCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<ApplyFlags>();
  CLI::App* cmd = app.add_subcommand("apply",
                                     "Create or update objects from manifests "
                                     "(server-side apply)");
  cmd->add_option("-f,--filename", flags->files, "File, directory or - for stdin (repeatable)")
      ->required();
  cmd->callback([&globals, flags] { globals.exit_code = runApply(globals, *flags); });
}

}  // namespace clrk::cli
