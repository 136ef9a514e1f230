#include "clrk/egress/llm/mcp.h"

#include "clrk/egress/llm/json_scan.h"

namespace clrk::egress::llm {
namespace {

constexpr size_t kMaxBatch = 1024;
constexpr size_t kMaxField = 1024;

using json::Kind;
using json::Value;

void readId(const Value& v, std::string* out) {
  if (v.kind == Kind::kString) {
    json::decodeString(v, out, kMaxField);
  } else if (v.kind == Kind::kNumber) {
    out->assign(v.raw.substr(0, kMaxField));
  }
}

// One JSON-RPC request or notification; false when `obj` is not one.
bool readCall(const Value& obj, McpCall* call) {
  if (obj.kind != Kind::kObject) return false;
  std::optional<Value> params;
  bool has_method = false;
  std::string scratch;
  json::forEachMember(obj, [&](std::string_view raw_key, const Value& v) {
    std::string_view key = json::normalizeKey(raw_key, &scratch);
    if (key == "method") {
      has_method = v.kind == Kind::kString && json::decodeString(v, &call->method, kMaxField);
    } else if (key == "id") {
      readId(v, &call->id);
    } else if (key == "params") {
      params = v;
    }
    return true;
  });
  if (!has_method) return false;
  if (params && params->kind == Kind::kObject) {
    if (call->method == "tools/call") {
      if (auto name = json::member(*params, "name"))
        json::decodeString(*name, &call->tool, kMaxField);
    } else if (call->method == "prompts/get") {
      if (auto name = json::member(*params, "name")) {
        json::decodeString(*name, &call->prompt, kMaxField);
      }
    } else if (call->method.rfind("resources/", 0) == 0) {
      if (auto uri = json::member(*params, "uri"))
        json::decodeString(*uri, &call->resource, kMaxField);
    }
  }
  return true;
}

bool isJsonRpcRequest(const Value& obj) {
  bool version = false;
  bool method = false;
  std::string scratch;
  json::forEachMember(obj, [&](std::string_view raw_key, const Value& v) {
    std::string_view key = json::normalizeKey(raw_key, &scratch);
    if (key == "jsonrpc") version = json::rawString(v) == "2.0";
    if (key == "method") method = v.kind == Kind::kString;
    return true;
  });
  return version && method;
}

bool containsJson(std::string_view content_type) {
  for (size_t i = 0; i + 4 <= content_type.size(); ++i) {
    std::string_view w = content_type.substr(i, 4);
    bool match = true;
    for (size_t k = 0; k < 4; ++k) {
      char c = w[k];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      if (c != "json"[k]) match = false;
    }
    if (match) return true;
  }
  return false;
}

}  // namespace

std::vector<McpCall> parseMcpRequest(std::string_view body) {
  std::vector<McpCall> calls;
  auto doc = json::parse(body);
  if (!doc) return calls;
  if (doc->kind == Kind::kObject) {
    McpCall call;
    if (readCall(*doc, &call)) calls.push_back(std::move(call));
  } else if (doc->kind == Kind::kArray) {
    json::forEachElement(*doc, [&](const Value& element) {
      McpCall call;
      if (readCall(element, &call)) calls.push_back(std::move(call));
      return calls.size() < kMaxBatch;
    });
  }
  return calls;
}

bool looksLikeMcp(std::string_view content_type, std::string_view body) {
  if (!content_type.empty() && !containsJson(content_type)) return false;
  size_t start = json::skipWs(body, 0);
  if (start >= body.size()) return false;
  Value first;
  if (body[start] == '[') {
    bool found = false;
    json::forEachElement(body, start, [&](const Value& element) {
      first = element;
      found = true;
      return false;
    });
    if (!found) return false;
  } else if (json::scanValue(body, start, &first) == std::string_view::npos) {
    return false;
  }
  return first.kind == Kind::kObject && isJsonRpcRequest(first);
}

McpResponseObserver::McpResponseObserver(bool event_stream, size_t max_json_bytes)
    : event_stream_(event_stream), max_json_bytes_(max_json_bytes), sse_(max_json_bytes) {}

bool McpResponseObserver::sawError() const {
  for (const auto& r : results_) {
    if (r.is_error) return true;
  }
  return false;
}

void McpResponseObserver::feed(std::string_view chunk) {
  if (finished_ || chunk.empty()) return;
  if (event_stream_) {
    sse_.feed(chunk, [this](const SseEvent& event) { observeJson(event.data); });
    return;
  }
  if (truncated_) return;
  if (body_.size() + chunk.size() > max_json_bytes_) {
    truncated_ = true;
    std::string().swap(body_);
    return;
  }
  body_.append(chunk);
}

void McpResponseObserver::finish() {
  if (finished_) return;
  if (event_stream_) {
    sse_.feed("\n\n", [this](const SseEvent& event) { observeJson(event.data); });
  } else if (!truncated_ && !body_.empty()) {
    observeJson(body_);
    std::string().swap(body_);
  }
  finished_ = true;
}

void McpResponseObserver::observeJson(std::string_view text) {
  auto read = [&](const Value& obj) {
    if (obj.kind != Kind::kObject || results_.size() >= kMaxBatch) return;
    McpResult result;
    bool is_response = false;
    bool is_request = false;
    json::forEachMember(obj, [&](std::string_view key, const Value& v) {
      if (key == "method") {
        is_request = true;
      } else if (key == "id") {
        readId(v, &result.id);
      } else if (key == "error" && v.kind == Kind::kObject) {
        is_response = true;
        result.is_error = true;
        if (auto code = json::member(v, "code")) result.error_code = json::asInt(*code).value_or(0);
        if (auto msg = json::member(v, "message")) {
          json::decodeString(*msg, &result.error_message, kMaxField);
        }
      } else if (key == "result") {
        is_response = true;
        if (auto is_error = json::member(v, "isError")) {
          if (json::asBool(*is_error).value_or(false)) result.is_error = true;
        }
      }
      return true;
    });
    if (is_response && !is_request) results_.push_back(std::move(result));
  };
  size_t start = json::skipWs(text, 0);
  if (start >= text.size()) return;
  if (text[start] == '[') {
    json::forEachElement(text, start, [&](const Value& element) {
      read(element);
      return true;
    });
  } else {
    Value obj;
    if (json::scanValue(text, start, &obj) != std::string_view::npos) read(obj);
  }
}

}  // namespace clrk::egress::llm
