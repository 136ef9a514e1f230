// Caller identity: who an HTTP-triggered invocation acts for, extracted from the request by the
// rules of the TaskAgent's spec.identity.extractors, tried in order (the first extractor that
// yields a valid value for a field wins; later ones for that field are skipped):
//
//   type Header  header.name       the first value of that request header
//   type Body    body.jsonPath     one value of the JSON request body (json_path.h)
//   type JWT     jwt.claim         a top-level claim of the bearer token in Authorization
//
// Nothing is authenticated. clrk has no key to check a JWT's signature with, so a claim is only
// what the caller wrote, exactly like a header: every CallerIdentity has verified = false, and it
// is carried for attribution (Invocation, CloudEvents envelope, environment, telemetry), never
// for authorization. Authenticate callers in front of the trigger.
//
// Untrusted input, bounded: values must pass egress::callerValueProblem (1..256 bytes of UTF-8,
// no control characters); strings, numbers and booleans are taken, objects, arrays and null are
// not. Bearer tokens over kMaxJwtBytes and payloads that are not a JSON object are refused. An
// extractor that yields nothing leaves a note (at most one per extractor, each bounded) and the
// next one is tried; nothing here throws.
// Thread model: pure functions over immutable values.
#pragma once

#include "clrk/base/status.h"
#include "clrk/controller/json_path.h"

#include <nlohmann/json.hpp>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace clrk::controller {

inline constexpr size_t kMaxIdentityExtractors = 16;
inline constexpr size_t kMaxJwtBytes = 8 * 1024;
inline constexpr size_t kMaxIdentityNoteBytes = 256;

struct IdentityExtractor {
  enum class Type { Header, Body, Jwt };
  Type type = Type::Header;
  std::string field;             // the identity field filled
  std::string header;            // Header: the request header's name
  std::optional<JsonPath> path;  // Body
  std::string claim;             // JWT: a top-level claim name
  std::string label;             // "extractors[0] (JWT claim sub)", for sources and notes
};

// Compiles a TaskAgent's spec.identity (absent or null: no extractors). InvalidArgument naming
// the field, e.g. "spec.identity.extractors[1]: type Body needs body {jsonPath, field}".
Result<std::vector<IdentityExtractor>> compileIdentityExtractors(const nlohmann::json& identity);

using RequestHeaders = std::vector<std::pair<std::string, std::string>>;

struct CallerIdentity {
  std::map<std::string, std::string> fields;   // field -> value
  std::map<std::string, std::string> sources;  // field -> the extractor's label
  std::vector<std::string> notes;              // why extractors yielded nothing
  bool verified = false;                       // always false today (see above)

  bool empty() const { return fields.empty() && notes.empty(); }
};

// Runs `extractors` over one request (header names compare case-insensitively).
CallerIdentity extractCallerIdentity(const std::vector<IdentityExtractor>& extractors,
                                     const RequestHeaders& headers, std::string_view body);

// The payload of a compact JWS ("header.payload.signature", base64url without padding), decoded
// and parsed as a JSON object. Verifies nothing. InvalidArgument saying what is malformed.
Result<nlohmann::json> decodeJwtPayload(std::string_view token);

// Invocation spec.identity: {"fields", "sources", "verified", "notes"} (empty members left out).
nlohmann::json toJson(const CallerIdentity& identity);
// The reverse, for Invocations created through the API (clrk run-task, kubectl): fields that
// are not valid are dropped with a note; verified is always false.
CallerIdentity callerIdentityFromJson(const nlohmann::json& identity);

// The CloudEvents extension value `clrkidentity` and the environment variable CLRK_IDENTITY: the
// fields as one compact JSON object text ({"tenant":"acme","user":"alice"}).
std::string callerFieldsJson(const CallerIdentity& identity);
// CLRK_IDENTITY_<FIELD> for a field name (upper case; names are [a-z][a-z0-9_]*).
std::string callerFieldEnvName(std::string_view field);

}  // namespace clrk::controller
