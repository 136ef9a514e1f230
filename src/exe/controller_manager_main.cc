// clrk-controller-manager: the embedded Kubernetes-compatible API server and the controllers in
// one process (embedded mode), or the controllers alone against the cluster of --kubeconfig /
// the in-cluster service account (cluster mode). Writes the API server's URL to
// <state-dir>/apiserver.url and the HTTP trigger's URL to <state-dir>/trigger.url once
// listening; stops gracefully on SIGTERM/SIGINT. With --otlp-traces-endpoint (or the OTel SDK
// environment variables) it also exports every invocation as an OTLP trace to that collector.
#include "clrk/apiserver/server.h"
#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"
#include "clrk/controller/leader_election.h"
#include "clrk/controller/manager.h"
#include "clrk/kube/config.h"
#include "clrk/telemetry/local_store.h"
#include "clrk/telemetry/otlp_receiver.h"
#include "clrk/telemetry/span_exporter.h"
#include "clrk/telemetry/trace_spans.h"

#include <CLI/CLI.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <signal.h>
#include <thread>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;

// Opens <state>/traces.db and starts the OTLP receiver feeding it; the bearer token is read from
// (or created in) <state>/otlp.token, 0600.
clrk::Status startTraceIntake(const std::string& listen, const std::string& state_dir,
                              std::unique_ptr<clrk::telemetry::LocalStore>& store,
                              std::unique_ptr<clrk::telemetry::OtlpReceiver>& receiver,
                              std::unique_ptr<clrk::telemetry::EgressSpanTap>& tap,
                              clrk::telemetry::SpanExporter* traces) {
  fs::path token_file = fs::path(state_dir) / "otlp.token";
  std::string token;
  if (auto existing = clrk::readFile(token_file); existing.ok()) {
    token = *existing;
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
      token.pop_back();
  }
  if (token.empty()) {
    token = clrk::randomHex(32);
    CLRK_RETURN_IF_ERROR(clrk::writeFileAtomic(token_file, token + "\n", 0600));
  }
  CLRK_ASSIGN_OR_RETURN(store,
                        clrk::telemetry::LocalStore::open(fs::path(state_dir) / "traces.db"));
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return clrk::invalidArgument("--otlp-listen " + listen + ": want ip:port");
  clrk::telemetry::OtlpReceiverOptions options;
  options.bind = listen.substr(0, colon);
  try {
    int port = std::stoi(listen.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    options.port = static_cast<uint16_t>(port);
  } catch (const std::exception&) {
    return clrk::invalidArgument("--otlp-listen " + listen + ": bad port");
  }
  options.token = token;
  clrk::telemetry::Sink* sink = store.get();
  if (traces != nullptr) {
    // Stored first, then exported as spans (a batch the store refuses is sent again).
    tap = std::make_unique<clrk::telemetry::EgressSpanTap>(*store, *traces);
    sink = tap.get();
  }
  CLRK_ASSIGN_OR_RETURN(receiver, clrk::telemetry::OtlpReceiver::create(options, *sink));
  return receiver->start();
}

int run(int argc, char** argv) {
  CLI::App app{"clrk-controller-manager: embedded API server and controllers",
               "clrk-controller-manager"};
  std::string state_dir;
  std::string bind_address = "127.0.0.1";
  int port = 0;
  bool in_memory = false;
  std::string log_level = "info";
  std::string kubeconfig;
  std::string trigger_listen = "127.0.0.1:0";
  std::string invocation_ttl = "24h";
  int invocation_history = 500;
  bool egress_statuses = true;
  std::string system_namespace = "clrk-system";
  bool controllers = true;
  std::string leader_elect = "auto";
  std::string otlp_listen = "127.0.0.1:0";
  std::string worker_runtime = "gvisor";
  std::string traces_endpoint;
  std::vector<std::string> traces_headers;
  std::string traces_protocol;
  app.add_option("--state-dir", state_dir,
                 "Directory for the database, PKI and token (default $CLRK_HOME/state)");
  app.add_option("--bind-address", bind_address, "Address to listen on (default 127.0.0.1)");
  app.add_option("--port", port, "Port to listen on; 0 picks a free port (default 0)")
      ->check(CLI::Range(0, 65535));
  app.add_flag("--in-memory", in_memory, "Keep objects in memory instead of SQLite");
  app.add_option("-v,--log-level", log_level, "Log level: trace|debug|info|warn|error|off")
      ->envname("CLRK_LOG_LEVEL");
  app.add_option("--kubeconfig", kubeconfig,
                 "Cluster mode: run the controllers against this cluster instead of an embedded "
                 "API server (\"in-cluster\" uses the pod's service account)");
  app.add_option("--trigger-listen", trigger_listen,
                 "HTTP trigger address ip:port (default 127.0.0.1:0, any free port)");
  app.add_flag(
      "--egress-statuses", egress_statuses,
      "Write egress verdicts into EgressGateway/route/policy/Backend status (experimental)");
  app.add_option("--invocation-ttl", invocation_ttl,
                 "Delete finished Invocations this long after they ended (default 24h; 0s: never)");
  app.add_option("--invocation-history", invocation_history,
                 "Finished Invocations kept per agent, newest first (default 500; 0: no cap)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--system-namespace", system_namespace,
                 "Namespace of worker Leases and Secrets (default clrk-system)");
  app.add_flag("!--no-controllers", controllers, "Serve the API only (no controllers)");
  app.add_option("--otlp-listen", otlp_listen,
                 "OTLP/HTTP intake for the workers' egress records, ip:port (default "
                 "127.0.0.1:0; empty disables). Records go to <state-dir>/traces.db for `clrk "
                 "traces`; the bearer token is <state-dir>/otlp.token");
  app.add_option("--otlp-traces-endpoint", traces_endpoint,
                 "Export every invocation as an OTLP trace to this collector, OTLP/HTTP "
                 "http(s)://host:port[/v1/traces] (POST /v1/traces): a SERVER span per "
                 "Invocation, an INTERNAL span per execution and a CLIENT span per egress call "
                 "the intake receives. Default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else "
                 "$OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces; unset: no export");
  app.add_option("--otlp-traces-header", traces_headers,
                 "Header for the traces collector, key=value (repeatable, e.g. "
                 "\"authorization=Bearer TOKEN\"; default $OTEL_EXPORTER_OTLP_TRACES_HEADERS / "
                 "$OTEL_EXPORTER_OTLP_HEADERS, k=v,k2=v2)");
  app.add_option("--otlp-traces-protocol", traces_protocol,
                 "http/protobuf (default) or http/json (default "
                 "$OTEL_EXPORTER_OTLP_TRACES_PROTOCOL / $OTEL_EXPORTER_OTLP_PROTOCOL)");
  app.add_option("--leader-elect", leader_elect,
                 "Run the controllers only while holding the Lease clrk-controller-manager in the "
                 "system namespace: true|false|auto (auto: true in cluster mode)")
      ->check(CLI::IsMember({"true", "false", "auto"}));
  app.add_option("--worker-runtime", worker_runtime,
                 "Cluster mode: sandbox runtime of the WorkerPools' worker pods")
      ->check(CLI::IsMember({"gvisor", "namespaces"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
  auto ttl = clrk::parseDuration(invocation_ttl);
  if (!ttl || ttl->count() < 0) {
    std::cerr << "error: --invocation-ttl \"" << invocation_ttl
              << "\": not a duration like 24h, 90m or 0s\n";
    return 2;
  }
  if (!clrk::setLogLevel(log_level)) {
    std::cerr << "error: unknown log level \"" << log_level << "\"\n";
    return 2;
  }
  auto log = clrk::logger("controller-manager");
  std::atomic<int> exit_code{0};
  if (state_dir.empty()) {
    auto home = clrk::clrkHome();
    if (!home.ok()) {
      std::cerr << "error: " << home.status().message() << "\n";
      return 1;
    }
    state_dir = (*home / "state").string();
  }
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  fs::permissions(state_dir, fs::perms::owner_all, ec);
  fs::path url_file = fs::path(state_dir) / "apiserver.url";
  fs::remove(url_file, ec);

  // Block the stop signals in every thread; the main thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Trace export to the user's collector (best effort: a bounded queue, never blocks).
  std::unique_ptr<clrk::telemetry::SpanExporter> traces;
  {
    auto traces_options =
        clrk::telemetry::tracesExporterOptions(traces_endpoint, traces_headers, traces_protocol);
    if (!traces_options.ok()) {
      std::cerr << "error: " << traces_options.status().message() << "\n";
      return 2;
    }
    if (traces_options->has_value()) {
      std::string endpoint = (*traces_options)->endpoint;
      auto otlp_traces = clrk::telemetry::OtlpHttpExporter::create(**traces_options);
      if (!otlp_traces.ok()) {
        std::cerr << "error: traces exporter: " << otlp_traces.status().message() << "\n";
        return 2;
      }
      traces = clrk::telemetry::SpanExporter::start(std::move(*otlp_traces));
      log->info("exporting invocation traces to {}/v1/traces", endpoint);
    }
  }

  // Embedded mode: the API server in this process; cluster mode: the cluster's.
  clrk::apiserver::ServerPtr server;
  clrk::kube::RestConfig rest;
  if (kubeconfig.empty()) {
    clrk::apiserver::ServerOptions options;
    options.bind_address = bind_address;
    options.port = static_cast<uint16_t>(port);
    options.state_dir = state_dir;
    options.in_memory = in_memory;
    server = clrk::apiserver::makeServer(options);
    clrk::Status started = server->start();
    if (!started.ok()) {
      std::cerr << "error: starting the API server: " << started.message() << "\n";
      return 1;
    }
    clrk::Status written = clrk::writeFileAtomic(url_file, server->url() + "\n", 0644);
    if (!written.ok()) {
      std::cerr << "error: " << written.message() << "\n";
      server->stop();
      return 1;
    }
    log->info("API server listening on {} (state {})", server->url(), state_dir);
    rest.server = server->url();
    rest.ca_pem = server->caCertificatePem();
    rest.token = server->token();
  } else {
    auto loaded = kubeconfig == "in-cluster"
                      ? clrk::kube::inClusterConfig()
                      : clrk::kube::loadConfig(clrk::kube::ConfigOptions{kubeconfig, {}});
    if (!loaded.ok()) {
      std::cerr << "error: --kubeconfig " << kubeconfig << ": " << loaded.status().message()
                << "\n";
      return 1;
    }
    rest = std::move(loaded).value();
    log->info("cluster mode: controllers against {} ({})", rest.server, rest.source);
  }

  // The trace intake: workers export their egress records here (OTLP/HTTP, bearer token).
  std::unique_ptr<clrk::telemetry::LocalStore> trace_store;
  std::unique_ptr<clrk::telemetry::OtlpReceiver> otlp;
  std::unique_ptr<clrk::telemetry::EgressSpanTap> trace_tap;
  fs::path otlp_file = fs::path(state_dir) / "otlp.url";
  fs::remove(otlp_file, ec);
  if (!otlp_listen.empty()) {
    clrk::Status intake =
        startTraceIntake(otlp_listen, state_dir, trace_store, otlp, trace_tap, traces.get());
    if (intake.ok()) {
      intake = clrk::writeFileAtomic(otlp_file,
                                     "http://" + otlp_listen.substr(0, otlp_listen.rfind(':')) +
                                         ":" + std::to_string(otlp->port()) + "\n",
                                     0644);
    }
    if (!intake.ok()) {
      std::cerr << "error: trace intake: " << intake.message() << "\n";
      if (server) server->stop();
      return 1;
    }
    log->info("OTLP intake on port {} (records in {}/traces.db)", otlp->port(), state_dir);
  }

  std::unique_ptr<clrk::controller::Manager> manager;
  std::unique_ptr<clrk::controller::LeaderElector> elector;
  std::thread manager_starter;
  fs::path trigger_file = fs::path(state_dir) / "trigger.url";
  fs::remove(trigger_file, ec);
  clrk::kube::ClientPtr client;
  if (controllers) {
    auto created = clrk::kube::Client::create(rest);
    if (!created.ok()) {
      std::cerr << "error: API client: " << created.status().message() << "\n";
      if (server) server->stop();
      return 1;
    }
    client = *created;
    clrk::controller::ManagerOptions manager_options;
    manager_options.trigger_listen = trigger_listen;
    manager_options.system_namespace = system_namespace;
    manager_options.invocation_gc.ttl = std::chrono::duration_cast<std::chrono::seconds>(*ttl);
    manager_options.invocation_gc.history_limit = invocation_history;
    manager_options.egress_statuses = egress_statuses;
    if (!kubeconfig.empty()) {
      // A real cluster runs each WorkerPool as a Deployment of clrk-worker pods; `clrk dev`
      // (embedded API server) starts its workers as local processes instead.
      manager_options.worker_deployments =
          clrk::controller::WorkerDeploymentOptions{system_namespace, worker_runtime};
    }
    if (traces) {
      manager_options.on_invocation_finished = [&traces, log](const clrk::kube::Json& object) {
        auto input = clrk::telemetry::invocationSpanInput(object);
        if (!input.ok()) {
          log->warn("traces: {}", input.status().message());
          return;
        }
        traces->emit(clrk::telemetry::invocationSpans(*input));
      };
    }
    manager = clrk::controller::Manager::create(client, manager_options);
  }
  // Starts the controllers; on failure asks main to shut down (SIGTERM to ourselves).
  auto start_manager = [&] {
    clrk::Status started = manager->start();
    if (started.ok()) {
      started = clrk::writeFileAtomic(trigger_file, manager->triggerUrl() + "\n", 0644);
    }
    if (!started.ok()) {
      log->error("starting the controllers: {}", started.message());
      exit_code = 1;
      kill(getpid(), SIGTERM);
    }
  };
  bool elect = leader_elect == "true" || (leader_elect == "auto" && !kubeconfig.empty());
  if (manager && elect) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    clrk::controller::LeaderElector::Options election;
    election.namespace_name = system_namespace;
    election.lease_name = "clrk-controller-manager";
    election.identity = std::string(host) + "_" + clrk::randomHex(4);
    clrk::controller::LeaderElector::Callbacks callbacks;
    // Starting waits for caches: off the elector's thread, so renewals keep going meanwhile.
    callbacks.on_started_leading = [&, identity = election.identity] {
      log->info("leading as {}; starting the controllers", identity);
      manager_starter = std::thread(start_manager);
    };
    callbacks.on_stopped_leading = [&] {
      log->error("lost the leader Lease; exiting so a new leader takes over cleanly");
      exit_code = 1;
      kill(getpid(), SIGTERM);
    };
    elector = std::make_unique<clrk::controller::LeaderElector>(client, election, callbacks);
    if (clrk::Status s = elector->start(); !s.ok()) {
      std::cerr << "error: leader election: " << s.message() << "\n";
      if (server) server->stop();
      return 1;
    }
  } else if (manager) {
    start_manager();
  }

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  log->info("received signal {}, shutting down", signal_number);
  if (manager_starter.joinable()) manager_starter.join();
  if (manager) manager->stop();  // controllers stop before the API server they talk to
  if (elector) elector->stop();  // releases the Lease for the next leader
  fs::remove(trigger_file, ec);
  if (otlp) otlp->stop();
  fs::remove(otlp_file, ec);
  if (traces) {
    traces->stop();  // sends what is queued once more
    auto stats = traces->stats();
    log->info("traces: {} spans exported, {} dropped (queue full), {} dropped (collector)",
              stats.exported, stats.dropped_overflow, stats.dropped_failed);
  }
  if (server) server->stop();
  fs::remove(url_file, ec);
  log->info("stopped");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
