// `clrk get KIND [NAME...] [-o yaml|json|wide|name] [-A] [-l selector] [-w]`.
#include "clrk/cli/common.h"
#include "clrk/cli/printer.h"
#include "clrk/kube/watch.h"

#include <condition_variable>
#include <iostream>
#include <mutex>

namespace clrk::cli {
namespace {

struct GetFlags {
  std::string kind;
  std::vector<std::string> names;
  std::string output;
  bool all_namespaces = false;
  std::string selector;
  bool watch = false;
};

void printObjects(const api::ResourceType& type, const std::vector<api::Json>& objects,
                  const GetFlags& flags, bool single, bool header) {
  if (flags.output == "yaml" || flags.output == "json") {
    // Like kubectl (--show-managed-fields=false), managedFields are left out.
    std::vector<api::Json> shown = objects;
    for (auto& object : shown) {
      if (object.is_object() && object.contains("metadata") && object["metadata"].is_object()) {
        object["metadata"].erase("managedFields");
      }
    }
    api::Json value;
    if (single && shown.size() == 1) {
      value = shown.front();
    } else {
      value = {{"apiVersion", "v1"},
               {"kind", "List"},
               {"items", shown},
               {"metadata", {{"resourceVersion", ""}}}};
    }
    if (flags.output == "yaml") {
      std::cout << api::toYaml(value);
    } else {
      std::cout << value.dump(4) << "\n";
    }
  } else if (flags.output == "name") {
    for (const auto& object : objects) {
      std::cout << typeDisplayName(type) << "/" << object["metadata"].value("name", "") << "\n";
    }
  } else {
    TableOptions options;
    options.wide = flags.output == "wide";
    options.all_namespaces = flags.all_namespaces;
    options.header = header;
    std::cout << formatTable(tableRows(type, objects, options));
  }
  std::cout.flush();
}

int runGet(const Globals& globals, GetFlags& flags) {
  if (!flags.output.empty() && flags.output != "yaml" && flags.output != "json" &&
      flags.output != "wide" && flags.output != "name") {
    printError("unable to match a printer suitable for the output format \"" + flags.output +
               "\", allowed formats are: json,name,wide,yaml");
    return kExitUsage;
  }
  auto type = resolveType(flags.kind);
  if (!type.ok()) {
    printError(type.status());
    return kExitError;
  }
  const api::ResourceType& rt = **type;
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  std::string ns = rt.namespaced && !flags.all_namespaces ? session->namespace_name : "";
  if (!flags.names.empty()) {
    if (flags.all_namespaces) {
      printError("a resource cannot be retrieved by name across all namespaces");
      return kExitUsage;
    }
    std::vector<api::Json> objects;
    int exit_code = kExitOk;
    for (const auto& name : flags.names) {
      auto object = session->client->get(rt, ns, name);
      if (!object.ok()) {
        std::cerr << "Error from server (" << codeName(object.status().code())
                  << "): " << object.status().message() << "\n";
        exit_code = kExitError;
        continue;
      }
      objects.push_back(std::move(object).value());
    }
    if (!objects.empty()) printObjects(rt, objects, flags, flags.names.size() == 1, true);
    return exit_code;
  }
  if (flags.watch) {
    std::mutex mutex;
    std::condition_variable cv;
    bool printed = false;
    kube::WatchOptions options;
    options.namespace_name = ns;
    options.label_selector = flags.selector;
    kube::Watcher watcher(session->client, rt, options,
                          {[&](std::vector<api::Json> items, const std::string&) {
                             std::lock_guard lock(mutex);
                             if (!printed) printObjects(rt, items, flags, false, true);
                             printed = true;
                           },
                           [&](kube::WatchEventType, const api::Json& object) {
                             std::lock_guard lock(mutex);
                             printObjects(rt, {object}, flags, true, false);
                           }});
    watcher.start();
    std::unique_lock lock(mutex);
    cv.wait(lock, [] { return false; });  // until interrupted
    return kExitOk;
  }
  kube::ListOptions options;
  options.label_selector = flags.selector;
  options.limit = 500;
  auto list = session->client->list(rt, ns, options);
  if (!list.ok()) {
    printError(list.status());
    return kExitError;
  }
  std::vector<api::Json> items;
  for (auto& item : (*list)["items"]) {
    if (item.is_object()) {
      if (!item.contains("apiVersion")) item["apiVersion"] = rt.apiVersion();
      if (!item.contains("kind")) item["kind"] = rt.kind;
    }
    items.push_back(std::move(item));
  }
  if (items.empty() && (flags.output.empty() || flags.output == "wide")) {
    if (rt.namespaced && !flags.all_namespaces) {
      std::cerr << "No resources found in " << ns << " namespace.\n";
    } else {
      std::cerr << "No resources found\n";
    }
    return kExitOk;
  }
  printObjects(rt, items, flags, false, true);
  return kExitOk;
}

}  // namespace

void addGetCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<GetFlags>();
  CLI::App* cmd = app.add_subcommand("get", "Display one or many objects");
  cmd->add_option("kind", flags->kind, "Resource type (e.g. taskagents, ta, secrets)")->required();
  cmd->add_option("names", flags->names, "Object names");
  cmd->add_option("-o,--output", flags->output, "Output format: yaml|json|wide|name");
  cmd->add_flag("-A,--all-namespaces", flags->all_namespaces, "List across all namespaces");
  cmd->add_option("-l,--selector", flags->selector, "Label selector (e.g. app=echo)");
  cmd->add_flag("-w,--watch", flags->watch, "After listing, watch for changes");
  cmd->callback([&globals, flags] { globals.exit_code = runGet(globals, *flags); });
}

}  // namespace clrk::cli
