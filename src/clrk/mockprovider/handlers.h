// Internal to clrk::mockprovider: the provider wire formats as pure functions from a parsed
// request to a response description, so they are testable without sockets. The socket layer
// (mock_server.cc) applies delays and writes `chunks` as separate HTTP chunks.
// Thread model: Dispatcher is thread-safe; everything else is plain values.
#pragma once

#include "clrk/base/base64.h"
#include "clrk/mockprovider/mock_server.h"

#include <atomic>
#include <deque>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::mockprovider::internal {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method;
  std::string target;  // as received: path plus query
  std::string host;
  HeaderList headers;
  std::string body;

  std::string path() const;
  // The decoded value of query parameter `name`, "" when absent.
  std::string query(std::string_view name) const;
  // First header named `name` (case-insensitive), "" when absent.
  std::string header(std::string_view name) const;
  bool hasHeader(std::string_view name) const;
};

struct Response {
  int status = 200;
  HeaderList headers;  // content-type included
  // A non-streaming body, sent with content-length.
  std::string body;
  // When `streaming`: each element is written as one HTTP chunk, spaced by the chunk delay.
  bool streaming = false;
  std::vector<std::string> chunks;

  void setHeader(std::string name, std::string value);
};

// Which wire format a request is for.
enum class Api { kNone, kOpenAI, kAnthropic, kGemini, kMcp, kMock };
Api apiForRequest(const Request& request);
std::string_view apiName(Api api);

// The provider's own error body for `status` with `message`.
Response errorResponse(Api api, int status, std::string_view message);

// Splits `text` into stream pieces, one per word, each with its leading whitespace, so that
// their concatenation is `text`. Never empty: "" gives {""}.
std::vector<std::string> splitPieces(std::string_view text);

struct Context {
  std::string name;
  int fail_status = 0;
  bool mcp_sse = false;
};

// Per-provider handlers. REQUIRES: apiForRequest(request) is the matching Api.
Response handleOpenAI(const Request& request, const Context& context);
Response handleAnthropic(const Request& request, const Context& context);
Response handleGemini(const Request& request, const Context& context);

// MCP sessions (ids handed out by initialize, removed by DELETE).
class McpSessions {
 public:
  std::string create();
  bool contains(const std::string& id) const;
  bool remove(const std::string& id);

 private:
  mutable std::mutex mutex_;
  std::set<std::string> ids_;
};
Response handleMcp(const Request& request, const Context& context, McpSessions& sessions);

// Records requests, holds the mutable options and routes a request to its handler.
class Dispatcher {
 public:
  explicit Dispatcher(MockOptions options);

  // Records `request` (unless it is a /__mock/ control request) and builds the response.
  Response handle(const Request& request);

  std::vector<RecordedRequest> requests() const;
  void clearRequests();
  void setFailStatus(int status) { fail_status_.store(status); }
  const std::string& name() const { return name_; }

  static constexpr size_t kMaxRecorded = 1000;
  static constexpr size_t kMaxRecordedBody = 1 << 20;

 private:
  void record(const Request& request, Api api);
  Response handleControl(const Request& request);
  Response dispatch(const Request& request, Api api, const Context& context);

  const std::string name_;
  const bool mcp_sse_;
  std::atomic<int> fail_status_;
  McpSessions sessions_;
  mutable std::mutex mutex_;
  std::deque<RecordedRequest> recorded_;
};

}  // namespace clrk::mockprovider::internal
