// Process-wide logging on spdlog. Modules get a named logger: `auto log =
// clrk::logger("apiserver");` Thread model: loggers are thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string_view>

namespace clrk {

// Returns the logger for `module`, created on first use; all write to stderr.
std::shared_ptr<spdlog::logger> logger(std::string_view module);

// Sets the level for every logger ("trace".."off"); returns false for an unknown level name.
bool setLogLevel(std::string_view level);

}  // namespace clrk
