// Request helpers, error shapes and the Dispatcher that records and routes requests.
#include "clrk/base/ascii.h"
#include "clrk/base/ids.h"
#include "clrk/mockprovider/handlers.h"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <string>

namespace clrk::mockprovider {

namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t idx = 0; idx < in.size(); ++idx) {
    if (in[idx] == '+') {
      out.push_back(' ');
    } else if (in[idx] == '%' && idx + 2 < in.size() && hexValue(in[idx + 1]) >= 0 &&
               hexValue(in[idx + 2]) >= 0) {
      out.push_back(static_cast<char>(hexValue(in[idx + 1]) * 16 + hexValue(in[idx + 2])));
      idx += 2;
    } else {
      out.push_back(in[idx]);
    }
  }
  return out;
}

std::string bearerToken(const internal::Request& request) {
  std::string auth = request.header("authorization");
  if (auth.size() > 7 && asciiEqualsIgnoreCase(std::string_view(auth).substr(0, 7), "bearer ")) {
    return auth.substr(7);
  }
  return "";
}

std::string sha256Hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char byte : digest) {
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0xf]);
  }
  return out;
}

bool isDebugPath(const std::string& path) {
  return path == "/__mock/requests" || path == "/__mock/fail-status";
}

}  // namespace

std::string RecordedRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (asciiEqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

int countTokens(std::string_view text) {
  int count = 0;
  bool in_word = false;
  for (char c : text) {
    bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (!space && !in_word) ++count;
    in_word = !space;
  }
  return count;
}

namespace internal {

std::string Request::path() const { return target.substr(0, target.find('?')); }

std::string Request::query(std::string_view name) const {
  size_t question = target.find('?');
  if (question == std::string::npos) return "";
  std::string_view rest = std::string_view(target).substr(question + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    size_t eq = pair.find('=');
    if (percentDecode(pair.substr(0, eq)) == name) {
      return eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    rest = rest.substr(amp + 1);
  }
  return "";
}

std::string Request::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (asciiEqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

bool Request::hasHeader(std::string_view name) const {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& entry) { return asciiEqualsIgnoreCase(entry.first, name); });
}

void Response::setHeader(std::string name, std::string value) {
  for (auto& entry : headers) {
    if (asciiEqualsIgnoreCase(entry.first, name)) {
      entry.second = std::move(value);
      return;
    }
  }
  headers.emplace_back(std::move(name), std::move(value));
}

Api apiForRequest(const Request& request) {
  std::string path = request.path();
  auto starts = [&](std::string_view prefix) { return path.rfind(prefix, 0) == 0; };
  if (starts("/__mock/")) return Api::kMock;
  if (path == "/mcp" || starts("/mcp/")) return Api::kMcp;
  if (path == "/v1/messages" || starts("/v1/messages/")) return Api::kAnthropic;
  if (starts("/v1beta/") || (starts("/v1/models/") && path.find(':') != std::string::npos)) {
    return Api::kGemini;
  }
  if (starts("/v1/")) return Api::kOpenAI;
  // Unknown paths: guess from the Host so the 404 is in a plausible shape.
  std::string host = request.host;
  if (host.find("anthropic") != std::string::npos) return Api::kAnthropic;
  if (host.find("googleapis") != std::string::npos) return Api::kGemini;
  if (host.find("openai") != std::string::npos) return Api::kOpenAI;
  return Api::kNone;
}

std::string_view apiName(Api api) {
  switch (api) {
    case Api::kOpenAI:
      return "openai";
    case Api::kAnthropic:
      return "anthropic";
    case Api::kGemini:
      return "gemini";
    case Api::kMcp:
      return "mcp";
    case Api::kMock:
    case Api::kNone:
      break;
  }
  return "";
}

namespace {

std::string openaiErrorType(int status) {
  switch (status) {
    case 401:
      return "invalid_request_error";
    case 403:
      return "permission_denied";
    case 404:
      return "invalid_request_error";
    case 429:
      return "requests";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

nlohmann::ordered_json openaiErrorCode(int status) {
  switch (status) {
    case 401:
      return "invalid_api_key";
    case 404:
      return "not_found";
    case 429:
      return "rate_limit_exceeded";
    default:
      return nullptr;
  }
}

std::string anthropicErrorType(int status) {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 504:
      return "timeout_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

std::string googleStatus(int status) {
  switch (status) {
    case 400:
      return "INVALID_ARGUMENT";
    case 401:
      return "UNAUTHENTICATED";
    case 403:
      return "PERMISSION_DENIED";
    case 404:
      return "NOT_FOUND";
    case 409:
      return "ABORTED";
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 499:
      return "CANCELLED";
    case 501:
      return "UNIMPLEMENTED";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    default:
      return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

}  // namespace

Response errorResponse(Api api, int status, std::string_view message) {
  Response response;
  response.status = status;
  response.setHeader("content-type", "application/json");
  nlohmann::ordered_json body;
  switch (api) {
    case Api::kAnthropic:
      body = {{"type", "error"},
              {"error", {{"type", anthropicErrorType(status)}, {"message", message}}},
              {"request_id", "req_mock" + randomHex(8)}};
      break;
    case Api::kGemini:
      body = {
          {"error", {{"code", status}, {"message", message}, {"status", googleStatus(status)}}}};
      break;
    case Api::kMcp:
      body = {
          {"jsonrpc", "2.0"}, {"error", {{"code", -32000}, {"message", message}}}, {"id", nullptr}};
      break;
    case Api::kOpenAI:
    case Api::kMock:
    case Api::kNone:
      body = {{"error",
               {{"message", message},
                {"type", openaiErrorType(status)},
                {"param", nullptr},
                {"code", openaiErrorCode(status)}}}};
      break;
  }
  response.body = body.dump();
  return response;
}

std::vector<std::string> splitPieces(std::string_view text) {
  std::vector<std::string> pieces;
  size_t idx = 0;
  while (idx < text.size()) {
    size_t start = idx;
    while (idx < text.size() && std::isspace(static_cast<unsigned char>(text[idx]))) ++idx;
    while (idx < text.size() && !std::isspace(static_cast<unsigned char>(text[idx]))) ++idx;
    pieces.emplace_back(text.substr(start, idx - start));
  }
  if (pieces.empty()) pieces.emplace_back();
  return pieces;
}

std::string McpSessions::create() {
  std::string id = newUuid();
  std::lock_guard lock(mutex_);
  ids_.insert(id);
  return id;
}

bool McpSessions::contains(const std::string& id) const {
  std::lock_guard lock(mutex_);
  return ids_.count(id) != 0;
}

bool McpSessions::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  return ids_.erase(id) != 0;
}

Dispatcher::Dispatcher(MockOptions options)
    : name_(std::move(options.name)),
      mcp_sse_(options.mcp_sse),
      fail_status_(options.fail_status) {}

void Dispatcher::record(const Request& request, Api api) {
  RecordedRequest entry;
  entry.method = request.method;
  entry.target = request.target;
  entry.host = request.host;
  entry.headers = request.headers;
  entry.body = request.body.substr(0, kMaxRecordedBody);
  entry.body_bytes = request.body.size();
  entry.body_sha256 = sha256Hex(request.body);
  entry.provider = std::string(apiName(api));
  switch (api) {
    case Api::kAnthropic:
      entry.api_key = request.header("x-api-key");
      if (entry.api_key.empty()) entry.api_key = bearerToken(request);
      break;
    case Api::kGemini:
      entry.api_key = request.header("x-goog-api-key");
      if (entry.api_key.empty()) entry.api_key = request.query("key");
      break;
    default:
      entry.api_key = bearerToken(request);
      break;
  }
  std::lock_guard lock(mutex_);
  recorded_.push_back(std::move(entry));
  while (recorded_.size() > kMaxRecorded) recorded_.pop_front();
}

std::vector<RecordedRequest> Dispatcher::requests() const {
  std::lock_guard lock(mutex_);
  return {recorded_.begin(), recorded_.end()};
}

void Dispatcher::clearRequests() {
  std::lock_guard lock(mutex_);
  recorded_.clear();
}

Response Dispatcher::handleControl(const Request& request) {
  std::string path = request.path();
  Response response;
  response.setHeader("content-type", "application/json");
  if (path == "/__mock/requests" && request.method == "GET") {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const RecordedRequest& entry : requests()) {
      nlohmann::ordered_json headers = nlohmann::ordered_json::array();
      for (const auto& [key, value] : entry.headers) headers.push_back({key, value});
      list.push_back({{"method", entry.method},
                      {"target", entry.target},
                      {"host", entry.host},
                      {"headers", headers},
                      {"body", entry.body},
                      {"api_key", entry.api_key},
                      {"provider", entry.provider},
                      {"body_bytes", entry.body_bytes},
                      {"body_sha256", entry.body_sha256}});
    }
    response.body = list.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    return response;
  }
  if (path == "/__mock/requests" && request.method == "DELETE") {
    clearRequests();
    response.body = R"({"cleared":true})";
    return response;
  }
  if (path == "/__mock/fail-status" && (request.method == "POST" || request.method == "PUT")) {
    nlohmann::ordered_json body = nlohmann::ordered_json::parse(request.body, nullptr, false);
    if (!body.is_object() || !body.contains("status") || !body["status"].is_number_integer()) {
      return errorResponse(Api::kMock, 400, "body must be {\"status\": N} with N an integer");
    }
    int status = body["status"].get<int>();
    if (status != 0 && (status < 100 || status > 599)) {
      return errorResponse(Api::kMock, 400, "status must be 0 or 100..599");
    }
    setFailStatus(status);
    response.body = nlohmann::ordered_json{{"fail_status", status}}.dump();
    return response;
  }
  if (path == "/__mock/echo" && request.method == "POST") {
    response.setHeader("content-type", request.hasHeader("content-type")
                                           ? request.header("content-type")
                                           : "application/octet-stream");
    response.setHeader("x-mock-body-sha256", sha256Hex(request.body));
    response.body = request.body;
    return response;
  }
  if (path == "/__mock/bytes" && request.method == "GET") {
    constexpr int64_t kMaxBytes = 64LL << 20;
    int64_t total = 0;
    int64_t chunk = 16384;
    try {
      total = request.query("n").empty() ? 0 : std::stoll(request.query("n"));
      if (!request.query("chunk").empty()) chunk = std::stoll(request.query("chunk"));
    } catch (...) {
      return errorResponse(Api::kMock, 400, "n and chunk must be integers");
    }
    if (total < 0 || total > kMaxBytes || chunk <= 0) {
      return errorResponse(Api::kMock, 400, "n must be 0..67108864 and chunk positive");
    }
    response.setHeader("content-type", "application/octet-stream");
    response.streaming = true;
    std::string data;
    data.reserve(static_cast<size_t>(total));
    for (int64_t idx = 0; idx < total; ++idx) data.push_back(static_cast<char>('a' + idx % 26));
    response.setHeader("x-mock-body-sha256", sha256Hex(data));
    for (int64_t offset = 0; offset < total; offset += chunk) {
      response.chunks.push_back(
          data.substr(static_cast<size_t>(offset), static_cast<size_t>(chunk)));
    }
    return response;
  }
  return errorResponse(Api::kMock, 404,
                       "unknown mock control endpoint " + request.method + " " + path);
}

Response Dispatcher::handle(const Request& request) {
  Api api = apiForRequest(request);
  if (api == Api::kMock) {
    if (!isDebugPath(request.path())) record(request, api);
    Response response = handleControl(request);
    response.setHeader("x-mock-name", name_);
    return response;
  }
  record(request, api);
  Context context{name_, fail_status_.load(), mcp_sse_};
  Response response;
  std::string forced = request.header("x-mock-status");
  int forced_status = 0;
  if (!forced.empty()) {
    try {
      forced_status = std::stoi(forced);
    } catch (...) {
      forced_status = -1;
    }
    if (forced_status < 100 || forced_status > 599) {
      response = errorResponse(api, 400, "x-mock-status must be an integer 100..599");
      response.setHeader("x-mock-name", name_);
      return response;
    }
  }
  if (forced_status >= 400) {
    response = errorResponse(api, forced_status,
                             "mock " + name_ + " answers " + std::to_string(forced_status) +
                                 " as asked by x-mock-status");
  } else if (forced_status > 0) {
    response.status = forced_status;
    response.setHeader("content-type", "application/json");
    response.body = "{}";
  } else if (context.fail_status != 0 && api != Api::kMcp) {
    response = errorResponse(api, context.fail_status,
                             "mock " + name_ + " is failing every request with status " +
                                 std::to_string(context.fail_status));
  } else {
    response = dispatch(request, api, context);
  }
  response.setHeader("x-mock-name", name_);
  return response;
}

Response Dispatcher::dispatch(const Request& request, Api api, const Context& context) {
  Response response;
  try {
    switch (api) {
      case Api::kOpenAI:
        response = handleOpenAI(request, context);
        break;
      case Api::kAnthropic:
        response = handleAnthropic(request, context);
        break;
      case Api::kGemini:
        response = handleGemini(request, context);
        break;
      case Api::kMcp:
        response = handleMcp(request, context, sessions_);
        break;
      case Api::kMock:
      case Api::kNone:
        response = errorResponse(
            api, 404,
            "mock " + name_ + " has no endpoint " + request.method + " " + request.path());
        break;
    }
  } catch (const std::exception& e) {
    // A JSON shape the handlers did not anticipate: a 400 naming the problem, never a crash.
    response = errorResponse(api, 400, std::string("invalid request: ") + e.what());
  }
  return response;
}

}  // namespace internal
}  // namespace clrk::mockprovider
