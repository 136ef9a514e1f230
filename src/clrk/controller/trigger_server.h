// TriggerServer: the HTTP trigger of TaskAgents. One inbound request becomes one invocation whose
// result is the response:
//
//   POST /v1/namespaces/{namespace}/taskagents/{name}/invoke    body = the agent's input
//   POST <any path> with header X-Clrk-TaskAgent: namespace/name (the reference's ingress form)
//   GET  /healthz
//
// The request's X-Request-Id (or a new UUID) becomes the invocation's request id, carried to
// every egress record the execution causes. Responses:
//   200  the agent exited 0; body = its stdout (application/json when stdout is JSON, else
//        text/plain), or with spec.delivery.mode Metadata what it POSTed to
//        $CLRK_METADATA_URL/response (with that POST's Content-Type; stdout when it posted
//        nothing); headers X-Clrk-Invocation, X-Clrk-Request-Id, X-Clrk-Worker, X-Clrk-Exit-Code,
//        X-Clrk-Output-Source (Stdout | Response)
//   404 agent not found · 409 agent not ready · 429 spec.maxConcurrent reached · 502 the agent
//   failed (exit code and stderr tail in a JSON error) or its worker was lost · 503 no worker
//   with a free slot · 504 the execution timed out. Errors are JSON
//   {"error": {"code", "reason", "message", "invocation", "requestId"}}.
// Caller identity: the request's headers and body go to the TaskAgent's spec.identity
// extractors (caller_identity.h); what they yield is recorded, never authenticated.
// Streaming (spec.streaming.enabled, HTTP/1.1 requests): the head (200 and the X-Clrk headers)
// goes out once the execution is placed and the output follows as the agent writes it, with
// X-Clrk-Stream naming the form:
//   chunked  (default) the body is stdout, line by line; the outcome is in the trailers
//            X-Clrk-Phase, X-Clrk-Reason, X-Clrk-Exit-Code and X-Clrk-Output-Source (declared
//            by the Trailer header);
//   sse      (Accept: text/event-stream) events `stdout` and `stderr` with data {"text": line},
//            then `result` with data {invocation, requestId, worker, phase, reason, message,
//            exitCode, outputSource}; a ": keep-alive" comment every 15 s of silence.
// The stream is the agent's log: with delivery mode Metadata a POSTed response is not in it
// (outputSource "Response"; the Invocation's status.output has it).
// The status is 200 once streaming began, whatever the agent then does: read the outcome from
// the trailers or the result event. Invocations refused before placement (404, 409, 429, 503)
// and HTTP/1.0 clients get the buffered replies above. A client that stops reading for 30 s is
// dropped (the execution goes on).
// Bounds: request head 64 KiB (431), body 4 MiB (413), head and body within 30 s; 1 MiB of
// output queued per streaming response.
// Thread model: start() runs one I/O thread; the invocation runs on the InvocationManager's
// threads and the reply is posted back. stop() closes the listener and connections.
#pragma once

#include "clrk/base/status.h"
#include "clrk/controller/invocations.h"

#include <cstdint>
#include <memory>
#include <string>

namespace clrk::controller {

struct TriggerServerOptions {
  std::string listen = "127.0.0.1:0";  // ip:port
};

class TriggerServer {
 public:
  virtual ~TriggerServer() = default;
  virtual Status start() = 0;
  virtual void stop() = 0;
  virtual uint16_t port() const = 0;
  // "http://127.0.0.1:PORT"
  virtual std::string url() const = 0;
};

std::unique_ptr<TriggerServer> makeTriggerServer(TriggerServerOptions options,
                                                 InvocationManager& invocations);

// The HTTP status a trigger answers for an invocation outcome.
int httpStatusForResult(const InvokeResult& result);

}  // namespace clrk::controller
