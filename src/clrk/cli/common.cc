#include "clrk/cli/common.h"

#include "clrk/base/ascii.h"
#include "clrk/base/files.h"

#include <algorithm>
#include <iostream>
#include <iterator>

namespace clrk::cli {

namespace fs = std::filesystem;

Result<Session> openSession(const Globals& globals) {
  kube::ConfigOptions options;
  options.kubeconfig = globals.kubeconfig;
  options.context = globals.context;
  if (globals.local) {
    if (!globals.kubeconfig.empty()) {
      return invalidArgument("--local and --kubeconfig cannot be used together");
    }
    CLRK_ASSIGN_OR_RETURN(fs::path home, clrkHome());
    fs::path path = home / "kubeconfig.host";
    std::error_code ec;
    if (!fs::exists(path, ec)) {
      return notFound(path.string() + " does not exist: start the local stack with `clrk dev up`");
    }
    options.kubeconfig = path.string();
  }
  CLRK_ASSIGN_OR_RETURN(kube::RestConfig config, kube::loadConfig(options));
  Session session;
  session.namespace_from_flag = !globals.namespace_name.empty();
  session.namespace_name = !globals.namespace_name.empty()  ? globals.namespace_name
                           : !config.namespace_name.empty() ? config.namespace_name
                                                            : "default";
  CLRK_ASSIGN_OR_RETURN(session.client, kube::Client::create(std::move(config)));
  return session;
}

Result<const api::ResourceType*> resolveType(std::string_view name) {
  const api::ResourceType* type = api::Registry::builtin().resolve(name);
  if (type == nullptr) {
    return invalidArgument("the server doesn't have a resource type \"" + std::string(name) + "\"");
  }
  return type;
}

std::string typeDisplayName(const api::ResourceType& type) {
  std::string singular = type.singular;
  if (singular.empty()) {
    singular = asciiLowerCopy(type.kind);
  }
  return type.group.empty() ? singular : singular + "." + type.group;
}

void printError(std::string_view message) { std::cerr << "error: " << message << "\n"; }
void printError(const Status& status) { printError(status.message()); }

Result<std::vector<api::Document>> readManifests(const std::vector<std::string>& paths) {
  std::vector<api::Document> documents;
  for (const auto& path : paths) {
    std::vector<fs::path> files;
    if (path == "-") {
      std::string text((std::istreambuf_iterator<char>(std::cin)),
                       std::istreambuf_iterator<char>());
      CLRK_ASSIGN_OR_RETURN(auto docs, api::decodeManifests(text, "<stdin>"));
      for (auto& doc : docs) documents.push_back(std::move(doc));
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      for (const auto& entry : fs::directory_iterator(path, ec)) {
        std::string ext = entry.path().extension().string();
        if (entry.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json")) {
          files.push_back(entry.path());
        }
      }
      if (ec) return invalidArgument(path + ": " + ec.message());
      std::sort(files.begin(), files.end());
    } else {
      files.emplace_back(path);
    }
    for (const auto& file : files) {
      auto text = readFile(file);
      if (!text.ok()) {
        return Status(text.status().code(), file.string() + ": " +
                                                (text.status().code() == Code::NotFound
                                                     ? std::string("no such file or directory")
                                                     : text.status().message()));
      }
      CLRK_ASSIGN_OR_RETURN(auto docs, api::decodeManifests(*text, file.string()));
      for (auto& doc : docs) documents.push_back(std::move(doc));
    }
  }
  return documents;
}

}  // namespace clrk::cli
