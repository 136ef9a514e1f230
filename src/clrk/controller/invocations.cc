#include "clrk/controller/invocations.h"

#include "clrk/api/builtin_types.h"
#include "clrk/api/registry.h"
#include "clrk/base/ascii.h"
#include "clrk/base/base64.h"
#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <algorithm>
#include <cmath>

namespace clrk::controller {
namespace {

using Json = kube::Json;
using SystemClock = std::chrono::system_clock;

constexpr int kMaxPlacements = 3;

// Structural UTF-8 check (lead and continuation bytes), enough to decide how to embed a body.
bool isUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    auto lead = static_cast<unsigned char>(text[i]);
    size_t extra = 0;
    if (lead < 0x80) {
      extra = 0;
    } else if ((lead >> 5) == 0x6) {
      extra = 1;
    } else if ((lead >> 4) == 0xE) {
      extra = 2;
    } else if ((lead >> 3) == 0x1E) {
      extra = 3;
    } else {
      return false;
    }
    if (text.size() - i <= extra) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((static_cast<unsigned char>(text[i + k]) >> 6) != 0x2) return false;
    }
    i += extra + 1;
  }
  return true;
}

// A value that can go into an HTTP header as is: printable ASCII, at most 256 bytes.
bool headerSafe(std::string_view value) {
  if (value.size() > 256) return false;
  return std::all_of(value.begin(), value.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
}

// Whether `text` can be a JSON string as is (valid UTF-8 by nlohmann's strict decoder, which is
// what serialises the status later).
bool isJsonText(const std::string& text) {
  if (!isUtf8(text)) return false;
  try {
    (void)Json(text).dump();
    return true;
  } catch (const Json::exception&) {
    return false;
  }
}

// Cuts `text` to at most `limit` bytes without splitting a UTF-8 sequence.
std::string utf8Prefix(const std::string& text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t end = limit;
  while (end > 0 && (static_cast<unsigned char>(text[end]) >> 6) == 0x2) --end;
  return text.substr(0, end);
}

std::string utf8Suffix(const std::string& text, size_t limit) {
  if (text.size() <= limit) return text;
  size_t start = text.size() - limit;
  while (start < text.size() && (static_cast<unsigned char>(text[start]) >> 6) == 0x2) ++start;
  return text.substr(start);
}

Json condition(const std::string& type, bool value, const std::string& reason,
               const std::string& message) {
  return {{"type", type},
          {"status", value ? "True" : "False"},
          {"reason", reason},
          {"message", message},
          {"lastTransitionTime", formatRfc3339(SystemClock::now())}};
}

// Sets (replaces by type) a condition in status["conditions"].
void setCondition(Json& status, Json cond) {
  Json& list = status["conditions"];
  if (!list.is_array()) list = Json::array();
  for (auto& existing : list) {
    if (existing.value("type", "") == cond.value("type", "")) {
      if (existing.value("status", "") == cond.value("status", "")) {
        cond["lastTransitionTime"] = existing.value("lastTransitionTime", "");
      }
      existing = std::move(cond);
      return;
    }
  }
  list.push_back(std::move(cond));
}

// The caller identity into the execution (egress records) and the agent's environment.
void addCallerIdentity(worker::ExecutionRequest& exec, const CallerIdentity& identity) {
  if (identity.fields.empty()) return;
  exec.caller_identity = identity.fields;
  exec.caller_identity_verified = identity.verified;
  exec.env.push_back({"CLRK_IDENTITY", callerFieldsJson(identity)});
  for (const auto& [field, value] : identity.fields) {
    exec.env.push_back({callerFieldEnvName(field), value});
  }
}

bool streamingEnabled(const Json& agent) {
  const Json spec = agent.value("spec", Json::object());
  const Json streaming = spec.value("streaming", Json::object());
  return streaming.is_object() && streaming.value("enabled", false);
}

std::string invocationPhaseOf(worker::Phase phase) {
  switch (phase) {
    case worker::Phase::Succeeded:
      return "Succeeded";
    case worker::Phase::TimedOut:
      return "Timeout";
    case worker::Phase::Failed:
    case worker::Phase::Stopped:
      return "Failed";
    case worker::Phase::Running:
      return "Running";
    case worker::Phase::Pending:
      return "Dispatched";
  }
  return "Failed";
}

}  // namespace

std::string cloudEventEnvelope(const InvokeRequest& request, const std::string& invocation_name,
                               SystemClock::time_point now) {
  std::string content_type =
      request.content_type.empty() ? "application/json" : request.content_type;
  Json event = {
      {"specversion", "1.0"},
      {"id", invocation_name},
      {"source", "/apis/clrk.apoxy.dev/v1alpha1/namespaces/" + request.namespace_name +
                     "/taskagents/" + request.agent},
      {"type", "dev.apoxy.clrk.invocation"},
      {"time", formatRfc3339Micro(now)},
      {"datacontenttype", content_type},
      {"clrkrequestid", request.request_id},
      {"clrktrigger", request.trigger_type},
  };
  // CloudEvents extension values are scalars: the fields travel as one JSON object text.
  if (!request.caller_identity.fields.empty()) {
    event["clrkidentity"] = callerFieldsJson(request.caller_identity);
    event["clrkidentityverified"] = request.caller_identity.verified;
  }
  std::string lowered = asciiLowerCopy(content_type);
  bool json_type = lowered.find("json") != std::string::npos;
  if (request.body.empty()) {
    event["data"] = nullptr;
  } else if (json_type) {
    Json parsed = Json::parse(request.body, nullptr, false);
    if (!parsed.is_discarded()) {
      event["data"] = std::move(parsed);
    } else if (isUtf8(request.body)) {
      event["data"] = request.body;
    } else {
      event["data_base64"] = base64Encode(request.body);
    }
  } else if (isUtf8(request.body)) {
    event["data"] = request.body;
  } else {
    event["data_base64"] = base64Encode(request.body);
  }
  return event.dump();
}

std::string runNameFor(const std::string& agent) {
  // Names are DNS subdomains (<= 253); keep them short and readable: <agent>-<10 hex>.
  std::string prefix = agent.substr(0, 48);
  while (!prefix.empty() && (prefix.back() == '-' || prefix.back() == '.')) prefix.pop_back();
  return prefix + "-" + randomHex(5);
}

Result<worker::ExecutionRequest> executionFromAgentTemplate(const Json& agent,
                                                            std::string_view kind) {
  worker::ExecutionRequest exec;
  const Json& metadata = agent.at("metadata");
  exec.namespace_name = metadata.value("namespace", "default");
  exec.agent = metadata.value("name", "");
  exec.agent_kind = std::string(kind);
  if (metadata.contains("labels") && metadata["labels"].is_object()) {
    for (const auto& [key, value] : metadata["labels"].items()) {
      if (value.is_string()) exec.agent_labels[key] = value.get<std::string>();
    }
  }
  const Json spec = agent.value("spec", Json::object());
  const Json sandbox = spec.value("template", Json::object()).value("spec", Json::object());
  exec.image = sandbox.value("image", "");
  if (exec.image.empty()) return invalidArgument("spec.template.spec.image is empty");
  exec.command = sandbox.value("command", std::vector<std::string>{});
  exec.args = sandbox.value("args", std::vector<std::string>{});
  if (sandbox.contains("env") && sandbox["env"].is_array()) {
    size_t index = 0;
    for (const auto& entry : sandbox["env"]) {
      std::string field = "spec.template.spec.env[" + std::to_string(index++) + "]";
      if (entry.contains("valueFrom")) {
        return invalidArgument(field +
                               ".valueFrom is not supported: agents never hold secrets; inject "
                               "credentials at the egress with a CredentialInjectionPolicy");
      }
      exec.env.push_back({entry.value("name", ""), entry.value("value", "")});
    }
  }
  const Json resources = spec.value("resources", Json::object());
  exec.resources.cpu = resources.value("cpu", "1");
  exec.resources.memory = resources.value("memory", "512Mi");
  if (!worker::parseCpuMillis(exec.resources.cpu, "spec.resources.cpu").ok() ||
      !worker::parseMemoryBytes(exec.resources.memory, "spec.resources.memory").ok()) {
    return invalidArgument("spec.resources: cpu \"" + exec.resources.cpu + "\" / memory \"" +
                           exec.resources.memory + "\" are not Kubernetes quantities");
  }
  if (spec.contains("egressRefs") && spec["egressRefs"].is_array() && !spec["egressRefs"].empty()) {
    exec.gateway = exec.namespace_name + "/" + spec["egressRefs"][0].value("gatewayRef", "");
  }
  return exec;
}

Result<worker::ExecutionRequest> executionFromTaskAgent(const Json& agent) {
  CLRK_ASSIGN_OR_RETURN(worker::ExecutionRequest exec,
                        executionFromAgentTemplate(agent, "TaskAgent"));
  const Json spec = agent.value("spec", Json::object());
  std::string mode = spec.value("delivery", Json::object()).value("mode", "Stdin");
  auto delivery = worker::parseDeliveryMode(mode);
  if (!delivery) {
    return invalidArgument("spec.delivery.mode \"" + mode + "\" must be Stdin or Metadata");
  }
  exec.delivery_mode = *delivery;
  std::string timeout_text = spec.value("timeout", "100s");
  auto timeout = parseDuration(timeout_text);
  if (!timeout || timeout->count() <= 0) {
    return invalidArgument("spec.timeout \"" + timeout_text + "\" is not a positive duration");
  }
  exec.timeout_seconds = (timeout->count() + 999) / 1000;
  CLRK_RETURN_IF_ERROR(compileIdentityExtractors(spec.value("identity", Json())).status());
  return exec;
}

InvocationManager::InvocationManager(kube::ClientPtr client, WorkerRegistry& workers,
                                     AgentLookup agent_lookup)
    : client_(std::move(client)), workers_(workers), agent_lookup_(std::move(agent_lookup)) {}

InvocationManager::~InvocationManager() { stop(); }

void InvocationManager::onActiveChanged(std::function<void(const std::string&)> callback) {
  on_active_changed_ = std::move(callback);
}

int InvocationManager::active(const std::string& agent_key) const {
  std::lock_guard lock(mutex_);
  auto it = active_.find(agent_key);
  return it == active_.end() ? 0 : it->second;
}

void InvocationManager::track(const std::string& invocation, Running running, bool add) {
  {
    std::lock_guard lock(mutex_);
    if (add) {
      if (!running.worker.empty()) ++placed_[running.worker];
      running_[invocation] = std::move(running);
    } else {
      auto it = running_.find(invocation);
      if (it != running_.end()) {
        if (!it->second.worker.empty() && --placed_[it->second.worker] <= 0) {
          placed_.erase(it->second.worker);
        }
        running_.erase(it);
      }
    }
  }
}

Status InvocationManager::writeStatus(Json& invocation, const Json& status) {
  const auto& type = api::clrkType("Invocation");
  for (int attempt = 0; attempt < 5; ++attempt) {
    Json desired = invocation;
    for (const auto& [key, value] : status.items()) {
      if (key == "conditions") {
        for (const auto& cond : value) setCondition(desired["status"], cond);
      } else {
        desired["status"][key] = value;
      }
    }
    auto written = client_->update(type, desired);
    if (written.ok()) {
      invocation = std::move(written).value();
      return {};
    }
    if (written.status().code() != Code::Conflict) return written.status();
    auto fresh = client_->get(type, invocation["metadata"].value("namespace", ""),
                              invocation["metadata"].value("name", ""));
    if (!fresh.ok()) return fresh.status();
    invocation = std::move(fresh).value();
  }
  return Status(Code::Conflict, "Invocation status kept conflicting");
}

InvokeResult InvocationManager::reject(const InvokeRequest& request, Json invocation,
                                       std::string reason, std::string message) {
  InvokeResult result;
  result.invocation_name = invocation.is_object() ? invocation["metadata"].value("name", "") : "";
  result.request_id = request.request_id;
  result.phase = "Rejected";
  result.reason = std::move(reason);
  result.message = std::move(message);
  if (invocation.is_object()) {
    Json status = {{"phase", "Rejected"},
                   {"message", result.message},
                   {"completionTime", formatRfc3339Micro(SystemClock::now())},
                   {"conditions",
                    Json::array({condition("Completed", false, result.reason, result.message)})}};
    Status written = writeStatus(invocation, status);
    if (!written.ok()) {
      logger("controller")->warn("Invocation {}: {}", result.invocation_name, written.toString());
    }
  }
  return result;
}

InvokeResult InvocationManager::run(InvokeRequest request) {
  auto log = logger("controller");
  if (request.content_type.empty()) request.content_type = "application/json";
  const std::string agent_key = request.namespace_name + "/" + request.agent;
  const auto& type = api::clrkType("Invocation");

  // The Invocation object: taken over (CLI) or created here.
  Json invocation;
  if (!request.invocation_name.empty()) {
    auto existing = client_->get(type, request.namespace_name, request.invocation_name);
    if (!existing.ok()) {
      InvokeResult result =
          reject(request, Json(), "InvocationNotFound", existing.status().message());
      result.invocation_name = request.invocation_name;
      return result;
    }
    invocation = std::move(existing).value();
    std::string recorded = invocation.value("spec", Json::object()).value("requestId", "");
    if (!recorded.empty()) request.request_id = recorded;
  }
  if (request.request_id.empty()) request.request_id = newUuid();
  std::optional<Json> agent = agent_lookup_(request.namespace_name, request.agent);
  if (!agent) {
    return reject(request, std::move(invocation), "AgentNotFound",
                  "TaskAgent " + agent_key + " not found");
  }
  // The caller identity: extracted from an HTTP request by spec.identity (an agent whose
  // extractors do not compile is rejected below as not ready), or what a CLI-created
  // Invocation's spec says.
  if (invocation.is_null()) {
    auto extractors = compileIdentityExtractors((*agent)["spec"].value("identity", Json()));
    if (extractors.ok() && request.trigger_type == "HTTP") {
      request.caller_identity = extractCallerIdentity(*extractors, request.headers, request.body);
    }
  } else {
    request.caller_identity =
        callerIdentityFromJson(invocation.value("spec", Json::object()).value("identity", Json()));
  }
  if (invocation.is_null()) {
    Json owner = {{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                  {"kind", "TaskAgent"},
                  {"name", request.agent},
                  {"uid", (*agent)["metadata"].value("uid", "")},
                  {"controller", true},
                  {"blockOwnerDeletion", false}};
    Json object = {
        {"apiVersion", "clrk.apoxy.dev/v1alpha1"},
        {"kind", "Invocation"},
        {"metadata",
         {{"name", runNameFor(request.agent)},
          {"namespace", request.namespace_name},
          {"labels", {{kLabelAgent, request.agent}, {kLabelAgentKind, "TaskAgent"}}},
          {"ownerReferences", Json::array({owner})}}},
        {"spec",
         {{"parentRef", {{"kind", "TaskAgent"}, {"name", request.agent}}},
          {"trigger", {{"type", request.trigger_type}, {"source", request.trigger_source}}},
          {"requestId", request.request_id}}},
        {"status", {{"phase", "Pending"}}},
    };
    if (!request.caller_identity.empty()) {
      object["spec"]["identity"] = toJson(request.caller_identity);
    }
    auto created = client_->create(type, request.namespace_name, object);
    if (!created.ok()) {
      return reject(request, Json(), "InvocationNotRecorded", created.status().message());
    }
    invocation = std::move(created).value();
  }
  const std::string name = invocation["metadata"].value("name", "");

  auto exec = executionFromTaskAgent(*agent);
  if (!exec.ok())
    return reject(request, std::move(invocation), "AgentNotReady", exec.status().message());

  int max_concurrent = (*agent)["spec"].value("maxConcurrent", 0);
  // Admission under the lock (check and count together); the rejection is written after it.
  std::string refusal, refusal_reason;
  {
    std::lock_guard lock(mutex_);
    int current = active_.count(agent_key) > 0 ? active_[agent_key] : 0;
    if (stopping_) {
      refusal_reason = "ControllerStopping";
      refusal = "the controller-manager is shutting down";
    } else if (max_concurrent > 0 && current >= max_concurrent) {
      refusal_reason = "ConcurrencyLimit";
      refusal = "TaskAgent " + agent_key + " already runs " + std::to_string(current) +
                " executions (spec.maxConcurrent " + std::to_string(max_concurrent) + ")";
    } else {
      ++active_[agent_key];
    }
  }
  if (!refusal.empty()) return reject(request, std::move(invocation), refusal_reason, refusal);
  if (on_active_changed_) on_active_changed_(agent_key);
  struct ActiveGuard {
    InvocationManager& manager;
    std::string key;
    ~ActiveGuard() {
      {
        std::lock_guard lock(manager.mutex_);
        if (--manager.active_[key] <= 0) manager.active_.erase(key);
        manager.cv_.notify_all();
      }
      if (manager.on_active_changed_) manager.on_active_changed_(key);
    }
  } active_guard{*this, agent_key};

  exec->execution_id = name;
  exec->request_id = request.request_id;
  std::string event = cloudEventEnvelope(request, name, SystemClock::now());
  if (exec->delivery_mode == worker::DeliveryMode::Metadata) {
    exec->event = std::move(event);  // served at $CLRK_METADATA_URL/event; stdin stays closed
  } else {
    exec->stdin_data = std::move(event);
  }
  exec->env.push_back({"CLRK_INVOCATION", name});
  exec->env.push_back({"CLRK_REQUEST_ID", request.request_id});
  exec->env.push_back({"CLRK_TRIGGER", request.trigger_type});
  exec->env.push_back({"CLRK_AGENT", request.agent});
  exec->env.push_back({"CLRK_NAMESPACE", request.namespace_name});
  addCallerIdentity(*exec, request.caller_identity);
  std::string pool = (*agent)["spec"].value("workerPoolRef", "");

  // Placement.
  std::optional<WorkerInfo> placed;
  std::unique_ptr<worker::WorkerClient> worker_client;
  std::vector<std::string> refused;
  std::string last_error;
  int attempts = 0;
  for (; attempts < kMaxPlacements && !placed; ++attempts) {
    PickOptions pick;
    pick.pool_namespace = request.namespace_name;
    pick.pool = pool;
    pick.now = SystemClock::now();
    pick.exclude = refused;
    {
      std::lock_guard lock(mutex_);
      pick.in_flight = placed_;
    }
    if (warm_hints_.ready) pick.warm = warm_hints_.ready(agent_key);
    auto chosen = pickWorker(workers_.workers(), pick);
    if (!chosen.ok()) {
      last_error = chosen.status().message();
      break;
    }
    auto connected = workers_.clientFor(*chosen);
    if (!connected.ok()) {
      last_error = connected.status().message();
      refused.push_back(chosen->name);
      continue;
    }
    auto accepted = (*connected)->run(*exec);
    if (accepted.ok() || accepted.status().code() == Code::AlreadyExists) {
      placed = *chosen;
      worker_client = std::move(connected).value();
      break;
    }
    last_error = "worker " + chosen->name + ": " + accepted.status().message();
    log->info("invocation {}: {}; trying another worker", name, last_error);
    refused.push_back(chosen->name);
  }
  if (!placed) {
    return reject(request, std::move(invocation), "NoCapacity",
                  last_error.empty() ? "no worker accepted the execution" : last_error);
  }
  if (warm_hints_.placed) warm_hints_.placed(placed->name, agent_key);
  track(name, Running{agent_key, placed->name, name}, true);
  struct TrackGuard {
    InvocationManager& manager;
    std::string name;
    ~TrackGuard() { manager.track(name, {}, false); }
  } track_guard{*this, name};

  InvokeResult result;
  result.invocation_name = name;
  result.request_id = request.request_id;
  result.execution_id = name;
  result.worker = placed->name;
  Json dispatched = {
      {"phase", "Dispatched"},
      {"worker", placed->name},
      {"executionId", name},
      {"attempts", attempts + 1},
      {"conditions", Json::array({condition("Dispatched", true, "Placed",
                                            "execution " + name + " on worker " + placed->name)})}};
  if (Status s = writeStatus(invocation, dispatched); !s.ok()) {
    log->warn("Invocation {}: {}", name, s.toString());
  }

  if (!request.output_sink || !streamingEnabled(*agent)) {
    return awaitAndRecord(invocation, *worker_client, placed->name, false, std::move(result));
  }
  // Streaming: the sink gets every line before the result is returned.
  request.output_sink->begin(result);
  OutputFollower follower(*worker_client, name, request.output_sink);
  InvokeResult done =
      awaitAndRecord(invocation, *worker_client, placed->name, false, std::move(result));
  bool ended = done.reason != "WorkerLost" && done.reason != "ControllerStopping";
  Status followed = follower.finish(ended ? std::chrono::seconds(10) : std::chrono::seconds(0));
  if (!followed.ok())
    log->info("invocation {}: streaming its output: {}", name, followed.toString());
  return done;
}

InvokeResult InvocationManager::awaitAndRecord(Json& invocation,
                                               worker::WorkerClient& worker_client,
                                               const std::string& worker_name,
                                               bool reported_running, InvokeResult result) {
  auto log = logger("controller");
  const std::string name = result.invocation_name;
  // Wait for the result.
  auto unreachable_since = std::optional<std::chrono::steady_clock::time_point>();
  std::optional<worker::ExecutionStatus> final_status;
  std::string lost_reason;
  while (!final_status) {
    if (stopping_) {
      lost_reason = "the controller-manager stopped while waiting";
      break;
    }
    auto polled = worker_client.get(result.execution_id, kWorkerPollWait, stop_source_.get_token());
    if (stopping_) continue;
    if (polled.ok()) {
      unreachable_since.reset();
      // A run that already ended skips the Running write: the terminal write carries startTime.
      if (!reported_running && polled->phase == worker::Phase::Running) {
        reported_running = true;
        Json running = {{"phase", "Running"}, {"startTime", polled->started_at}};
        if (Status s = writeStatus(invocation, running); !s.ok()) {
          log->warn("Invocation {}: {}", name, s.toString());
        }
      }
      if (worker::isTerminal(polled->phase)) final_status = std::move(polled).value();
      continue;
    }
    auto now_steady = std::chrono::steady_clock::now();
    if (!unreachable_since) unreachable_since = now_steady;
    auto info = workers_.find(worker_name);
    bool lease_gone = !info || !info->alive(SystemClock::now());
    if (polled.status().code() == Code::NotFound || lease_gone ||
        now_steady - *unreachable_since > kWorkerUnreachableLimit) {
      lost_reason = "worker " + worker_name +
                    (lease_gone ? " stopped renewing its Lease"
                                : " lost the execution or stayed unreachable") +
                    ": " + polled.status().message();
      break;
    }
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_.load(); });
  }

  if (!final_status && stopping_) {
    // The execution may still be running: leave the Invocation as it is for a later controller.
    result.phase = "Running";
    result.reason = "ControllerStopping";
    result.message = lost_reason;
    return result;
  }
  Json terminal;
  terminal["completionTime"] = formatRfc3339Micro(SystemClock::now());
  if (!final_status) {
    result.phase = "Failed";
    result.reason = "WorkerLost";
    result.message = lost_reason;
  } else {
    result.phase = invocationPhaseOf(final_status->phase);
    result.reason = final_status->phase == worker::Phase::Succeeded  ? "Completed"
                    : final_status->phase == worker::Phase::TimedOut ? "TimedOut"
                    : final_status->phase == worker::Phase::Stopped  ? "Stopped"
                                                                     : "Error";
    result.message = final_status->message;
    result.exit_code = final_status->exit_code;
    result.stderr_tail = final_status->output.stderr_tail;
    if (final_status->response) {
      // Metadata delivery: what the agent POSTed to /response is the response body.
      worker::ExecutionResponse& response = *final_status->response;
      result.output_source = "Response";
      result.output_content_type = headerSafe(response.content_type) ? response.content_type : "";
      result.output = std::move(response.body);
      result.output_truncated = response.discarded;
      if (response.discarded) {
        result.message += "; the worker discarded the " + std::to_string(response.bytes) +
                          "-byte response body (its memory bound) before it was read";
      }
    } else {
      result.output_source = "Stdout";
      result.output = final_status->output.stdout_text;
      result.output_truncated = final_status->output.truncated;
    }
    if (!reported_running) terminal["startTime"] = final_status->started_at;
    if (!final_status->sandbox_id.empty()) terminal["sandboxId"] = final_status->sandbox_id;
    if (result.exit_code) terminal["exitCode"] = *result.exit_code;
    // The status holds text only: a binary body is left out (outputTruncated says so).
    std::string shown = utf8Prefix(result.output, kMaxStatusOutputBytes);
    bool text = isJsonText(shown);
    terminal["output"] = text ? std::move(shown) : std::string();
    terminal["outputTruncated"] =
        result.output_truncated || !text || result.output.size() > kMaxStatusOutputBytes;
    terminal["outputSource"] = result.output_source;
    terminal["stderrTail"] = utf8Suffix(result.stderr_tail, kMaxStatusStderrBytes);
  }
  terminal["phase"] = result.phase;
  terminal["message"] = result.message;
  terminal["conditions"] = Json::array(
      {condition("Completed", result.phase == "Succeeded", result.reason, result.message)});
  if (Status s = writeStatus(invocation, terminal); !s.ok()) {
    log->warn("Invocation {}: {}", name, s.toString());
  }
  return result;
}

InvokeResult InvocationManager::resume(Json invocation) {
  const Json metadata = invocation.value("metadata", Json::object());
  const Json status = invocation.value("status", Json::object());
  const Json spec = invocation.value("spec", Json::object());
  InvokeResult result;
  result.invocation_name = metadata.value("name", "");
  result.request_id = spec.value("requestId", "");
  result.execution_id = status.value("executionId", "");
  result.worker = status.value("worker", "");
  std::string agent_key = metadata.value("namespace", "") + "/" +
                          spec.value("parentRef", Json::object()).value("name", "");
  auto fail = [&](const std::string& why) {
    Json terminal = {
        {"phase", "Failed"},
        {"message", why},
        {"completionTime", formatRfc3339Micro(SystemClock::now())},
        {"conditions", Json::array({condition("Completed", false, "WorkerLost", why)})}};
    if (Status s = writeStatus(invocation, terminal); !s.ok()) {
      logger("controller")->warn("Invocation {}: {}", result.invocation_name, s.toString());
    }
    result.phase = "Failed";
    result.reason = "WorkerLost";
    result.message = why;
    return result;
  };
  auto info = workers_.find(result.worker);
  if (!info || !info->alive(SystemClock::now())) {
    return fail("worker " + result.worker + " is gone (noticed after a controller restart)");
  }
  auto client = workers_.clientFor(*info);
  if (!client.ok()) return fail("worker " + result.worker + ": " + client.status().message());
  {
    std::lock_guard lock(mutex_);
    ++active_[agent_key];
  }
  track(result.invocation_name, Running{agent_key, result.worker, result.execution_id}, true);
  InvokeResult done = awaitAndRecord(invocation, **client, result.worker,
                                     status.value("phase", "") == "Running", result);
  track(result.invocation_name, {}, false);
  {
    std::lock_guard lock(mutex_);
    if (--active_[agent_key] <= 0) active_.erase(agent_key);
  }
  if (on_active_changed_) on_active_changed_(agent_key);
  return done;
}

bool InvocationManager::tracking(const std::string& invocation) const {
  std::lock_guard lock(mutex_);
  return running_.count(invocation) > 0;
}

Status InvocationManager::runAsync(InvokeRequest request, std::function<void(InvokeResult)> done) {
  return spawn([this, request = std::move(request), done = std::move(done)]() mutable {
    InvokeResult result = run(std::move(request));
    if (done) done(std::move(result));
  });
}

Status InvocationManager::resumeAsync(Json invocation, std::function<void(InvokeResult)> done) {
  return spawn([this, invocation = std::move(invocation), done = std::move(done)]() mutable {
    InvokeResult result = resume(std::move(invocation));
    if (done) done(std::move(result));
  });
}

Status InvocationManager::spawn(std::function<void()> work) {
  std::lock_guard lock(mutex_);
  if (stopping_) return Status(Code::Unavailable, "the controller-manager is shutting down");
  reapFinishedThreads();
  if (threads_.size() >= static_cast<size_t>(kMaxInFlight)) {
    return Status(Code::Unavailable,
                  "too many invocations in flight (" + std::to_string(kMaxInFlight) + ")");
  }
  uint64_t id = next_thread_id_++;
  threads_.emplace(id, std::thread([this, id, work = std::move(work)] {
                     work();
                     std::lock_guard inner(mutex_);
                     finished_threads_.push_back(id);
                     cv_.notify_all();
                   }));
  return {};
}

// REQUIRES: mutex_ held.
void InvocationManager::reapFinishedThreads() {
  for (uint64_t id : finished_threads_) {
    auto it = threads_.find(id);
    if (it == threads_.end()) continue;
    if (it->second.joinable()) it->second.join();
    threads_.erase(it);
  }
  finished_threads_.clear();
}

int InvocationManager::stopAgent(const std::string& agent_key) {
  std::vector<Running> targets;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, running] : running_) {
      if (running.agent_key == agent_key) targets.push_back(running);
    }
  }
  int asked = 0;
  for (const auto& target : targets) {
    auto info = workers_.find(target.worker);
    if (!info) continue;
    auto client = workers_.clientFor(*info);
    if (client.ok() && (*client)->stop(target.execution_id).ok()) ++asked;
  }
  return asked;
}

void InvocationManager::stop() {
  std::map<uint64_t, std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    stop_source_.request_stop();
    cv_.notify_all();
    threads.swap(threads_);
    finished_threads_.clear();
  }
  for (auto& [id, thread] : threads) {
    if (thread.joinable()) thread.join();
  }
}

}  // namespace clrk::controller
