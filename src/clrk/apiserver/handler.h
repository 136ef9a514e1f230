// The transport-independent core of the API server: one REST request in, one response out.
// The HTTP layer (http_server) parses bytes into a Request and writes the Response back; a
// Response that carries an EventStream (watch) is written as a chunked stream of JSON lines.
// Thread model: handle() is called concurrently from several I/O threads.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::apiserver {

struct Request {
  std::string method;  // "GET", "POST", "PUT", "PATCH", "DELETE"
  std::string path;    // URL path, percent-decoded, without the query
  std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
  std::string content_type;
  std::string accept;
  std::string body;
  std::string user;  // authenticated user name ("admin")

  // First value of query parameter `name`, if present.
  std::optional<std::string_view> param(std::string_view name) const {
    for (const auto& [key, value] : query) {
      if (key == name) return value;
    }
    return std::nullopt;
  }
};

// A stream of watch events, each a complete JSON object
// ({"type":"ADDED","object":{...}}), written by the transport one per line.
class EventStream {
 public:
  virtual ~EventStream() = default;
  // Waits up to `timeout` for the next events. Returns an empty vector on timeout and nullopt
  // when the stream has ended (the transport then finishes the response).
  virtual std::optional<std::vector<std::string>> next(std::chrono::milliseconds timeout) = 0;
  // Ends the stream (client went away or server shutting down); next() returns nullopt promptly.
  virtual void stop() = 0;
};
using EventStreamPtr = std::unique_ptr<EventStream>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (e.g. Warning)
  EventStreamPtr stream;  // set for watch responses; body is then ignored
};

// Serves everything under /api/v1/... and /apis/<group>/<version>/... that addresses resources
// (collections, items, subresources, watch). Discovery, OpenAPI, /version and health endpoints
// are answered by the HTTP layer itself.
class ResourceHandler {
 public:
  virtual ~ResourceHandler() = default;
  virtual Response handle(const Request& request) = 0;
  // Starts background work (garbage collector, namespace finalization). Idempotent.
  virtual void start() = 0;
  // Stops background work and ends every open EventStream. Idempotent.
  virtual void stop() = 0;
};
using ResourceHandlerPtr = std::unique_ptr<ResourceHandler>;

}  // namespace clrk::apiserver
