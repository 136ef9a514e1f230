#include "clrk/controller/worker_registry.h"

#include "clrk/api/builtin_types.h"
#include "clrk/api/registry.h"
#include "clrk/base/base64.h"
#include "clrk/base/time.h"

#include <algorithm>

namespace clrk::controller {
namespace {

std::string stringAt(const kube::Json& object, std::string_view section, std::string_view key) {
  auto outer = object.find(section);
  if (outer == object.end() || !outer->is_object()) return {};
  auto inner = outer->find(key);
  return inner != outer->end() && inner->is_string() ? inner->get<std::string>() : std::string();
}

}  // namespace

Result<WorkerInfo> parseWorkerLease(const kube::Json& lease) {
  if (!lease.is_object() || !lease.contains("metadata") || !lease["metadata"].is_object()) {
    return invalidArgument("worker Lease: no metadata");
  }
  const kube::Json& metadata = lease["metadata"];
  std::string lease_name = metadata.value("name", "");
  auto fail = [&](const std::string& what) {
    return invalidArgument("worker Lease " + lease_name + ": " + what);
  };
  if (!lease.contains("spec") || !lease["spec"].is_object()) return fail("no spec");
  const kube::Json& spec = lease["spec"];
  WorkerInfo info;
  info.name = spec.value("holderIdentity", "");
  if (info.name.empty()) return fail("spec.holderIdentity is empty");
  info.pool = stringAt(metadata, "labels", worker::kLabelPool);
  info.pool_namespace = stringAt(metadata, "labels", worker::kLabelPoolNamespace);
  info.any_pool = stringAt(metadata, "annotations", worker::kAnnotationAnyPool) == "true";
  info.endpoint = stringAt(metadata, "annotations", worker::kAnnotationEndpoint);
  info.fingerprint = stringAt(metadata, "annotations", worker::kAnnotationFingerprint);
  info.state = stringAt(metadata, "annotations", worker::kAnnotationState);
  if (info.endpoint.empty()) return fail("annotation clrk.apoxy.dev/endpoint is missing");
  if (info.fingerprint.empty()) return fail("annotation clrk.apoxy.dev/tls-sha256 is missing");
  std::string capacity_text = stringAt(metadata, "annotations", worker::kAnnotationCapacity);
  auto capacity_json = kube::Json::parse(capacity_text, nullptr, false);
  if (capacity_json.is_discarded()) return fail("annotation clrk.apoxy.dev/capacity is not JSON");
  auto capacity = worker::workerCapacityFromJson(capacity_json);
  if (!capacity.ok()) return fail(capacity.status().message());
  info.capacity = *capacity;
  auto renew = parseRfc3339(spec.value("renewTime", ""));
  if (!renew) return fail("spec.renewTime is missing or malformed");
  info.renew_time = *renew;
  if (spec.contains("leaseDurationSeconds") && spec["leaseDurationSeconds"].is_number_integer()) {
    info.lease_duration = std::chrono::seconds(spec["leaseDurationSeconds"].get<int64_t>());
  }
  return info;
}

Result<WorkerInfo> pickWorker(const std::vector<WorkerInfo>& workers, const PickOptions& options) {
  const WorkerInfo* best = nullptr;
  int best_free = 0;
  bool best_warm = false;
  int alive = 0, serving = 0;
  for (const WorkerInfo& candidate : workers) {
    if (!candidate.alive(options.now)) continue;
    ++alive;
    if (!candidate.serves(options.pool_namespace, options.pool)) continue;
    ++serving;
    if (candidate.state != "Ready") continue;
    if (std::find(options.exclude.begin(), options.exclude.end(), candidate.name) !=
        options.exclude.end()) {
      continue;
    }
    auto placed = options.in_flight.find(candidate.name);
    int ours = placed == options.in_flight.end() ? 0 : placed->second;
    // The Lease's free count lags (renewed every few seconds); our own placements are exact.
    int free = std::min(candidate.capacity.free, candidate.capacity.max_executions - ours);
    if (free <= 0) continue;
    auto warm_it = options.warm.find(candidate.name);
    bool warm = warm_it != options.warm.end() && warm_it->second > 0;
    bool better = best == nullptr || (warm && !best_warm) ||
                  (warm == best_warm &&
                   (free > best_free || (free == best_free && candidate.name < best->name)));
    if (better) {
      best = &candidate;
      best_free = free;
      best_warm = warm;
    }
  }
  if (best != nullptr) return *best;
  return Status(Code::Unavailable, "no worker of pool " + options.pool_namespace + "/" +
                                       options.pool + " has a free execution slot (" +
                                       std::to_string(workers.size()) + " registered, " +
                                       std::to_string(alive) + " alive, " +
                                       std::to_string(serving) + " serving the pool)");
}

namespace {

kube::WatchOptions workerLeaseWatch(const std::string& system_namespace) {
  kube::WatchOptions options;
  options.namespace_name = system_namespace;
  options.label_selector = std::string(worker::kLabelComponent) + "=worker";
  return options;
}

}  // namespace

WorkerRegistry::WorkerRegistry(kube::ClientPtr client, std::string system_namespace)
    : client_(client),
      system_namespace_(system_namespace),
      leases_(std::move(client), api::builtinType("coordination.k8s.io/v1", "Lease"),
              workerLeaseWatch(system_namespace)) {}

WorkerRegistry::~WorkerRegistry() { stop(); }

void WorkerRegistry::onChange(std::function<void()> callback) {
  leases_.addHandlers(kube::InformerHandlers{
      .on_add = [callback](const kube::Json&) { callback(); },
      .on_update = [callback](const kube::Json&, const kube::Json&) { callback(); },
      .on_delete = [callback](const kube::Json&) { callback(); },
  });
}

void WorkerRegistry::start() { leases_.start(); }
void WorkerRegistry::stop() { leases_.stop(); }
bool WorkerRegistry::waitForSync(std::chrono::milliseconds timeout) const {
  return leases_.waitForSync(timeout);
}

std::vector<WorkerInfo> WorkerRegistry::workers() const {
  std::vector<WorkerInfo> out;
  for (const auto& lease : leases_.list()) {
    auto info = parseWorkerLease(lease);
    if (info.ok()) out.push_back(std::move(info).value());
  }
  return out;
}

std::optional<WorkerInfo> WorkerRegistry::find(const std::string& name) const {
  for (auto& info : workers()) {
    if (info.name == name) return info;
  }
  return std::nullopt;
}

Result<std::string> WorkerRegistry::token() {
  {
    std::lock_guard lock(mutex_);
    if (!token_.empty()) return token_;
  }
  auto secret = client_->get(api::builtinType("v1", "Secret"), system_namespace_,
                             std::string(worker::kTokenSecretName));
  if (!secret.ok()) return secret.status().withContext("reading the worker token");
  std::string encoded = stringAt(*secret, "data", "token");
  auto decoded = base64Decode(encoded);
  if (encoded.empty() || !decoded || decoded->empty()) {
    return invalidArgument("Secret " + system_namespace_ + "/" +
                           std::string(worker::kTokenSecretName) + ": data.token is missing");
  }
  std::lock_guard lock(mutex_);
  token_ = *decoded;
  return token_;
}

Result<std::unique_ptr<worker::WorkerClient>> WorkerRegistry::clientFor(const WorkerInfo& info) {
  CLRK_ASSIGN_OR_RETURN(std::string bearer, token());
  auto keyOf = [&bearer](const WorkerInfo& worker) {
    return worker.endpoint + " " + worker.fingerprint + " " + bearer;
  };
  std::vector<WorkerInfo> registered = workers();
  std::shared_ptr<worker::WorkerConnectionPool> pool;
  {
    std::lock_guard lock(mutex_);
    for (auto it = pools_.begin(); it != pools_.end();) {
      bool known = std::any_of(registered.begin(), registered.end(), [&](const WorkerInfo& worker) {
        return keyOf(worker) == it->first;
      });
      it = known ? std::next(it) : pools_.erase(it);
    }
    auto& shared = pools_[keyOf(info)];
    if (!shared) shared = std::make_shared<worker::WorkerConnectionPool>();
    pool = shared;
  }
  return worker::WorkerClient::create(
      worker::WorkerEndpoint{
          .url = info.endpoint, .fingerprint = info.fingerprint, .token = bearer},
      std::move(pool));
}

}  // namespace clrk::controller
