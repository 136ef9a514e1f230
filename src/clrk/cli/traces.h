// Rendering of `clrk traces`: one Invocation (inbound trigger → execution) with the egress calls
// its execution caused, as a tree:
//
//   invocation/echo-3f2a1b9c0d  Succeeded  HTTP  request 6b1f…  worker dev-0  1.92s
//   └─ execution echo-3f2a1b9c0d  exit 0
//      ├─ POST https://api.openai.com/v1/chat/completions  200  openai gpt-4o-mini→gpt-4o-mini
//      │    tokens in 12 out 8 total 20  ttfb 35ms  41ms
//      └─ CONNECT evil.example.com:443  denied by egress-deny/default: no route allows it
#pragma once

#include "clrk/api/codec.h"
#include "clrk/telemetry/record.h"

#include <string>
#include <vector>

namespace clrk::cli {

// `records` are the egress records whose clrk.execution_id is the invocation's execution, in any
// order (printed oldest first).
std::string renderInvocationTrace(const api::Json& invocation,
                                  std::vector<telemetry::Record> records);

// The JSON form (-o json): the invocation's identity and status plus its calls.
api::Json invocationTraceJson(const api::Json& invocation,
                              const std::vector<telemetry::Record>& records);

}  // namespace clrk::cli
