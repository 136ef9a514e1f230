// clrk-worker: runs sandboxed executions for the controller, hosts the egress data plane and
// registers itself through a Lease (see docs/architecture/worker.md). Prints the worker API
// endpoint once ready; SIGTERM/SIGINT drain gracefully and exit 0.
#include "clrk/base/files.h"
#include "clrk/base/log.h"
#include "clrk/worker/daemon.h"

#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>
#include <unistd.h>

namespace {

std::string hostName() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof buffer - 1) != 0) return "worker";
  std::string name(buffer);
  for (char& c : name) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') c = '-';
  }
  return name.empty() ? "worker" : name;
}

int run(int argc, char** argv) {
  CLI::App app{"clrk-worker: sandboxed executions, in-process egress, worker API", "clrk-worker"};
  clrk::worker::DaemonOptions options;
  options.name = hostName();
  std::string state_dir;
  int drain_seconds = 30;
  int egress_port = options.egress_port;
  int dns_port = options.dns_port;
  std::string log_level = "info";
  app.add_option("--kubeconfig", options.kubeconfig,
                 "Kubeconfig of the API server (default ~/.clrk/kubeconfig.host, or in-cluster "
                 "config when KUBERNETES_SERVICE_HOST is set)");
  app.add_option("--name", options.name, "Worker name (Lease worker-<name>)")
      ->capture_default_str();
  app.add_option("--pool", options.pool, "WorkerPool this worker belongs to")->required();
  app.add_option("--namespace", options.pool_namespace, "Namespace of the WorkerPool")
      ->capture_default_str();
  app.add_flag("--any-pool", options.any_pool,
               "Local dev worker: may run executions of every pool in every namespace (Lease "
               "annotation clrk.apoxy.dev/any-pool: \"true\")");
  app.add_option("--system-namespace", options.system_namespace,
                 "Namespace of the Lease, CA and token Secrets (created if missing)")
      ->capture_default_str();
  app.add_option("--listen", options.listen, "Worker API address ip:port (port 0: any)")
      ->capture_default_str();
  app.add_option("--advertise", options.advertise,
                 "host:port the controller should use (default: the bound address)");
  app.add_option("--runtime", options.runtime, "Sandbox runtime")
      ->check(CLI::IsMember({"gvisor", "namespaces"}))
      ->capture_default_str();
  app.add_option("--state-dir", state_dir, "State directory (default ~/.clrk/workers/<name>)");
  app.add_option("--max-executions", options.max_executions, "Concurrent executions")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--net-tag", options.net_tag,
                 "1-3 characters [a-z0-9] naming this worker's netns/veth/nft objects (default "
                 "derived from the name)");
  app.add_option("--pool-cidr", options.pool_cidr, "IPv4 pool carved into /30s per sandbox")
      ->capture_default_str();
  app.add_option("--egress-port", egress_port, "Transparent egress listener port (0: any)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--dns-port", dns_port, "Egress DNS port (0: any)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app.add_option("--upstream-override", options.upstream_overrides,
                 "Dial host:port at ip:port instead (repeatable), e.g. "
                 "api.openai.com:443=127.0.0.1:8443");
  app.add_option("--upstream-ca", options.upstream_ca,
                 "Extra PEM CA bundle trusted for upstream TLS");
  app.add_option("--insecure-registry", options.insecure_registries,
                 "Registry host:port pulled over plain HTTP (repeatable)");
  app.add_option("--share", options.shares,
                 "HOST_DIR:SANDBOX_PATH[:rw]: a host directory every sandbox sees (read-only "
                 "unless :rw); repeatable");
  app.add_option("--drain-timeout", drain_seconds,
                 "Seconds SIGTERM waits for running executions before stopping them")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  app.add_option("--egress-threads", options.egress_threads, "Egress event loops")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--otlp-endpoint", options.otlp_endpoint,
                 "Also export egress records to this OTLP/HTTP collector base URL "
                 "(http(s)://host[:port]; traces, protobuf), e.g. the controller-manager's");
  app.add_option("--otlp-token-file", options.otlp_token_file,
                 "File with the bearer token for --otlp-endpoint")
      ->check(CLI::ExistingFile);
  app.add_option("-v,--log-level", log_level, "trace|debug|info|warn|error|off")
      ->envname("CLRK_LOG_LEVEL")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (!options.otlp_token_file.empty() && options.otlp_endpoint.empty()) {
    std::cerr << "error: --otlp-token-file needs --otlp-endpoint\n";
    return 2;
  }
  if (!clrk::setLogLevel(log_level)) {
    std::cerr << "error: unknown log level \"" << log_level << "\"\n";
    return 2;
  }
  options.egress_port = static_cast<uint16_t>(egress_port);
  options.dns_port = static_cast<uint16_t>(dns_port);
  options.drain_timeout = std::chrono::seconds(drain_seconds);
  if (state_dir.empty()) {
    auto home = clrk::clrkHome();
    if (!home.ok()) {
      std::cerr << "error: " << home.status().message() << "\n";
      return 1;
    }
    options.state_dir = home.value() / "workers" / options.name;
  } else {
    options.state_dir = state_dir;
  }

  // Stop signals are taken by sigwait() below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto daemon = clrk::worker::Daemon::start(options);
  if (!daemon.ok()) {
    std::cerr << "error: " << daemon.status().message() << "\n";
    return 1;
  }
  std::cout << "clrk-worker " << options.name << ": listening on " << daemon.value()->endpoint()
            << " (tls-sha256 " << daemon.value()->fingerprint() << ")" << std::endl;
  int signal_number = 0;
  sigwait(&signals, &signal_number);
  clrk::logger("worker")->info("received signal {}, draining", signal_number);
  clrk::Status stopped = daemon.value()->shutdown();
  daemon.value().reset();
  if (!stopped.ok()) {
    std::cerr << "error: " << stopped.message() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
