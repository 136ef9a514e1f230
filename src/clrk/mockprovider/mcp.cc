// MCP server over the Streamable HTTP transport: JSON-RPC 2.0 on POST /mcp.
#include "clrk/mockprovider/handlers.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <string>

namespace clrk::mockprovider::internal {

namespace {

using json = nlohmann::ordered_json;

constexpr auto kReplace = json::error_handler_t::replace;
constexpr const char* kDefaultProtocolVersion = "2025-06-18";

json rpcError(const json& id, int code, const std::string& message) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}};
}

json rpcResult(const json& id, json result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

bool looksLikeProtocolVersion(const json& value) {
  if (!value.is_string()) return false;
  const std::string& text = value.get_ref<const std::string&>();
  if (text.size() != 10 || text[4] != '-' || text[7] != '-') return false;
  for (size_t idx = 0; idx < text.size(); ++idx) {
    if (idx == 4 || idx == 7) continue;
    if (text[idx] < '0' || text[idx] > '9') return false;
  }
  return true;
}

json toolList() {
  return json::array(
      {{{"name", "echo"},
        {"title", "Echo"},
        {"description", "Returns the given text unchanged."},
        {"inputSchema",
         {{"type", "object"},
          {"properties", {{"text", {{"type", "string"}, {"description", "Text to echo"}}}}},
          {"required", {"text"}}}}},
       {{"name", "add"},
        {"title", "Add"},
        {"description", "Adds two numbers and returns the sum as text."},
        {"inputSchema",
         {{"type", "object"},
          {"properties", {{"a", {{"type", "number"}}}, {"b", {{"type", "number"}}}}},
          {"required", {"a", "b"}}}}}});
}

std::string formatNumber(double value) {
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%.17g", value);
  return buffer;
}

json toolError(const std::string& message) {
  return {{"content", {{{"type", "text"}, {"text", message}}}}, {"isError", true}};
}

// The JSON-RPC response for one request object; null for notifications and responses.
json handleMessage(const json& message, const Context& context, bool& initialized_session) {
  if (!message.is_object() || message.value("jsonrpc", "") != "2.0") {
    return rpcError(nullptr, -32600, "Invalid Request: expected a JSON-RPC 2.0 object");
  }
  bool has_id = message.contains("id") && !message["id"].is_null();
  if (!message.contains("method")) {
    return nullptr;  // a response to something we never sent; accepted and ignored
  }
  if (!message["method"].is_string()) {
    return rpcError(has_id ? message["id"] : json(nullptr), -32600,
                    "Invalid Request: method must be a string");
  }
  std::string method = message["method"].get<std::string>();
  if (!has_id) return nullptr;  // notifications (notifications/initialized, cancelled, ...)
  const json& id = message["id"];
  json params = message.contains("params") ? message["params"] : json::object();
  if (!params.is_object()) return rpcError(id, -32602, "Invalid params: params must be an object");

  if (method == "initialize") {
    initialized_session = true;
    json version =
        params.contains("protocolVersion") && looksLikeProtocolVersion(params["protocolVersion"])
            ? params["protocolVersion"]
            : json(kDefaultProtocolVersion);
    return rpcResult(id, {{"protocolVersion", version},
                          {"capabilities", {{"tools", {{"listChanged", false}}}}},
                          {"serverInfo", {{"name", context.name}, {"version", "0.1.0"}}},
                          {"instructions", "clrk mock MCP server: tools echo and add."}});
  }
  if (method == "ping") return rpcResult(id, json::object());
  if (method == "tools/list") return rpcResult(id, {{"tools", toolList()}});
  if (method == "tools/call") {
    if (!params.contains("name") || !params["name"].is_string()) {
      return rpcError(id, -32602, "Invalid params: 'name' is required");
    }
    std::string name = params["name"].get<std::string>();
    json arguments = params.contains("arguments") ? params["arguments"] : json::object();
    if (!arguments.is_object()) {
      return rpcResult(id, toolError("arguments must be an object"));
    }
    if (name == "echo") {
      if (!arguments.contains("text") || !arguments["text"].is_string()) {
        return rpcResult(id, toolError("echo: 'text' (string) is required"));
      }
      return rpcResult(
          id, {{"content", {{{"type", "text"}, {"text", arguments["text"]}}}}, {"isError", false}});
    }
    if (name == "add") {
      if (!arguments.contains("a") || !arguments["a"].is_number() || !arguments.contains("b") ||
          !arguments["b"].is_number()) {
        return rpcResult(id, toolError("add: 'a' and 'b' (numbers) are required"));
      }
      double sum = arguments["a"].get<double>() + arguments["b"].get<double>();
      return rpcResult(
          id, {{"content", {{{"type", "text"}, {"text", formatNumber(sum)}}}}, {"isError", false}});
    }
    return rpcError(id, -32602, "Unknown tool: " + name);
  }
  if (method == "resources/list") return rpcResult(id, {{"resources", json::array()}});
  if (method == "prompts/list") return rpcResult(id, {{"prompts", json::array()}});
  return rpcError(id, -32601, "Method not found: " + method);
}

Response rpcHttpError(int status, const json& body) {
  Response response;
  response.status = status;
  response.setHeader("content-type", "application/json");
  response.body = body.dump(-1, ' ', false, kReplace);
  return response;
}

// Progress notifications for a tools/call that asked for them (SSE only).
std::vector<json> progressFor(const json& message) {
  std::vector<json> out;
  if (!message.is_object() || message.value("method", "") != "tools/call") return out;
  if (!message.contains("params") || !message["params"].is_object()) return out;
  const json& params = message["params"];
  if (!params.contains("_meta") || !params["_meta"].is_object() ||
      !params["_meta"].contains("progressToken")) {
    return out;
  }
  out.push_back({{"jsonrpc", "2.0"},
                 {"method", "notifications/progress"},
                 {"params",
                  {{"progressToken", params["_meta"]["progressToken"]},
                   {"progress", 1},
                   {"total", 1},
                   {"message", "done"}}}});
  return out;
}

}  // namespace

Response handleMcp(const Request& request, const Context& context, McpSessions& sessions) {
  if (request.method == "GET") {
    Response response = rpcHttpError(
        405, rpcError(nullptr, -32000, "Method Not Allowed: this server offers no SSE stream"));
    response.setHeader("allow", "POST, DELETE");
    return response;
  }
  std::string session = request.header("mcp-session-id");
  if (request.method == "DELETE") {
    if (session.empty()) {
      return rpcHttpError(400, rpcError(nullptr, -32000, "Bad Request: Mcp-Session-Id required"));
    }
    if (!sessions.remove(session)) {
      return rpcHttpError(404, rpcError(nullptr, -32001, "Session not found"));
    }
    Response response;
    response.setHeader("content-type", "application/json");
    response.body = "{}";
    return response;
  }
  if (request.method != "POST") {
    Response response =
        rpcHttpError(405, rpcError(nullptr, -32000, "Method Not Allowed: " + request.method));
    response.setHeader("allow", "POST, DELETE");
    return response;
  }
  std::string accept = request.header("accept");
  bool accepts_json = accept.empty() || accept.find("application/json") != std::string::npos ||
                      accept.find("*/*") != std::string::npos;
  bool accepts_sse = accept.find("text/event-stream") != std::string::npos;
  if (!accepts_json && !accepts_sse) {
    return rpcHttpError(
        406, rpcError(nullptr, -32000,
                      "Not Acceptable: Accept must list application/json and text/event-stream"));
  }
  json body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    return rpcHttpError(400, rpcError(nullptr, -32700, "Parse error: body is not valid JSON"));
  }
  bool batch = body.is_array();
  if (batch && body.empty()) {
    return rpcHttpError(400, rpcError(nullptr, -32600, "Invalid Request: empty batch"));
  }
  json messages = batch ? body : json::array({body});
  bool is_initialize = false;
  for (const json& message : messages) {
    if (message.is_object() && message.value("method", "") == "initialize") is_initialize = true;
  }
  if (!is_initialize) {
    if (session.empty()) {
      return rpcHttpError(
          400, rpcError(nullptr, -32000, "Bad Request: Mcp-Session-Id header is required"));
    }
    if (!sessions.contains(session)) {
      return rpcHttpError(404, rpcError(nullptr, -32001, "Session not found"));
    }
  }
  json responses = json::array();
  std::vector<json> notifications;
  bool initialized_session = false;
  for (const json& message : messages) {
    for (json& note : progressFor(message)) notifications.push_back(std::move(note));
    json answer = handleMessage(message, context, initialized_session);
    if (!answer.is_null()) responses.push_back(std::move(answer));
  }
  Response response;
  if (initialized_session) response.setHeader("mcp-session-id", sessions.create());
  if (responses.empty()) {
    response.status = 202;
    return response;
  }
  json payload = batch ? responses : responses[0];
  bool use_sse = accepts_sse &&
                 (context.mcp_sse || request.header("x-mock-mcp-stream") == "1" || !accepts_json);
  if (!use_sse) {
    response.setHeader("content-type", "application/json");
    response.body = payload.dump(-1, ' ', false, kReplace);
    return response;
  }
  response.setHeader("content-type", "text/event-stream");
  response.setHeader("cache-control", "no-cache");
  response.streaming = true;
  for (const json& note : notifications) {
    response.chunks.push_back("event: message\ndata: " + note.dump(-1, ' ', false, kReplace) +
                              "\n\n");
  }
  response.chunks.push_back("event: message\ndata: " + payload.dump(-1, ' ', false, kReplace) +
                            "\n\n");
  return response;
}

}  // namespace clrk::mockprovider::internal
