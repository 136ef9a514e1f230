// MockServer over real sockets, proven with the real SDKs (npm openai, @anthropic-ai/sdk,
// @modelcontextprotocol/sdk), curl and OpenSSL-made certificates.
#include "clrk/mockprovider/mock_server.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace clrk::mockprovider {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::string shellQuote(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

struct CommandResult {
  int exit_code = -1;
  std::string out;
};

// Runs `command` under /bin/sh with `env` prepended; captures stdout (stderr passes through).
CommandResult run(const std::string& command, const std::map<std::string, std::string>& env = {}) {
  std::string line;
  for (const auto& [key, value] : env) line += key + "=" + shellQuote(value) + " ";
  line += command;
  CommandResult result;
  FILE* pipe = popen(line.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t read = 0;
  while ((read = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.out.append(buffer, read);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string clientsDir() {
  const char* dir = std::getenv("CLRK_SOURCE_DIR");
  if (dir != nullptr) return std::string(dir) + "/tests/clients";
  return CLRK_TEST_CLIENTS_DIR;
}

// Why the npm clients cannot run, or "" when they can.
std::string nodeClientsMissing() {
  if (!fs::exists(clientsDir() + "/node_modules/openai")) {
    return clientsDir() +
           "/node_modules is missing: run `npm ci` in tests/clients (scripts/setup does)";
  }
  if (run("node --version >/dev/null 2>&1").exit_code != 0) return "node is not on PATH";
  return "";
}

#define SKIP_WITHOUT_NODE_CLIENTS()                \
  do {                                             \
    std::string missing = nodeClientsMissing();    \
    if (!missing.empty()) GTEST_SKIP() << missing; \
  } while (false)

// Runs tests/clients/<script> with `env`; returns its JSON summary line.
json nodeClient(const std::string& script, const std::map<std::string, std::string>& env) {
  CommandResult result = run("node " + shellQuote(clientsDir() + "/" + script), env);
  std::string last = result.out;
  while (!last.empty() && last.back() == '\n') last.pop_back();
  size_t newline = last.rfind('\n');
  if (newline != std::string::npos) last = last.substr(newline + 1);
  json summary = json::parse(last, nullptr, false);
  if (summary.is_discarded()) return {{"ok", false}, {"error", "no JSON summary: " + result.out}};
  return summary;
}

std::unique_ptr<MockServer> startServer(MockOptions options = {}) {
  auto server = MockServer::start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status().toString();
  return server.ok() ? std::move(server).value() : nullptr;
}

// Sends raw bytes to 127.0.0.1:port and reads until the peer closes (or 5 s pass).
std::string rawExchange(uint16_t port, const std::string& bytes) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "";
  }
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string out;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = recv(fd, buffer, sizeof(buffer), 0)) > 0) out.append(buffer, static_cast<size_t>(n));
  close(fd);
  return out;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "clrk-mock-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string file(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

TEST(MockServer, OpenAIChatWithRealSdk) {
  SKIP_WITHOUT_NODE_CLIENTS();
  auto server = startServer({.name = "alpha"});
  ASSERT_TRUE(server);
  std::map<std::string, std::string> env = {{"OPENAI_BASE_URL", server->baseUrl() + "/v1"},
                                            {"OPENAI_API_KEY", "sk-agent-key"},
                                            {"MODEL", "gpt-test-1"},
                                            {"PROMPT", "what is the answer"}};
  json plain = nodeClient("openai_chat.mjs", env);
  ASSERT_TRUE(plain["ok"].get<bool>()) << plain.dump();
  EXPECT_EQ(plain["model"], "gpt-test-1");
  EXPECT_EQ(plain["content"], "hello from alpha: what is the answer");
  // Prompt: "You are terse." (3) + "what is the answer" (4); answer: 7 words.
  EXPECT_EQ(plain["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(plain["usage"]["completion_tokens"], 7);
  EXPECT_EQ(plain["usage"]["total_tokens"], 14);

  env["STREAM"] = "1";
  json streamed = nodeClient("openai_chat.mjs", env);
  ASSERT_TRUE(streamed["ok"].get<bool>()) << streamed.dump();
  EXPECT_EQ(streamed["content"], "hello from alpha: what is the answer");
  EXPECT_EQ(streamed["finish_reason"], "stop");
  EXPECT_EQ(streamed["usage"], plain["usage"]);
  EXPECT_EQ(streamed["chunks"], 1 + 7 + 1 + 1);  // role, pieces, finish, usage

  std::vector<RecordedRequest> requests = server->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].method, "POST");
  EXPECT_EQ(requests[0].target, "/v1/chat/completions");
  EXPECT_EQ(requests[0].api_key, "sk-agent-key");
  EXPECT_EQ(requests[0].provider, "openai");
  EXPECT_EQ(requests[0].header("user-agent").rfind("OpenAI/JS", 0), 0u);
  EXPECT_NE(requests[1].body.find("\"include_usage\":true"), std::string::npos);
}

TEST(MockServer, OpenAIResponsesAndEmbeddingsWithRealSdk) {
  SKIP_WITHOUT_NODE_CLIENTS();
  auto server = startServer({.name = "beta"});
  ASSERT_TRUE(server);
  std::map<std::string, std::string> env = {{"OPENAI_BASE_URL", server->baseUrl() + "/v1"},
                                            {"OPENAI_API_KEY", "sk-x"},
                                            {"PROMPT", "two words"}};
  json plain = nodeClient("openai_responses.mjs", env);
  ASSERT_TRUE(plain["ok"].get<bool>()) << plain.dump();
  EXPECT_EQ(plain["content"], "hello from beta: two words");
  EXPECT_EQ(plain["usage"]["input_tokens"], 5);
  EXPECT_EQ(plain["usage"]["output_tokens"], 5);
  env["STREAM"] = "1";
  json streamed = nodeClient("openai_responses.mjs", env);
  ASSERT_TRUE(streamed["ok"].get<bool>()) << streamed.dump();
  EXPECT_EQ(streamed["content"], "hello from beta: two words");
  EXPECT_EQ(streamed["usage"], plain["usage"]);
  EXPECT_EQ(streamed["events"][0], "response.created");
  EXPECT_EQ(streamed["events"].back(), "response.completed");

  json embeddings = nodeClient("openai_embeddings.mjs", env);
  ASSERT_TRUE(embeddings["ok"].get<bool>()) << embeddings.dump();
  EXPECT_EQ(embeddings["count"], 2);
  EXPECT_EQ(embeddings["dims"], 8);
  EXPECT_EQ(embeddings["usage"]["prompt_tokens"], 4);
  json again = nodeClient("openai_embeddings.mjs", env);
  EXPECT_EQ(again["first"], embeddings["first"]);  // deterministic
}

TEST(MockServer, AnthropicMessagesWithRealSdk) {
  SKIP_WITHOUT_NODE_CLIENTS();
  auto server = startServer({.name = "claude"});
  ASSERT_TRUE(server);
  std::map<std::string, std::string> env = {{"ANTHROPIC_BASE_URL", server->baseUrl()},
                                            {"ANTHROPIC_API_KEY", "sk-ant-agent"},
                                            {"MODEL", "claude-test"},
                                            {"PROMPT", "hi there friend"}};
  json plain = nodeClient("anthropic_messages.mjs", env);
  ASSERT_TRUE(plain["ok"].get<bool>()) << plain.dump();
  EXPECT_EQ(plain["model"], "claude-test");
  EXPECT_EQ(plain["content"], "hello from claude: hi there friend");
  EXPECT_EQ(plain["stop_reason"], "end_turn");
  EXPECT_EQ(plain["usage"]["input_tokens"], 6);
  EXPECT_EQ(plain["usage"]["output_tokens"], 6);

  env["STREAM"] = "1";
  json streamed = nodeClient("anthropic_messages.mjs", env);
  ASSERT_TRUE(streamed["ok"].get<bool>()) << streamed.dump();
  EXPECT_EQ(streamed["content"], plain["content"]);
  EXPECT_EQ(streamed["usage"], plain["usage"]);
  // The SDK consumes `ping` itself; handlers_test checks it is on the wire.
  json expected_events = {"message_start", "content_block_start"};
  for (int idx = 0; idx < 6; ++idx) expected_events.push_back("content_block_delta");
  for (const char* name : {"content_block_stop", "message_delta", "message_stop"}) {
    expected_events.push_back(name);
  }
  EXPECT_EQ(streamed["events"], expected_events);

  env["MAX_TOKENS"] = "2";
  json truncated = nodeClient("anthropic_messages.mjs", env);
  EXPECT_EQ(truncated["content"], "hello from");
  EXPECT_EQ(truncated["stop_reason"], "max_tokens");

  std::vector<RecordedRequest> requests = server->requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].api_key, "sk-ant-agent");
  // @anthropic-ai/sdk 1.x sends the API key as `Authorization: Bearer`, not `x-api-key`; the
  // mock (like the API) accepts either, so credential injection must replace both.
  EXPECT_EQ(requests[0].header("authorization"), "Bearer sk-ant-agent");
  EXPECT_FALSE(requests[0].header("anthropic-version").empty());
}

TEST(MockServer, McpToolCallWithRealSdk) {
  SKIP_WITHOUT_NODE_CLIENTS();
  for (bool sse : {false, true}) {
    SCOPED_TRACE(sse ? "SSE answers" : "JSON answers");
    auto server = startServer({.name = "tools", .mcp_sse = sse});
    ASSERT_TRUE(server);
    json add = nodeClient("mcp_call.mjs",
                          {{"MCP_URL", server->baseUrl() + "/mcp"}, {"MCP_TOKEN", "mcp-token"}});
    ASSERT_TRUE(add["ok"].get<bool>()) << add.dump();
    EXPECT_EQ(add["server"], "tools");
    EXPECT_EQ(add["tools"], json({"echo", "add"}));
    EXPECT_EQ(add["result"], "5");
    EXPECT_EQ(add["isError"], false);
    EXPECT_FALSE(add["session"].get<std::string>().empty());
    json echo = nodeClient("mcp_call.mjs", {{"MCP_URL", server->baseUrl() + "/mcp"},
                                            {"TOOL", "echo"},
                                            {"ARGS", R"({"text":"round trip"})"}});
    EXPECT_EQ(echo["result"], "round trip");
    bool saw_call = false;
    for (const RecordedRequest& request : server->requests()) {
      EXPECT_EQ(request.provider, "mcp");
      if (request.body.find("\"tools/call\"") != std::string::npos) {
        saw_call = true;
        EXPECT_FALSE(request.header("mcp-session-id").empty());
      }
    }
    EXPECT_TRUE(saw_call);
    EXPECT_EQ(server->requests()[0].api_key, "mcp-token");
  }
}

TEST(MockServer, GeminiWithRealSdk) {
  SKIP_WITHOUT_NODE_CLIENTS();
  auto server = startServer({.name = "gem"});
  ASSERT_TRUE(server);
  std::map<std::string, std::string> env = {{"GEMINI_BASE_URL", server->baseUrl()},
                                            {"GEMINI_API_KEY", "AIza-agent"},
                                            {"MODEL", "gemini-test"},
                                            {"PROMPT", "three little words"}};
  json plain = nodeClient("gemini_generate.mjs", env);
  ASSERT_TRUE(plain["ok"].get<bool>()) << plain.dump();
  EXPECT_EQ(plain["content"], "hello from gem: three little words");
  EXPECT_EQ(plain["model"], "gemini-test");
  EXPECT_EQ(plain["finish_reason"], "STOP");
  EXPECT_EQ(plain["usage"]["promptTokenCount"], 6);  // system 3 + prompt 3
  EXPECT_EQ(plain["usage"]["candidatesTokenCount"], 6);
  EXPECT_EQ(plain["usage"]["totalTokenCount"], 12);
  env["STREAM"] = "1";
  json streamed = nodeClient("gemini_generate.mjs", env);
  ASSERT_TRUE(streamed["ok"].get<bool>()) << streamed.dump();
  EXPECT_EQ(streamed["content"], plain["content"]);
  EXPECT_EQ(streamed["usage"], plain["usage"]);
  EXPECT_EQ(streamed["chunks"], 6);
  std::vector<RecordedRequest> requests = server->requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].provider, "gemini");
  EXPECT_EQ(requests[0].api_key, "AIza-agent");
  EXPECT_NE(requests[1].target.find(":streamGenerateContent?alt=sse"), std::string::npos);
}

TEST(MockServer, PythonRequestsAndHttpxStream) {
  if (run("/usr/bin/python3 -c 'import requests, httpx' 2>/dev/null").exit_code != 0) {
    GTEST_SKIP() << "/usr/bin/python3 lacks requests/httpx (scripts/setup installs them)";
  }
  auto server = startServer({.name = "py"});
  ASSERT_TRUE(server);
  for (const char* client : {"requests", "httpx"}) {
    SCOPED_TRACE(client);
    CommandResult result =
        run("/usr/bin/python3 " + shellQuote(clientsDir() + "/py_openai_stream.py"),
            {{"OPENAI_BASE_URL", server->baseUrl() + "/v1"},
             {"OPENAI_API_KEY", "k"},
             {"STREAM", "1"},
             {"CLIENT", client},
             {"PROMPT", "a b"}});
    json summary = json::parse(result.out, nullptr, false);
    ASSERT_FALSE(summary.is_discarded()) << result.out;
    ASSERT_TRUE(summary["ok"].get<bool>()) << result.out;
    EXPECT_EQ(summary["content"], "hello from py: a b");
    EXPECT_EQ(summary["usage"]["total_tokens"], 10);
    EXPECT_TRUE(summary["done"].get<bool>());
  }
}

TEST(MockServer, FailStatusReachesTheSdkAsProviderError) {
  SKIP_WITHOUT_NODE_CLIENTS();
  auto server = startServer({.fail_status = 503});
  ASSERT_TRUE(server);
  std::map<std::string, std::string> env = {{"OPENAI_BASE_URL", server->baseUrl() + "/v1"},
                                            {"OPENAI_API_KEY", "k"}};
  json failed = nodeClient("openai_chat.mjs", env);
  EXPECT_FALSE(failed["ok"].get<bool>());
  EXPECT_EQ(failed["status"], 503);
  EXPECT_EQ(failed["body"]["type"], "server_error") << failed.dump();
  server->setFailStatus(0);
  EXPECT_TRUE(nodeClient("openai_chat.mjs", env)["ok"].get<bool>());
  server->setFailStatus(529);
  json overloaded = nodeClient("anthropic_messages.mjs", {{"ANTHROPIC_BASE_URL", server->baseUrl()},
                                                          {"ANTHROPIC_API_KEY", "x"}});
  EXPECT_FALSE(overloaded["ok"].get<bool>());
  EXPECT_EQ(overloaded["status"], 529);
  EXPECT_EQ(overloaded["body"]["error"]["type"], "overloaded_error") << overloaded.dump();
}

TEST(MockServer, GeminiSseAndErrorShapesWithCurl) {
  auto server = startServer({.name = "gem"});
  ASSERT_TRUE(server);
  std::string base = server->baseUrl();
  CommandResult sse =
      run("curl -sS -N -D - -H 'x-goog-api-key: AIza-agent' -H 'content-type: application/json' "
          "-d '{\"contents\":[{\"role\":\"user\",\"parts\":[{\"text\":\"stream please\"}]}]}' " +
          shellQuote(base + "/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"));
  ASSERT_EQ(sse.exit_code, 0);
  EXPECT_NE(sse.out.find("Transfer-Encoding: chunked"), std::string::npos) << sse.out;
  EXPECT_NE(sse.out.find("content-type: text/event-stream"), std::string::npos);
  std::vector<json> events;
  size_t pos = 0;
  while ((pos = sse.out.find("data: ", pos)) != std::string::npos) {
    size_t end = sse.out.find("\r\n\r\n", pos);
    ASSERT_NE(end, std::string::npos);
    events.push_back(json::parse(sse.out.substr(pos + 6, end - pos - 6)));
    pos = end;
  }
  ASSERT_EQ(events.size(), 5u);  // hello / from / gem: / stream / please
  EXPECT_EQ(events.back()["usageMetadata"]["promptTokenCount"], 2);
  EXPECT_EQ(events.back()["usageMetadata"]["candidatesTokenCount"], 5);
  EXPECT_EQ(events.back()["usageMetadata"]["totalTokenCount"], 7);
  EXPECT_EQ(events.back()["modelVersion"], "gemini-2.0-flash");
  EXPECT_EQ(events.back()["candidates"][0]["finishReason"], "STOP");
  EXPECT_EQ(server->requests().back().api_key, "AIza-agent");

  auto status_and_body = [&](const std::string& args) {
    CommandResult result = run("curl -sS -w '\\n%{http_code}' " + args);
    size_t newline = result.out.rfind('\n');
    return std::make_pair(std::stoi(result.out.substr(newline + 1)),
                          json::parse(result.out.substr(0, newline), nullptr, false));
  };
  auto [openai_status, openai_body] =
      status_and_body("-d '{}' " + shellQuote(base + "/v1/chat/completions"));
  EXPECT_EQ(openai_status, 401);
  EXPECT_EQ(openai_body["error"]["code"], "invalid_api_key");
  auto [anthropic_status, anthropic_body] = status_and_body(
      "-H 'x-api-key: k' -H 'anthropic-version: 2023-06-01' -H 'x-mock-status: 429' -d '{}' " +
      shellQuote(base + "/v1/messages"));
  EXPECT_EQ(anthropic_status, 429);
  EXPECT_EQ(anthropic_body["type"], "error");
  EXPECT_EQ(anthropic_body["error"]["type"], "rate_limit_error");
  auto [gemini_status, gemini_body] =
      status_and_body("-d '{}' " + shellQuote(base + "/v1beta/models/g:generateContent"));
  EXPECT_EQ(gemini_status, 401);
  EXPECT_EQ(gemini_body["error"]["status"], "UNAUTHENTICATED");
  auto [bad_json_status, bad_json_body] = status_and_body(
      "-H 'x-goog-api-key: k' -d '{oops' " + shellQuote(base + "/v1beta/models/g:generateContent"));
  EXPECT_EQ(bad_json_status, 400);
  EXPECT_EQ(bad_json_body["error"]["status"], "INVALID_ARGUMENT");
  auto [listed_status, listed] = status_and_body(shellQuote(base + "/__mock/requests"));
  EXPECT_EQ(listed_status, 200);
  ASSERT_TRUE(listed.is_array());
  EXPECT_EQ(listed.size(), server->requests().size());
}

TEST(MockServer, DelayHeadersSpaceTheResponse) {
  auto server = startServer();
  ASSERT_TRUE(server);
  CommandResult timed = run(
      "curl -sS -o /dev/null -w '%{time_starttransfer} %{time_total}' "
      "-H 'authorization: Bearer k' -H 'x-mock-delay-ms: 300' -H 'x-mock-chunk-delay-ms: 50' "
      "-d "
      "'{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"a\"}]}' " +
      shellQuote(server->baseUrl() + "/v1/chat/completions"));
  ASSERT_EQ(timed.exit_code, 0);
  double first_byte = 0;
  double total = 0;
  ASSERT_EQ(std::sscanf(timed.out.c_str(), "%lf %lf", &first_byte, &total), 2) << timed.out;
  EXPECT_GE(first_byte, 0.29);
  // role + 4 pieces + finish + [DONE] = 7 events, 6 gaps of 50 ms after the first.
  EXPECT_GE(total - first_byte, 0.29);
}

TEST(MockServer, MalformedAndOversizedRequestsAreAnsweredAndServingContinues) {
  auto server = startServer();
  ASSERT_TRUE(server);
  std::string garbage = rawExchange(server->port(), "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_EQ(garbage.rfind("HTTP/1.1 400", 0), 0u) << garbage;
  std::string huge = rawExchange(server->port(), "GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                                     std::string(70000, 'a') + "\r\n\r\n");
  EXPECT_EQ(huge.rfind("HTTP/1.1 431", 0), 0u) << huge.substr(0, 200);
  std::string keep_alive =
      rawExchange(server->port(),
                  "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n"
                  "GET /v1/models/gpt-mock HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                  "Connection: close\r\n\r\n");
  EXPECT_EQ(keep_alive.find("HTTP/1.1 200"), 0u);
  EXPECT_NE(keep_alive.find("HTTP/1.1 200", 10), std::string::npos) << keep_alive;
  EXPECT_NE(keep_alive.find("\"id\":\"gpt-mock\""), std::string::npos);
  std::string stream_body =
      R"({"model":"m","stream":true,"messages":[{"role":"user","content":""}]})";
  std::string http10 =
      rawExchange(server->port(),
                  "POST /v1/chat/completions HTTP/1.0\r\nAuthorization: Bearer k\r\n"
                  "Content-Length: " +
                      std::to_string(stream_body.size()) + "\r\n\r\n" + stream_body);
  EXPECT_NE(http10.find("data: [DONE]"), std::string::npos) << http10;
  EXPECT_EQ(http10.find("Transfer-Encoding"), std::string::npos);
}

TEST(MockServer, LargeBodiesBothWays) {
  auto server = startServer();
  ASSERT_TRUE(server);
  TempDir dir;
  std::string upload = dir.file("upload.bin");
  {
    std::ofstream out(upload, std::ios::binary);
    std::string block(1 << 20, 'x');
    for (int idx = 0; idx < 20; ++idx) {
      block[0] = static_cast<char>('a' + idx);
      out << block;
    }
  }
  // curl sends `Expect: 100-continue` for a body this size; the server must answer it.
  CommandResult echoed = run("curl -sS --data-binary @" + shellQuote(upload) +
                             " -H 'content-type: application/octet-stream' " +
                             shellQuote(server->baseUrl() + "/__mock/echo") + " | sha256sum");
  CommandResult expected = run("sha256sum < " + shellQuote(upload));
  EXPECT_EQ(echoed.out.substr(0, 64), expected.out.substr(0, 64));
  ASSERT_EQ(server->requests().size(), 1u);
  EXPECT_EQ(server->requests()[0].body_bytes, 20u << 20);
  EXPECT_EQ(server->requests()[0].body_sha256, expected.out.substr(0, 64));
  EXPECT_EQ(server->requests()[0].header("expect"), "100-continue");

  CommandResult download =
      run("curl -sS -D " + shellQuote(dir.file("headers")) + " " +
          shellQuote(server->baseUrl() + "/__mock/bytes?n=5000000&chunk=65536") + " | sha256sum");
  std::string headers = readText(dir.file("headers"));
  size_t digest = headers.find("x-mock-body-sha256: ");
  ASSERT_NE(digest, std::string::npos) << headers;
  EXPECT_EQ(download.out.substr(0, 64), headers.substr(digest + 20, 64));
}

TEST(MockServer, BadOptionsAreRejected) {
  EXPECT_FALSE(MockServer::start({.listen = "nonsense"}).ok());
  EXPECT_FALSE(MockServer::start({.listen = "127.0.0.1:99999"}).ok());
  EXPECT_FALSE(MockServer::start({.tls_cert_pem = "x"}).ok());
  EXPECT_FALSE(MockServer::start({.tls_cert_pem = "not pem", .tls_key_pem = "not pem"}).ok());
  EXPECT_FALSE(MockServer::start({.fail_status = 7}).ok());
}

TEST(MockServer, StopsWithRequestsInFlight) {
  auto server = startServer();
  ASSERT_TRUE(server);
  uint16_t port = server->port();
  std::thread slow([port] {
    rawExchange(port,
                "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
                "x-mock-delay-ms: 20000\r\n\r\n");
  });
  std::thread idle([port] { rawExchange(port, ""); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto started = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  slow.join();
  idle.join();
}

TEST(MockServer, StopsCleanlyAfterKeepAliveMcpSessions) {
  // Regression: a plain-HTTP MCP server that served Streamable HTTP sessions over keep-alive
  // connections (closed by the client just before) and is destroyed right away, while another
  // thread reads and clears the recordings. ASan used to report a use-after-free in teardown.
  if (run("/usr/bin/python3 -c 'import requests' 2>/dev/null").exit_code != 0) {
    GTEST_SKIP() << "/usr/bin/python3 lacks requests (scripts/setup installs them)";
  }
  TempDir dir;
  std::ofstream(dir.file("mcp.py")) << R"(
import sys, requests
url = sys.argv[1]
for round in range(3):
    with requests.Session() as s:
        headers = {"Accept": "application/json, text/event-stream"}
        init = s.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 1,
                      "method": "initialize", "params": {"protocolVersion": "2025-06-18",
                      "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
        headers["Mcp-Session-Id"] = init.headers["Mcp-Session-Id"]
        call = s.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 2,
                      "method": "tools/call", "params": {"name": "add",
                      "arguments": {"a": 2, "b": 3}}})
        print(init.status_code, call.status_code, call.json()["result"]["content"][0]["text"])
)";
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    auto server = startServer({.name = "mcp"});
    ASSERT_TRUE(server);
    std::atomic<bool> done{false};
    std::thread reader([&] {
      while (!done.load()) {
        std::vector<RecordedRequest> seen = server->requests();
        if (seen.size() > 2) server->clearRequests();
      }
    });
    // An idle keep-alive connection left open, and one closed just before the teardown.
    std::thread idle([port = server->port()] { rawExchange(port, ""); });
    CommandResult result = run("/usr/bin/python3 " + shellQuote(dir.file("mcp.py")) + " " +
                               shellQuote(server->baseUrl() + "/mcp"));
    done.store(true);
    reader.join();
    EXPECT_EQ(result.exit_code, 0) << result.out;
    EXPECT_NE(result.out.find("200 200 5"), std::string::npos) << result.out;
    // The reader clears now and then, so only the newest entry is certain to be there unless a
    // clear raced with it; whatever is left must be this session's tools/call.
    std::vector<RecordedRequest> recorded = server->requests();
    if (!recorded.empty()) {
      EXPECT_EQ(recorded.back().provider, "mcp");
      EXPECT_NE(recorded.back().body.find("tools/call"), std::string::npos);
      EXPECT_FALSE(recorded.back().header("mcp-session-id").empty());
    }
    auto started = std::chrono::steady_clock::now();
    server.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
    idle.join();
  }
}

// A throwaway CA and a 127.0.0.1 leaf made with the openssl CLI.
struct TestPki {
  TempDir dir;
  std::string ca_pem, cert_pem, key_pem;
  bool ok = false;

  TestPki() {
    std::string ext = dir.file("leaf.ext");
    std::ofstream(ext) << "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                          "basicConstraints=critical,CA:FALSE\n"
                          "keyUsage=critical,digitalSignature\n"
                          "extendedKeyUsage=serverAuth\n";
    std::string d = shellQuote(dir.file(""));
    std::string script =
        "cd " + d +
        " && "
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key "
        "-out ca.pem -days 2 -subj /CN=clrk-mock-test-ca "
        "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign "
        ">/dev/null 2>&1 && "
        "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key "
        "-out leaf.csr -subj /CN=127.0.0.1 >/dev/null 2>&1 && "
        "openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
        "-extfile leaf.ext -out leaf.pem >/dev/null 2>&1";
    ok = run(script).exit_code == 0;
    ca_pem = readText(dir.file("ca.pem"));
    cert_pem = readText(dir.file("leaf.pem"));
    key_pem = readText(dir.file("leaf.key"));
  }
};

TEST(MockServer, TlsWithPrivateCa) {
  TestPki pki;
  ASSERT_TRUE(pki.ok && !pki.cert_pem.empty()) << "openssl CLI failed to make test certificates";
  auto server =
      startServer({.tls_cert_pem = pki.cert_pem, .tls_key_pem = pki.key_pem, .name = "secure"});
  ASSERT_TRUE(server);
  ASSERT_EQ(server->baseUrl().rfind("https://127.0.0.1:", 0), 0u);
  CommandResult verified =
      run("curl -sS --cacert " + shellQuote(pki.dir.file("ca.pem")) +
          " -H 'authorization: Bearer k' " + shellQuote(server->baseUrl() + "/v1/models"));
  EXPECT_EQ(verified.exit_code, 0);
  EXPECT_NE(verified.out.find("\"object\":\"list\""), std::string::npos) << verified.out;
  CommandResult untrusted =
      run("curl -sS -o /dev/null 2>/dev/null " + shellQuote(server->baseUrl() + "/v1/models"));
  EXPECT_NE(untrusted.exit_code, 0);

  std::string missing = nodeClientsMissing();
  if (!missing.empty()) GTEST_SKIP() << missing;
  std::map<std::string, std::string> env = {{"OPENAI_BASE_URL", server->baseUrl() + "/v1"},
                                            {"OPENAI_API_KEY", "k"},
                                            {"STREAM", "1"},
                                            {"PROMPT", "over tls"}};
  json refused = nodeClient("openai_chat.mjs", env);
  EXPECT_FALSE(refused["ok"].get<bool>()) << "node trusted a private CA it was not given";
  env["NODE_EXTRA_CA_CERTS"] = pki.dir.file("ca.pem");
  json trusted = nodeClient("openai_chat.mjs", env);
  ASSERT_TRUE(trusted["ok"].get<bool>()) << trusted.dump();
  EXPECT_EQ(trusted["content"], "hello from secure: over tls");
  EXPECT_EQ(trusted["usage"]["completion_tokens"], 5);
}

TEST(MockServer, ExecutableServesAndStopsOnSigterm) {
  TempDir dir;
  std::string port_file = dir.file("port");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    int null_fd = ::open("/dev/null", O_WRONLY);
    dup2(null_fd, STDOUT_FILENO);
    execl(CLRK_MOCK_PROVIDERS_BIN, CLRK_MOCK_PROVIDERS_BIN, "--listen", "127.0.0.1:0",
          "--port-file", port_file.c_str(), "--name", "exe", static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string port;
  for (int attempt = 0; attempt < 100 && port.empty(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    port = readText(port_file);
  }
  ASSERT_FALSE(port.empty());
  while (!port.empty() && port.back() == '\n') port.pop_back();
  CommandResult models =
      run("curl -sS -i -H 'authorization: Bearer k' http://127.0.0.1:" + port + "/v1/models");
  EXPECT_NE(models.out.find("x-mock-name: exe"), std::string::npos) << models.out;
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace clrk::mockprovider
