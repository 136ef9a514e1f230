// Shared state and helpers of the `clrk` verbs (internal to clrk::cli).
#pragma once

#include "clrk/api/codec.h"
#include "clrk/api/registry.h"
#include "clrk/base/base64.h"
#include "clrk/base/status.h"
#include "clrk/kube/client.h"

#include <CLI/CLI.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace clrk::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitError = 1;
inline constexpr int kExitUsage = 2;

// Global flags, filled by CLI11 before a verb runs.
struct Globals {
  std::string kubeconfig;
  std::string context;
  bool local = false;
  std::string namespace_name;  // -n; empty = from the context, else "default"
  std::string log_level = "warn";
  int exit_code = kExitOk;  // set by the verb callbacks
};

// A connected client plus the namespace to use.
struct Session {
  kube::ClientPtr client;
  std::string namespace_name;
  bool namespace_from_flag = false;
};

Result<Session> openSession(const Globals& globals);

// Resolves a user-typed kind ("ta", "taskagents", "TaskAgent.clrk.apoxy.dev").
Result<const api::ResourceType*> resolveType(std::string_view name);

// "taskagent.clrk.apoxy.dev" (or "secret" for the core group): kubectl's resource prefix.
std::string typeDisplayName(const api::ResourceType& type);

// Prints `error: <message>` to stderr.
void printError(std::string_view message);
void printError(const Status& status);

// Reads the manifests named by -f values: files, directories (*.yaml|*.yml|*.json, sorted) and
// "-" for stdin.
Result<std::vector<api::Document>> readManifests(const std::vector<std::string>& paths);

void addApplyCommand(CLI::App& app, Globals& globals);
void addGetCommand(CLI::App& app, Globals& globals);
void addDeleteCommand(CLI::App& app, Globals& globals);
void addSecretCommand(CLI::App& app, Globals& globals);
void addDevCommand(CLI::App& app, Globals& globals);
void addEgressCommand(CLI::App& app, Globals& globals);
void addRunTaskCommand(CLI::App& app, Globals& globals);
void addLogsCommand(CLI::App& app, Globals& globals);
void addTracesCommand(CLI::App& app, Globals& globals);
void addStatusCommand(CLI::App& app, Globals& globals);
void addInstallCommand(CLI::App& app, Globals& globals);

}  // namespace clrk::cli
