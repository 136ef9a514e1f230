#include "clrk/worker/api.h"

#include "clrk/base/base64.h"
#include "clrk/egress/identity.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <limits>

namespace clrk::worker {
namespace {

// Field readers: each names the field on a type mismatch.
Status wrongType(std::string_view field, std::string_view want) {
  return invalidArgument(fmt::format("{}: must be {}", field, want));
}

Status readString(const Json& object, const char* key, std::string& out, size_t max_bytes,
                  bool required = false) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    if (required) return invalidArgument(fmt::format("{}: required", key));
    return {};
  }
  if (!it->is_string()) return wrongType(key, "a string");
  out = it->get<std::string>();
  if (required && out.empty()) return invalidArgument(fmt::format("{}: must not be empty", key));
  if (out.size() > max_bytes) {
    return invalidArgument(fmt::format("{}: longer than {} bytes", key, max_bytes));
  }
  return {};
}

Status readStringList(const Json& object, const char* key, std::vector<std::string>& out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return {};
  if (!it->is_array()) return wrongType(key, "an array of strings");
  if (it->size() > 4096) return invalidArgument(fmt::format("{}: more than 4096 items", key));
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& item = (*it)[i];
    if (!item.is_string()) return wrongType(fmt::format("{}[{}]", key, i), "a string");
    out.push_back(item.get<std::string>());
  }
  return {};
}

bool validEnvName(std::string_view name) {
  if (name.empty() || name.size() > 256) return false;
  for (char c : name) {
    if (c == '=' || c == '\0') return false;
  }
  return true;
}

// "callerIdentity": {"fields": {name: value}, "verified": bool}, bounded as egress/identity.h says.
Status readCallerIdentity(const Json& json, ExecutionRequest& r) {
  auto it = json.find("callerIdentity");
  if (it == json.end() || it->is_null()) return {};
  if (!it->is_object()) return wrongType("callerIdentity", "an object {fields, verified}");
  if (auto verified = it->find("verified"); verified != it->end() && !verified->is_null()) {
    if (!verified->is_boolean()) return wrongType("callerIdentity.verified", "a boolean");
    r.caller_identity_verified = verified->get<bool>();
  }
  auto fields = it->find("fields");
  if (fields == it->end() || fields->is_null()) return {};
  if (!fields->is_object()) return wrongType("callerIdentity.fields", "an object of strings");
  if (fields->size() > egress::kMaxCallerFields) {
    return invalidArgument(
        fmt::format("callerIdentity.fields: more than {} fields", egress::kMaxCallerFields));
  }
  for (const auto& [name, value] : fields->items()) {
    std::string field = "callerIdentity.fields." + name.substr(0, 64);
    if (!egress::isValidCallerField(name)) {
      return invalidArgument(field + ": the name must match [a-z][a-z0-9_]{0,62}");
    }
    if (!value.is_string()) return wrongType(field, "a string");
    std::string_view problem = egress::callerValueProblem(value.get_ref<const std::string&>());
    if (!problem.empty())
      return invalidArgument(fmt::format("{}: unusable value ({})", field, problem));
    r.caller_identity[name] = value.get<std::string>();
  }
  return {};
}

Result<ExecutionRequest> parseRequestObject(const Json& json) {
  if (!json.is_object()) return invalidArgument("request body: must be a JSON object");
  ExecutionRequest r;
  CLRK_RETURN_IF_ERROR(readString(json, "executionId", r.execution_id, kMaxIdLength, true));
  if (!isValidExecutionId(r.execution_id)) {
    return invalidArgument(fmt::format("executionId: \"{}\" must match [A-Za-z0-9._-]{{1,{}}}",
                                       r.execution_id, kMaxIdLength));
  }
  CLRK_RETURN_IF_ERROR(readString(json, "namespace", r.namespace_name, 253));
  CLRK_RETURN_IF_ERROR(readString(json, "agent", r.agent, 253));
  CLRK_RETURN_IF_ERROR(readString(json, "agentKind", r.agent_kind, 64));
  CLRK_RETURN_IF_ERROR(readString(json, "requestId", r.request_id, 256));
  CLRK_RETURN_IF_ERROR(readString(json, "gateway", r.gateway, 512));
  CLRK_RETURN_IF_ERROR(readString(json, "image", r.image, 4096, true));
  if (r.image.rfind("dir:", 0) == 0 && (r.image.size() < 5 || r.image[4] != '/')) {
    return invalidArgument("image: \"dir:\" needs an absolute path, e.g. dir:/srv/rootfs");
  }
  CLRK_RETURN_IF_ERROR(readString(json, "workingDir", r.working_dir, 4096));
  if (!r.working_dir.empty() && r.working_dir[0] != '/') {
    return invalidArgument("workingDir: must be an absolute path");
  }
  if (auto it = json.find("agentLabels"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return wrongType("agentLabels", "an object of strings");
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string()) return wrongType("agentLabels." + key, "a string");
      r.agent_labels[key] = value.get<std::string>();
    }
  }
  CLRK_RETURN_IF_ERROR(readStringList(json, "imagePullSecrets", r.image_pull_secrets));
  CLRK_RETURN_IF_ERROR(readStringList(json, "command", r.command));
  CLRK_RETURN_IF_ERROR(readStringList(json, "args", r.args));
  if (auto it = json.find("env"); it != json.end() && !it->is_null()) {
    if (!it->is_array()) return wrongType("env", "an array of {name, value}");
    for (size_t i = 0; i < it->size(); ++i) {
      const Json& item = (*it)[i];
      std::string field = fmt::format("env[{}]", i);
      if (!item.is_object()) return wrongType(field, "an object {name, value}");
      EnvVar var;
      auto name = item.find("name");
      if (name == item.end() || !name->is_string()) return wrongType(field + ".name", "a string");
      var.name = name->get<std::string>();
      if (!validEnvName(var.name)) {
        return invalidArgument(field + ".name: \"" + var.name + "\" is not a valid variable name");
      }
      auto value = item.find("value");
      if (value != item.end() && !value->is_null()) {
        if (!value->is_string()) return wrongType(field + ".value", "a string");
        var.value = value->get<std::string>();
      }
      r.env.push_back(std::move(var));
    }
  }
  if (auto it = json.find("timeoutSeconds"); it != json.end() && !it->is_null()) {
    if (!it->is_number_integer()) return wrongType("timeoutSeconds", "an integer");
    r.timeout_seconds = it->get<int64_t>();
    if (r.timeout_seconds < 0 || r.timeout_seconds > 7 * 24 * 3600) {
      return invalidArgument("timeoutSeconds: must be between 0 and 604800");
    }
  }
  if (auto it = json.find("resources"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return wrongType("resources", "an object {cpu, memory}");
    for (const char* key : {"cpu", "memory"}) {
      auto q = it->find(key);
      if (q == it->end() || q->is_null()) continue;
      std::string text;
      std::string field = std::string("resources.") + key;
      if (q->is_string()) {
        text = q->get<std::string>();
      } else if (q->is_number()) {
        text = q->dump();
      } else {
        return wrongType(field, "a Kubernetes quantity");
      }
      if (std::string_view(key) == "cpu") {
        CLRK_RETURN_IF_ERROR(parseCpuMillis(text, field).status());
        r.resources.cpu = text;
      } else {
        CLRK_RETURN_IF_ERROR(parseMemoryBytes(text, field).status());
        r.resources.memory = text;
      }
    }
  }
  if (auto it = json.find("stdin"); it != json.end() && !it->is_null()) {
    if (!it->is_string()) return wrongType("stdin", "a string");
    r.stdin_data = it->get<std::string>();
  }
  std::string mode;
  CLRK_RETURN_IF_ERROR(readString(json, "deliveryMode", mode, 32));
  if (!mode.empty()) {
    auto parsed = parseDeliveryMode(mode);
    if (!parsed) {
      return invalidArgument("deliveryMode: \"" + mode + "\" must be Stdin or Metadata");
    }
    r.delivery_mode = *parsed;
  }
  CLRK_RETURN_IF_ERROR(readString(json, "event", r.event, kMaxRequestBodyBytes));
  if (r.delivery_mode == DeliveryMode::Metadata) {
    if (r.stdin_data) {
      return invalidArgument(
          "stdin: must be absent with deliveryMode Metadata (stdin is closed; "
          "the input is \"event\")");
    }
    if (r.event.empty()) return invalidArgument("event: required with deliveryMode Metadata");
    if (Json::parse(r.event, nullptr, false).is_discarded()) {
      return invalidArgument("event: must be a JSON document (the CloudEvents envelope)");
    }
  } else if (!r.event.empty()) {
    return invalidArgument("event: only with deliveryMode Metadata (Stdin mode uses \"stdin\")");
  }
  CLRK_RETURN_IF_ERROR(readCallerIdentity(json, r));
  return r;
}

// Splits "123.5Mi" into a decimal number and a suffix; the number may use an exponent
// ("1e3") instead of a suffix.
struct Quantity {
  long double number = 0;
  std::string suffix;
};

Result<Quantity> splitQuantity(std::string_view text, std::string_view field) {
  auto bad = [&] {
    return invalidArgument(fmt::format("{}: \"{}\" is not a Kubernetes quantity", field, text));
  };
  if (text.empty() || text.size() > 64) return bad();
  size_t i = 0;
  if (text[i] == '+') ++i;
  size_t digits_start = i;
  bool dot = false;
  while (i < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[i])) || (text[i] == '.' && !dot))) {
    if (text[i] == '.') dot = true;
    ++i;
  }
  if (i == digits_start || (i == digits_start + 1 && dot)) return bad();
  std::string number(text.substr(digits_start, i - digits_start));
  std::string suffix(text.substr(i));
  long double exponent_factor = 1;
  if (!suffix.empty() && (suffix[0] == 'e' || suffix[0] == 'E') && suffix.size() > 1) {
    std::string_view exp = std::string_view(suffix).substr(1);
    bool negative = false;
    if (!exp.empty() && (exp[0] == '-' || exp[0] == '+')) {
      negative = exp[0] == '-';
      exp.remove_prefix(1);
    }
    if (exp.empty() || exp.size() > 3) return bad();
    int e = 0;
    for (char c : exp) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return bad();
      e = e * 10 + (c - '0');
    }
    exponent_factor = std::pow(10.0L, negative ? -e : e);
    suffix.clear();
  }
  Quantity q;
  try {
    q.number = std::stold(number) * exponent_factor;
  } catch (...) {
    return bad();
  }
  q.suffix = suffix;
  return q;
}

}  // namespace

bool isValidExecutionId(std::string_view id) {
  if (id.empty() || id.size() > kMaxIdLength || id == "." || id == "..") return false;
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

Result<int64_t> parseCpuMillis(std::string_view quantity, std::string_view field) {
  CLRK_ASSIGN_OR_RETURN(Quantity q, splitQuantity(quantity, field));
  long double millis = 0;
  if (q.suffix.empty()) {
    millis = q.number * 1000;
  } else if (q.suffix == "m") {
    millis = q.number;
  } else {
    return invalidArgument(fmt::format(
        "{}: \"{}\" is not a CPU quantity (use cores like \"2\" or millicores like \"500m\")",
        field, quantity));
  }
  if (millis > 1e9L)
    return invalidArgument(fmt::format("{}: \"{}\" is too large", field, quantity));
  auto rounded = static_cast<int64_t>(std::ceil(millis));
  if (rounded <= 0 && q.number > 0) rounded = 1;
  return rounded;
}

Result<int64_t> parseMemoryBytes(std::string_view quantity, std::string_view field) {
  CLRK_ASSIGN_OR_RETURN(Quantity q, splitQuantity(quantity, field));
  static const std::map<std::string, long double> kFactors = {
      {"", 1},
      {"k", 1e3L},
      {"M", 1e6L},
      {"G", 1e9L},
      {"T", 1e12L},
      {"P", 1e15L},
      {"Ki", 1024.0L},
      {"Mi", 1024.0L * 1024},
      {"Gi", 1024.0L * 1024 * 1024},
      {"Ti", 1024.0L * 1024 * 1024 * 1024},
      {"Pi", 1024.0L * 1024 * 1024 * 1024 * 1024},
  };
  auto it = kFactors.find(q.suffix);
  if (it == kFactors.end()) {
    return invalidArgument(
        fmt::format("{}: \"{}\" is not a memory quantity (suffixes k M G T P Ki Mi Gi Ti Pi)",
                    field, quantity));
  }
  long double bytes = q.number * it->second;
  if (bytes > 9e18L)
    return invalidArgument(fmt::format("{}: \"{}\" is too large", field, quantity));
  return static_cast<int64_t>(std::ceil(bytes));
}

Result<ExecutionRequest> parseExecutionRequest(std::string_view body) {
  if (body.size() > kMaxRequestBodyBytes) {
    return invalidArgument(fmt::format("request body: larger than {} bytes", kMaxRequestBodyBytes));
  }
  Json json = Json::parse(body, nullptr, false);
  if (json.is_discarded()) return invalidArgument("request body: not valid JSON");
  return parseRequestObject(json);
}

Result<ExecutionRequest> executionRequestFromJson(const Json& json) {
  try {
    return parseRequestObject(json);
  } catch (const std::exception& e) {
    return invalidArgument(std::string("request: ") + e.what());
  }
}

Json toJson(const ExecutionRequest& r) {
  Json json = {{"executionId", r.execution_id}, {"image", r.image}};
  auto put = [&](const char* key, const std::string& value) {
    if (!value.empty()) json[key] = value;
  };
  put("namespace", r.namespace_name);
  put("agent", r.agent);
  put("agentKind", r.agent_kind);
  put("requestId", r.request_id);
  put("gateway", r.gateway);
  put("workingDir", r.working_dir);
  if (!r.agent_labels.empty()) json["agentLabels"] = r.agent_labels;
  if (!r.image_pull_secrets.empty()) json["imagePullSecrets"] = r.image_pull_secrets;
  if (!r.command.empty()) json["command"] = r.command;
  if (!r.args.empty()) json["args"] = r.args;
  if (!r.env.empty()) {
    Json env = Json::array();
    for (const auto& var : r.env) env.push_back({{"name", var.name}, {"value", var.value}});
    json["env"] = std::move(env);
  }
  if (r.timeout_seconds > 0) json["timeoutSeconds"] = r.timeout_seconds;
  if (!r.resources.cpu.empty() || !r.resources.memory.empty()) {
    Json resources = Json::object();
    if (!r.resources.cpu.empty()) resources["cpu"] = r.resources.cpu;
    if (!r.resources.memory.empty()) resources["memory"] = r.resources.memory;
    json["resources"] = std::move(resources);
  }
  if (r.stdin_data) json["stdin"] = *r.stdin_data;
  if (r.delivery_mode != DeliveryMode::Stdin) {
    json["deliveryMode"] = std::string(deliveryModeName(r.delivery_mode));
    json["event"] = r.event;
  }
  if (!r.caller_identity.empty()) {
    json["callerIdentity"] = {{"fields", r.caller_identity},
                              {"verified", r.caller_identity_verified}};
  }
  return json;
}

std::string_view deliveryModeName(DeliveryMode mode) {
  switch (mode) {
    case DeliveryMode::Stdin:
      return "Stdin";
    case DeliveryMode::Metadata:
      return "Metadata";
  }
  return "Stdin";
}

std::optional<DeliveryMode> parseDeliveryMode(std::string_view text) {
  if (text == "Stdin") return DeliveryMode::Stdin;
  if (text == "Metadata") return DeliveryMode::Metadata;
  return std::nullopt;
}

std::string_view phaseName(Phase phase) {
  switch (phase) {
    case Phase::Pending:
      return "Pending";
    case Phase::Running:
      return "Running";
    case Phase::Succeeded:
      return "Succeeded";
    case Phase::Failed:
      return "Failed";
    case Phase::TimedOut:
      return "TimedOut";
    case Phase::Stopped:
      return "Stopped";
  }
  return "Unknown";
}

std::optional<Phase> parsePhase(std::string_view text) {
  for (Phase phase : {Phase::Pending, Phase::Running, Phase::Succeeded, Phase::Failed,
                      Phase::TimedOut, Phase::Stopped}) {
    if (phaseName(phase) == text) return phase;
  }
  return std::nullopt;
}

Json toJson(const ExecutionStatus& s) {
  Json json = {
      {"executionId", s.execution_id},
      {"namespace", s.namespace_name},
      {"agent", s.agent},
      {"requestId", s.request_id},
      {"phase", std::string(phaseName(s.phase))},
      {"message", s.message},
      {"startedAt", s.started_at},
      {"finishedAt", s.finished_at},
      {"sandboxId", s.sandbox_id},
      {"sandboxAddress", s.sandbox_address},
      {"output",
       {{"stdout", s.output.stdout_text},
        {"truncated", s.output.truncated},
        {"stderrTail", s.output.stderr_tail}}},
  };
  json["exitCode"] = s.exit_code ? Json(*s.exit_code) : Json(nullptr);
  if (s.response) {
    // Base64: the agent may post any bytes, and JSON strings carry only UTF-8.
    json["response"] = {{"contentType", s.response->content_type},
                        {"bytes", s.response->bytes},
                        {"bodyBase64", base64Encode(s.response->body)},
                        {"discarded", s.response->discarded}};
  }
  return json;
}

Result<ExecutionStatus> executionStatusFromJson(const Json& json) {
  if (!json.is_object()) return invalidArgument("execution status: not a JSON object");
  ExecutionStatus s;
  CLRK_RETURN_IF_ERROR(readString(json, "executionId", s.execution_id, kMaxIdLength, true));
  CLRK_RETURN_IF_ERROR(readString(json, "namespace", s.namespace_name, 253));
  CLRK_RETURN_IF_ERROR(readString(json, "agent", s.agent, 253));
  CLRK_RETURN_IF_ERROR(readString(json, "requestId", s.request_id, 256));
  std::string phase;
  CLRK_RETURN_IF_ERROR(readString(json, "phase", phase, 32, true));
  auto parsed = parsePhase(phase);
  if (!parsed) return invalidArgument("phase: unknown value \"" + phase + "\"");
  s.phase = *parsed;
  CLRK_RETURN_IF_ERROR(readString(json, "message", s.message, 1 << 20));
  CLRK_RETURN_IF_ERROR(readString(json, "startedAt", s.started_at, 64));
  CLRK_RETURN_IF_ERROR(readString(json, "finishedAt", s.finished_at, 64));
  CLRK_RETURN_IF_ERROR(readString(json, "sandboxId", s.sandbox_id, 128));
  CLRK_RETURN_IF_ERROR(readString(json, "sandboxAddress", s.sandbox_address, 64));
  if (auto it = json.find("exitCode"); it != json.end() && !it->is_null()) {
    if (!it->is_number_integer()) return wrongType("exitCode", "an integer");
    s.exit_code = it->get<int>();
  }
  if (auto it = json.find("output"); it != json.end() && it->is_object()) {
    CLRK_RETURN_IF_ERROR(readString(*it, "stdout", s.output.stdout_text, 2 * kMaxOutputBytes));
    CLRK_RETURN_IF_ERROR(readString(*it, "stderrTail", s.output.stderr_tail, kMaxOutputBytes));
    auto truncated = it->find("truncated");
    s.output.truncated =
        truncated != it->end() && truncated->is_boolean() && truncated->get<bool>();
  }
  if (auto it = json.find("response"); it != json.end() && !it->is_null()) {
    if (!it->is_object()) return wrongType("response", "an object");
    ExecutionResponse response;
    CLRK_RETURN_IF_ERROR(readString(*it, "contentType", response.content_type, 1024));
    std::string encoded;
    // 8 MiB of body is at most 11.2 MB of base64.
    CLRK_RETURN_IF_ERROR(readString(*it, "bodyBase64", encoded, 12 << 20));
    auto decoded = base64Decode(encoded);
    if (!decoded) return invalidArgument("response.bodyBase64: not valid base64");
    response.body = std::move(decoded).value();
    if (auto bytes = it->find("bytes"); bytes != it->end() && !bytes->is_null()) {
      if (!bytes->is_number_integer()) return wrongType("response.bytes", "an integer");
      response.bytes = bytes->get<int64_t>();
    } else {
      response.bytes = static_cast<int64_t>(response.body.size());
    }
    auto discarded = it->find("discarded");
    response.discarded =
        discarded != it->end() && discarded->is_boolean() && discarded->get<bool>();
    s.response = std::move(response);
  }
  return s;
}

Json toJson(const LogEntry& entry) {
  return {{"time", entry.time}, {"stream", entry.stream}, {"text", entry.text}};
}

Result<LogEntry> logEntryFromJson(const Json& json) {
  if (!json.is_object()) return invalidArgument("log entry: not a JSON object");
  LogEntry entry;
  CLRK_RETURN_IF_ERROR(readString(json, "time", entry.time, 64));
  CLRK_RETURN_IF_ERROR(readString(json, "stream", entry.stream, 16));
  CLRK_RETURN_IF_ERROR(readString(json, "text", entry.text, 1 << 20));
  return entry;
}

Json toJson(const WarmPoolSpec& spec) {
  return {{"key", spec.key},
          {"size", spec.size},
          {"idleTTLSeconds", spec.idle_ttl_seconds},
          {"request", toJson(spec.request)}};
}

Result<WarmPoolSpec> warmPoolSpecFromJson(const Json& json) {
  if (!json.is_object()) return invalidArgument("not a JSON object");
  WarmPoolSpec spec;
  auto key = json.find("key");
  if (key == json.end() || !key->is_string() || key->get<std::string>().empty() ||
      key->get<std::string>().size() > 320 ||
      key->get<std::string>().find('/') == std::string::npos) {
    return invalidArgument("key: must be \"namespace/agent\"");
  }
  spec.key = key->get<std::string>();
  auto size = json.find("size");
  if (size == json.end() || !size->is_number_integer() || size->get<int64_t>() < 0 ||
      size->get<int64_t>() > 10000) {
    return invalidArgument("size: must be a whole number from 0 to 10000");
  }
  spec.size = size->get<int>();
  if (auto ttl = json.find("idleTTLSeconds"); ttl != json.end()) {
    if (!ttl->is_number_integer() || ttl->get<int64_t>() < 1) {
      return invalidArgument("idleTTLSeconds: must be a positive whole number");
    }
    spec.idle_ttl_seconds = ttl->get<int64_t>();
  }
  auto request = json.find("request");
  if (request == json.end()) return invalidArgument("request: missing");
  auto parsed = executionRequestFromJson(*request);
  if (!parsed.ok()) return invalidArgument("request." + parsed.status().message());
  spec.request = std::move(parsed).value();
  return spec;
}

Result<std::vector<WarmPoolSpec>> parseWarmPoolSpecs(std::string_view body) {
  Json json = Json::parse(body.begin(), body.end(), nullptr, false);
  if (json.is_discarded() || !json.is_object()) return invalidArgument("body: not a JSON object");
  auto pools = json.find("pools");
  if (pools == json.end() || !pools->is_array()) return invalidArgument("pools: not an array");
  if (pools->size() > 1000) return invalidArgument("pools: more than 1000 entries");
  std::vector<WarmPoolSpec> specs;
  for (size_t index = 0; index < pools->size(); ++index) {
    auto spec = warmPoolSpecFromJson((*pools)[index]);
    if (!spec.ok()) {
      return invalidArgument("pools[" + std::to_string(index) + "]." + spec.status().message());
    }
    for (const auto& other : specs) {
      if (other.key == spec->key) {
        return invalidArgument("pools[" + std::to_string(index) + "].key: \"" + spec->key +
                               "\" is listed twice");
      }
    }
    specs.push_back(std::move(spec).value());
  }
  return specs;
}

Json toJson(const WarmPoolState& state) {
  Json json = {{"key", state.key},         {"size", state.size},     {"ready", state.ready},
               {"booting", state.booting}, {"claims", state.claims}, {"misses", state.misses}};
  if (!state.last_error.empty()) json["lastError"] = state.last_error;
  return json;
}

Result<WarmPoolState> warmPoolStateFromJson(const Json& json) {
  if (!json.is_object()) return invalidArgument("warm pool state: not a JSON object");
  WarmPoolState state;
  try {
    state.key = json.value("key", "");
    state.size = json.value("size", 0);
    state.ready = json.value("ready", 0);
    state.booting = json.value("booting", 0);
    state.claims = json.value("claims", uint64_t{0});
    state.misses = json.value("misses", uint64_t{0});
    state.last_error = json.value("lastError", "");
  } catch (const std::exception& e) {
    return invalidArgument(std::string("warm pool state: ") + e.what());
  }
  return state;
}

Json toJson(const WorkerCapacity& c) {
  return {{"maxExecutions", c.max_executions},
          {"running", c.running},
          {"free", c.free},
          {"runtime", c.runtime},
          {"limitsSupport", c.limits_support},
          {"cpu", c.cpu},
          {"memoryBytes", c.memory_bytes}};
}

Result<WorkerCapacity> workerCapacityFromJson(const Json& json) {
  if (!json.is_object()) return invalidArgument("capacity: not a JSON object");
  WorkerCapacity c;
  try {
    c.max_executions = json.value("maxExecutions", 0);
    c.running = json.value("running", 0);
    c.free = json.value("free", 0);
    c.runtime = json.value("runtime", "");
    c.limits_support = json.value("limitsSupport", "");
    c.cpu = json.value("cpu", 0);
    c.memory_bytes = json.value("memoryBytes", int64_t{0});
  } catch (const std::exception& e) {
    return invalidArgument(std::string("capacity: ") + e.what());
  }
  return c;
}

}  // namespace clrk::worker
