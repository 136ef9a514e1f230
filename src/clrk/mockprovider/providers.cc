// OpenAI, Anthropic and Gemini wire formats: JSON answers, SSE streams and usage fields.
#include "clrk/base/ids.h"
#include "clrk/mockprovider/handlers.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>

namespace clrk::mockprovider::internal {

namespace {

using json = nlohmann::ordered_json;

constexpr auto kReplace = json::error_handler_t::replace;

std::string dumpJson(const json& value) { return value.dump(-1, ' ', false, kReplace); }

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Response jsonResponse(const json& body) {
  Response response;
  response.setHeader("content-type", "application/json");
  response.body = dumpJson(body);
  return response;
}

Response sseResponse(std::vector<std::string> chunks) {
  Response response;
  response.setHeader("content-type", "text/event-stream; charset=utf-8");
  response.setHeader("cache-control", "no-cache");
  response.streaming = true;
  response.chunks = std::move(chunks);
  return response;
}

std::string sseData(const json& value) { return "data: " + dumpJson(value) + "\n\n"; }

std::string sseEvent(std::string_view event, const json& value) {
  return "event: " + std::string(event) + "\ndata: " + dumpJson(value) + "\n\n";
}

// Text of a message content: a string, or the concatenated `text` of an array of parts.
std::string contentText(const json& content) {
  if (content.is_string()) return content.get<std::string>();
  std::string out;
  if (content.is_array()) {
    for (const json& part : content) {
      if (part.is_object() && part.contains("text") && part["text"].is_string()) {
        if (!out.empty()) out += " ";
        out += part["text"].get<std::string>();
      } else if (part.is_string()) {
        if (!out.empty()) out += " ";
        out += part.get<std::string>();
      }
    }
  }
  return out;
}

// The produced answer: text split into stream pieces, with deterministic token counts.
struct Completion {
  std::vector<std::string> pieces;
  std::string text;
  int prompt_tokens = 0;
  int completion_tokens = 0;
  bool truncated = false;
};

Completion complete(const Context& context, const std::string& last_user, int prompt_tokens,
                    int64_t max_tokens) {
  Completion completion;
  std::string full = "hello from " + context.name + ":";
  if (!last_user.empty()) full += " " + last_user;
  completion.pieces = splitPieces(full);
  if (max_tokens > 0 && static_cast<int64_t>(completion.pieces.size()) > max_tokens) {
    completion.pieces.resize(static_cast<size_t>(max_tokens));
    completion.truncated = true;
  }
  for (const std::string& piece : completion.pieces) completion.text += piece;
  completion.prompt_tokens = prompt_tokens;
  completion.completion_tokens = countTokens(completion.text);
  return completion;
}

int64_t intField(const json& body, const char* key) {
  if (body.contains(key) && body[key].is_number_integer()) return body[key].get<int64_t>();
  return 0;
}

bool boolField(const json& body, const char* key) {
  return body.contains(key) && body[key].is_boolean() && body[key].get<bool>();
}

// Parses a JSON object body or produces the provider's 400.
bool parseObject(Api api, const Request& request, json& body, Response& error) {
  body = json::parse(request.body, nullptr, false);
  if (body.is_discarded()) {
    error = errorResponse(
        api, 400,
        "the request body is not valid JSON (" + std::to_string(request.body.size()) + " bytes)");
    return false;
  }
  if (!body.is_object()) {
    error = errorResponse(api, 400, "the request body must be a JSON object");
    return false;
  }
  return true;
}

// ---------------------------------------------------------------- OpenAI

Response openaiChat(const Request& request, const Context& context) {
  json body;
  Response error;
  if (!parseObject(Api::kOpenAI, request, body, error)) return error;
  if (!body.contains("model") || !body["model"].is_string()) {
    return errorResponse(Api::kOpenAI, 400, "you must provide a model parameter");
  }
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty()) {
    return errorResponse(Api::kOpenAI, 400,
                         "'messages' is a required property and must be a non-empty array");
  }
  std::string model = body["model"].get<std::string>();
  int prompt_tokens = 0;
  std::string last_user;
  for (const json& message : body["messages"]) {
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
      return errorResponse(Api::kOpenAI, 400, "each message must be an object with a 'role'");
    }
    std::string text = message.contains("content") ? contentText(message["content"]) : "";
    prompt_tokens += countTokens(text);
    if (message["role"] == "user") last_user = text;
  }
  int64_t max_tokens = intField(body, "max_completion_tokens");
  if (max_tokens == 0) max_tokens = intField(body, "max_tokens");
  Completion completion = complete(context, last_user, prompt_tokens, max_tokens);
  std::string id = "chatcmpl-mock" + randomHex(12);
  int64_t created = unixNow();
  std::string finish = completion.truncated ? "length" : "stop";
  json usage = {{"prompt_tokens", completion.prompt_tokens},
                {"completion_tokens", completion.completion_tokens},
                {"total_tokens", completion.prompt_tokens + completion.completion_tokens},
                {"prompt_tokens_details", {{"cached_tokens", 0}}},
                {"completion_tokens_details", {{"reasoning_tokens", 0}}}};

  if (!boolField(body, "stream")) {
    Response response = jsonResponse(
        {{"id", id},
         {"object", "chat.completion"},
         {"created", created},
         {"model", model},
         {"choices",
          {{{"index", 0},
            {"message",
             {{"role", "assistant"}, {"content", completion.text}, {"refusal", nullptr}}},
            {"logprobs", nullptr},
            {"finish_reason", finish}}}},
         {"usage", usage},
         {"system_fingerprint", "fp_mock"}});
    response.setHeader("x-request-id", "req_mock" + randomHex(8));
    return response;
  }

  bool include_usage = body.contains("stream_options") && body["stream_options"].is_object() &&
                       boolField(body["stream_options"], "include_usage");
  auto chunk = [&](json delta, json finish_reason) {
    json value = {{"id", id},
                  {"object", "chat.completion.chunk"},
                  {"created", created},
                  {"model", model},
                  {"system_fingerprint", "fp_mock"},
                  {"choices",
                   {{{"index", 0},
                     {"delta", std::move(delta)},
                     {"logprobs", nullptr},
                     {"finish_reason", std::move(finish_reason)}}}}};
    if (include_usage) value["usage"] = nullptr;
    return sseData(value);
  };
  std::vector<std::string> chunks;
  chunks.push_back(chunk({{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}, nullptr));
  for (const std::string& piece : completion.pieces) {
    chunks.push_back(chunk({{"content", piece}}, nullptr));
  }
  chunks.push_back(chunk(json::object(), finish));
  if (include_usage) {
    chunks.push_back(sseData({{"id", id},
                              {"object", "chat.completion.chunk"},
                              {"created", created},
                              {"model", model},
                              {"system_fingerprint", "fp_mock"},
                              {"choices", json::array()},
                              {"usage", usage}}));
  }
  chunks.push_back("data: [DONE]\n\n");
  Response response = sseResponse(std::move(chunks));
  response.setHeader("x-request-id", "req_mock" + randomHex(8));
  return response;
}

Response openaiResponses(const Request& request, const Context& context) {
  json body;
  Response error;
  if (!parseObject(Api::kOpenAI, request, body, error)) return error;
  if (!body.contains("model") || !body["model"].is_string()) {
    return errorResponse(Api::kOpenAI, 400, "Missing required parameter: 'model'.");
  }
  if (!body.contains("input") || !(body["input"].is_string() || body["input"].is_array())) {
    return errorResponse(Api::kOpenAI, 400,
                         "Missing required parameter: 'input' (a string or an array of items).");
  }
  std::string model = body["model"].get<std::string>();
  int prompt_tokens = 0;
  std::string last_user;
  json instructions = nullptr;
  if (body.contains("instructions") && body["instructions"].is_string()) {
    instructions = body["instructions"];
    prompt_tokens += countTokens(instructions.get<std::string>());
  }
  if (body["input"].is_string()) {
    last_user = body["input"].get<std::string>();
    prompt_tokens += countTokens(last_user);
  } else {
    for (const json& item : body["input"]) {
      if (!item.is_object()) continue;
      std::string text = item.contains("content") ? contentText(item["content"]) : "";
      if (text.empty() && item.contains("output") && item["output"].is_string()) {
        text = item["output"].get<std::string>();
      }
      prompt_tokens += countTokens(text);
      if (item.contains("role") && item["role"] == "user") last_user = text;
    }
  }
  Completion completion =
      complete(context, last_user, prompt_tokens, intField(body, "max_output_tokens"));
  std::string response_id = "resp_mock" + randomHex(12);
  std::string item_id = "msg_mock" + randomHex(12);
  int64_t created = unixNow();
  std::string final_status = completion.truncated ? "incomplete" : "completed";
  json usage = {{"input_tokens", completion.prompt_tokens},
                {"input_tokens_details", {{"cached_tokens", 0}}},
                {"output_tokens", completion.completion_tokens},
                {"output_tokens_details", {{"reasoning_tokens", 0}}},
                {"total_tokens", completion.prompt_tokens + completion.completion_tokens}};
  json part = {{"type", "output_text"}, {"text", completion.text}, {"annotations", json::array()}};
  json item = {{"type", "message"},
               {"id", item_id},
               {"status", final_status},
               {"role", "assistant"},
               {"content", {part}}};
  auto responseObject = [&](const std::string& status, json output, json usage_value) {
    return json{{"id", response_id},
                {"object", "response"},
                {"created_at", created},
                {"status", status},
                {"error", nullptr},
                {"incomplete_details",
                 status == "incomplete" ? json{{"reason", "max_output_tokens"}} : json(nullptr)},
                {"instructions", instructions},
                {"max_output_tokens",
                 body.contains("max_output_tokens") ? body["max_output_tokens"] : json(nullptr)},
                {"model", model},
                {"output", std::move(output)},
                {"parallel_tool_calls", true},
                {"previous_response_id", nullptr},
                {"store", true},
                {"temperature", 1.0},
                {"text", {{"format", {{"type", "text"}}}}},
                {"tool_choice", "auto"},
                {"tools", json::array()},
                {"top_p", 1.0},
                {"truncation", "disabled"},
                {"usage", std::move(usage_value)},
                {"user", nullptr},
                {"metadata", json::object()}};
  };
  json final_response = responseObject(final_status, json::array({item}), usage);
  if (!boolField(body, "stream")) return jsonResponse(final_response);

  std::vector<std::string> chunks;
  int sequence = 0;
  auto event = [&](const std::string& type, json value) {
    value["type"] = type;
    value["sequence_number"] = sequence++;
    chunks.push_back(sseEvent(type, value));
  };
  event("response.created", {{"response", responseObject("in_progress", json::array(), nullptr)}});
  event("response.in_progress",
        {{"response", responseObject("in_progress", json::array(), nullptr)}});
  json item_in_progress = item;
  item_in_progress["status"] = "in_progress";
  item_in_progress["content"] = json::array();
  event("response.output_item.added", {{"output_index", 0}, {"item", item_in_progress}});
  event("response.content_part.added",
        {{"item_id", item_id},
         {"output_index", 0},
         {"content_index", 0},
         {"part", {{"type", "output_text"}, {"text", ""}, {"annotations", json::array()}}}});
  for (const std::string& piece : completion.pieces) {
    event("response.output_text.delta", {{"item_id", item_id},
                                         {"output_index", 0},
                                         {"content_index", 0},
                                         {"delta", piece},
                                         {"logprobs", json::array()}});
  }
  event("response.output_text.done", {{"item_id", item_id},
                                      {"output_index", 0},
                                      {"content_index", 0},
                                      {"text", completion.text},
                                      {"logprobs", json::array()}});
  event("response.content_part.done",
        {{"item_id", item_id}, {"output_index", 0}, {"content_index", 0}, {"part", part}});
  event("response.output_item.done", {{"output_index", 0}, {"item", item}});
  event(completion.truncated ? "response.incomplete" : "response.completed",
        {{"response", final_response}});
  return sseResponse(std::move(chunks));
}

// A deterministic embedding: `dimensions` values in [-1, 1) from an FNV-1a hash of the text.
std::vector<float> embed(const std::string& text, int64_t dimensions) {
  std::vector<float> values;
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ULL;
  for (int64_t dim_idx = 0; dim_idx < dimensions; ++dim_idx) {
    hash = (hash ^ static_cast<uint64_t>(dim_idx + 1)) * 1099511628211ULL;
    values.push_back(static_cast<float>(hash % 2000) / 1000.0F - 1.0F);
  }
  return values;
}

Response openaiEmbeddings(const Request& request, const Context& /*context*/) {
  json body;
  Response error;
  if (!parseObject(Api::kOpenAI, request, body, error)) return error;
  if (!body.contains("model") || !body["model"].is_string()) {
    return errorResponse(Api::kOpenAI, 400, "you must provide a model parameter");
  }
  if (!body.contains("input")) {
    return errorResponse(Api::kOpenAI, 400, "'input' is a required property");
  }
  // Normalise the input to a list of (text, token count).
  std::vector<std::pair<std::string, int>> inputs;
  const json& input = body["input"];
  if (input.is_string()) {
    inputs.emplace_back(input.get<std::string>(), countTokens(input.get<std::string>()));
  } else if (input.is_array() && !input.empty() && input[0].is_number_integer()) {
    inputs.emplace_back(input.dump(), static_cast<int>(input.size()));
  } else if (input.is_array() && !input.empty()) {
    for (const json& entry : input) {
      if (entry.is_string()) {
        inputs.emplace_back(entry.get<std::string>(), countTokens(entry.get<std::string>()));
      } else if (entry.is_array()) {
        inputs.emplace_back(entry.dump(), static_cast<int>(entry.size()));
      } else {
        return errorResponse(Api::kOpenAI, 400,
                             "'input' must be a string, an array of strings or token arrays");
      }
    }
  } else {
    return errorResponse(Api::kOpenAI, 400, "'input' must be a non-empty string or array");
  }
  int64_t dimensions = intField(body, "dimensions");
  if (dimensions <= 0) dimensions = 8;
  if (dimensions > 4096) {
    return errorResponse(Api::kOpenAI, 400, "'dimensions' must be at most 4096");
  }
  bool as_base64 = body.contains("encoding_format") && body["encoding_format"] == "base64";
  json data = json::array();
  int prompt_tokens = 0;
  for (size_t input_idx = 0; input_idx < inputs.size(); ++input_idx) {
    std::vector<float> values = embed(inputs[input_idx].first, dimensions);
    prompt_tokens += inputs[input_idx].second;
    json embedding;
    if (as_base64) {
      std::string bytes(values.size() * sizeof(float), '\0');
      std::memcpy(bytes.data(), values.data(), bytes.size());  // little-endian host
      embedding = base64Encode(bytes);
    } else {
      embedding = values;
    }
    data.push_back({{"object", "embedding"}, {"index", input_idx}, {"embedding", embedding}});
  }
  return jsonResponse(
      {{"object", "list"},
       {"data", data},
       {"model", body["model"]},
       {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}});
}

const std::vector<std::string>& mockModels() {
  static const std::vector<std::string> models = {"gpt-4o-mini", "gpt-4o", "gpt-mock",
                                                  "text-embedding-3-small"};
  return models;
}

json openaiModel(const std::string& id) {
  return {{"id", id}, {"object", "model"}, {"created", 1700000000}, {"owned_by", "clrk-mock"}};
}

// ---------------------------------------------------------------- Anthropic

Response anthropicMessages(const Request& request, const Context& context, bool count_only) {
  json body;
  Response error;
  if (!parseObject(Api::kAnthropic, request, body, error)) return error;
  if (!body.contains("model") || !body["model"].is_string()) {
    return errorResponse(Api::kAnthropic, 400, "model: Field required");
  }
  if (!body.contains("messages") || !body["messages"].is_array()) {
    return errorResponse(Api::kAnthropic, 400, "messages: Field required");
  }
  if (!count_only && (!body.contains("max_tokens") || !body["max_tokens"].is_number_integer())) {
    return errorResponse(Api::kAnthropic, 400, "max_tokens: Field required");
  }
  std::string model = body["model"].get<std::string>();
  int prompt_tokens = body.contains("system") ? countTokens(contentText(body["system"])) : 0;
  std::string last_user;
  for (const json& message : body["messages"]) {
    if (!message.is_object() || !message.contains("role") || !message["role"].is_string()) {
      return errorResponse(Api::kAnthropic, 400,
                           "messages: each message must be an object with a role");
    }
    std::string text = message.contains("content") ? contentText(message["content"]) : "";
    prompt_tokens += countTokens(text);
    if (message["role"] == "user") last_user = text;
  }
  if (count_only) return jsonResponse({{"input_tokens", prompt_tokens}});
  Completion completion = complete(context, last_user, prompt_tokens, intField(body, "max_tokens"));
  std::string id = "msg_mock" + randomHex(12);
  std::string stop_reason = completion.truncated ? "max_tokens" : "end_turn";
  json usage = {{"input_tokens", completion.prompt_tokens},
                {"cache_creation_input_tokens", 0},
                {"cache_read_input_tokens", 0},
                {"output_tokens", completion.completion_tokens},
                {"service_tier", "standard"}};
  Response response;
  if (!boolField(body, "stream")) {
    response = jsonResponse({{"id", id},
                             {"type", "message"},
                             {"role", "assistant"},
                             {"model", model},
                             {"content", {{{"type", "text"}, {"text", completion.text}}}},
                             {"stop_reason", stop_reason},
                             {"stop_sequence", nullptr},
                             {"usage", usage}});
  } else {
    std::vector<std::string> chunks;
    json start_usage = usage;
    start_usage["output_tokens"] = 1;
    chunks.push_back(sseEvent("message_start", {{"type", "message_start"},
                                                {"message",
                                                 {{"id", id},
                                                  {"type", "message"},
                                                  {"role", "assistant"},
                                                  {"model", model},
                                                  {"content", json::array()},
                                                  {"stop_reason", nullptr},
                                                  {"stop_sequence", nullptr},
                                                  {"usage", start_usage}}}}));
    chunks.push_back(
        sseEvent("content_block_start", {{"type", "content_block_start"},
                                         {"index", 0},
                                         {"content_block", {{"type", "text"}, {"text", ""}}}}));
    chunks.push_back(sseEvent("ping", {{"type", "ping"}}));
    for (const std::string& piece : completion.pieces) {
      chunks.push_back(
          sseEvent("content_block_delta", {{"type", "content_block_delta"},
                                           {"index", 0},
                                           {"delta", {{"type", "text_delta"}, {"text", piece}}}}));
    }
    chunks.push_back(
        sseEvent("content_block_stop", {{"type", "content_block_stop"}, {"index", 0}}));
    chunks.push_back(sseEvent(
        "message_delta", {{"type", "message_delta"},
                          {"delta", {{"stop_reason", stop_reason}, {"stop_sequence", nullptr}}},
                          {"usage", {{"output_tokens", completion.completion_tokens}}}}));
    chunks.push_back(sseEvent("message_stop", {{"type", "message_stop"}}));
    response = sseResponse(std::move(chunks));
  }
  response.setHeader("request-id", "req_mock" + randomHex(8));
  return response;
}

// ---------------------------------------------------------------- Gemini

Response geminiGenerate(const Request& request, const Context& context, const std::string& model,
                        const std::string& method) {
  json body;
  Response error;
  if (!parseObject(Api::kGemini, request, body, error)) return error;
  if (!body.contains("contents") || !body["contents"].is_array()) {
    return errorResponse(Api::kGemini, 400,
                         "* GenerateContentRequest.contents: contents is not specified");
  }
  int prompt_tokens = 0;
  for (const char* key : {"systemInstruction", "system_instruction"}) {
    if (body.contains(key) && body[key].is_object() && body[key].contains("parts")) {
      prompt_tokens += countTokens(contentText(body[key]["parts"]));
    }
  }
  std::string last_user;
  for (const json& content : body["contents"]) {
    if (!content.is_object()) {
      return errorResponse(Api::kGemini, 400,
                           "Invalid JSON payload: each element of contents must be an object");
    }
    std::string text = content.contains("parts") ? contentText(content["parts"]) : "";
    prompt_tokens += countTokens(text);
    if (!content.contains("role") || content["role"] == "user") last_user = text;
  }
  if (method == "countTokens") return jsonResponse({{"totalTokens", prompt_tokens}});
  int64_t max_tokens = 0;
  for (const char* key : {"generationConfig", "generation_config"}) {
    if (body.contains(key) && body[key].is_object()) {
      max_tokens = intField(body[key], "maxOutputTokens");
      if (max_tokens == 0) max_tokens = intField(body[key], "max_output_tokens");
    }
  }
  Completion completion = complete(context, last_user, prompt_tokens, max_tokens);
  std::string response_id = "mock" + randomHex(10);
  std::string finish = completion.truncated ? "MAX_TOKENS" : "STOP";
  auto chunkJson = [&](const std::string& text, int output_tokens, bool last) {
    json candidate = {{"content", {{"parts", {{{"text", text}}}}, {"role", "model"}}},
                      {"index", 0}};
    if (last) candidate["finishReason"] = finish;
    return json{{"candidates", {candidate}},
                {"usageMetadata",
                 {{"promptTokenCount", completion.prompt_tokens},
                  {"candidatesTokenCount", output_tokens},
                  {"totalTokenCount", completion.prompt_tokens + output_tokens},
                  {"promptTokensDetails",
                   {{{"modality", "TEXT"}, {"tokenCount", completion.prompt_tokens}}}}}},
                {"modelVersion", model},
                {"responseId", response_id}};
  };
  if (method == "generateContent") {
    return jsonResponse(chunkJson(completion.text, completion.completion_tokens, true));
  }
  // streamGenerateContent: SSE with alt=sse (Google ends events with CRLF CRLF), otherwise a
  // JSON array streamed element by element.
  bool sse = request.query("alt") == "sse";
  std::vector<std::string> chunks;
  std::string so_far;
  for (size_t piece_idx = 0; piece_idx < completion.pieces.size(); ++piece_idx) {
    so_far += completion.pieces[piece_idx];
    json value = chunkJson(completion.pieces[piece_idx], countTokens(so_far),
                           piece_idx + 1 == completion.pieces.size());
    if (sse) {
      chunks.push_back("data: " + dumpJson(value) + "\r\n\r\n");
    } else {
      chunks.push_back((piece_idx == 0 ? "[" : ",\r\n") + dumpJson(value));
    }
  }
  if (!sse) chunks.back() += "]";
  Response response = sseResponse(std::move(chunks));
  response.setHeader("content-type", sse ? "text/event-stream" : "application/json; charset=UTF-8");
  return response;
}

}  // namespace

Response handleOpenAI(const Request& request, const Context& context) {
  std::string path = request.path();
  std::string key;
  std::string auth = request.header("authorization");
  if (auth.size() > 7 &&
      (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0)) {
    key = auth.substr(7);
  }
  if (key.empty()) {
    return errorResponse(Api::kOpenAI, 401,
                         "You didn't provide an API key. Send it in the Authorization header "
                         "as 'Authorization: Bearer YOUR_KEY'.");
  }
  bool post = request.method == "POST";
  bool get = request.method == "GET";
  if (path == "/v1/chat/completions" && post) return openaiChat(request, context);
  if (path == "/v1/responses" && post) return openaiResponses(request, context);
  if (path == "/v1/embeddings" && post) return openaiEmbeddings(request, context);
  if (path == "/v1/models" && get) {
    json data = json::array();
    for (const std::string& id : mockModels()) data.push_back(openaiModel(id));
    return jsonResponse({{"object", "list"}, {"data", data}});
  }
  if (path.rfind("/v1/models/", 0) == 0 && get) {
    return jsonResponse(openaiModel(path.substr(std::string("/v1/models/").size())));
  }
  if (path == "/v1/chat/completions" || path == "/v1/responses" || path == "/v1/embeddings" ||
      path == "/v1/models") {
    Response response =
        errorResponse(Api::kOpenAI, 405, "Method " + request.method + " is not allowed on " + path);
    response.setHeader("allow", path == "/v1/models" ? "GET" : "POST");
    return response;
  }
  return errorResponse(Api::kOpenAI, 404, "Invalid URL (" + request.method + " " + path + ")");
}

Response handleAnthropic(const Request& request, const Context& context) {
  std::string key = request.header("x-api-key");
  if (key.empty()) {
    std::string auth = request.header("authorization");
    if (auth.size() > 7 && auth.compare(0, 7, "Bearer ") == 0) key = auth.substr(7);
  }
  if (key.empty()) {
    return errorResponse(Api::kAnthropic, 401, "x-api-key header is required");
  }
  if (request.header("anthropic-version").empty()) {
    return errorResponse(Api::kAnthropic, 400, "anthropic-version: header is required");
  }
  std::string path = request.path();
  if (request.method != "POST" && (path == "/v1/messages" || path == "/v1/messages/count_tokens")) {
    return errorResponse(Api::kAnthropic, 405, "Method Not Allowed");
  }
  if (path == "/v1/messages") return anthropicMessages(request, context, false);
  if (path == "/v1/messages/count_tokens") return anthropicMessages(request, context, true);
  return errorResponse(Api::kAnthropic, 404, "Not Found");
}

Response handleGemini(const Request& request, const Context& context) {
  std::string key = request.header("x-goog-api-key");
  if (key.empty()) key = request.query("key");
  if (key.empty()) {
    return errorResponse(Api::kGemini, 401,
                         "Request is missing an API key: send x-goog-api-key or ?key=.");
  }
  std::string path = request.path();
  size_t models = path.find("/models/");
  if (models == std::string::npos || models > std::string("/v1beta").size()) {
    if ((path == "/v1beta/models" || path == "/v1/models") && request.method == "GET") {
      return jsonResponse({{"models",
                            {{{"name", "models/gemini-2.0-flash"},
                              {"displayName", "Gemini mock"},
                              {"supportedGenerationMethods",
                               {"generateContent", "streamGenerateContent", "countTokens"}}}}}});
    }
    return errorResponse(Api::kGemini, 404, "Requested entity was not found: " + path);
  }
  std::string rest = path.substr(models + std::string("/models/").size());
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return errorResponse(Api::kGemini, 404, "Requested entity was not found: " + path);
  }
  std::string model = rest.substr(0, colon);
  std::string method = rest.substr(colon + 1);
  if (method != "generateContent" && method != "streamGenerateContent" && method != "countTokens") {
    return errorResponse(Api::kGemini, 404, "Method not found: " + method);
  }
  if (request.method != "POST") {
    return errorResponse(Api::kGemini, 405, "Method " + request.method + " is not allowed");
  }
  return geminiGenerate(request, context, model, method);
}

}  // namespace clrk::mockprovider::internal
