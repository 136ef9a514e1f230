#include "clrk/egress/llm/mcp.h"

#include "clrk/egress/llm/testdata.h"

#include <gtest/gtest.h>

namespace clrk::egress::llm {
namespace {

using testing::readTestdata;

TEST(McpTest, ToolsCall) {
  auto calls = parseMcpRequest(readTestdata("mcp_tools_call.json"));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "tools/call");
  EXPECT_EQ(calls[0].tool, "get_weather");
  EXPECT_EQ(calls[0].id, "2");
  EXPECT_TRUE(looksLikeMcp("application/json", readTestdata("mcp_tools_call.json")));
}

TEST(McpTest, Batch) {
  auto calls = parseMcpRequest(readTestdata("mcp_batch.json"));
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[0].method, "initialize");
  EXPECT_EQ(calls[0].id, "init-1");
  EXPECT_EQ(calls[1].method, "notifications/initialized");
  EXPECT_EQ(calls[1].id, "");
  EXPECT_EQ(calls[2].method, "resources/read");
  EXPECT_EQ(calls[2].resource, "file:///project/src/main.rs");
  EXPECT_EQ(calls[2].tool, "");
  EXPECT_EQ(calls[3].method, "prompts/get");
  EXPECT_EQ(calls[3].prompt, "code_review");
  EXPECT_TRUE(looksLikeMcp("application/json; charset=utf-8", readTestdata("mcp_batch.json")));
}

TEST(McpTest, EscapedKeysAndDuplicates) {
  auto calls = parseMcpRequest(R"({"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call",)"
                               R"("params":{"name":"read_file","n\u0061me":"delete_everything"}})");
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].method, "tools/call");
  EXPECT_EQ(calls[0].tool, "delete_everything");
}

TEST(McpTest, NotMcp) {
  EXPECT_FALSE(looksLikeMcp("application/json", R"({"model":"gpt-4o","messages":[]})"));
  EXPECT_FALSE(looksLikeMcp("text/plain", readTestdata("mcp_tools_call.json")));
  EXPECT_FALSE(looksLikeMcp("", R"({"jsonrpc":"1.0","method":"x"})"));
  EXPECT_FALSE(looksLikeMcp("", ""));
  EXPECT_TRUE(looksLikeMcp("", R"({"jsonrpc":"2.0","method":"ping","id":1})"));
  EXPECT_TRUE(parseMcpRequest("not json").empty());
  EXPECT_TRUE(parseMcpRequest(R"({"jsonrpc":"2.0","method":"tools/call")").empty());
  EXPECT_TRUE(parseMcpRequest(R"([{"jsonrpc":"2.0","result":{}},7])").empty());
}

TEST(McpTest, ResponsesSseAndJson) {
  McpResponseObserver sse(true);
  std::string body = readTestdata("mcp_tools_call_response.sse");
  for (char c : body) sse.feed(std::string_view(&c, 1));
  sse.finish();
  ASSERT_EQ(sse.results().size(), 1u);
  EXPECT_EQ(sse.results()[0].id, "2");
  EXPECT_TRUE(sse.results()[0].is_error);
  EXPECT_EQ(sse.results()[0].error_code, 0);
  EXPECT_TRUE(sse.sawError());

  McpResponseObserver json(false);
  json.feed(readTestdata("mcp_error_response.json"));
  json.finish();
  ASSERT_EQ(json.results().size(), 1u);
  EXPECT_EQ(json.results()[0].id, "3");
  EXPECT_EQ(json.results()[0].error_code, -32602);
  EXPECT_EQ(json.results()[0].error_message, "Unknown tool: invalid_tool_name");

  McpResponseObserver ok(false);
  ok.feed(R"({"jsonrpc":"2.0","id":"a","result":{"content":[],"isError":false}})");
  ok.finish();
  ASSERT_EQ(ok.results().size(), 1u);
  EXPECT_FALSE(ok.sawError());

  // An oversize JSON body is not parsed (bounded memory), and says nothing.
  McpResponseObserver big(false, 64);
  big.feed(readTestdata("mcp_error_response.json"));
  big.feed(std::string(1000, ' '));
  big.finish();
  EXPECT_TRUE(big.results().empty());

  // A batch of responses.
  McpResponseObserver batch(false);
  batch.feed(R"([{"jsonrpc":"2.0","id":1,"result":{}},)");
  batch.feed(R"({"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"Method not found"}}])");
  batch.finish();
  ASSERT_EQ(batch.results().size(), 2u);
  EXPECT_FALSE(batch.results()[0].is_error);
  EXPECT_EQ(batch.results()[1].error_code, -32601);

  // Server-to-client requests in the stream are not results.
  McpResponseObserver req(true);
  req.feed("data: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"sampling/createMessage\"}\n\n");
  req.finish();
  EXPECT_TRUE(req.results().empty());
}

}  // namespace
}  // namespace clrk::egress::llm
