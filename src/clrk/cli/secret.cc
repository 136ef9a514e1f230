// `clrk secret create NAME --from-env VAR[=KEY]...`: an Opaque Secret from environment variables.
#include "clrk/cli/common.h"

#include <cstdlib>
#include <iostream>

namespace clrk::cli {
namespace {

struct SecretFlags {
  std::string name;
  std::vector<std::string> from_env;
};

int runSecretCreate(const Globals& globals, const SecretFlags& flags) {
  if (flags.from_env.empty()) {
    printError("secret create needs at least one --from-env VAR[=KEY]");
    return kExitUsage;
  }
  api::Json data = api::Json::object();
  for (const auto& spec : flags.from_env) {
    size_t eq = spec.find('=');
    std::string var = spec.substr(0, eq);
    std::string key = eq == std::string::npos ? var : spec.substr(eq + 1);
    if (var.empty() || key.empty()) {
      printError("--from-env \"" + spec + "\": expected VAR or VAR=KEY");
      return kExitUsage;
    }
    const char* value = std::getenv(var.c_str());
    if (value == nullptr) {
      printError("environment variable " + var + " is not set");
      return kExitError;
    }
    data[key] = base64Encode(value);
  }
  const api::ResourceType* type = api::Registry::builtin().byKind("v1", "Secret");
  if (type == nullptr) {
    printError("the Secret kind is not registered");
    return kExitError;
  }
  auto session = openSession(globals);
  if (!session.ok()) {
    printError(session.status());
    return kExitError;
  }
  const std::string& ns = session->namespace_name;
  api::Json secret = {{"apiVersion", "v1"},
                      {"kind", "Secret"},
                      {"metadata", {{"name", flags.name}, {"namespace", ns}}},
                      {"type", "Opaque"},
                      {"data", data}};
  std::string display = "secret/" + flags.name;
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto existing = session->client->get(*type, ns, flags.name);
    if (!existing.ok() && existing.status().code() != Code::NotFound) {
      printError(display + ": " + existing.status().message());
      return kExitError;
    }
    if (!existing.ok()) {
      auto created = session->client->create(*type, ns, secret);
      if (created.ok()) {
        std::cout << display << " created" << std::endl;
        return kExitOk;
      }
      if (created.status().code() == Code::AlreadyExists) continue;  // raced: replace it
      printError(display + ": " + created.status().message());
      return kExitError;
    }
    api::Json replacement = secret;
    const api::Json& meta = (*existing)["metadata"];
    replacement["metadata"]["resourceVersion"] = meta.value("resourceVersion", "");
    for (const char* keep : {"labels", "annotations"}) {
      if (meta.contains(keep)) replacement["metadata"][keep] = meta[keep];
    }
    auto updated = session->client->update(*type, replacement);
    if (updated.ok()) {
      std::cout << display << " replaced" << std::endl;
      return kExitOk;
    }
    if (updated.status().code() == Code::Conflict) continue;
    printError(display + ": " + updated.status().message());
    return kExitError;
  }
  printError(display + ": kept conflicting with concurrent writers");
  return kExitError;
}

}  // namespace

void addSecretCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<SecretFlags>();
  CLI::App* secret = app.add_subcommand("secret", "Manage Secrets");
  secret->require_subcommand(1);
  CLI::App* create = secret->add_subcommand(
      "create",
      "Create or replace an Opaque Secret from environment variables (values are never "
      "printed)");
  create->add_option("name", flags->name, "Secret name")->required();
  create
      ->add_option("--from-env", flags->from_env,
                   "VAR[=KEY]: store $VAR under KEY (default: VAR); repeatable")
      ->required();
  create->callback([&globals, flags] { globals.exit_code = runSecretCreate(globals, *flags); });
}

}  // namespace clrk::cli
