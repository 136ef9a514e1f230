// Wire formats of the mock providers, checked without sockets.
#include "clrk/mockprovider/handlers.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <string>
#include <vector>

namespace clrk::mockprovider::internal {
namespace {

using nlohmann::json;

Request post(std::string target, json body, HeaderList headers) {
  Request request;
  request.method = "POST";
  request.target = std::move(target);
  request.host = "127.0.0.1";
  request.headers = std::move(headers);
  request.body = body.dump();
  return request;
}

std::string header(const Response& response, std::string_view name) {
  for (const auto& [key, value] : response.headers) {
    if (key == name) return value;
  }
  return "";
}

// Parses "data: {...}" events (and optional "event:" lines) from SSE chunks.
struct Event {
  std::string event;
  std::string data;
};
std::vector<Event> parseSse(const std::vector<std::string>& chunks) {
  std::string all;
  for (const auto& chunk : chunks) all += chunk;
  std::vector<Event> events;
  Event current;
  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find('\n', pos);
    if (end == std::string::npos) end = all.size();
    std::string line = all.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    pos = end + 1;
    if (line.empty()) {
      if (!current.data.empty() || !current.event.empty()) events.push_back(current);
      current = {};
    } else if (line.rfind("event: ", 0) == 0) {
      current.event = line.substr(7);
    } else if (line.rfind("data: ", 0) == 0) {
      current.data = line.substr(6);
    }
  }
  return events;
}

const HeaderList kOpenAIAuth = {{"Authorization", "Bearer sk-test"}};
const HeaderList kAnthropicAuth = {{"x-api-key", "sk-ant"}, {"anthropic-version", "2023-06-01"}};

TEST(Tokens, CountsWhitespaceSeparatedWords) {
  EXPECT_EQ(countTokens(""), 0);
  EXPECT_EQ(countTokens("   "), 0);
  EXPECT_EQ(countTokens("one"), 1);
  EXPECT_EQ(countTokens("  one two\n\tthree "), 3);
}

TEST(Tokens, PiecesConcatenateToTheText) {
  std::vector<std::string> pieces = splitPieces("hello from  mock: x");
  ASSERT_EQ(pieces.size(), 4u);
  EXPECT_EQ(pieces[0], "hello");
  EXPECT_EQ(pieces[2], "  mock:");
  std::string joined;
  for (const auto& piece : pieces) joined += piece;
  EXPECT_EQ(joined, "hello from  mock: x");
  EXPECT_EQ(splitPieces("").size(), 1u);
}

TEST(Base64, EncodesStandardPadded) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("foob"), "Zm9vYg==");
}

TEST(OpenAI, ChatCompletionHasDeterministicContentAndUsage) {
  Dispatcher dispatcher({.name = "alpha"});
  Response response = dispatcher.handle(
      post("/v1/chat/completions",
           {{"model", "gpt-x"},
            {"messages",
             {{{"role", "system"}, {"content", "be brief"}},
              {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "what is two"}}}}}}}},
           kOpenAIAuth));
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(header(response, "x-mock-name"), "alpha");
  json body = json::parse(response.body);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "gpt-x");
  EXPECT_EQ(body["choices"][0]["message"]["content"], "hello from alpha: what is two");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(body["usage"]["completion_tokens"], 6);
  EXPECT_EQ(body["usage"]["total_tokens"], 11);
}

TEST(OpenAI, MaxTokensTruncatesWithFinishReasonLength) {
  Dispatcher dispatcher({.name = "m"});
  Response response = dispatcher.handle(post(
      "/v1/chat/completions",
      {{"model", "g"}, {"max_tokens", 2}, {"messages", {{{"role", "user"}, {"content", "a b c"}}}}},
      kOpenAIAuth));
  json body = json::parse(response.body);
  EXPECT_EQ(body["choices"][0]["message"]["content"], "hello from");
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["completion_tokens"], 2);
}

TEST(OpenAI, StreamEndsWithUsageChunkAndDone) {
  Dispatcher dispatcher({.name = "m"});
  Response response =
      dispatcher.handle(post("/v1/chat/completions",
                             {{"model", "g"},
                              {"stream", true},
                              {"stream_options", {{"include_usage", true}}},
                              {"messages", {{{"role", "user"}, {"content", "one two"}}}}},
                             kOpenAIAuth));
  ASSERT_TRUE(response.streaming);
  EXPECT_EQ(header(response, "content-type"), "text/event-stream; charset=utf-8");
  std::vector<Event> events = parseSse(response.chunks);
  // role chunk, 5 content pieces ("hello from m: one two"), finish chunk, usage chunk, [DONE].
  ASSERT_EQ(events.size(), 9u);
  EXPECT_EQ(events.back().data, "[DONE]");
  std::string content;
  for (size_t idx = 0; idx + 1 < events.size(); ++idx) {
    json chunk = json::parse(events[idx].data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (!chunk["choices"].empty() && chunk["choices"][0]["delta"].contains("content")) {
      content += chunk["choices"][0]["delta"]["content"].get<std::string>();
    }
  }
  EXPECT_EQ(content, "hello from m: one two");
  json usage_chunk = json::parse(events[events.size() - 2].data);
  EXPECT_TRUE(usage_chunk["choices"].empty());
  EXPECT_EQ(usage_chunk["usage"]["prompt_tokens"], 2);
  EXPECT_EQ(usage_chunk["usage"]["completion_tokens"], 5);
  json finish_chunk = json::parse(events[events.size() - 3].data);
  EXPECT_EQ(finish_chunk["choices"][0]["finish_reason"], "stop");
}

TEST(OpenAI, StreamWithoutIncludeUsageHasNoUsage) {
  Dispatcher dispatcher({});
  Response response = dispatcher.handle(
      post("/v1/chat/completions",
           {{"model", "g"}, {"stream", true}, {"messages", {{{"role", "user"}, {"content", "x"}}}}},
           kOpenAIAuth));
  for (const Event& event : parseSse(response.chunks)) {
    if (event.data == "[DONE]") continue;
    EXPECT_FALSE(json::parse(event.data).contains("usage")) << event.data;
  }
}

TEST(OpenAI, ResponsesStreamEventSequence) {
  Dispatcher dispatcher({.name = "m"});
  Response response = dispatcher.handle(post(
      "/v1/responses", {{"model", "g"}, {"stream", true}, {"input", "hi there"}}, kOpenAIAuth));
  std::vector<Event> events = parseSse(response.chunks);
  ASSERT_GE(events.size(), 9u);
  EXPECT_EQ(events.front().event, "response.created");
  EXPECT_EQ(events.back().event, "response.completed");
  json completed = json::parse(events.back().data);
  EXPECT_EQ(completed["type"], "response.completed");
  EXPECT_EQ(completed["response"]["usage"]["input_tokens"], 2);
  EXPECT_EQ(completed["response"]["usage"]["output_tokens"], 5);
  EXPECT_EQ(completed["response"]["output"][0]["content"][0]["text"], "hello from m: hi there");
  for (size_t idx = 0; idx < events.size(); ++idx) {
    EXPECT_EQ(json::parse(events[idx].data)["sequence_number"], idx);
  }
}

TEST(OpenAI, EmbeddingsBase64DecodesToTheFloatVector) {
  Dispatcher dispatcher({});
  json floats = json::parse(
      dispatcher
          .handle(post("/v1/embeddings", {{"model", "e"}, {"input", "a b"}, {"dimensions", 4}},
                       kOpenAIAuth))
          .body);
  json encoded = json::parse(
      dispatcher
          .handle(post(
              "/v1/embeddings",
              {{"model", "e"}, {"input", "a b"}, {"dimensions", 4}, {"encoding_format", "base64"}},
              kOpenAIAuth))
          .body);
  ASSERT_EQ(floats["data"][0]["embedding"].size(), 4u);
  EXPECT_EQ(floats["usage"]["prompt_tokens"], 2);
  std::vector<float> values = floats["data"][0]["embedding"].get<std::vector<float>>();
  std::string bytes(values.size() * sizeof(float), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size());
  EXPECT_EQ(encoded["data"][0]["embedding"], base64Encode(bytes));
}

TEST(OpenAI, MissingKeyIs401InOpenAIShape) {
  Dispatcher dispatcher({});
  Response response = dispatcher.handle(
      post("/v1/chat/completions", {{"model", "g"}, {"messages", json::array()}}, {}));
  EXPECT_EQ(response.status, 401);
  json body = json::parse(response.body);
  EXPECT_EQ(body["error"]["code"], "invalid_api_key");
  EXPECT_TRUE(body["error"].contains("type"));
  EXPECT_TRUE(body["error"]["param"].is_null());
}

TEST(OpenAI, BadJsonIs400) {
  Dispatcher dispatcher({});
  Request request = post("/v1/chat/completions", {}, kOpenAIAuth);
  request.body = "{not json";
  Response response = dispatcher.handle(request);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(json::parse(response.body)["error"]["type"], "invalid_request_error");
}

TEST(Anthropic, MessageAndUsage) {
  Dispatcher dispatcher({.name = "claude-mock"});
  Response response =
      dispatcher.handle(post("/v1/messages",
                             {{"model", "claude-x"},
                              {"max_tokens", 100},
                              {"system", "be nice"},
                              {"messages", {{{"role", "user"}, {"content", "ping pong"}}}}},
                             kAnthropicAuth));
  ASSERT_EQ(response.status, 200) << response.body;
  json body = json::parse(response.body);
  EXPECT_EQ(body["type"], "message");
  EXPECT_EQ(body["model"], "claude-x");
  EXPECT_EQ(body["content"][0]["text"], "hello from claude-mock: ping pong");
  EXPECT_EQ(body["stop_reason"], "end_turn");
  EXPECT_EQ(body["usage"]["input_tokens"], 4);
  EXPECT_EQ(body["usage"]["output_tokens"], 5);
  EXPECT_FALSE(header(response, "request-id").empty());
}

TEST(Anthropic, StreamHasTheExactEventSequence) {
  Dispatcher dispatcher({.name = "m"});
  Response response = dispatcher.handle(post("/v1/messages",
                                             {{"model", "c"},
                                              {"max_tokens", 100},
                                              {"stream", true},
                                              {"messages", {{{"role", "user"}, {"content", "q"}}}}},
                                             kAnthropicAuth));
  std::vector<Event> events = parseSse(response.chunks);
  std::vector<std::string> names;
  for (const Event& event : events) {
    names.push_back(event.event);
    EXPECT_EQ(json::parse(event.data)["type"], event.event);
  }
  std::vector<std::string> expected = {
      "message_start",       "content_block_start", "ping",
      "content_block_delta", "content_block_delta", "content_block_delta",
      "content_block_delta", "content_block_stop",  "message_delta",
      "message_stop"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(json::parse(events[0].data)["message"]["usage"]["input_tokens"], 1);
  json delta = json::parse(events[8].data);
  EXPECT_EQ(delta["usage"]["output_tokens"], 4);
  EXPECT_EQ(delta["delta"]["stop_reason"], "end_turn");
}

TEST(Anthropic, AuthAndVersionAreRequired) {
  Dispatcher dispatcher({});
  json body = {{"model", "c"}, {"max_tokens", 1}, {"messages", json::array()}};
  Response no_key = dispatcher.handle(post("/v1/messages", body, {{"anthropic-version", "x"}}));
  EXPECT_EQ(no_key.status, 401);
  json error = json::parse(no_key.body);
  EXPECT_EQ(error["type"], "error");
  EXPECT_EQ(error["error"]["type"], "authentication_error");
  Response no_version = dispatcher.handle(post("/v1/messages", body, {{"x-api-key", "k"}}));
  EXPECT_EQ(no_version.status, 400);
  EXPECT_EQ(json::parse(no_version.body)["error"]["type"], "invalid_request_error");
  EXPECT_NE(no_version.body.find("anthropic-version"), std::string::npos);
}

TEST(Gemini, GenerateContentAndKeyFromQuery) {
  Dispatcher dispatcher({.name = "g"});
  Response response = dispatcher.handle(
      post("/v1beta/models/gemini-2.0-flash:generateContent?key=AIza123",
           {{"contents", {{{"role", "user"}, {"parts", {{{"text", "tell me"}}}}}}}}, {}));
  ASSERT_EQ(response.status, 200) << response.body;
  json body = json::parse(response.body);
  EXPECT_EQ(body["candidates"][0]["content"]["parts"][0]["text"], "hello from g: tell me");
  EXPECT_EQ(body["candidates"][0]["finishReason"], "STOP");
  EXPECT_EQ(body["usageMetadata"]["promptTokenCount"], 2);
  EXPECT_EQ(body["usageMetadata"]["candidatesTokenCount"], 5);
  EXPECT_EQ(body["usageMetadata"]["totalTokenCount"], 7);
  EXPECT_EQ(body["modelVersion"], "gemini-2.0-flash");
  EXPECT_EQ(dispatcher.requests().back().api_key, "AIza123");
  EXPECT_EQ(dispatcher.requests().back().provider, "gemini");
}

TEST(Gemini, SseStreamHasCumulativeUsage) {
  Dispatcher dispatcher({.name = "g"});
  Response response = dispatcher.handle(post("/v1beta/models/gem:streamGenerateContent?alt=sse",
                                             {{"contents", {{{"parts", {{{"text", "a"}}}}}}}},
                                             {{"x-goog-api-key", "k"}}));
  ASSERT_TRUE(response.streaming);
  EXPECT_EQ(header(response, "content-type"), "text/event-stream");
  EXPECT_NE(response.chunks[0].find("\r\n\r\n"), std::string::npos);
  std::vector<Event> events = parseSse(response.chunks);
  ASSERT_EQ(events.size(), 4u);  // "hello" " from" " g:" " a"
  json last = json::parse(events.back().data);
  EXPECT_EQ(last["usageMetadata"]["candidatesTokenCount"], 4);
  EXPECT_EQ(last["candidates"][0]["finishReason"], "STOP");
  EXPECT_FALSE(json::parse(events[0].data)["candidates"][0].contains("finishReason"));
}

TEST(Gemini, MissingKeyIs401InGoogleShape) {
  Dispatcher dispatcher({});
  Response response = dispatcher.handle(
      post("/v1beta/models/gem:generateContent", {{"contents", json::array()}}, {}));
  EXPECT_EQ(response.status, 401);
  json body = json::parse(response.body);
  EXPECT_EQ(body["error"]["code"], 401);
  EXPECT_EQ(body["error"]["status"], "UNAUTHENTICATED");
}

TEST(Failures, MockStatusHeaderAndFailStatus) {
  Dispatcher dispatcher({});
  Response forced = dispatcher.handle(post("/v1/messages", {}, {{"x-mock-status", "529"}}));
  EXPECT_EQ(forced.status, 529);
  EXPECT_EQ(json::parse(forced.body)["error"]["type"], "overloaded_error");
  dispatcher.setFailStatus(503);
  Response failing =
      dispatcher.handle(post("/v1beta/models/gem:generateContent", {{"contents", json::array()}},
                             {{"x-goog-api-key", "k"}}));
  EXPECT_EQ(failing.status, 503);
  EXPECT_EQ(json::parse(failing.body)["error"]["status"], "UNAVAILABLE");
  dispatcher.setFailStatus(0);
  Response healthy = dispatcher.handle(
      post("/v1/chat/completions",
           {{"model", "g"}, {"messages", {{{"role", "user"}, {"content", "x"}}}}}, kOpenAIAuth));
  EXPECT_EQ(healthy.status, 200);
  Response bad = dispatcher.handle(post("/v1/models", {}, {{"x-mock-status", "abc"}}));
  EXPECT_EQ(bad.status, 400);
}

TEST(Recording, KeepsTheLastThousand) {
  Dispatcher dispatcher({});
  for (int idx = 0; idx < 1005; ++idx) {
    Request request;
    request.method = "GET";
    request.target = "/v1/models?i=" + std::to_string(idx);
    request.headers = kOpenAIAuth;
    (void)dispatcher.handle(request);
  }
  std::vector<RecordedRequest> recorded = dispatcher.requests();
  ASSERT_EQ(recorded.size(), 1000u);
  EXPECT_EQ(recorded.front().target, "/v1/models?i=5");
  EXPECT_EQ(recorded.back().api_key, "sk-test");
  EXPECT_EQ(recorded.back().header("authorization"), "Bearer sk-test");
  dispatcher.clearRequests();
  EXPECT_TRUE(dispatcher.requests().empty());
}

TEST(Mcp, SessionToolsAndCalls) {
  Dispatcher dispatcher({.name = "mcp-mock"});
  HeaderList accept = {{"Accept", "application/json, text/event-stream"}};
  Response init = dispatcher.handle(
      post("/mcp",
           {{"jsonrpc", "2.0"},
            {"id", 1},
            {"method", "initialize"},
            {"params", {{"protocolVersion", "2025-03-26"}, {"capabilities", json::object()}}}},
           accept));
  ASSERT_EQ(init.status, 200) << init.body;
  std::string session = header(init, "mcp-session-id");
  ASSERT_FALSE(session.empty());
  json result = json::parse(init.body)["result"];
  EXPECT_EQ(result["protocolVersion"], "2025-03-26");
  EXPECT_EQ(result["serverInfo"]["name"], "mcp-mock");

  HeaderList with_session = accept;
  with_session.emplace_back("Mcp-Session-Id", session);
  Response note = dispatcher.handle(
      post("/mcp", {{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}}, with_session));
  EXPECT_EQ(note.status, 202);
  EXPECT_TRUE(note.body.empty());

  Response list = dispatcher.handle(
      post("/mcp", {{"jsonrpc", "2.0"}, {"id", 2}, {"method", "tools/list"}}, with_session));
  json tools = json::parse(list.body)["result"]["tools"];
  ASSERT_EQ(tools.size(), 2u);
  EXPECT_EQ(tools[0]["name"], "echo");
  EXPECT_EQ(tools[1]["inputSchema"]["required"], json({"a", "b"}));

  HeaderList streaming = with_session;
  streaming.emplace_back("x-mock-mcp-stream", "1");
  Response call =
      dispatcher.handle(post("/mcp",
                             {{"jsonrpc", "2.0"},
                              {"id", 3},
                              {"method", "tools/call"},
                              {"params", {{"name", "add"}, {"arguments", {{"a", 2}, {"b", 3.5}}}}}},
                             streaming));
  ASSERT_TRUE(call.streaming);
  EXPECT_EQ(header(call, "content-type"), "text/event-stream");
  std::vector<Event> events = parseSse(call.chunks);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "message");
  json answer = json::parse(events[0].data);
  EXPECT_EQ(answer["id"], 3);
  EXPECT_EQ(answer["result"]["content"][0]["text"], "5.5");

  Response unknown = dispatcher.handle(
      post("/mcp",
           {{"jsonrpc", "2.0"}, {"id", 4}, {"method", "tools/call"}, {"params", {{"name", "rm"}}}},
           with_session));
  EXPECT_EQ(json::parse(unknown.body)["error"]["code"], -32602);

  HeaderList stale = accept;
  stale.emplace_back("Mcp-Session-Id", "nope");
  EXPECT_EQ(
      dispatcher.handle(post("/mcp", {{"jsonrpc", "2.0"}, {"id", 5}, {"method", "ping"}}, stale))
          .status,
      404);
  EXPECT_EQ(
      dispatcher.handle(post("/mcp", {{"jsonrpc", "2.0"}, {"id", 5}, {"method", "ping"}}, accept))
          .status,
      400);
  Request get;
  get.method = "GET";
  get.target = "/mcp";
  EXPECT_EQ(dispatcher.handle(get).status, 405);
}

TEST(Control, RequestsEndpointListsRecordedRequestsButNotItself) {
  Dispatcher dispatcher({});
  (void)dispatcher.handle(post("/v1/messages", {}, {{"x-api-key", "k1"}}));
  Request get;
  get.method = "GET";
  get.target = "/__mock/requests";
  Response response = dispatcher.handle(get);
  json list = json::parse(response.body);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["api_key"], "k1");
  EXPECT_EQ(list[0]["provider"], "anthropic");
  EXPECT_EQ(dispatcher.requests().size(), 1u);
}

TEST(Control, EchoAndBytesAreRecordedWithDigests) {
  Dispatcher dispatcher({});
  Request echo;
  echo.method = "POST";
  echo.target = "/__mock/echo";
  echo.body = "abc";
  Response echoed = dispatcher.handle(echo);
  EXPECT_EQ(echoed.body, "abc");
  const std::string kAbcSha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  EXPECT_EQ(header(echoed, "x-mock-body-sha256"), kAbcSha);
  ASSERT_EQ(dispatcher.requests().size(), 1u);
  EXPECT_EQ(dispatcher.requests()[0].body_bytes, 3u);
  EXPECT_EQ(dispatcher.requests()[0].body_sha256, kAbcSha);

  Request bytes;
  bytes.method = "GET";
  bytes.target = "/__mock/bytes?n=100&chunk=30";
  Response streamed = dispatcher.handle(bytes);
  ASSERT_TRUE(streamed.streaming);
  ASSERT_EQ(streamed.chunks.size(), 4u);
  EXPECT_EQ(streamed.chunks[3].size(), 10u);
  EXPECT_EQ(streamed.chunks[0].substr(0, 3), "abc");
  bytes.target = "/__mock/bytes?n=999999999999";
  EXPECT_EQ(dispatcher.handle(bytes).status, 400);
}

}  // namespace
}  // namespace clrk::mockprovider::internal
