// OtlpReceiver: an OTLP/HTTP server (Boost.Beast, HTTP or HTTPS) that accepts what
// OtlpHttpExporter sends and hands the decoded records (otlp_decode.h) to a Sink, e.g. a
// LocalStore on the controller-manager collecting every worker's egress records.
//
// POST /v1/traces and POST /v1/logs with Content-Type application/json or
// application/x-protobuf, optionally Content-Encoding: gzip. Answers:
//   200  records accepted by the sink; the body is an empty Export*ServiceResponse in the
//        request's encoding.
//   400  the body does not decode (message names the field and byte offset) or bad gzip.
//   401  a token is configured and "Authorization: Bearer <token>" does not match (constant-time
//        comparison). Checked before the body is read.
//   404/405  another path / method.   413  body (or its gzip inflation) over max_body_bytes.
//   415  another content type or content encoding.
//   503  the sink refused the batch: the exporter retries (its pipeline is at-least-once, so the
//        sink must tolerate redelivery; LocalStore replaces by trace/span id).
// Error bodies are a google.rpc.Status ({"code","message"} for JSON requests, protobuf fields
// 1 code and 2 message for protobuf ones). The token is never logged.
//
// Thread model: start() and stop() from one thread; stats() and port() from any. Requests are
// served on io_threads event loops; Sink::deliver() is called from them one call at a time (the
// Sink contract), and blocks that loop while it runs.
#pragma once

#include "clrk/base/status.h"
#include "clrk/telemetry/otlp_decode.h"
#include "clrk/telemetry/sink.h"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace clrk::telemetry {

struct OtlpReceiverOptions {
  std::string bind = "127.0.0.1";  // IP address to listen on
  uint16_t port = 0;               // 0 picks a free port (see port())
  std::string token;               // bearer token clients must send; empty: no authentication
  // Both set: HTTPS (TLS 1.2+) with this PEM certificate chain and key; both empty: plain HTTP.
  std::string cert_pem;
  std::string key_pem;
  size_t max_body_bytes = 8u << 20;  // request body, and the inflated size of a gzip body
  int io_threads = 1;
  OtlpDecodeLimits limits;
};

// Counters since start(); each request counts in `requests` and in at most one other field.
struct OtlpReceiverStats {
  uint64_t requests = 0;      // complete request heads read
  uint64_t accepted = 0;      // 200
  uint64_t records = 0;       // records delivered to the sink
  uint64_t unauthorized = 0;  // 401
  uint64_t bad_requests = 0;  // 400 (bad body or bad gzip), 404, 405
  uint64_t too_large = 0;     // 413
  uint64_t unsupported = 0;   // 415
  uint64_t sink_errors = 0;   // 503
};

class OtlpReceiver {
 public:
  // Checks the options (InvalidArgument: bad bind address, only one of cert/key, unreadable PEM,
  // io_threads < 1). `sink` must outlive the receiver. Does not listen yet.
  static Result<std::unique_ptr<OtlpReceiver>> create(OtlpReceiverOptions options, Sink& sink);
  ~OtlpReceiver();  // stop()

  // Binds and starts serving. Unavailable when the address cannot be bound.
  // REQUIRES: called at most once.
  Status start();
  // Closes the listener and every connection and joins the event loops. Idempotent.
  void stop();
  // The bound port; 0 before start().
  uint16_t port() const;
  OtlpReceiverStats stats() const;

  class Impl;

 private:
  explicit OtlpReceiver(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace clrk::telemetry
