#include "clrk/worker/registration.h"

#include "clrk/api/builtin_types.h"
#include "clrk/base/base64.h"
#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"
#include "clrk/egress/tls/authority.h"
#include "clrk/worker/certs.h"

#include <fmt/format.h>

#include <cctype>

namespace clrk::worker {
namespace {

const api::ResourceType& secretType() { return api::builtinType("v1", "Secret"); }
const api::ResourceType& leaseType() { return api::builtinType("coordination.k8s.io/v1", "Lease"); }

// Creates `object` unless it exists; returns the stored object either way.
Result<Json> createOrGet(kube::Client& client, const api::ResourceType& type, const std::string& ns,
                         const std::string& name, const Json& object) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto existing = client.get(type, ns, name);
    if (existing.ok()) return existing;
    if (existing.status().code() != Code::NotFound) return existing.status();
    auto created = client.create(type, ns, object);
    if (created.ok()) return created;
    // Another worker won the race: read what it created.
    if (created.status().code() != Code::AlreadyExists &&
        created.status().code() != Code::Conflict) {
      return created.status();
    }
  }
  return Status(Code::Unavailable, type.kind + " " + ns + "/" + name + ": create kept conflicting");
}

}  // namespace

Result<std::string> secretValue(const Json& secret, const std::string& key) {
  if (auto it = secret.find("stringData"); it != secret.end() && it->is_object()) {
    auto value = it->find(key);
    if (value != it->end() && value->is_string()) return value->get<std::string>();
  }
  if (auto it = secret.find("data"); it != secret.end() && it->is_object()) {
    auto value = it->find(key);
    if (value != it->end() && value->is_string()) {
      auto decoded = base64Decode(value->get<std::string>());
      if (!decoded) return invalidArgument("Secret key " + key + ": not valid base64");
      return *decoded;
    }
  }
  std::string name;
  if (secret.contains("metadata") && secret["metadata"].is_object()) {
    name = secret["metadata"].value("namespace", "") + "/" + secret["metadata"].value("name", "");
  }
  return notFound("Secret " + name + " has no key " + key);
}

Status ensureNamespace(kube::Client& client, const std::string& ns) {
  Json object = {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", ns}}}};
  auto result = createOrGet(client, api::builtinType("v1", "Namespace"), "", ns, object);
  return result.ok() ? Status() : result.status().withContext("namespace " + ns);
}

Result<std::string> ensureWorkerToken(kube::Client& client, const std::string& ns) {
  std::string name(kTokenSecretName);
  Json object = {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"metadata",
       {{"name", name}, {"namespace", ns}, {"labels", {{std::string(kLabelComponent), "worker"}}}}},
      {"type", "Opaque"},
      {"data", {{"token", base64Encode(randomHex(32))}}}};
  auto secret = createOrGet(client, secretType(), ns, name, object);
  if (!secret.ok()) return secret.status().withContext("Secret " + ns + "/" + name);
  auto token = secretValue(secret.value(), "token");
  if (!token.ok()) return token.status();
  std::string value = token.value();
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back()))) {
    value.pop_back();
  }
  if (value.size() < 16) {
    return invalidArgument("Secret " + ns + "/" + name + ": token shorter than 16 characters");
  }
  return value;
}

Result<CaPem> ensureEgressCa(kube::Client& client, const std::string& ns) {
  std::string name(kCaSecretName);
  Json object;
  auto existing = client.get(secretType(), ns, name);
  if (!existing.ok()) {
    if (existing.status().code() != Code::NotFound) return existing.status();
    CLRK_ASSIGN_OR_RETURN(auto ca, egress::tls::CertificateAuthority::generate(
                                       "clrk egress CA", std::chrono::hours(24 * 365 * 5)));
    object = {
        {"apiVersion", "v1"},
        {"kind", "Secret"},
        {"metadata", {{"name", name}, {"namespace", ns}}},
        {"type", "kubernetes.io/tls"},
        {"data",
         {{"tls.crt", base64Encode(ca->certPem())}, {"tls.key", base64Encode(ca->keyPem())}}}};
  }
  Json secret;
  if (existing.ok()) {
    secret = existing.value();
  } else {
    auto created = createOrGet(client, secretType(), ns, name, object);
    if (!created.ok()) return created.status().withContext("Secret " + ns + "/" + name);
    secret = created.value();
  }
  CaPem pem;
  CLRK_ASSIGN_OR_RETURN(pem.cert_pem, secretValue(secret, "tls.crt"));
  CLRK_ASSIGN_OR_RETURN(pem.key_pem, secretValue(secret, "tls.key"));
  // Check that it is a usable CA before handing it to the data plane.
  auto ca = egress::tls::CertificateAuthority::fromPem(pem.cert_pem, pem.key_pem);
  if (!ca.ok()) return ca.status().withContext("Secret " + ns + "/" + name);
  return pem;
}

LeaseKeeper::LeaseKeeper(kube::ClientPtr client, LeaseOptions options,
                         std::function<WorkerCapacity()> capacity)
    : client_(std::move(client)), options_(std::move(options)), capacity_(std::move(capacity)) {}

LeaseKeeper::~LeaseKeeper() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int LeaseKeeper::renewals() const {
  std::lock_guard lock(mutex_);
  return renewals_;
}

Json LeaseKeeper::desired(const Json* current, const std::string& capacity) const {
  std::string state;
  {
    std::lock_guard lock(mutex_);
    state = state_;
  }
  std::string now = formatRfc3339Micro(std::chrono::system_clock::now());
  Json lease = current != nullptr ? *current : Json::object();
  lease["apiVersion"] = "coordination.k8s.io/v1";
  lease["kind"] = "Lease";
  Json& metadata = lease["metadata"];
  metadata["name"] = leaseName();
  metadata["namespace"] = options_.system_namespace;
  metadata["labels"][std::string(kLabelPool)] = options_.pool;
  metadata["labels"][std::string(kLabelPoolNamespace)] = options_.pool_namespace;
  metadata["labels"][std::string(kLabelComponent)] = "worker";
  metadata["annotations"][std::string(kAnnotationEndpoint)] = options_.endpoint;
  metadata["annotations"][std::string(kAnnotationFingerprint)] = options_.fingerprint;
  metadata["annotations"][std::string(kAnnotationCapacity)] = capacity;
  metadata["annotations"][std::string(kAnnotationState)] = state;
  if (options_.any_pool) {
    metadata["annotations"][std::string(kAnnotationAnyPool)] = "true";
  } else if (metadata["annotations"].contains(std::string(kAnnotationAnyPool))) {
    metadata["annotations"].erase(std::string(kAnnotationAnyPool));
  }
  Json& spec = lease["spec"];
  bool same_holder = current != nullptr && current->contains("spec") &&
                     (*current)["spec"].value("holderIdentity", "") == options_.worker_name;
  if (!same_holder) {
    spec["acquireTime"] = now;
    int transitions = 0;
    if (current != nullptr && current->contains("spec")) {
      transitions = (*current)["spec"].value("leaseTransitions", 0) + 1;
    }
    spec["leaseTransitions"] = transitions;
  }
  spec["holderIdentity"] = options_.worker_name;
  spec["leaseDurationSeconds"] = options_.lease_duration_seconds;
  spec["renewTime"] = now;
  return lease;
}

Status LeaseKeeper::renewOnce() {
  const auto& type = leaseType();
  std::string name = leaseName();
  std::string capacity = toJson(capacity_ ? capacity_() : WorkerCapacity{}).dump();
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto current = client_->get(type, options_.system_namespace, name);
    Result<Json> written = Status(Code::Internal, "unset");
    if (!current.ok()) {
      if (current.status().code() != Code::NotFound) return current.status();
      written = client_->create(type, options_.system_namespace, desired(nullptr, capacity));
    } else {
      written = client_->update(type, desired(&current.value(), capacity));
    }
    if (written.ok()) {
      std::lock_guard lock(mutex_);
      ++renewals_;
      written_capacity_ = capacity;
      return {};
    }
    // 409: somebody else wrote in between; re-read and retry.
    if (written.status().code() != Code::Conflict &&
        written.status().code() != Code::AlreadyExists) {
      return written.status();
    }
  }
  return Status(Code::Conflict, "Lease " + name + ": kept conflicting");
}

Status LeaseKeeper::start() {
  CLRK_RETURN_IF_ERROR(renewOnce().withContext("registering Lease " + leaseName()));
  thread_ = std::thread([this] { loop(); });
  return {};
}

void LeaseKeeper::setState(const std::string& state) {
  {
    std::lock_guard lock(mutex_);
    state_ = state;
  }
  Status renewed = renewOnce();
  if (!renewed.ok()) {
    logger("worker")->warn("Lease {}: writing state {}: {}", leaseName(), state,
                           renewed.toString());
  }
}

void LeaseKeeper::poke() {
  {
    std::lock_guard lock(mutex_);
    poked_ = true;
  }
  cv_.notify_all();
}

void LeaseKeeper::loop() {
  auto log = logger("worker");
  std::unique_lock lock(mutex_);
  auto due = std::chrono::steady_clock::now() + options_.renew_interval;
  while (!stopping_) {
    cv_.wait_until(lock, due, [&] { return stopping_ || poked_; });
    if (stopping_) break;
    if (poked_ && std::chrono::steady_clock::now() < due) {
      // A capacity change: renew a little later, and only if the capacity still differs (a short
      // execution's start and end cancel out), which keeps Lease writes (and what the
      // controller does on each) off the path of short executions.
      cv_.wait_for(lock, options_.poke_delay, [&] { return stopping_; });
      if (stopping_) break;
      poked_ = false;
      std::string written = written_capacity_;
      lock.unlock();
      bool changed = toJson(capacity_ ? capacity_() : WorkerCapacity{}).dump() != written;
      lock.lock();
      if (!changed) continue;
    }
    poked_ = false;
    lock.unlock();
    Status renewed = renewOnce();
    if (!renewed.ok()) log->warn("Lease {}: renew failed: {}", leaseName(), renewed.toString());
    lock.lock();
    due = std::chrono::steady_clock::now() + options_.renew_interval;
  }
}

Status LeaseKeeper::stopAndDelete() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  auto removed = client_->remove(leaseType(), options_.system_namespace, leaseName());
  if (!removed.ok() && removed.status().code() != Code::NotFound) return removed.status();
  return {};
}

}  // namespace clrk::worker
