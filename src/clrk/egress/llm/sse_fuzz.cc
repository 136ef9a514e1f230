// Fuzz target: the SSE parser fed the input in several splits must produce the same events, and
// the usage/MCP observers must survive any body (SSE and JSON readings of the same bytes).
#include "clrk/egress/llm/mcp.h"
#include "clrk/egress/llm/request.h"
#include "clrk/egress/llm/sse.h"
#include "clrk/egress/llm/usage.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using clrk::egress::llm::SseEvent;
using clrk::egress::llm::SseParser;

std::vector<std::string> parseAll(std::string_view input, size_t step) {
  std::vector<std::string> out;
  SseParser parser(4096);
  auto on_event = [&](const SseEvent& e) {
    std::string rec(e.type);
    rec.push_back('\0');
    rec.append(e.data);
    rec.push_back('\0');
    rec.append(e.id);
    out.push_back(std::move(rec));
  };
  for (size_t i = 0; i < input.size(); i += step) {
    parser.feed(input.substr(i, step), on_event);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto whole = parseAll(input, input.size() + 1);
  for (size_t step : {1, 3, 7, 64}) {
    if (parseAll(input, step) != whole) std::abort();
  }
  using clrk::egress::llm::Provider;
  for (Provider p :
       {Provider::kOpenAI, Provider::kAnthropic, Provider::kGemini, Provider::kBedrock}) {
    for (auto [stream, max_json] :
         {std::pair{true, size_t{1} << 16}, std::pair{false, size_t{1} << 16},
          std::pair{true, size_t{256}}, std::pair{false, size_t{256}}}) {
      clrk::egress::llm::ResponseObserver observer(p, stream, max_json);
      observer.feed(input.substr(0, size / 2));
      observer.feed(input.substr(size / 2));
      observer.finish();
      const auto& usage = observer.usage();
      if (usage.response_model.size() > 256) std::abort();
    }
  }
  clrk::egress::llm::McpResponseObserver mcp(true);
  mcp.feed(input);
  mcp.finish();
  (void)clrk::egress::llm::parseMcpRequest(input);
  (void)clrk::egress::llm::summarizeRequest(Provider::kOpenAI, "/v1/chat/completions", input);
  (void)clrk::egress::llm::ensureStreamUsage(input);
  (void)clrk::egress::llm::rewriteModel(input, "m\"x");
  return 0;
}
