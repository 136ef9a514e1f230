#include "clrk/egress/llm/detect.h"

#include <cstddef>

namespace clrk::egress::llm {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool iendsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && iequals(s.substr(s.size() - suffix.size()), suffix);
}

bool istartsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

std::string_view stripPort(std::string_view host) {
  if (!host.empty() && host.front() == '[') {  // [v6]:port
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  size_t colon = host.rfind(':');
  if (colon != std::string_view::npos && host.find(':') == colon) host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // FQDN form
  return host;
}

}  // namespace

Provider detectProvider(std::string_view host, std::string_view path) {
  host = stripPort(host);
  if (iequals(host, "api.openai.com")) return Provider::kOpenAI;
  if (iequals(host, "api.anthropic.com")) return Provider::kAnthropic;
  if (iequals(host, "generativelanguage.googleapis.com")) return Provider::kGemini;
  // Vertex AI speaks the Gemini wire format: aiplatform.googleapis.com and
  // <region>-aiplatform.googleapis.com.
  if (iequals(host, "aiplatform.googleapis.com") ||
      (iendsWith(host, "-aiplatform.googleapis.com") && host.size() > 26)) {
    return Provider::kGemini;
  }
  if (iendsWith(host, ".openai.azure.com") && host.size() > 17) return Provider::kAzureOpenAI;
  if (istartsWith(host, "bedrock-runtime.") && iendsWith(host, ".amazonaws.com") &&
      host.size() > 30) {
    return Provider::kBedrock;
  }

  size_t q = path.find_first_of("?#");
  if (q != std::string_view::npos) path = path.substr(0, q);
  if (path == "/v1/chat/completions" || path == "/v1/completions" || path == "/v1/responses" ||
      path == "/v1/embeddings") {
    return Provider::kOpenAI;
  }
  if (path == "/v1/messages") return Provider::kAnthropic;
  for (std::string_view prefix :
       {std::string_view("/v1beta/models/"), std::string_view("/v1/models/")}) {
    if (path.substr(0, prefix.size()) != prefix) continue;
    std::string_view rest = path.substr(prefix.size());
    size_t colon = rest.find(':');
    if (colon != std::string_view::npos && colon > 0 &&
        rest.substr(0, colon).find('/') == std::string_view::npos) {
      std::string_view method = rest.substr(colon + 1);
      if (method == "generateContent" || method == "streamGenerateContent") {
        return Provider::kGemini;
      }
    }
  }
  return Provider::kNone;
}

}  // namespace clrk::egress::llm
