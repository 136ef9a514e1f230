#include "harness.h"

#include "clrk/base/ids.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sys/wait.h>

namespace clrk::testing {

CommandResult runCommand(const std::string& command) {
  CommandResult result;
  std::string wrapped = "(" + command + ") 2>&1";
  FILE* pipe = ::popen(wrapped.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), n);
  }
  int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string binaryPath(const std::string& name) {
  const char* build_dir = std::getenv("CLRK_BUILD_DIR");
  return std::string(build_dir != nullptr ? build_dir : "build/dev") + "/src/exe/" + name;
}

std::string sourcePath(const std::string& relative) {
  const char* source_dir = std::getenv("CLRK_SOURCE_DIR");
  return std::string(source_dir != nullptr ? source_dir : ".") + "/" + relative;
}

DevStack::DevStack(const std::string& up_args) {
  home_ = (std::filesystem::temp_directory_path() / ("clrk-it-" + randomHex(6))).string();
  std::filesystem::create_directories(home_);
  CommandResult started = runCommand(envPrefix() + binaryPath("clrk") + " dev up " + up_args);
  up_ = started.exit_code == 0;
  if (!up_) start_error_ = started.output;
}

DevStack::~DevStack() {
  runCommand(envPrefix() + binaryPath("clrk") + " dev down");
  std::error_code ignored;
  std::filesystem::remove_all(home_, ignored);
}

CommandResult DevStack::clrk(const std::string& args) const {
  return runCommand(envPrefix() + binaryPath("clrk") + " --local " + args);
}

CommandResult DevStack::kubectl(const std::string& args) const {
  return runCommand("kubectl --kubeconfig='" + kubeconfig() + "' --cache-dir='" + home_ +
                    "/kubectl-cache' " + args);
}

}  // namespace clrk::testing
