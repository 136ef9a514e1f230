// Request filters that edit the outgoing request: credential injection and header rewrites.
// Pure functions over the filter interface; the data plane calls them per upstream attempt (a
// fallback attempt gets its own clean injection).
#pragma once

#include "clrk/egress/config/snapshot.h"
#include "clrk/egress/filters/headers.h"
#include "clrk/egress/llm/provider.h"

#include <string>
#include <utility>
#include <vector>

namespace clrk::egress::filters {

// Removes every credential the agent sent that could reach the upstream — Authorization,
// Proxy-Authorization, x-api-key, api-key, x-goog-api-key, the credential's own header and, in
// the query, `key` and the credential's own parameter — then sets the credential from the
// Secret. `target` is the origin-form request target ("/v1/x?a=b"), edited in place for
// QueryParam credentials (the value is percent-encoded).
void injectCredential(const config::Credential& credential, Headers& headers, std::string& target);

// Removes agent-supplied credentials without injecting any (used when a route names no
// credential but the request goes to a Backend the agent did not choose).
void stripAgentCredentials(Headers& headers, std::string& target);

// Drops from a request's trailer section (names in lower case) what the head's edits would not
// let through: every field stripAgentCredentials removes, `credential`'s own header (null: none),
// and the fields `mutation` removes or sets. Injection and rewrites cannot be bypassed through
// trailers.
void filterRequestTrailers(std::vector<std::pair<std::string, std::string>>& trailers,
                           const config::Credential* credential,
                           const config::HeaderMutation& mutation);

// Applies remove, then set, then add.
void applyHeaderMutation(const config::HeaderMutation& mutation, Headers& headers);

// Percent-encodes a query component (RFC 3986 unreserved characters kept).
std::string percentEncode(std::string_view value);

}  // namespace clrk::egress::filters
