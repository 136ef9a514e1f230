// `clrk dev [up|down|status]`: the local stack (clrk-controller-manager with the embedded API
// server) as a managed background process under $CLRK_HOME (default ~/.clrk).
#include "clrk/base/files.h"
#include "clrk/base/time.h"
#include "clrk/cli/common.h"

#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <signal.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr char kBinaryName[] = "clrk-controller-manager";

struct DevFlags {
  std::string timeout = "60s";
};

struct DevPaths {
  fs::path home, state, log, pid, kubeconfig, url;
};

Result<DevPaths> devPaths() {
  CLRK_ASSIGN_OR_RETURN(fs::path home, clrkHome());
  DevPaths p;
  p.home = home;
  p.state = home / "state";
  p.log = home / "logs" / "controller-manager.log";
  p.pid = home / "controller-manager.pid";
  p.kubeconfig = home / "kubeconfig.host";
  p.url = p.state / "apiserver.url";
  return p;
}

std::string trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

// True when `pid` is alive and runs clrk-controller-manager.
bool isControllerManager(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
  if (ec) return false;
  std::string name = exe.filename().string();
  return name == kBinaryName || name == std::string(kBinaryName) + " (deleted)";
}

// The PID from the pid file when it names a running controller-manager; 0 otherwise.
pid_t runningPid(const DevPaths& paths) {
  auto text = readFile(paths.pid);
  if (!text.ok()) return 0;
  try {
    pid_t pid = static_cast<pid_t>(std::stol(trim(*text)));
    return isControllerManager(pid) ? pid : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

std::string logTail(const fs::path& log, size_t lines) {
  auto text = readFile(log);
  if (!text.ok()) return "(no log at " + log.string() + ")";
  std::vector<std::string> all;
  std::string line;
  for (char c : *text) {
    if (c == '\n') {
      all.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) {
    out += "  " + all[i] + "\n";
  }
  return out;
}

struct Endpoint {
  std::string url, ca, token;
};

Result<Endpoint> readEndpoint(const DevPaths& paths) {
  CLRK_ASSIGN_OR_RETURN(std::string url, readFile(paths.url));
  CLRK_ASSIGN_OR_RETURN(std::string ca, readFile(paths.state / "pki" / "ca.crt"));
  CLRK_ASSIGN_OR_RETURN(std::string token, readFile(paths.state / "token"));
  Endpoint e{trim(url), ca, trim(token)};
  if (e.url.empty() || e.token.empty()) return Status(Code::Unavailable, "not written yet");
  return e;
}

// GET /readyz; ok when the server answers 200.
Status readyz(const Endpoint& endpoint) {
  kube::RestConfig config;
  config.server = endpoint.url;
  config.ca_pem = endpoint.ca;
  config.token = endpoint.token;
  CLRK_ASSIGN_OR_RETURN(auto client, kube::Client::create(config));
  CLRK_ASSIGN_OR_RETURN(auto response, client->request("GET", "/readyz", {}, {}, 2s));
  if (response.status != 200) {
    return Status(Code::Unavailable, "/readyz answered HTTP " + std::to_string(response.status) +
                                         ": " + trim(response.body));
  }
  return {};
}

Status writeKubeconfig(const DevPaths& paths, const Endpoint& endpoint) {
  std::string text =
      "apiVersion: v1\n"
      "kind: Config\n"
      "clusters:\n"
      "- name: clrk-dev\n"
      "  cluster:\n"
      "    server: " +
      endpoint.url +
      "\n"
      "    certificate-authority-data: " +
      base64Encode(endpoint.ca) +
      "\n"
      "users:\n"
      "- name: clrk-dev\n"
      "  user:\n"
      "    token: " +
      endpoint.token +
      "\n"
      "contexts:\n"
      "- name: clrk-dev\n"
      "  context:\n"
      "    cluster: clrk-dev\n"
      "    user: clrk-dev\n"
      "    namespace: default\n"
      "current-context: clrk-dev\n";
  return writeFileAtomic(paths.kubeconfig, text, 0600);
}

void printNextSteps(const DevPaths& paths) {
  std::cout << "\nNext steps:\n"
            << "  export KUBECONFIG=" << paths.kubeconfig.string() << "\n"
            << "  kubectl get ns\n"
            << "  clrk --local apply -f examples/hello/manifests.yaml\n"
            << "  clrk --local get taskagents\n"
            << "  clrk dev status | clrk dev down\n";
}

Result<fs::path> controllerManagerBinary() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return internalError("cannot read /proc/self/exe: " + ec.message());
  fs::path binary = self.parent_path() / kBinaryName;
  if (!fs::exists(binary, ec)) {
    return notFound(std::string(kBinaryName) + " not found next to clrk (looked at " +
                    binary.string() + ")");
  }
  return binary;
}

int devUp(const DevFlags& flags) {
  auto timeout = parseDuration(flags.timeout);
  if (!timeout) {
    printError("invalid --timeout \"" + flags.timeout + "\"");
    return kExitUsage;
  }
  auto paths = devPaths();
  if (!paths.ok()) {
    printError(paths.status());
    return kExitError;
  }
  if (pid_t pid = runningPid(*paths); pid != 0) {
    auto endpoint = readEndpoint(*paths);
    if (endpoint.ok() && readyz(*endpoint).ok()) {
      Status written = writeKubeconfig(*paths, *endpoint);
      if (!written.ok()) {
        printError(written);
        return kExitError;
      }
      std::cout << "clrk dev is already running (pid " << pid << ", " << endpoint->url << ")\n"
                << "kubeconfig: " << paths->kubeconfig.string() << "\n";
      printNextSteps(*paths);
      return kExitOk;
    }
    printError("clrk-controller-manager (pid " + std::to_string(pid) +
               ") is running but not ready; see " + paths->log.string() +
               " or run `clrk dev down`");
    return kExitError;
  }
  auto binary = controllerManagerBinary();
  if (!binary.ok()) {
    printError(binary.status());
    return kExitError;
  }
  std::error_code ec;
  fs::create_directories(paths->state, ec);
  fs::permissions(paths->state, fs::perms::owner_all, ec);
  fs::create_directories(paths->log.parent_path(), ec);
  fs::remove(paths->url, ec);
  int log_fd = ::open(paths->log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) {
    printError("cannot open " + paths->log.string() + ": " + std::strerror(errno));
    return kExitError;
  }
  std::string binary_path = binary->string();
  std::string state_arg = paths->state.string();
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(log_fd);
    printError(std::string("fork: ") + std::strerror(errno));
    return kExitError;
  }
  if (pid == 0) {
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execl(binary_path.c_str(), binary_path.c_str(), "--state-dir", state_arg.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(log_fd);
  Status pid_written = writeFileAtomic(paths->pid, std::to_string(pid) + "\n", 0600);
  if (!pid_written.ok()) {
    ::kill(pid, SIGTERM);
    printError(pid_written);
    return kExitError;
  }
  auto deadline = std::chrono::steady_clock::now() + *timeout;
  Status last = Status(Code::Unavailable, "the API server did not write " + paths->url.string());
  while (std::chrono::steady_clock::now() < deadline) {
    int wstatus = 0;
    if (::waitpid(pid, &wstatus, WNOHANG) == pid) {
      fs::remove(paths->pid, ec);
      std::string how = WIFEXITED(wstatus)
                            ? "exited with status " + std::to_string(WEXITSTATUS(wstatus))
                            : "was killed by signal " + std::to_string(WTERMSIG(wstatus));
      printError("clrk-controller-manager " + how + "; last lines of " + paths->log.string() +
                 ":\n" + logTail(paths->log, 20));
      return kExitError;
    }
    auto endpoint = readEndpoint(*paths);
    if (endpoint.ok()) {
      last = readyz(*endpoint);
      if (last.ok()) {
        Status written = writeKubeconfig(*paths, *endpoint);
        if (!written.ok()) {
          printError(written);
          return kExitError;
        }
        std::cout << "clrk dev is up: clrk-controller-manager (pid " << pid << ") serving "
                  << endpoint->url << "\n"
                  << "kubeconfig: " << paths->kubeconfig.string() << "\n"
                  << "logs: " << paths->log.string() << "\n";
        printNextSteps(*paths);
        return kExitOk;
      }
    }
    std::this_thread::sleep_for(100ms);
  }
  printError("clrk-controller-manager (pid " + std::to_string(pid) + ") not ready after " +
             flags.timeout + " (" + last.message() + "); last lines of " + paths->log.string() +
             ":\n" + logTail(paths->log, 20));
  return kExitError;
}

int devDown() {
  auto paths = devPaths();
  if (!paths.ok()) {
    printError(paths.status());
    return kExitError;
  }
  std::error_code ec;
  pid_t pid = runningPid(*paths);
  if (pid == 0) {
    fs::remove(paths->pid, ec);
    std::cout << "clrk dev is not running\n";
    return kExitOk;
  }
  ::kill(pid, SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + 15s;
  bool killed = false;
  while (isControllerManager(pid)) {
    int wstatus;
    ::waitpid(pid, &wstatus, WNOHANG);  // reaps it when it is our child
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(50ms);
  }
  fs::remove(paths->pid, ec);
  std::cout << "stopped clrk-controller-manager (pid " << pid << ")"
            << (killed ? " with SIGKILL after 15s" : "") << "\n";
  return kExitOk;
}

int devStatus() {
  auto paths = devPaths();
  if (!paths.ok()) {
    printError(paths.status());
    return kExitError;
  }
  pid_t pid = runningPid(*paths);
  if (pid == 0) {
    std::cout << "clrk-controller-manager: not running\n";
    return kExitError;
  }
  std::cout << "clrk-controller-manager: running (pid " << pid << ")\n";
  auto endpoint = readEndpoint(*paths);
  if (!endpoint.ok()) {
    std::cout << "API server: unknown (" << paths->url.string() << " missing)\n";
    return kExitError;
  }
  std::cout << "API server: " << endpoint->url << "\n";
  Status ready = readyz(*endpoint);
  std::cout << "readyz: " << (ready.ok() ? "ok" : ready.message()) << "\n"
            << "kubeconfig: " << paths->kubeconfig.string() << "\n"
            << "logs: " << paths->log.string() << "\n";
  return ready.ok() ? kExitOk : kExitError;
}

}  // namespace

void addDevCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<DevFlags>();
  CLI::App* dev = app.add_subcommand("dev", "Run the local stack (`clrk dev` = `clrk dev up`)");
  dev->require_subcommand(0, 1);
  CLI::App* up = dev->add_subcommand("up", "Start clrk-controller-manager in the background");
  up->add_option("--timeout", flags->timeout, "How long to wait for readiness (default 60s)");
  CLI::App* down = dev->add_subcommand("down", "Stop the local stack");
  CLI::App* status = dev->add_subcommand("status", "Show whether the local stack runs");
  up->callback([&globals, flags] { globals.exit_code = devUp(*flags); });
  down->callback([&globals] { globals.exit_code = devDown(); });
  status->callback([&globals] { globals.exit_code = devStatus(); });
  dev->callback([&globals, flags, dev] {
    if (dev->get_subcommands().empty()) globals.exit_code = devUp(*flags);
  });
}

}  // namespace clrk::cli
