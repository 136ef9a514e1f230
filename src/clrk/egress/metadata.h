// MetadataStore: what the in-sandbox metadata endpoint serves to TaskAgents whose
// spec.delivery.mode is Metadata (docs/architecture/egress.md, "The metadata endpoint").
//
// The sandbox resolves kMetadataHost like any other name (to a synthetic address); the
// transparent listener recognises the name from the connection's original destination and, for
// plain HTTP on kMetadataPort, answers from here instead of asking the egress policy: the endpoint
// is clrk's own, nothing is forwarded upstream. The caller is identified by its sandbox address
// (IdentityMap -> execution id), so a sandbox only ever reads its own execution's event and only
// sets its own response:
//
//   GET  /event      200, the CloudEvents envelope (application/cloudevents+json)
//   POST /response   200 {"bytes": N, "replaced": bool}: the body (at most
//                    kMaxMetadataResponseBytes, 413 beyond) becomes the execution's response,
//                    with its Content-Type. A later POST replaces the earlier one: the last
//                    complete POST wins, so a client that retries is safe.
//   GET  /           200 {"event": "/event", "response": "/response"}
//   other methods    405 with an Allow header; other paths 404
//   a caller without an identity: 403; an execution not registered here (delivery mode Stdin,
//   a DaemonAgent, or already finished): 404
// Errors are JSON {"error": {"code": 404, "type": "not_found", "message": "..."}}.
//
// The worker add()s an execution before its sandbox starts and remove()s it once the sandbox is
// gone, taking the response. Thread model: every method is thread-safe (one mutex, held only to
// copy values in or out).
#pragma once

#include "clrk/egress/identity.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::egress {

// The name agents use ($CLRK_METADATA_URL is http://metadata.clrk.internal). It sits under the
// reserved .internal TLD, so it never collides with a real upstream.
inline constexpr std::string_view kMetadataHost = "metadata.clrk.internal";
inline constexpr uint16_t kMetadataPort = 80;
inline constexpr std::string_view kMetadataUrl = "http://metadata.clrk.internal";
inline constexpr size_t kMaxMetadataResponseBytes = 8 << 20;
inline constexpr size_t kMaxMetadataContentTypeBytes = 256;

// What an agent POSTed to /response.
struct MetadataResponse {
  std::string content_type;  // as sent when printable ASCII of at most 256 bytes, else empty
  std::string body;
  int posts = 0;  // accepted POSTs; the last one is kept
};

// One request as the session read it (the body is complete and already bounded by the session).
struct MetadataRequest {
  std::string_view method;  // "GET"
  std::string_view target;  // origin form, "/event?x=1" (the query is ignored)
  std::string_view content_type;
  std::string_view body;
};

struct MetadataReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Allow on a 405
};

class MetadataStore {
 public:
  // Serves `event` to the sandbox of `execution_id` until remove() (replaces an earlier entry).
  void add(const std::string& execution_id, std::string event);
  // Forgets `execution_id`; its response when the agent POSTed one.
  std::optional<MetadataResponse> remove(const std::string& execution_id);
  // Answers one request from the sandbox `identity` (null: the address is no sandbox's).
  MetadataReply handle(const Identity* identity, const MetadataRequest& request);
  // Executions registered.
  size_t size() const;

  // The 413 sent when a body exceeds kMaxMetadataResponseBytes (the session refuses it before
  // reading more than the limit).
  static MetadataReply tooLarge();
  // A JSON error reply.
  static MetadataReply error(int status, std::string_view type, std::string_view message);

 private:
  struct Entry {
    std::shared_ptr<const std::string> event;
    std::optional<MetadataResponse> response;
  };

  mutable std::mutex mutex_;
  std::map<std::string, Entry, std::less<>> entries_;  // by execution id
};

}  // namespace clrk::egress
