#include "clrk/worker/daemon.h"

#include "clrk/base/files.h"
#include "clrk/base/log.h"
#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/proxy.h"
#include "clrk/kube/client.h"
#include "clrk/kube/config.h"
#include "clrk/sandbox/image/image_store.h"
#include "clrk/sandbox/net/network.h"
#include "clrk/sandbox/runtime.h"
#include "clrk/telemetry/attributes.h"
#include "clrk/telemetry/local_store.h"
#include "clrk/telemetry/otlp_exporter.h"
#include "clrk/telemetry/pipeline.h"
#include "clrk/worker/certs.h"
#include "clrk/worker/egress_feed.h"
#include "clrk/worker/executions.h"
#include "clrk/worker/registration.h"
#include "clrk/worker/server.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>
#include <functional>
#include <mutex>

namespace clrk::worker {
namespace {

namespace fs = std::filesystem;
namespace image = sandbox::image;

// The OTLP sink of --otlp-endpoint: traces as protobuf, the token (never logged) as a bearer
// header, the worker's name as a resource attribute.
Result<std::shared_ptr<telemetry::Sink>> makeOtlpExporter(const DaemonOptions& options) {
  telemetry::OtlpExporterOptions exporter;
  exporter.endpoint = options.otlp_endpoint;
  exporter.signal = telemetry::OtlpSignal::Traces;
  exporter.encoding = telemetry::OtlpEncoding::Protobuf;
  exporter.resource_attributes = {
      {"service.name", std::string("clrk-worker")},
      {std::string(telemetry::attr::kClrkWorker), options.name},
  };
  if (!options.otlp_token_file.empty()) {
    auto token = readFile(options.otlp_token_file);
    if (!token.ok()) return token.status().withContext("--otlp-token-file");
    std::string_view value = token.value();
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
      value.remove_suffix(1);
    }
    while (!value.empty() && std::isspace(static_cast<unsigned char>(value.front()))) {
      value.remove_prefix(1);
    }
    if (value.empty()) return invalidArgument("--otlp-token-file: the file is empty");
    if (value.find_first_of("\r\n") != std::string_view::npos) {
      return invalidArgument("--otlp-token-file: the token must be one line");
    }
    exporter.headers.emplace_back("authorization", "Bearer " + std::string(value));
  }
  auto created = telemetry::OtlpHttpExporter::create(std::move(exporter));
  if (!created.ok()) return created.status().withContext("--otlp-endpoint");
  return std::shared_ptr<telemetry::Sink>(std::move(created).value());
}

Result<kube::RestConfig> loadRestConfig(const std::string& kubeconfig) {
  if (!kubeconfig.empty()) return kube::loadKubeconfigFiles({fs::path(kubeconfig)});
  kube::ConfigOptions options;
  // kubectl's order ($KUBECONFIG, in-cluster when KUBERNETES_SERVICE_HOST is set, ~/.kube/config),
  // but clrk's own host kubeconfig first when it exists and nothing else was asked for.
  if (std::getenv("KUBECONFIG") == nullptr && std::getenv("KUBERNETES_SERVICE_HOST") == nullptr) {
    auto home = clrkHome();
    if (home.ok() && fs::exists(home.value() / "kubeconfig.host")) {
      return kube::loadKubeconfigFiles({home.value() / "kubeconfig.host"});
    }
  }
  return kube::loadConfig(options);
}

// Credentials for `registry` from kubernetes.io/dockerconfigjson Secrets.
Result<std::optional<image::RegistryAuth>> pullAuth(kube::Client& client, const std::string& ns,
                                                    const std::vector<std::string>& names,
                                                    const std::string& registry) {
  const api::ResourceType* secret_type = api::Registry::builtin().byKind("v1", "Secret");
  for (const auto& name : names) {
    auto secret = client.get(*secret_type, ns, name);
    if (!secret.ok()) return secret.status().withContext("Secret " + ns + "/" + name);
    auto config = secretValue(secret.value(), ".dockerconfigjson");
    if (!config.ok()) config = secretValue(secret.value(), ".dockercfg");
    if (!config.ok()) return config.status();
    auto auths = image::parseDockerConfigJson(config.value());
    if (!auths.ok()) return auths.status().withContext("Secret " + ns + "/" + name);
    auto it = auths->find(registry);
    if (it != auths->end()) return std::optional<image::RegistryAuth>(it->second);
  }
  return std::optional<image::RegistryAuth>();
}

class DaemonImpl : public Daemon {
 public:
  explicit DaemonImpl(DaemonOptions options) : options_(std::move(options)) {}
  ~DaemonImpl() override { (void)shutdown(); }

  Status init();
  std::string endpoint() const override { return endpoint_; }
  std::string fingerprint() const override { return certificate_.fingerprint; }
  Status shutdown() override;

 private:
  Json statusDocument() const;

  DaemonOptions options_;
  std::mutex shutdown_mutex_;
  bool shut_down_ = false;
  kube::ClientPtr client_;
  std::unique_ptr<sandbox::Runtime> runtime_;
  egress::config::SnapshotHolder snapshots_;
  egress::IdentityMap identities_;
  egress::MetadataStore metadata_;  // events and responses of Metadata-delivery executions
  std::unique_ptr<telemetry::Pipeline> pipeline_;
  std::unique_ptr<EgressFeed> feed_;
  std::unique_ptr<egress::Proxy> proxy_;
  std::unique_ptr<sandbox::net::NetworkManager> network_;
  std::unique_ptr<image::ImageStore> images_;
  std::unique_ptr<ExecutionManager> executions_;
  SelfSignedCertificate certificate_;
  std::unique_ptr<ApiServer> server_;
  std::unique_ptr<LeaseKeeper> lease_;
  std::string endpoint_;
};

Status DaemonImpl::init() {
  auto log = logger("worker");
  std::error_code ec;
  fs::create_directories(options_.state_dir, ec);
  if (ec) return internalError("--state-dir " + options_.state_dir.string() + ": " + ec.message());
  fs::permissions(options_.state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);

  // 1. The sandbox runtime, and what a previous (crashed) run left behind.
  sandbox::RuntimeOptions runtime_options;
  runtime_options.state_dir = options_.state_dir / "sandboxes";
  runtime_options.cgroup_parent = "clrk-" + options_.net_tag;
  CLRK_ASSIGN_OR_RETURN(runtime_, sandbox::makeRuntime(options_.runtime, runtime_options));
  auto leftovers = runtime_->cleanupLeftovers();
  if (!leftovers.ok()) return leftovers.status().withContext("cleaning up leftover sandboxes");
  if (leftovers.value() > 0) log->info("removed {} leftover sandboxes", leftovers.value());

  // 2. The API: client and bootstrap objects.
  auto rest = loadRestConfig(options_.kubeconfig);
  if (!rest.ok()) return rest.status().withContext("API server configuration");
  CLRK_ASSIGN_OR_RETURN(client_, kube::Client::create(rest.value()));
  CLRK_RETURN_IF_ERROR(ensureNamespace(*client_, options_.system_namespace));
  CLRK_ASSIGN_OR_RETURN(CaPem ca, ensureEgressCa(*client_, options_.system_namespace));
  CLRK_ASSIGN_OR_RETURN(std::string token, ensureWorkerToken(*client_, options_.system_namespace));

  // 3. Telemetry, egress configuration, the data plane.
  telemetry::PipelineOptions pipeline_options;
  pipeline_options.spool_dir = options_.state_dir / "spool";
  auto store = telemetry::LocalStore::open(options_.state_dir / "records.db");
  if (!store.ok()) return store.status().withContext("local record store");
  pipeline_options.sinks.push_back(std::shared_ptr<telemetry::Sink>(std::move(store).value()));
  if (!options_.otlp_endpoint.empty()) {
    CLRK_ASSIGN_OR_RETURN(auto exporter, makeOtlpExporter(options_));
    pipeline_options.sinks.push_back(std::move(exporter));
    log->info("exporting egress records to {}", options_.otlp_endpoint);
  }
  auto pipeline = telemetry::Pipeline::start(pipeline_options);
  if (!pipeline.ok()) return pipeline.status().withContext("telemetry pipeline");
  pipeline_ = std::move(pipeline).value();
  EgressFeedOptions feed_options;
  feed_options.system_namespace = options_.system_namespace;
  feed_ = std::make_unique<EgressFeed>(client_, snapshots_, feed_options);
  feed_->start();
  if (!feed_->waitForSync(std::chrono::seconds(15))) {
    log->warn("egress configuration not synced after 15s; starting with what is known");
  }
  egress::ProxyOptions proxy_options;
  proxy_options.threads = options_.egress_threads;
  proxy_options.transparent_listen = fmt::format("0.0.0.0:{}", options_.egress_port);
  proxy_options.dns_listen = fmt::format("0.0.0.0:{}", options_.dns_port);
  proxy_options.default_ca_cert_pem = ca.cert_pem;
  proxy_options.default_ca_key_pem = ca.key_pem;
  if (!options_.upstream_ca.empty()) {
    auto pem = readFile(options_.upstream_ca);
    if (!pem.ok()) return pem.status().withContext("--upstream-ca");
    proxy_options.extra_upstream_ca_pem = pem.value();
  }
  for (const auto& entry : options_.upstream_overrides) {
    size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      return invalidArgument("--upstream-override " + entry + ": want host:port=ip:port");
    }
    proxy_options.upstream_overrides.emplace_back(entry.substr(0, eq), entry.substr(eq + 1));
  }
  auto proxy =
      egress::Proxy::start(proxy_options, snapshots_, identities_, pipeline_.get(), &metadata_);
  if (!proxy.ok()) return proxy.status().withContext("egress data plane");
  proxy_ = std::move(proxy).value();

  // 4. Per-sandbox networking (deletes this tag's leftovers) and images.
  sandbox::net::NetworkOptions network_options;
  network_options.tag = options_.net_tag;
  network_options.pool_cidr = options_.pool_cidr;
  network_options.egress_tcp_port = proxy_->transparentPort();
  network_options.egress_dns_port = proxy_->dnsPort();
  auto network = sandbox::net::NetworkManager::create(network_options);
  if (!network.ok()) return network.status().withContext("sandbox networking");
  network_ = std::move(network).value();
  auto images = image::ImageStore::open(options_.state_dir / "images");
  if (!images.ok()) return images.status().withContext("image store");
  images_ = std::move(images).value();

  // 5. Executions and the worker API.
  ExecutionManagerOptions execution_options;
  execution_options.max_executions = options_.max_executions;
  execution_options.ca_cert_pem = ca.cert_pem;
  execution_options.insecure_registries = options_.insecure_registries;
  for (const auto& share : options_.shares) {
    CLRK_ASSIGN_OR_RETURN(auto mount, parseShare(share));
    execution_options.shared_mounts.push_back(std::move(mount));
  }
  kube::ClientPtr client = client_;
  executions_ = std::make_unique<ExecutionManager>(
      execution_options, *runtime_, network_.get(), images_.get(), &identities_, &metadata_,
      [client](const std::string& ns, const std::vector<std::string>& names,
               const std::string& registry) { return pullAuth(*client, ns, names, registry); });
  std::string host = options_.listen.substr(0, options_.listen.rfind(':'));
  std::vector<std::string> names = {"127.0.0.1", "localhost", options_.name};
  if (!host.empty() && host != "0.0.0.0") names.push_back(host);
  if (!options_.advertise.empty()) {
    names.push_back(options_.advertise.substr(0, options_.advertise.rfind(':')));
  }
  CLRK_ASSIGN_OR_RETURN(certificate_, generateSelfSigned("clrk-worker " + options_.name, names));
  ServerOptions server_options;
  server_options.listen = options_.listen;
  server_options.cert_pem = certificate_.cert_pem;
  server_options.key_pem = certificate_.key_pem;
  server_options.token = token;
  auto server = ApiServer::start(server_options, *executions_, [this] { return statusDocument(); });
  if (!server.ok()) return server.status();
  server_ = std::move(server).value();
  std::string advertise = options_.advertise;
  if (advertise.empty()) {
    std::string bound = server_->host();
    if (bound == "0.0.0.0" || bound == "::") bound = "127.0.0.1";
    if (bound.find(':') != std::string::npos) bound = "[" + bound + "]";
    advertise = fmt::format("{}:{}", bound, server_->port());
  } else if (advertise.rfind(':') == std::string::npos ||
             advertise.substr(advertise.rfind(':') + 1) == "0") {
    advertise = fmt::format("{}:{}", advertise.substr(0, advertise.rfind(':')), server_->port());
  }
  endpoint_ = "https://" + advertise;

  // 6. Registration.
  LeaseOptions lease_options;
  lease_options.system_namespace = options_.system_namespace;
  lease_options.worker_name = options_.name;
  lease_options.pool = options_.pool;
  lease_options.pool_namespace = options_.pool_namespace;
  lease_options.endpoint = endpoint_;
  lease_options.fingerprint = certificate_.fingerprint;
  lease_options.any_pool = options_.any_pool;
  lease_ = std::make_unique<LeaseKeeper>(client_, lease_options,
                                         [this] { return executions_->capacity(); });
  CLRK_RETURN_IF_ERROR(lease_->start());
  executions_->setOnChange([this] { lease_->poke(); });  // renews if the capacity changed
  log->info("worker {} ready: runtime {}, egress :{} dns :{}, net tag {}, API {}", options_.name,
            runtime_->name(), proxy_->transparentPort(), proxy_->dnsPort(), options_.net_tag,
            endpoint_);
  return {};
}

Json DaemonImpl::statusDocument() const {
  WorkerCapacity capacity = executions_->capacity();
  Json doc = toJson(capacity);
  doc["name"] = options_.name;
  doc["pool"] = options_.pool;
  doc["poolNamespace"] = options_.pool_namespace;
  doc["state"] = executions_->draining() ? "Draining" : "Ready";
  doc["netTag"] = options_.net_tag;
  doc["networksInUse"] = network_ ? network_->inUse() : 0;
  if (proxy_) {
    egress::ProxyStats stats = proxy_->stats();
    doc["egress"] = {
        {"transparentPort", proxy_->transparentPort()},
        {"dnsPort", proxy_->dnsPort()},
        {"configGeneration", feed_ ? feed_->generation() : 0},
        {"notAccepted", feed_ ? feed_->rejected() : std::vector<std::string>{}},
        {"connectionsAccepted", stats.connections_accepted},
        {"connectionsActive", stats.connections_active},
        {"requests", stats.requests},
        {"requestsDenied", stats.requests_denied},
        {"connectionsDenied", stats.connections_denied},
        {"rateLimited", stats.rate_limited},
        {"upstreamFailures", stats.upstream_failures},
        {"recordsEmitted", stats.records_emitted},
        {"recordsDropped", stats.records_dropped},
    };
  }
  return doc;
}

Status DaemonImpl::shutdown() {
  std::lock_guard guard(shutdown_mutex_);
  if (shut_down_) return {};
  shut_down_ = true;
  auto log = logger("worker");
  Status result;
  if (executions_) executions_->setDraining();  // refuse new runs before anything slow
  if (lease_) lease_->setState("Draining");
  if (executions_) {
    log->info("draining: waiting up to {}s for {} running executions",
              options_.drain_timeout.count(), executions_->running());
    int stopped = executions_->drain(options_.drain_timeout);
    if (stopped > 0) log->info("draining: stopped {} executions", stopped);
  }
  if (server_) server_->stop();
  if (lease_) {
    Status deleted = lease_->stopAndDelete();
    if (!deleted.ok()) {
      log->warn("deleting Lease: {}", deleted.toString());
      result = deleted;
    }
  }
  executions_.reset();  // removes lingering identities
  if (proxy_) proxy_->stop();
  if (feed_) feed_->stop();
  if (network_) {
    Status released = network_->releaseAll();
    if (released.ok()) released = network_->destroyTables();
    if (!released.ok()) log->warn("releasing networks: {}", released.toString());
  }
  if (pipeline_) pipeline_->flush(std::chrono::seconds(2));
  log->info("worker {} stopped", options_.name);
  return result;
}

}  // namespace

std::string defaultNetTag(const std::string& name) {
  uint32_t hash = 2166136261u;
  for (char c : name) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
  const char* digits = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string tag = "w";
  tag.push_back(digits[hash % 36]);
  tag.push_back(digits[(hash / 36) % 36]);
  return tag;
}

Result<std::unique_ptr<Daemon>> Daemon::start(DaemonOptions options) {
  if (options.name.empty()) return invalidArgument("--name: required");
  if (options.pool.empty()) return invalidArgument("--pool: required");
  if (options.max_executions < 1) return invalidArgument("--max-executions: must be at least 1");
  if (options.net_tag.empty()) options.net_tag = defaultNetTag(options.name);
  auto daemon = std::make_unique<DaemonImpl>(std::move(options));
  Status started = daemon->init();
  if (!started.ok()) {
    (void)daemon->shutdown();
    return started;
  }
  return std::unique_ptr<Daemon>(std::move(daemon));
}

}  // namespace clrk::worker
