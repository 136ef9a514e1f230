#include "clrk/egress/llm/usage.h"

#include "clrk/egress/llm/json_scan.h"

#include <algorithm>

namespace clrk::egress::llm {
namespace {

constexpr size_t kMaxStringBytes = 256;
constexpr size_t kMaxFinishReasons = 16;
constexpr size_t kKeepBytes = 64 * 1024;  // head and tail kept of an oversize JSON body

using json::Kind;
using json::Value;

void setInt(const Value& v, std::optional<int64_t>* field) {
  if (auto n = json::asInt(v)) *field = *n;
}

void setString(const Value& v, std::string* field) {
  if (v.kind != Kind::kString || v.raw.size() <= 2) return;
  json::decodeString(v, field, kMaxStringBytes);
}

void addFinishReason(const Value& v, Usage* usage) {
  if (v.kind != Kind::kString || v.raw.size() <= 2) return;
  std::string_view raw = json::rawString(v);
  for (const auto& r : usage->finish_reasons) {
    if (r == raw) return;
  }
  if (usage->finish_reasons.size() >= kMaxFinishReasons) return;
  std::string decoded;
  if (json::decodeString(v, &decoded, kMaxStringBytes) &&
      std::find(usage->finish_reasons.begin(), usage->finish_reasons.end(), decoded) ==
          usage->finish_reasons.end()) {
    usage->finish_reasons.push_back(std::move(decoded));
  }
}

// A usage object: OpenAI chat (prompt/completion), OpenAI Responses and Anthropic
// (input/output), Bedrock Converse (inputTokens/outputTokens). Anthropic reports cache reads and
// writes apart from input_tokens; they are added in so input_tokens means all prompt tokens, as
// for the other providers.
void readUsage(const Value& obj, Usage* usage) {
  std::optional<int64_t> input;
  std::optional<int64_t> cache_read;
  std::optional<int64_t> cache_write;
  json::forEachMember(obj, [&](std::string_view key, const Value& v) {
    if (key == "prompt_tokens" || key == "input_tokens" || key == "inputTokens") {
      setInt(v, &input);
    } else if (key == "completion_tokens" || key == "output_tokens" || key == "outputTokens") {
      setInt(v, &usage->output_tokens);
    } else if (key == "total_tokens" || key == "totalTokens") {
      setInt(v, &usage->total_tokens);
    } else if (key == "cache_read_input_tokens" || key == "cacheReadInputTokens") {
      setInt(v, &cache_read);
    } else if (key == "cache_creation_input_tokens" || key == "cacheWriteInputTokens") {
      setInt(v, &cache_write);
    } else if (key == "prompt_tokens_details" || key == "input_tokens_details") {
      if (auto c = json::member(v, "cached_tokens")) setInt(*c, &usage->cached_input_tokens);
    } else if (key == "completion_tokens_details" || key == "output_tokens_details") {
      if (auto r = json::member(v, "reasoning_tokens")) setInt(*r, &usage->reasoning_tokens);
    }
    return true;
  });
  if (cache_read) usage->cached_input_tokens = cache_read;
  if (input) usage->input_tokens = *input + cache_read.value_or(0) + cache_write.value_or(0);
}

void readUsageMetadata(const Value& obj, Usage* usage) {
  json::forEachMember(obj, [&](std::string_view key, const Value& v) {
    if (key == "promptTokenCount") {
      setInt(v, &usage->input_tokens);
    } else if (key == "candidatesTokenCount") {
      setInt(v, &usage->output_tokens);
    } else if (key == "totalTokenCount") {
      setInt(v, &usage->total_tokens);
    } else if (key == "cachedContentTokenCount") {
      setInt(v, &usage->cached_input_tokens);
    } else if (key == "thoughtsTokenCount") {
      setInt(v, &usage->reasoning_tokens);
    }
    return true;
  });
}

}  // namespace

ResponseObserver::ResponseObserver(Provider provider, bool event_stream, size_t max_json_bytes)
    : provider_(provider),
      event_stream_(event_stream),
      max_json_bytes_(max_json_bytes),
      sse_(max_json_bytes),
      aws_(max_json_bytes) {}

void ResponseObserver::feed(std::string_view body_chunk) {
  if (finished_ || body_chunk.empty()) return;
  if (event_stream_) {
    sse_.feed(body_chunk, [this](const SseEvent& event) { observeJson(event.data, event.type); });
    return;
  }
  if (!saw_first_byte_) {
    saw_first_byte_ = true;
    char c = body_chunk.front();
    aws_stream_ = provider_ == Provider::kBedrock && c != '{' && c != '[' && c != ' ' &&
                  c != '\n' && c != '\r' && c != '\t';
  }
  if (aws_stream_) {
    aws_.feed(body_chunk, [this](const AwsEventMessage& m) { observeAwsMessage(m); });
    return;
  }
  if (!truncated_ && body_.size() + body_chunk.size() <= max_json_bytes_) {
    body_.append(body_chunk);
    return;
  }
  if (!truncated_) {
    truncated_ = true;
    size_t head = std::min({body_.size() + body_chunk.size(), kKeepBytes, max_json_bytes_});
    if (body_.size() < head) body_.append(body_chunk.substr(0, head - body_.size()));
    tail_ = body_.size() > head ? body_.substr(body_.size() - std::min(body_.size(), kKeepBytes))
                                : std::string();
    body_.resize(head);
    body_.shrink_to_fit();
  }
  // Keep the last kKeepBytes (amortised: trim when twice that).
  if (body_chunk.size() >= kKeepBytes) {
    tail_.assign(body_chunk.substr(body_chunk.size() - kKeepBytes));
    return;
  }
  tail_.append(body_chunk);
  if (tail_.size() > 2 * kKeepBytes) tail_.erase(0, tail_.size() - kKeepBytes);
}

void ResponseObserver::finish() {
  if (finished_) return;
  if (event_stream_) {
    // An event the server did not terminate with a blank line still counts (a lenient reading;
    // the spec would discard it, but its usage is real).
    sse_.feed("\n\n", [this](const SseEvent& event) { observeJson(event.data, event.type); });
  } else if (!body_.empty()) {
    observeJson(body_, "");  // a truncated head still yields the members before the cut
    if (truncated_) rescueFromTail();
    std::string().swap(body_);
    std::string().swap(tail_);
  }
  finished_ = true;
  if (!usage_.total_tokens && (usage_.input_tokens || usage_.output_tokens)) {
    usage_.total_tokens = usage_.input_tokens.value_or(0) + usage_.output_tokens.value_or(0);
  }
}

// Usage objects come last in every provider's JSON, so the tail of an oversize body usually holds
// them. In valid JSON the bytes `"usage"` followed by ':' can only be a key (quotes inside
// strings are escaped), so a match is a real member; the last one wins.
void ResponseObserver::rescueFromTail() {
  std::string_view tail = tail_;
  for (std::string_view name :
       {std::string_view("\"usage\""), std::string_view("\"usageMetadata\"")}) {
    size_t at = tail.size();
    while (at > 0) {
      at = tail.rfind(name, at - 1);
      if (at == std::string_view::npos) break;
      size_t colon = json::skipWs(tail, at + name.size());
      if (colon >= tail.size() || tail[colon] != ':') continue;
      Value v;
      if (json::scanValue(tail, colon + 1, &v) == std::string_view::npos ||
          v.kind != Kind::kObject) {
        continue;
      }
      if (name == "\"usage\"") {
        readUsage(v, &usage_);
      } else {
        readUsageMetadata(v, &usage_);
      }
      break;
    }
  }
}

void ResponseObserver::observeAwsMessage(const AwsEventMessage& message) {
  if (message.message_type == "exception" || message.message_type == "error") {
    saw_error_ = true;
    std::string_view type =
        message.exception_type.empty() ? std::string_view("error") : message.exception_type;
    if (error_type_.empty() || error_type_ == "error") {
      error_type_.assign(type.substr(0, kMaxStringBytes));
    }
    return;
  }
  if (message.event_type == "chunk") {
    // InvokeModelWithResponseStream: {"bytes":"<base64 of the model's own chunk>"}.
    auto doc = json::parse(message.payload);
    if (!doc) return;
    auto bytes = json::member(*doc, "bytes");
    if (!bytes || bytes->kind != Kind::kString) return;
    std::string decoded;
    if (base64Decode(json::rawString(*bytes), &decoded)) observeDoc(decoded, "", 0);
    return;
  }
  observeDoc(message.payload, message.event_type, 0);
}

void ResponseObserver::observeJson(std::string_view text, std::string_view sse_type) {
  observeDoc(text, sse_type, 0);
}

void ResponseObserver::observeDoc(std::string_view text, std::string_view sse_type, int depth) {
  if (depth > 2) return;  // provider documents nest at most twice (array -> event -> message)
  size_t start = json::skipWs(text, 0);
  if (start >= text.size()) return;
  if (text[start] == '[') {
    // Gemini streamGenerateContent without alt=sse: a JSON array of response chunks.
    json::forEachElement(text, start, [&](const Value& element) {
      if (element.kind == Kind::kObject) observeDoc(element.raw, sse_type, depth + 1);
      return true;
    });
    return;
  }
  if (text[start] != '{') return;  // "[DONE]" and other non-JSON data

  std::string_view type;
  std::optional<Value> nested_message;   // Anthropic message_start "message"
  std::optional<Value> nested_response;  // OpenAI Responses "response"
  std::optional<Value> error;
  std::optional<Value> top_code;
  json::forEachMember(text, start, [&](std::string_view key, const Value& v) {
    if (key == "type") {
      type = json::rawString(v);
    } else if (key == "id" || key == "responseId") {
      setString(v, &usage_.response_id);
    } else if (key == "model" || key == "modelVersion") {
      setString(v, &usage_.response_model);
    } else if (key == "usage") {
      if (v.kind == Kind::kObject) readUsage(v, &usage_);
    } else if (key == "usageMetadata") {
      readUsageMetadata(v, &usage_);
    } else if (key == "choices") {
      json::forEachElement(v, [&](const Value& choice) {
        if (auto fr = json::member(choice, "finish_reason")) addFinishReason(*fr, &usage_);
        return true;
      });
    } else if (key == "candidates") {
      json::forEachElement(v, [&](const Value& candidate) {
        if (auto fr = json::member(candidate, "finishReason")) addFinishReason(*fr, &usage_);
        return true;
      });
    } else if (key == "stop_reason" || key == "stopReason") {
      addFinishReason(v, &usage_);
    } else if (key == "delta") {
      if (auto sr = json::member(v, "stop_reason")) addFinishReason(*sr, &usage_);
    } else if (key == "message") {
      if (v.kind == Kind::kObject) nested_message = v;
    } else if (key == "response") {
      if (v.kind == Kind::kObject) nested_response = v;
    } else if (key == "error") {
      if (v.kind == Kind::kObject || v.kind == Kind::kString) error = v;
    } else if (key == "code") {
      top_code = v;
    } else if (key == "amazon-bedrock-invocationMetrics") {
      if (auto in = json::member(v, "inputTokenCount")) setInt(*in, &usage_.input_tokens);
      if (auto out = json::member(v, "outputTokenCount")) setInt(*out, &usage_.output_tokens);
    } else if (key == "incomplete_details") {
      if (auto r = json::member(v, "reason")) addFinishReason(*r, &usage_);
    }
    return true;
  });

  if (nested_message && (type == "message_start" || sse_type == "message_start")) {
    observeDoc(nested_message->raw, "", depth + 1);
  }
  if (nested_response) {
    observeDoc(nested_response->raw, "", depth + 1);
    if (type == "response.completed" || type == "response.incomplete" ||
        type == "response.failed") {
      if (auto status = json::member(*nested_response, "status")) {
        addFinishReason(*status, &usage_);
      }
    }
  }
  bool error_event = type == "error" || sse_type == "error" || type == "response.failed";
  if (error || (error_event && top_code)) {
    saw_error_ = true;
    std::string kind;
    if (error && error->kind == Kind::kObject) {
      // Anthropic/OpenAI "type", Gemini "status", else a string "code".
      for (std::string_view field : {"type", "status", "code"}) {
        if (auto t = json::member(*error, field); t && t->kind == Kind::kString) {
          json::decodeString(*t, &kind, kMaxStringBytes);
          if (!kind.empty()) break;
        }
      }
    } else if (top_code && top_code->kind == Kind::kString) {
      json::decodeString(*top_code, &kind, kMaxStringBytes);  // Responses "error" event
    }
    if (kind.empty()) kind = "error";
    if (error_type_.empty() || error_type_ == "error") error_type_ = std::move(kind);
  }
}

}  // namespace clrk::egress::llm
