// libFuzzer target for TaskAgent identity extraction. The input's first line is a JSONPath, the
// second an Authorization header value, the rest a request body. Parsing must never crash or
// loop; errors are InvalidArgument one-liners; a parsed path re-parses from its text to the same
// segments; every extracted value passes the caller-value bounds and every note is bounded; the
// whole identity serializes to JSON (strict UTF-8) without throwing.
#include "clrk/controller/caller_identity.h"
#include "clrk/egress/identity.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using clrk::controller::JsonPath;

void check(bool condition) {
  if (!condition) std::abort();
}

std::string_view nextLine(std::string_view& rest) {
  size_t newline = rest.find('\n');
  std::string_view line = rest.substr(0, newline);
  rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::string_view path_text = nextLine(rest);
  std::string_view authorization = nextLine(rest);
  std::string_view body = rest;

  auto path = JsonPath::parse(path_text);
  if (!path.ok()) {
    check(path.status().code() == clrk::Code::InvalidArgument);
    for (char c : path.status().message()) check(c >= 0x20 && c < 0x7f);
    path = JsonPath::parse("$.user");
  } else {
    auto again = JsonPath::parse(path->text());
    check(again.ok() && again->segments().size() == path->segments().size());
    for (size_t segment_idx = 0; segment_idx < path->segments().size(); ++segment_idx) {
      check(again->segments()[segment_idx].name == path->segments()[segment_idx].name);
      check(again->segments()[segment_idx].index == path->segments()[segment_idx].index);
    }
  }
  auto decoded = clrk::controller::decodeJwtPayload(authorization);
  check(decoded.ok() ? decoded->is_object()
                     : decoded.status().code() == clrk::Code::InvalidArgument);

  nlohmann::json extractors = nlohmann::json::array(
      {{{"type", "JWT"}, {"jwt", {{"claim", "sub"}, {"field", "user"}}}},
       {{"type", "Body"}, {"body", {{"jsonPath", path->text()}, {"field", "user"}}}},
       {{"type", "Body"}, {"body", {{"jsonPath", path->text()}, {"field", "tenant"}}}},
       {{"type", "Header"}, {"header", {{"name", "X-Fuzz"}, {"field", "header"}}}}});
  auto compiled = clrk::controller::compileIdentityExtractors({{"extractors", extractors}});
  check(compiled.ok());  // the path parsed above; everything else is fixed
  clrk::controller::RequestHeaders headers = {{"Authorization", std::string(authorization)},
                                              {"X-Fuzz", std::string(body.substr(0, 300))}};
  auto identity = clrk::controller::extractCallerIdentity(*compiled, headers, body);
  for (const auto& [field, value] : identity.fields) {
    check(clrk::egress::isValidCallerField(field));
    check(clrk::egress::callerValueProblem(value).empty());
  }
  for (const auto& note : identity.notes)
    check(note.size() <= clrk::controller::kMaxIdentityNoteBytes);
  check(!identity.verified);
  std::string serialized = clrk::controller::toJson(identity).dump();
  check(!serialized.empty());
  (void)clrk::controller::callerFieldsJson(identity);
  return 0;
}
