// Helpers for integration tests that drive the real binaries: a private CLRK_HOME, a running
// `clrk dev` stack, and shell commands with captured output.
#pragma once

#include <string>

namespace clrk::testing {

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr, interleaved
};

// Runs `command` with /bin/sh; captures stdout+stderr.
CommandResult runCommand(const std::string& command);

// Path of a built binary ("clrk", "clrk-controller-manager") from $CLRK_BUILD_DIR/src/exe.
std::string binaryPath(const std::string& name);

// Path inside the source tree, from $CLRK_SOURCE_DIR.
std::string sourcePath(const std::string& relative);

// A `clrk dev` stack in a private temporary CLRK_HOME, torn down (dev down + rm) on destruction.
// By default only the controller-manager runs (`dev up --workers 0`, no root needed).
class DevStack {
 public:
  explicit DevStack(const std::string& up_args = "--workers 0");
  ~DevStack();
  DevStack(const DevStack&) = delete;
  DevStack& operator=(const DevStack&) = delete;

  // True iff `clrk dev up` succeeded; startError() says why not.
  bool up() const { return up_; }
  const std::string& startError() const { return start_error_; }
  const std::string& home() const { return home_; }
  std::string kubeconfig() const { return home_ + "/kubeconfig.host"; }
  // Runs `clrk --local ARGS` with this stack's CLRK_HOME.
  CommandResult clrk(const std::string& args) const;
  // Runs `kubectl --kubeconfig=... --cache-dir=... ARGS`.
  CommandResult kubectl(const std::string& args) const;
  // `env` prefix that points clrk at this stack ("CLRK_HOME=... ").
  std::string envPrefix() const { return "CLRK_HOME='" + home_ + "' "; }

 private:
  std::string home_;
  bool up_ = false;
  std::string start_error_;
};

}  // namespace clrk::testing
