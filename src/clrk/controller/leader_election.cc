#include "clrk/controller/leader_election.h"

#include "clrk/api/builtin_types.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <optional>

namespace clrk::controller {
namespace {

using api::Json;
using std::chrono::milliseconds;

const api::ResourceType& leaseType() { return api::builtinType("coordination.k8s.io/v1", "Lease"); }

// Field readers that tolerate a missing or mistyped field.
std::string stringField(const Json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

int64_t intField(const Json& object, const char* key, int64_t fallback) {
  auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

const Json& specOf(const Json& lease) {
  static const Json kEmpty = Json::object();
  auto it = lease.find("spec");
  return it != lease.end() && it->is_object() ? *it : kEmpty;
}

// renewTime + leaseDurationSeconds < now; also true when renewTime is missing or malformed.
// Compared in whole microseconds of int64, which cannot overflow for any stored values.
bool expired(const Json& spec, std::chrono::system_clock::time_point now,
             std::chrono::seconds default_duration) {
  using std::chrono::microseconds;
  std::optional<SystemTime> renewed = parseRfc3339(stringField(spec, "renewTime"));
  if (!renewed) return true;
  int64_t duration_seconds = std::clamp<int64_t>(
      intField(spec, "leaseDurationSeconds", default_duration.count()), 0, INT32_MAX);
  auto micros = [](SystemTime time) {
    return std::chrono::floor<microseconds>(time.time_since_epoch()).count();
  };
  return micros(*renewed) + duration_seconds * 1000000 < micros(now);
}

}  // namespace

LeaderElector::LeaderElector(kube::ClientPtr client, Options options, Callbacks callbacks)
    : client_(std::move(client)),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      log_prefix_("leader election " + options_.namespace_name + "/" + options_.lease_name + " (" +
                  options_.identity + ")") {}

LeaderElector::~LeaderElector() { stop(); }

Status LeaderElector::start() {
  const Options& o = options_;
  if (o.namespace_name.empty() || o.lease_name.empty() || o.identity.empty()) {
    return invalidArgument("leader election: namespace, lease name and identity are required");
  }
  if (o.lease_duration < std::chrono::seconds(1) ||
      o.lease_duration > std::chrono::seconds(INT32_MAX)) {
    return invalidArgument("leader election: lease_duration must be from 1s to 2147483647s");
  }
  if (o.retry_period <= milliseconds(0) || o.retry_period >= o.renew_deadline ||
      o.renew_deadline >= o.lease_duration) {
    return invalidArgument(
        "leader election: need 0 < retry_period < renew_deadline < lease_duration");
  }
  std::lock_guard lock(mutex_);
  if (started_ || stopping_) {
    return invalidArgument("leader election: start() after start() or stop()");
  }
  started_ = true;
  thread_ = std::thread([this] { run(); });
  return {};
}

void LeaderElector::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

bool LeaderElector::stopRequested() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

bool LeaderElector::sleepFor(Clock::duration duration) {
  std::unique_lock lock(mutex_);
  return !cv_.wait_for(lock, duration, [this] { return stopping_; });
}

void LeaderElector::run() {
  Clock::time_point renewed_at;
  while (acquire(renewed_at)) {
    leader_ = true;
    if (callbacks_.on_started_leading) callbacks_.on_started_leading();
    bool stopped = !renewUntilLost(renewed_at);
    leader_ = false;
    if (callbacks_.on_stopped_leading) callbacks_.on_stopped_leading();
    if (stopped) {
      release();
      return;
    }
  }
}

bool LeaderElector::acquire(Clock::time_point& acquired_at) {
  auto log = logger("controller");
  std::string last_error;
  while (true) {
    if (stopRequested()) return false;
    const Clock::time_point attempt_start = Clock::now();
    Result<bool> acquired = tryAcquireOrRenew(attempt_start + options_.renew_deadline);
    if (acquired.ok() && acquired.value()) {
      log->info("{}: became the leader", log_prefix_);
      acquired_at = attempt_start;
      return true;
    }
    // Log each new error once; a 409 is only a lost race.
    if (!acquired.ok() && acquired.status().message() != last_error) {
      last_error = acquired.status().message();
      log->log(
          acquired.status().code() == Code::Conflict ? spdlog::level::debug : spdlog::level::warn,
          "{}: acquiring: {}", log_prefix_, acquired.status().toString());
    }
    if (!sleepFor(options_.retry_period)) return false;
  }
}

bool LeaderElector::renewUntilLost(Clock::time_point renewed_at) {
  auto log = logger("controller");
  while (true) {
    const Clock::time_point deadline = renewed_at + options_.renew_deadline;
    if (!sleepFor(std::min<Clock::duration>(options_.retry_period, deadline - Clock::now()))) {
      return false;
    }
    const Clock::time_point attempt_start = Clock::now();
    Result<bool> renewed = tryAcquireOrRenew(deadline);
    if (!renewed.ok()) {
      log->warn("{}: renewing: {}", log_prefix_, renewed.status().toString());
      if (Clock::now() >= deadline) {
        log->warn("{}: no renewal within {}ms; stopping leading", log_prefix_,
                  options_.renew_deadline.count());
        return true;
      }
      continue;
    }
    if (!renewed.value()) {
      log->warn("{}: the Lease was taken over; stopping leading", log_prefix_);
      return true;
    }
    renewed_at = attempt_start;
  }
}

Result<Json> LeaderElector::call(std::string_view method, const std::string& target,
                                 const Json* body, Clock::time_point deadline) {
  const auto timeout = std::chrono::floor<milliseconds>(deadline - Clock::now());
  if (timeout <= milliseconds(0)) {
    return Status(Code::Timeout, std::string(method) + " " + target + ": out of time");
  }
  std::string text = body != nullptr ? body->dump() : std::string();
  CLRK_ASSIGN_OR_RETURN(kube::HttpResponse response,
                        client_->request(method, target, text, {}, timeout));
  if (response.status >= 400) return kube::statusFromResponse(response.status, response.body);
  Json parsed = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return internalError(std::string(method) + " " + target + ": response is not a JSON object");
  }
  return parsed;
}

Json LeaderElector::desiredLease(const Json* current,
                                 std::chrono::system_clock::time_point now) const {
  Json lease =
      current != nullptr
          ? *current
          : Json{{"apiVersion", "coordination.k8s.io/v1"},
                 {"kind", "Lease"},
                 {"metadata",
                  {{"name", options_.lease_name}, {"namespace", options_.namespace_name}}}};
  const std::string stamp = formatRfc3339Micro(now);
  Json spec = specOf(lease);
  if (current == nullptr || stringField(spec, "holderIdentity") != options_.identity) {
    spec["acquireTime"] = stamp;
    spec["leaseTransitions"] = current == nullptr ? 0 : intField(spec, "leaseTransitions", 0) + 1;
  }
  spec["holderIdentity"] = options_.identity;
  spec["leaseDurationSeconds"] = options_.lease_duration.count();
  spec["renewTime"] = stamp;
  lease["spec"] = std::move(spec);
  return lease;
}

void LeaderElector::observe(const Json& lease) {
  std::string holder = stringField(specOf(lease), "holderIdentity");
  if (holder.empty() || holder == reported_leader_) return;
  reported_leader_ = holder;
  if (callbacks_.on_new_leader) callbacks_.on_new_leader(holder);
}

Result<bool> LeaderElector::tryAcquireOrRenew(Clock::time_point deadline) {
  const auto now = std::chrono::system_clock::now();
  const std::string collection = kube::Client::resourcePath(leaseType(), options_.namespace_name);
  const std::string path =
      kube::Client::resourcePath(leaseType(), options_.namespace_name, options_.lease_name);
  Result<Json> current = call("GET", path, nullptr, deadline);
  if (!current.ok()) {
    if (current.status().code() != Code::NotFound) return current.status();
    Json lease = desiredLease(nullptr, now);
    Result<Json> created = call("POST", collection, &lease, deadline);
    if (created.ok()) {
      observe(created.value());
      return true;
    }
    if (created.status().code() != Code::AlreadyExists &&
        created.status().code() != Code::Conflict) {
      return created.status();
    }
    // Another candidate created it first: learn who.
    current = call("GET", path, nullptr, deadline);
    if (!current.ok()) return current.status();
    observe(current.value());
    return false;
  }
  observe(current.value());
  const Json& spec = specOf(current.value());
  std::string holder = stringField(spec, "holderIdentity");
  if (!holder.empty() && holder != options_.identity &&
      !expired(spec, now, options_.lease_duration)) {
    return false;
  }
  Json lease = desiredLease(&current.value(), now);
  CLRK_ASSIGN_OR_RETURN(Json written, call("PUT", path, &lease, deadline));
  observe(written);
  return true;
}

void LeaderElector::release() {
  const std::string path =
      kube::Client::resourcePath(leaseType(), options_.namespace_name, options_.lease_name);
  const Clock::time_point deadline = Clock::now() + options_.renew_deadline;
  Status released = [&]() -> Status {
    CLRK_ASSIGN_OR_RETURN(Json lease, call("GET", path, nullptr, deadline));
    if (stringField(specOf(lease), "holderIdentity") != options_.identity) return {};
    const std::string stamp = formatRfc3339Micro(std::chrono::system_clock::now());
    Json spec = specOf(lease);
    spec["holderIdentity"] = "";
    spec["leaseDurationSeconds"] = 1;
    spec["acquireTime"] = stamp;
    spec["renewTime"] = stamp;
    lease["spec"] = std::move(spec);
    return call("PUT", path, &lease, deadline).status();
  }();
  if (!released.ok()) {
    logger("controller")->warn("{}: releasing the Lease: {}", log_prefix_, released.toString());
  }
}

}  // namespace clrk::controller
