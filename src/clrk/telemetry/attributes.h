// Attribute names used on telemetry records (see record.h).
//
// Names follow the OpenTelemetry semantic conventions where one exists (GenAI, HTTP, network,
// TLS, MCP) and use the `clrk.` prefix for clrk's own attribution and measurements. Every name
// the egress data plane sets is declared here so producers and consumers (the OTLP exporter, the
// local store, `clrk traces`) agree on spelling and value type. The type the egress uses for
// each attribute is written next to it; consumers must tolerate a missing attribute.
#pragma once

#include <string_view>

namespace clrk::telemetry::attr {

// --- GenAI (OpenTelemetry gen_ai.* semantic conventions) ---
// string: "openai", "anthropic", "gcp.gemini", "az.ai.openai", ... (egress/llm/provider.h).
inline constexpr std::string_view kGenAiSystem = "gen_ai.system";
// string: "chat", "text_completion", "embeddings", "generate_content", ...
inline constexpr std::string_view kGenAiOperationName = "gen_ai.operation.name";
// string: model named in the request body.
inline constexpr std::string_view kGenAiRequestModel = "gen_ai.request.model";
// string: model named in the response.
inline constexpr std::string_view kGenAiResponseModel = "gen_ai.response.model";
// string: provider's response id ("chatcmpl-...", "msg_...").
inline constexpr std::string_view kGenAiResponseId = "gen_ai.response.id";
// string: finish reasons joined with "," ("stop", "length,stop").
inline constexpr std::string_view kGenAiResponseFinishReasons = "gen_ai.response.finish_reasons";
// int64: prompt / input tokens as reported by the provider.
inline constexpr std::string_view kGenAiUsageInputTokens = "gen_ai.usage.input_tokens";
// int64: completion / output tokens as reported by the provider.
inline constexpr std::string_view kGenAiUsageOutputTokens = "gen_ai.usage.output_tokens";
// string: MCP tools/call tool name, or a function/tool name.
inline constexpr std::string_view kGenAiToolName = "gen_ai.tool.name";
// bool: the response was a stream (SSE).
inline constexpr std::string_view kClrkStreaming = "clrk.streaming";
// int64: input + output tokens.
inline constexpr std::string_view kClrkUsageTotalTokens = "clrk.usage.total_tokens";

// --- MCP ---
// string: JSON-RPC method ("tools/call", "initialize", ...).
inline constexpr std::string_view kMcpMethodName = "mcp.method.name";
// string: JSON-RPC request id, as text.
inline constexpr std::string_view kMcpRequestId = "mcp.request.id";

// --- RPC (OpenTelemetry rpc.*), for gRPC calls (content-type application/grpc) ---
// string: "grpc".
inline constexpr std::string_view kRpcSystem = "rpc.system";
// string: the full service name ("package.Service"), from the path /package.Service/Method.
inline constexpr std::string_view kRpcService = "rpc.service";
// string: the method name.
inline constexpr std::string_view kRpcMethod = "rpc.method";
// int64: grpc-status of the response (trailers, or the head of a trailers-only response).
inline constexpr std::string_view kRpcGrpcStatusCode = "rpc.grpc.status_code";

// --- HTTP (OpenTelemetry http.* / url.* / server.*) ---
// string: "GET", "POST", ...
inline constexpr std::string_view kHttpRequestMethod = "http.request.method";
// string: full URL without credentials (query parameters holding injected secrets removed).
inline constexpr std::string_view kUrlFull = "url.full";
// string: request path.
inline constexpr std::string_view kUrlPath = "url.path";
// string: host name (or address) of the upstream as the agent addressed it.
inline constexpr std::string_view kServerAddress = "server.address";
// int64: upstream port.
inline constexpr std::string_view kServerPort = "server.port";
// int64: HTTP status code returned to the agent.
inline constexpr std::string_view kHttpResponseStatusCode = "http.response.status_code";
// string: "1.1", "2".
inline constexpr std::string_view kNetworkProtocolVersion = "network.protocol.version";
// string: "tcp" / "udp".
inline constexpr std::string_view kNetworkTransport = "network.transport";
// string: address of the agent (sandbox) side.
inline constexpr std::string_view kClientAddress = "client.address";
// string: SNI presented by the agent.
inline constexpr std::string_view kTlsServerName = "tls.server.name";
// string: error class when the call failed ("connect_refused", "tls_verify", "timeout", ...).
inline constexpr std::string_view kErrorType = "error.type";

// --- clrk measurements ---
// double: milliseconds from request start to first response byte.
inline constexpr std::string_view kClrkTtfbMs = "clrk.ttfb_ms";
// double: milliseconds from request start to the last response byte.
inline constexpr std::string_view kClrkDurationMs = "clrk.duration_ms";
// int64: bytes sent upstream (request body, or raw bytes at L4).
inline constexpr std::string_view kClrkBytesSent = "clrk.bytes_sent";
// int64: bytes received from upstream.
inline constexpr std::string_view kClrkBytesReceived = "clrk.bytes_received";
// string: "l7" (HTTP seen) or "l4" (raw TCP / TLS passthrough).
inline constexpr std::string_view kClrkLayer = "clrk.layer";
// bool: TLS was terminated by the proxy (MITM).
inline constexpr std::string_view kClrkTlsIntercepted = "clrk.tls.intercepted";
// string: backend that served an AIProviderRoute request; int64: fallbacks taken before it.
inline constexpr std::string_view kClrkBackend = "clrk.backend";
inline constexpr std::string_view kClrkFallbackCount = "clrk.fallback_count";
// string: names of credential injection policies applied (never the credential).
inline constexpr std::string_view kClrkCredentialPolicy = "clrk.credential_policy";

// --- clrk identity (egress/identity.h) ---
inline constexpr std::string_view kClrkNamespace = "clrk.namespace";
inline constexpr std::string_view kClrkAgent = "clrk.agent";
inline constexpr std::string_view kClrkExecutionId = "clrk.execution_id";
inline constexpr std::string_view kClrkRequestId = "clrk.request_id";
inline constexpr std::string_view kClrkSandboxId = "clrk.sandbox_id";
// string: one per caller identity field (TaskAgent spec.identity), clrk.identity.<field>, e.g.
// clrk.identity.user. Asserted by the caller, not authenticated (see kClrkIdentityVerified).
inline constexpr std::string_view kClrkIdentityPrefix = "clrk.identity.";
// bool: whether the clrk.identity.* values were authenticated; false today (a JWT's signature is
// not checked). Set iff there is at least one clrk.identity.* attribute.
inline constexpr std::string_view kClrkIdentityVerified = "clrk.identity_verified";
// string: name of the worker that produced the record (an OTLP resource attribute; the OTLP
// receiver copies it onto each record).
inline constexpr std::string_view kClrkWorker = "clrk.worker";

// --- clrk governance ---
// string: "allow" or "deny".
inline constexpr std::string_view kClrkDecision = "clrk.decision";
// string: "<Kind>/<namespace>/<name>" of the route or policy that decided.
inline constexpr std::string_view kClrkRule = "clrk.rule";
// string: human-readable reason ("no route matches host x", "rate limit", "token budget").
inline constexpr std::string_view kClrkReason = "clrk.reason";

// Values of kClrkDecision and kClrkLayer.
inline constexpr std::string_view kDecisionAllow = "allow";
inline constexpr std::string_view kDecisionDeny = "deny";
inline constexpr std::string_view kLayerL7 = "l7";
inline constexpr std::string_view kLayerL4 = "l4";

}  // namespace clrk::telemetry::attr
