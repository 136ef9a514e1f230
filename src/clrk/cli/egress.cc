// `clrk egress -f MANIFESTS --listen ADDR`: the egress data plane alone, as an explicit HTTP
// proxy (CONNECT and absolute-URI requests) governed by the same manifests a cluster uses, so
// agents on a laptop or in CI get the same policy, credentials and telemetry without a sandbox.
// `clrk egress records` prints the calls it recorded.
#include "clrk/base/files.h"
#include "clrk/base/log.h"
#include "clrk/cli/common.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/proxy.h"
#include "clrk/egress/tls/authority.h"
#include "clrk/telemetry/local_store.h"
#include "clrk/telemetry/otlp_exporter.h"
#include "clrk/telemetry/pipeline.h"

#include <csignal>
#include <filesystem>
#include <iostream>
#include <thread>

namespace clrk::cli {
namespace {

namespace fs = std::filesystem;

struct EgressFlags {
  std::vector<std::string> files;
  std::string listen = "127.0.0.1:15080";
  std::string transparent;
  std::string dns;
  std::string state_dir;
  std::string ca_cert_out;
  std::string otlp_endpoint;
  std::string otlp_encoding = "protobuf";
  std::string upstream_ca;
  std::vector<std::string> overrides;
  int threads = 2;
};

struct RecordsFlags {
  std::string state_dir;
  std::string agent;
  std::string execution;
  size_t limit = 20;
};

std::atomic<int> g_signal{0};

void onSignal(int signal) { g_signal.store(signal); }

fs::path stateDir(const std::string& flag) {
  if (!flag.empty()) return fs::path(flag);
  auto home = clrkHome();
  return home.ok() ? home.value() / "egress" : fs::path(".clrk-egress");
}

// Reads, validates and compiles the manifests. Rejected objects are reported, the rest used.
Result<std::shared_ptr<const egress::config::Snapshot>> loadSnapshot(
    const std::vector<std::string>& files, uint64_t generation, bool* any_rejected) {
  CLRK_ASSIGN_OR_RETURN(auto documents, readManifests(files));
  const api::Registry& registry = api::Registry::builtin();
  std::vector<nlohmann::json> objects;
  bool invalid = false;
  for (auto& document : documents) {
    Status status = api::checkDocument(registry, document);
    if (!status.ok()) {
      printError(status);
      invalid = true;
      continue;
    }
    auto& metadata = document.object["metadata"];
    const api::ResourceType* type =
        registry.byKind(document.object.value("apiVersion", ""), document.object.value("kind", ""));
    if (type && type->namespaced && metadata.value("namespace", "").empty()) {
      metadata["namespace"] = "default";
    }
    objects.push_back(std::move(document.object));
  }
  if (invalid) return invalidArgument("manifests have errors (see above); nothing was applied");
  auto compiled = egress::config::compile(objects, generation);
  for (const auto& status : compiled.statuses) {
    if (status.accepted) continue;
    *any_rejected = true;
    std::cerr << fmt::format("warning: {} {}/{} not accepted ({}): {}\n", status.kind,
                             status.namespace_name, status.name, status.reason, status.message);
  }
  return compiled.snapshot;
}

// Loads the MITM CA from the state dir, creating it on first use (key 0600).
Result<std::shared_ptr<const egress::tls::CertificateAuthority>> loadOrCreateCa(
    const fs::path& dir) {
  fs::path cert_path = dir / "ca.crt";
  fs::path key_path = dir / "ca.key";
  if (fs::exists(cert_path) && fs::exists(key_path)) {
    CLRK_ASSIGN_OR_RETURN(auto cert, readFile(cert_path.string()));
    CLRK_ASSIGN_OR_RETURN(auto key, readFile(key_path.string()));
    return egress::tls::CertificateAuthority::fromPem(cert, key);
  }
  CLRK_ASSIGN_OR_RETURN(auto ca, egress::tls::CertificateAuthority::generate(
                                     "clrk egress CA", std::chrono::hours(24 * 365 * 2)));
  CLRK_RETURN_IF_ERROR(writeFileAtomic(key_path.string(), ca->keyPem(), 0600));
  CLRK_RETURN_IF_ERROR(writeFileAtomic(cert_path.string(), ca->certPem(), 0644));
  return ca;
}

int runEgress(const EgressFlags& flags) {
  fs::path dir = stateDir(flags.state_dir);
  std::error_code fs_error;
  fs::create_directories(dir, fs_error);
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, fs_error);
  bool rejected = false;
  auto snapshot = loadSnapshot(flags.files, 1, &rejected);
  if (!snapshot.ok()) {
    printError(snapshot.status());
    return kExitError;
  }
  egress::config::SnapshotHolder holder;
  holder.swap(snapshot.value());
  egress::IdentityMap identities;

  auto ca = loadOrCreateCa(dir);
  if (!ca.ok()) {
    printError(ca.status().withContext("MITM CA"));
    return kExitError;
  }
  if (!flags.ca_cert_out.empty()) {
    Status written = writeFileAtomic(flags.ca_cert_out, ca.value()->certPem(), 0644);
    if (!written.ok()) {
      printError(written.withContext("--ca-cert-out"));
      return kExitError;
    }
  }

  // Telemetry: local store always; OTLP when asked (flag, else the default gateway's endpoint).
  telemetry::PipelineOptions pipeline_options;
  pipeline_options.spool_dir = dir / "spool";
  auto store = telemetry::LocalStore::open(dir / "records.db");
  if (!store.ok()) {
    printError(store.status().withContext("local record store"));
    return kExitError;
  }
  pipeline_options.sinks.push_back(std::shared_ptr<telemetry::Sink>(std::move(store).value()));
  std::string otlp_endpoint = flags.otlp_endpoint;
  std::vector<std::pair<std::string, std::string>> otlp_headers;
  if (const auto* gateway = holder.current()->gateway(""); gateway && otlp_endpoint.empty()) {
    otlp_endpoint = gateway->otlp.endpoint;
    otlp_headers = gateway->otlp.headers;
  }
  if (!otlp_endpoint.empty()) {
    telemetry::OtlpExporterOptions otlp;
    otlp.endpoint = otlp_endpoint;
    otlp.headers = otlp_headers;
    otlp.encoding = flags.otlp_encoding == "json" ? telemetry::OtlpEncoding::Json
                                                  : telemetry::OtlpEncoding::Protobuf;
    otlp.resource_attributes.push_back({"service.name", std::string("clrk-egress")});
    auto exporter = telemetry::OtlpHttpExporter::create(otlp);
    if (!exporter.ok()) {
      printError(exporter.status().withContext("--otlp-endpoint"));
      return kExitError;
    }
    pipeline_options.sinks.push_back(std::shared_ptr<telemetry::Sink>(std::move(exporter).value()));
  }
  auto pipeline = telemetry::Pipeline::start(pipeline_options);
  if (!pipeline.ok()) {
    printError(pipeline.status().withContext("telemetry pipeline"));
    return kExitError;
  }

  egress::ProxyOptions options;
  options.threads = flags.threads;
  options.explicit_listen = flags.listen;
  options.transparent_listen = flags.transparent;
  options.dns_listen = flags.dns;
  options.default_ca_cert_pem = ca.value()->certPem();
  options.default_ca_key_pem = ca.value()->keyPem();
  if (!flags.upstream_ca.empty()) {
    auto pem = readFile(flags.upstream_ca);
    if (!pem.ok()) {
      printError(pem.status().withContext("--upstream-ca"));
      return kExitError;
    }
    options.extra_upstream_ca_pem = pem.value();
  }
  for (const auto& entry : flags.overrides) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      printError("--upstream-override " + entry + ": want host:port=ip:port");
      return kExitUsage;
    }
    options.upstream_overrides.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  auto proxy = egress::Proxy::start(options, holder, identities, pipeline.value().get());
  if (!proxy.ok()) {
    printError(proxy.status());
    return kExitError;
  }
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  std::signal(SIGHUP, onSignal);
  std::cout << fmt::format("clrk egress: explicit proxy on {}:{}",
                           flags.listen.substr(0, flags.listen.rfind(':')),
                           proxy.value()->explicitPort());
  if (proxy.value()->transparentPort()) {
    std::cout << fmt::format(", transparent :{}", proxy.value()->transparentPort());
  }
  if (proxy.value()->dnsPort()) std::cout << fmt::format(", dns :{}", proxy.value()->dnsPort());
  std::cout << fmt::format(
                   "\nCA certificate: {}\nrecords: {}\n",
                   flags.ca_cert_out.empty() ? (dir / "ca.crt").string() : flags.ca_cert_out,
                   (dir / "records.db").string())
            << std::flush;
  uint64_t generation = 1;
  for (;;) {
    int signal = g_signal.exchange(0);
    if (signal == SIGINT || signal == SIGTERM) break;
    if (signal == SIGHUP) {
      bool reload_rejected = false;
      auto next = loadSnapshot(flags.files, ++generation, &reload_rejected);
      if (next.ok()) {
        holder.swap(next.value());
        std::cerr << "clrk egress: configuration reloaded\n";
      } else {
        printError(next.status().withContext("reload (previous configuration kept)"));
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  proxy.value()->stop();
  pipeline.value()->flush(std::chrono::seconds(2));
  return kExitOk;
}

int runRecords(const RecordsFlags& flags) {
  fs::path dir = stateDir(flags.state_dir);
  auto store = telemetry::LocalStore::open(dir / "records.db");
  if (!store.ok()) {
    printError(store.status());
    return kExitError;
  }
  telemetry::Query query;
  query.agent = flags.agent;
  query.execution_id = flags.execution;
  query.limit = flags.limit;
  auto records = store.value()->query(query);
  if (!records.ok()) {
    printError(records.status());
    return kExitError;
  }
  for (const auto& record : records.value()) std::cout << telemetry::toJson(record) << "\n";
  return kExitOk;
}

}  // namespace

void addEgressCommand(CLI::App& app, Globals& globals) {
  auto* cmd = app.add_subcommand(
      "egress", "Run the egress data plane alone as an explicit proxy governed by manifests");
  auto flags = std::make_shared<EgressFlags>();
  cmd->add_option("-f,--filename", flags->files,
                  "Manifests (EgressGateway, routes, policies, Backends, Secrets); repeatable");
  cmd->add_option("--listen", flags->listen, "Explicit proxy address ip:port")
      ->capture_default_str();
  cmd->add_option("--transparent", flags->transparent,
                  "Also a transparent listener ip:port (for nftables REDIRECT)");
  cmd->add_option("--dns", flags->dns, "Also a DNS server ip:port answering synthetic addresses");
  cmd->add_option("--state-dir", flags->state_dir,
                  "CA, spool and records (default $CLRK_HOME/egress)");
  cmd->add_option("--ca-cert-out", flags->ca_cert_out,
                  "Write the MITM CA certificate here (clients must trust it)");
  cmd->add_option("--otlp-endpoint", flags->otlp_endpoint,
                  "OTLP/HTTP collector base URL (default: the gateway's spec.otlp.endpoint)");
  cmd->add_option("--otlp-encoding", flags->otlp_encoding, "protobuf or json")
      ->check(CLI::IsMember({"protobuf", "json"}))
      ->capture_default_str();
  cmd->add_option("--upstream-ca", flags->upstream_ca,
                  "Extra PEM CA bundle trusted for upstream TLS");
  cmd->add_option("--upstream-override", flags->overrides,
                  "Dial host:port at ip:port instead (repeatable), e.g. "
                  "api.openai.com:443=127.0.0.1:8443");
  cmd->add_option("--threads", flags->threads, "Event loop threads")->capture_default_str();
  auto* records = cmd->add_subcommand("records", "Print recorded calls (newest first, JSON lines)");
  auto records_flags = std::make_shared<RecordsFlags>();
  records->add_option("--state-dir", records_flags->state_dir, "As for clrk egress");
  records->add_option("--agent", records_flags->agent, "Only this agent");
  records->add_option("--execution", records_flags->execution, "Only this execution id");
  records->add_option("--limit", records_flags->limit, "Most records printed")
      ->capture_default_str();
  records->callback([&globals, records_flags] { globals.exit_code = runRecords(*records_flags); });
  cmd->callback([&globals, flags, records] {
    if (records->parsed()) return;
    if (flags->files.empty()) throw CLI::RequiredError("-f");
    globals.exit_code = runEgress(*flags);
  });
}

}  // namespace clrk::cli
