// `clrk dev [up|down|status]`: the local stack as managed background processes under $CLRK_HOME
// (default ~/.clrk): clrk-controller-manager (the embedded API server), N clrk-worker daemons
// (`--any-pool` dev workers) and optionally clrk-mock-providers answering for the real provider
// hosts with TLS from a dev "mock upstream CA". The options of the running stack are kept in
// $CLRK_HOME/dev.json.
#include "clrk/base/files.h"
#include "clrk/base/time.h"
#include "clrk/cli/common.h"
#include "clrk/cli/managed_process.h"
#include "clrk/egress/tls/authority.h"
#include "clrk/egress/tls/leaf_cache.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>
#include <unistd.h>

namespace clrk::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using kube::Json;

constexpr char kControllerManager[] = "clrk-controller-manager";
constexpr char kWorker[] = "clrk-worker";
constexpr char kMockProviders[] = "clrk-mock-providers";
constexpr char kSystemNamespace[] = "clrk-system";
constexpr int kMaxWorkers = 40;  // pool CIDRs 10.211.0.0/16 .. 10.250.0.0/16
// Hosts the mock providers answer for; each gets an --upstream-override on every worker.
constexpr std::array<const char*, 4> kMockHosts = {"api.openai.com", "api.anthropic.com",
                                                   "generativelanguage.googleapis.com",
                                                   "mcp.mock.clrk.dev"};

struct DevFlags {
  std::string timeout = "60s";
  int workers = 1;
  std::string runtime = "gvisor";
  int max_executions = 4;
  bool mock_providers = false;
  std::vector<std::string> shares;  // HOST_DIR:SANDBOX_PATH[:rw], passed to every worker
};

// What `dev up` started, as kept in dev.json.
struct DevConfig {
  int workers = 0;
  std::string runtime;
  int max_executions = 0;
  bool mock_providers = false;
  int mock_port = 0;
};

struct DevPaths {
  fs::path home, state, kubeconfig, url, config, mock_dir;
};

Result<DevPaths> devPaths() {
  CLRK_ASSIGN_OR_RETURN(fs::path home, clrkHome());
  DevPaths p;
  p.home = home;
  p.state = home / "state";
  p.kubeconfig = home / "kubeconfig.host";
  p.url = p.state / "apiserver.url";
  p.config = home / "dev.json";
  p.mock_dir = home / "mock-providers";
  return p;
}

ManagedProcess controllerManagerProcess(const DevPaths& paths) {
  return {kControllerManager, kControllerManager, paths.home / "controller-manager.pid",
          paths.home / "logs" / "controller-manager.log"};
}

std::string workerName(int index) { return "dev-" + std::to_string(index); }

ManagedProcess workerProcess(const DevPaths& paths, int index) {
  std::string name = workerName(index);
  return {std::string(kWorker) + " " + name, kWorker, paths.home / ("worker-" + name + ".pid"),
          paths.home / "logs" / ("worker-" + name + ".log")};
}

ManagedProcess mockProcess(const DevPaths& paths) {
  return {kMockProviders, kMockProviders, paths.home / "mock-providers.pid",
          paths.home / "logs" / "mock-providers.log"};
}

std::string trim(std::string text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  return text.substr(start);
}

Status writeConfig(const DevPaths& paths, const DevConfig& config) {
  Json doc = {{"workers", config.workers},
              {"runtime", config.runtime},
              {"maxExecutions", config.max_executions},
              {"mockProviders", config.mock_providers},
              {"mockProvidersPort", config.mock_port}};
  return writeFileAtomic(paths.config, doc.dump(2) + "\n", 0600);
}

// dev.json, or (a controller-manager started before dev.json existed) no workers and no mocks.
DevConfig readConfig(const DevPaths& paths) {
  DevConfig config;
  auto text = readFile(paths.config);
  if (!text.ok()) return config;
  Json doc = Json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return config;
  config.workers = doc.value("workers", 0);
  config.runtime = doc.value("runtime", "");
  config.max_executions = doc.value("maxExecutions", 0);
  config.mock_providers = doc.value("mockProviders", false);
  config.mock_port = doc.value("mockProvidersPort", 0);
  return config;
}

// Worker indexes recorded in dev.json or by a pid file worker-dev-<i>.pid, ascending.
std::vector<int> recordedWorkers(const DevPaths& paths) {
  std::vector<int> indexes;
  for (int index = 1; index <= readConfig(paths).workers; ++index) indexes.push_back(index);
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(paths.home, ec)) {
    std::string name = entry.path().filename().string();
    constexpr std::string_view kPrefix = "worker-dev-";
    if (name.rfind(kPrefix, 0) != 0 || name.size() <= kPrefix.size() + 4 ||
        name.substr(name.size() - 4) != ".pid") {
      continue;
    }
    std::string digits = name.substr(kPrefix.size(), name.size() - kPrefix.size() - 4);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos ||
        digits.size() > 4) {
      continue;
    }
    indexes.push_back(std::stoi(digits));
  }
  std::sort(indexes.begin(), indexes.end());
  indexes.erase(std::unique(indexes.begin(), indexes.end()), indexes.end());
  return indexes;
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

Result<kube::ClientPtr> apiClient(const Endpoint& endpoint) {
  kube::RestConfig config;
  config.server = endpoint.url;
  config.ca_pem = endpoint.ca;
  config.token = endpoint.token;
  return kube::Client::create(config);
}

// GET /readyz; ok when the server answers 200.
Status readyz(const Endpoint& endpoint) {
  CLRK_ASSIGN_OR_RETURN(auto client, apiClient(endpoint));
  CLRK_ASSIGN_OR_RETURN(auto response, client->request("GET", "/readyz", {}, {}, 2s));
  if (response.status != 200) {
    return Status(Code::Unavailable, "/readyz answered HTTP " + std::to_string(response.status) +
                                         ": " + trim(response.body));
  }
  return {};
}

// The Lease worker-<name> in clrk-system.
Result<Json> workerLease(kube::Client& client, const std::string& name) {
  CLRK_ASSIGN_OR_RETURN(auto response,
                        client.request("GET",
                                       std::string("/apis/coordination.k8s.io/v1/namespaces/") +
                                           kSystemNamespace + "/leases/worker-" + name,
                                       {}, {}, 2s));
  if (response.status != 200) {
    return Status(Code::Unavailable,
                  "Lease worker-" + name + ": HTTP " + std::to_string(response.status));
  }
  Json lease = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (!lease.is_object()) return internalError("Lease worker-" + name + ": not JSON");
  return lease;
}

std::string annotation(const Json& object, const std::string& key) {
  const Json* annotations = nullptr;
  if (object.contains("metadata") && object["metadata"].contains("annotations")) {
    annotations = &object["metadata"]["annotations"];
  }
  if (annotations == nullptr || !annotations->is_object()) return "";
  return annotations->value(key, "");
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
            << "  kubectl -n clrk-system get leases\n"
            << "  clrk --local apply -f examples/hello/manifests.yaml\n"
            << "  clrk --local get taskagents\n"
            << "  clrk dev status | clrk dev down\n";
}

bool inPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access((fs::path(dir) / name).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// The dev mock upstream CA under mock_dir (generated once: ca.crt, ca.key) and a fresh leaf for
// kMockHosts, localhost and 127.0.0.1 (tls.crt, tls.key).
Status prepareMockTls(const DevPaths& paths) {
  std::error_code ec;
  fs::create_directories(paths.mock_dir, ec);
  fs::permissions(paths.mock_dir, fs::perms::owner_all, ec);
  fs::path ca_cert = paths.mock_dir / "ca.crt";
  fs::path ca_key = paths.mock_dir / "ca.key";
  std::shared_ptr<const egress::tls::CertificateAuthority> ca;
  auto cert_pem = readFile(ca_cert);
  auto key_pem = readFile(ca_key);
  if (cert_pem.ok() && key_pem.ok()) {
    auto loaded = egress::tls::CertificateAuthority::fromPem(*cert_pem, *key_pem);
    if (!loaded.ok())
      return loaded.status().withContext("the mock upstream CA in " + ca_cert.string());
    ca = *loaded;
  } else {
    auto generated = egress::tls::CertificateAuthority::generate("clrk dev mock upstream CA",
                                                                 std::chrono::hours(24 * 3650));
    if (!generated.ok()) return generated.status();
    ca = *generated;
    CLRK_RETURN_IF_ERROR(writeFileAtomic(ca_key, ca->keyPem(), 0600));
    CLRK_RETURN_IF_ERROR(writeFileAtomic(ca_cert, ca->certPem(), 0644));
  }
  std::vector<std::string> hosts(kMockHosts.begin(), kMockHosts.end());
  hosts.push_back("localhost");
  hosts.push_back("127.0.0.1");
  CLRK_ASSIGN_OR_RETURN(egress::tls::MintedLeaf leaf, egress::tls::mintLeafPem(*ca, hosts));
  CLRK_RETURN_IF_ERROR(writeFileAtomic(paths.mock_dir / "tls.key", leaf.key_pem, 0600));
  return writeFileAtomic(paths.mock_dir / "tls.crt", leaf.cert_pem, 0644);
}

// A row of `dev status`.
void printRow(const std::string& label, pid_t pid, bool alive, const std::string& endpoint) {
  std::cout << std::left << std::setw(26) << label << " pid " << std::setw(8)
            << (pid > 0 ? std::to_string(pid) : "-") << " " << std::setw(12)
            << (alive ? "running" : "not running") << " " << endpoint << "\n";
}

// Prints every process of the stack; true iff all of them run (and the API server is ready).
bool printStack(const DevPaths& paths) {
  DevConfig config = readConfig(paths);
  ManagedProcess cm = controllerManagerProcess(paths);
  pid_t cm_pid = runningPid(cm);
  bool all_ok = cm_pid != 0;
  std::string cm_endpoint = "-";
  kube::ClientPtr client;
  if (auto endpoint = readEndpoint(paths); endpoint.ok() && cm_pid != 0) {
    Status ready = readyz(*endpoint);
    cm_endpoint = endpoint->url + " (readyz: " + (ready.ok() ? "ok" : ready.message()) + ")";
    all_ok = all_ok && ready.ok();
    if (auto created = apiClient(*endpoint); created.ok()) client = *created;
  }
  printRow(kControllerManager, cm_pid != 0 ? cm_pid : recordedPid(cm), cm_pid != 0, cm_endpoint);
  for (int index : recordedWorkers(paths)) {
    ManagedProcess worker = workerProcess(paths, index);
    pid_t pid = runningPid(worker);
    std::string endpoint = "-";
    if (client != nullptr && pid != 0) {
      auto lease = workerLease(*client, workerName(index));
      endpoint = lease.ok() ? annotation(*lease, "clrk.apoxy.dev/endpoint") + " (Lease " +
                                  annotation(*lease, "clrk.apoxy.dev/state") + ")"
                            : "(" + lease.status().message() + ")";
    }
    all_ok = all_ok && pid != 0;
    printRow(worker.label, pid != 0 ? pid : recordedPid(worker), pid != 0, endpoint);
  }
  ManagedProcess mock = mockProcess(paths);
  if (config.mock_providers || recordedPid(mock) != 0) {
    pid_t pid = runningPid(mock);
    all_ok = all_ok && pid != 0;
    printRow(mock.label, pid != 0 ? pid : recordedPid(mock), pid != 0,
             config.mock_port > 0 ? "https://127.0.0.1:" + std::to_string(config.mock_port) : "-");
  }
  std::cout << "options: workers " << config.workers
            << (config.workers > 0 ? ", runtime " + config.runtime + ", max executions " +
                                         std::to_string(config.max_executions)
                                   : "")
            << ", mock providers " << (config.mock_providers ? "on" : "off") << "\n"
            << "kubeconfig: " << paths.kubeconfig.string() << "\n"
            << "logs: " << (paths.home / "logs").string() << "\n";
  return all_ok;
}

// Stops workers, then the mocks, then the controller-manager; prints one line per process that
// ran. Returns how many ran.
int stopStack(const DevPaths& paths) {
  int stopped = 0;
  auto report = [&](const std::vector<ManagedProcess>& processes,
                    const std::vector<StopOutcome>& outcomes, std::chrono::milliseconds grace) {
    for (size_t process_idx = 0; process_idx < processes.size(); ++process_idx) {
      const StopOutcome& outcome = outcomes[process_idx];
      if (outcome.pid == 0) continue;
      ++stopped;
      std::cout << "stopped " << processes[process_idx].label << " (pid " << outcome.pid << ")"
                << (outcome.killed
                        ? " with SIGKILL after " + std::to_string(grace.count() / 1000) + "s"
                        : "")
                << "\n";
    }
  };
  std::vector<ManagedProcess> workers;
  for (int index : recordedWorkers(paths)) workers.push_back(workerProcess(paths, index));
  // Workers drain (--drain-timeout 10) before they exit.
  report(workers, stopAll(workers, 20s), 20s);
  std::vector<ManagedProcess> mocks = {mockProcess(paths)};
  report(mocks, stopAll(mocks, 5s), 5s);
  std::vector<ManagedProcess> cms = {controllerManagerProcess(paths)};
  report(cms, stopAll(cms, 15s), 15s);
  std::error_code ec;
  fs::remove(paths.config, ec);
  return stopped;
}

// Polls `ready` every 100 ms until it succeeds, the child `pid` ends or `deadline` passes. The
// error names the process and carries its log tail.
Status awaitReady(const ManagedProcess& process, pid_t pid,
                  std::chrono::steady_clock::time_point deadline,
                  const std::function<Status()>& ready) {
  Status last = Status(Code::Unavailable, "not ready");
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto ended = reapIfEnded(pid)) {
      return Status(Code::Unavailable, process.label + " " + *ended + "; last lines of " +
                                           process.log.string() + ":\n" + logTail(process.log, 20));
    }
    last = ready();
    if (last.ok()) return {};
    std::this_thread::sleep_for(100ms);
  }
  return Status(Code::Timeout, process.label + " (pid " + std::to_string(pid) +
                                   ") not ready in time (" + last.message() + "); last lines of " +
                                   process.log.string() + ":\n" + logTail(process.log, 20));
}

std::vector<std::string> workerArgs(const DevPaths& paths, const DevFlags& flags, int index,
                                    int mock_port) {
  std::vector<std::string> args = {"--name",
                                   workerName(index),
                                   "--pool",
                                   "default-workers",
                                   "--namespace",
                                   "default",
                                   "--any-pool",
                                   "--kubeconfig",
                                   paths.kubeconfig.string(),
                                   "--state-dir",
                                   (paths.home / "workers" / workerName(index)).string(),
                                   "--runtime",
                                   flags.runtime,
                                   "--max-executions",
                                   std::to_string(flags.max_executions),
                                   "--net-tag",
                                   "d" + std::to_string(index),
                                   "--pool-cidr",
                                   "10." + std::to_string(210 + index) + ".0.0/16",
                                   "--egress-port",
                                   "0",
                                   "--dns-port",
                                   "0",
                                   "--drain-timeout",
                                   "10"};
  for (const auto& share : flags.shares) {
    // The worker wants absolute host paths; accept paths relative to where clrk runs.
    size_t colon = share.find(':');
    std::error_code ec;
    std::string host = share.substr(0, colon);
    std::string absolute = host.empty() ? host : fs::absolute(host, ec).lexically_normal().string();
    args.push_back("--share");
    args.push_back(colon == std::string::npos ? absolute : absolute + share.substr(colon));
  }
  // The workers' egress records go to the controller-manager's trace intake (clrk traces).
  if (auto otlp = readFile(paths.state / "otlp.url"); otlp.ok() && !trim(*otlp).empty()) {
    args.push_back("--otlp-endpoint");
    args.push_back(trim(*otlp));
    args.push_back("--otlp-token-file");
    args.push_back((paths.state / "otlp.token").string());
  }
  if (mock_port > 0) {
    for (const char* host : kMockHosts) {
      args.push_back("--upstream-override");
      args.push_back(std::string(host) + ":443=127.0.0.1:" + std::to_string(mock_port));
    }
    args.push_back("--upstream-ca");
    args.push_back((paths.mock_dir / "ca.crt").string());
  }
  return args;
}

// Starts everything after the checks of devUp(). On error the caller stops the stack.
Status startStack(const DevPaths& paths, const DevFlags& flags,
                  std::chrono::steady_clock::time_point deadline, DevConfig& config) {
  // 1. The controller-manager and its API server.
  CLRK_ASSIGN_OR_RETURN(fs::path cm_binary, siblingBinary(kControllerManager));
  std::error_code ec;
  fs::create_directories(paths.state, ec);
  fs::permissions(paths.state, fs::perms::owner_all, ec);
  fs::remove(paths.url, ec);
  ManagedProcess cm = controllerManagerProcess(paths);
  CLRK_ASSIGN_OR_RETURN(pid_t cm_pid,
                        startDetached(cm, cm_binary, {"--state-dir", paths.state.string()}));
  Endpoint endpoint;
  auto api_ready = [&]() -> Status {
    auto read = readEndpoint(paths);
    if (!read.ok()) return Status(Code::Unavailable, "no " + paths.url.string() + " yet");
    CLRK_RETURN_IF_ERROR(readyz(*read));
    endpoint = *read;
    return {};
  };
  CLRK_RETURN_IF_ERROR(awaitReady(cm, cm_pid, deadline, api_ready));
  CLRK_RETURN_IF_ERROR(writeKubeconfig(paths, endpoint));
  std::cout << "clrk-controller-manager (pid " << cm_pid << ") serving " << endpoint.url << "\n";

  // 2. The mock providers, whose port the workers need.
  if (flags.mock_providers) {
    CLRK_ASSIGN_OR_RETURN(fs::path mock_binary, siblingBinary(kMockProviders));
    CLRK_RETURN_IF_ERROR(prepareMockTls(paths));
    fs::path port_file = paths.mock_dir / "port";
    fs::remove(port_file, ec);
    ManagedProcess mock = mockProcess(paths);
    CLRK_ASSIGN_OR_RETURN(pid_t mock_pid,
                          startDetached(mock, mock_binary,
                                        {"--listen", "127.0.0.1:0", "--tls-cert",
                                         (paths.mock_dir / "tls.crt").string(), "--tls-key",
                                         (paths.mock_dir / "tls.key").string(), "--port-file",
                                         port_file.string(), "--name", "clrk-dev"}));
    auto mock_ready = [&]() -> Status {
      auto text = readFile(port_file);
      if (!text.ok()) return Status(Code::Unavailable, "no " + port_file.string() + " yet");
      config.mock_port = std::atoi(trim(*text).c_str());
      return config.mock_port > 0 ? Status() : Status(Code::Unavailable, "bad port file");
    };
    CLRK_RETURN_IF_ERROR(awaitReady(mock, mock_pid, deadline, mock_ready));

    std::cout << "clrk-mock-providers (pid " << mock_pid
              << ") serving https://127.0.0.1:" << config.mock_port << " for";
    for (const char* host : kMockHosts) std::cout << " " << host;
    std::cout << " (CA " << (paths.mock_dir / "ca.crt").string() << ")\n";
  }
  CLRK_RETURN_IF_ERROR(writeConfig(paths, config));

  // 3. The workers, all started before waiting for any.
  if (flags.workers == 0) return {};
  CLRK_ASSIGN_OR_RETURN(fs::path worker_binary, siblingBinary(kWorker));
  std::vector<pid_t> pids;
  for (int index = 1; index <= flags.workers; ++index) {
    CLRK_ASSIGN_OR_RETURN(pid_t pid,
                          startDetached(workerProcess(paths, index), worker_binary,
                                        workerArgs(paths, flags, index, config.mock_port)));
    pids.push_back(pid);
  }
  CLRK_ASSIGN_OR_RETURN(kube::ClientPtr client, apiClient(endpoint));
  for (int index = 1; index <= flags.workers; ++index) {
    ManagedProcess worker = workerProcess(paths, index);
    std::string endpoint_url;
    auto registered = [&]() -> Status {
      CLRK_ASSIGN_OR_RETURN(Json lease, workerLease(*client, workerName(index)));
      endpoint_url = annotation(lease, "clrk.apoxy.dev/endpoint");
      return {};
    };
    CLRK_RETURN_IF_ERROR(
        awaitReady(worker, pids[static_cast<size_t>(index - 1)], deadline, registered));

    std::cout << worker.label << " (pid " << pids[static_cast<size_t>(index - 1)]
              << ") registered: Lease " << kSystemNamespace << "/worker-" << workerName(index)
              << ", API " << endpoint_url << "\n";
  }
  return {};
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
  if (pid_t pid = runningPid(controllerManagerProcess(*paths)); pid != 0) {
    auto endpoint = readEndpoint(*paths);
    if (!endpoint.ok() || !readyz(*endpoint).ok()) {
      printError("clrk-controller-manager (pid " + std::to_string(pid) +
                 ") is running but not ready; see " +
                 controllerManagerProcess(*paths).log.string() + " or run `clrk dev down`");
      return kExitError;
    }
    Status written = writeKubeconfig(*paths, *endpoint);
    if (!written.ok()) {
      printError(written);
      return kExitError;
    }
    std::cout << "clrk dev is already running (pid " << pid << ", " << endpoint->url
              << "); `clrk dev down` first to change its options\n";
    bool all_ok = printStack(*paths);
    printNextSteps(*paths);
    return all_ok ? kExitOk : kExitError;
  }
  if (flags.workers > 0 && ::geteuid() != 0) {
    printError(
        "clrk-worker needs root (network namespaces, nftables, cgroups); run as root or "
        "pass --workers 0");
    return kExitError;
  }
  if (flags.workers > 0 && flags.runtime == "gvisor" && !inPath("runsc")) {
    printError(
        "runtime gvisor needs runsc, which is not in PATH (Debian: apt-get install runsc); "
        "or use --runtime namespaces");
    return kExitError;
  }
  // Leftovers of a stack whose controller-manager died (workers, mocks) go first.
  if (int leftovers = stopStack(*paths); leftovers > 0) {
    std::cout << "stopped " << leftovers << " leftover process(es) of a previous `clrk dev up`\n";
  }
  DevConfig config;
  config.workers = flags.workers;
  config.runtime = flags.runtime;
  config.max_executions = flags.max_executions;
  config.mock_providers = flags.mock_providers;
  auto deadline = std::chrono::steady_clock::now() + *timeout;
  Status started = startStack(*paths, flags, deadline, config);
  if (!started.ok()) {
    std::cout.flush();
    printError(started);
    std::cerr << "stopping what was started\n";
    stopStack(*paths);
    return kExitError;
  }
  std::cout << "clrk dev is up\n";
  printStack(*paths);
  printNextSteps(*paths);
  return kExitOk;
}

int devDown() {
  auto paths = devPaths();
  if (!paths.ok()) {
    printError(paths.status());
    return kExitError;
  }
  if (stopStack(*paths) == 0) std::cout << "clrk dev is not running\n";
  return kExitOk;
}

int devStatus() {
  auto paths = devPaths();
  if (!paths.ok()) {
    printError(paths.status());
    return kExitError;
  }
  if (runningPid(controllerManagerProcess(*paths)) == 0 && recordedWorkers(*paths).empty() &&
      recordedPid(mockProcess(*paths)) == 0) {
    std::cout << "clrk-controller-manager: not running\n";
    return kExitError;
  }
  return printStack(*paths) ? kExitOk : kExitError;
}

}  // namespace

void addDevCommand(CLI::App& app, Globals& globals) {
  auto flags = std::make_shared<DevFlags>();
  CLI::App* dev = app.add_subcommand("dev", "Run the local stack (`clrk dev` = `clrk dev up`)");
  dev->require_subcommand(0, 1);
  CLI::App* up = dev->add_subcommand(
      "up", "Start clrk-controller-manager, the workers and the mock providers in the background");
  up->add_option("--timeout", flags->timeout, "How long to wait for readiness (default 60s)");
  up->add_option("--workers", flags->workers, "clrk-worker processes dev-1..dev-N (0: none)")
      ->check(CLI::Range(0, kMaxWorkers))
      ->capture_default_str();
  up->add_option("--runtime", flags->runtime, "Sandbox runtime of the workers")
      ->check(CLI::IsMember({"gvisor", "namespaces"}))
      ->capture_default_str();
  up->add_option("--max-executions", flags->max_executions, "Concurrent executions per worker")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  up->add_option("--share", flags->shares,
                 "HOST_DIR:SANDBOX_PATH[:rw]: a host directory every sandbox sees (read-only "
                 "unless :rw), e.g. examples:/opt/clrk/examples; repeatable");
  up->add_flag("--mock-providers", flags->mock_providers,
               "Answer api.openai.com, api.anthropic.com, generativelanguage.googleapis.com and "
               "mcp.mock.clrk.dev from clrk-mock-providers (TLS from a dev CA the workers trust)");
  CLI::App* down = dev->add_subcommand("down", "Stop the local stack");
  CLI::App* status = dev->add_subcommand("status", "Show every process of the local stack");
  up->callback([&globals, flags] { globals.exit_code = devUp(*flags); });
  down->callback([&globals] { globals.exit_code = devDown(); });
  status->callback([&globals] { globals.exit_code = devStatus(); });
  dev->callback([&globals, flags, dev] {
    if (dev->get_subcommands().empty()) globals.exit_code = devUp(*flags);
  });
}

}  // namespace clrk::cli
