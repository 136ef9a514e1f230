#include "clrk/egress/llm/errors.h"

namespace clrk::egress::llm {
namespace {

std::string_view openAiType(int status) {
  if (status == 429) return "rate_limit_exceeded";
  if (status == 401 || status == 403) return "permission_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

std::string_view anthropicType(int status) {
  switch (status) {
    case 429:
      return "rate_limit_error";
    case 403:
      return "permission_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

std::string_view geminiStatus(int status) {
  switch (status) {
    case 429:
      return "RESOURCE_EXHAUSTED";
    case 403:
      return "PERMISSION_DENIED";
    case 401:
      return "UNAUTHENTICATED";
    case 404:
      return "NOT_FOUND";
    case 400:
      return "INVALID_ARGUMENT";
    case 503:
      return "UNAVAILABLE";
    case 504:
      return "DEADLINE_EXCEEDED";
    default:
      return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

std::string_view clrkType(int status) {
  switch (status) {
    case 429:
      return "rate_limited";
    case 403:
      return "forbidden";
    case 401:
      return "unauthorized";
    case 404:
      return "not_found";
    case 400:
      return "bad_request";
    case 502:
      return "bad_gateway";
    case 503:
      return "unavailable";
    case 504:
      return "gateway_timeout";
    default:
      return "error";
  }
}

// Length of the valid UTF-8 sequence at s[i], 0 if invalid.
size_t utf8Length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t len = 0;
  uint32_t min = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  uint32_t cp = c & (0x3F >> (len - 1));
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

}  // namespace

void appendJsonString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t len = utf8Length(s, i);
      if (len == 0) {
        out.append("\xEF\xBF\xBD");
        ++i;
      } else {
        out.append(s.substr(i, len));
        i += len;
      }
      continue;
    }
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        if (c < 0x20 || c == 0x7F) {
          out.append("\\u00");
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 0xF]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out.push_back('"');
}

std::string providerErrorBody(Provider provider, int status, std::string_view message) {
  std::string out;
  out.reserve(message.size() + 128);
  switch (provider) {
    case Provider::kOpenAI:
    case Provider::kAzureOpenAI:
    case Provider::kCustom: {
      std::string_view type = openAiType(status);
      out.append(R"({"error":{"message":)");
      appendJsonString(out, message);
      out.append(R"(,"type":")").append(type).append(R"(","param":null,"code":)");
      if (status == 429) {
        out.append(R"("rate_limit_exceeded")");
      } else if (status == 401 || status == 403) {
        out.append(R"("permission_denied")");
      } else {
        out.append("null");
      }
      out.append("}}");
      break;
    }
    case Provider::kAnthropic:
      out.append(R"({"type":"error","error":{"type":")").append(anthropicType(status));
      out.append(R"(","message":)");
      appendJsonString(out, message);
      out.append("}}");
      break;
    case Provider::kGemini:
      out.append(R"({"error":{"code":)").append(std::to_string(status));
      out.append(R"(,"message":)");
      appendJsonString(out, message);
      out.append(R"(,"status":")").append(geminiStatus(status)).append("\"}}");
      break;
    case Provider::kBedrock:
      out.append(R"({"message":)");
      appendJsonString(out, message);
      out.append("}");
      break;
    case Provider::kNone:
      out.append(R"({"error":{"type":")").append(clrkType(status)).append(R"(","message":)");
      appendJsonString(out, message);
      out.append("}}");
      break;
  }
  return out;
}

}  // namespace clrk::egress::llm
