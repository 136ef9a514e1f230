#include "clrk/egress/llm/request.h"

#include "clrk/egress/llm/errors.h"
#include "clrk/egress/llm/json_scan.h"

#include <cstddef>

namespace clrk::egress::llm {
namespace {

constexpr size_t kNpos = std::string_view::npos;
constexpr size_t kMaxModelBytes = 256;

std::string_view stripQuery(std::string_view path) {
  size_t q = path.find_first_of("?#");
  return q == kNpos ? path : path.substr(0, q);
}

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = hexDigit(s[i + 1]);
      int lo = hexDigit(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Span of the model inside a Gemini path ".../models/<model>:<method>" and the method.
struct PathModel {
  size_t begin = kNpos;
  size_t end = kNpos;
  std::string_view method;
};

PathModel geminiModel(std::string_view path) {
  PathModel pm;
  size_t at = path.rfind("/models/");
  size_t len = 8;
  if (at == kNpos) {
    at = path.rfind("/tunedModels/");
    len = 13;
  }
  if (at == kNpos) return pm;
  size_t begin = at + len;
  size_t colon = path.find(':', begin);
  if (colon == kNpos || colon == begin) return pm;
  if (path.substr(begin, colon - begin).find('/') != kNpos) return pm;
  pm.begin = begin;
  pm.end = colon;
  pm.method = path.substr(colon + 1);
  return pm;
}

// Bedrock: "/model/<id>/<action>".
PathModel bedrockModel(std::string_view path) {
  PathModel pm;
  constexpr std::string_view kPrefix = "/model/";
  if (path.substr(0, kPrefix.size()) != kPrefix) return pm;
  size_t begin = kPrefix.size();
  size_t slash = path.find('/', begin);
  if (slash == kNpos || slash == begin) return pm;
  pm.begin = begin;
  pm.end = slash;
  pm.method = path.substr(slash + 1);
  return pm;
}

std::string_view operationFor(std::string_view path, const PathModel& gemini,
                              const PathModel& bedrock) {
  if (gemini.begin != kNpos) {
    if (gemini.method == "generateContent" || gemini.method == "streamGenerateContent") {
      return "generate_content";
    }
    if (gemini.method == "embedContent" || gemini.method == "batchEmbedContents") {
      return "embeddings";
    }
    return "";
  }
  if (bedrock.begin != kNpos) {
    if (bedrock.method == "converse" || bedrock.method == "converse-stream") return "chat";
    if (bedrock.method == "invoke" || bedrock.method == "invoke-with-response-stream") {
      return "invoke";
    }
    return "";
  }
  if (endsWith(path, "/chat/completions")) return "chat";
  if (endsWith(path, "/completions")) return "text_completion";
  if (endsWith(path, "/embeddings")) return "embeddings";
  if (endsWith(path, "/responses")) return "chat";
  if (endsWith(path, "/messages")) return "chat";
  return "";
}

void readMaxTokens(const json::Value& v, RequestSummary* out) {
  if (auto n = json::asInt(v)) out->max_tokens = *n;
}

}  // namespace

RequestSummary summarizeRequest(Provider provider, std::string_view path, std::string_view body) {
  RequestSummary out;
  path = stripQuery(path);
  PathModel gemini;
  PathModel bedrock;
  if (provider == Provider::kGemini || provider == Provider::kNone ||
      provider == Provider::kCustom) {
    gemini = geminiModel(path);
  }
  if (provider == Provider::kBedrock) bedrock = bedrockModel(path);
  out.operation = operationFor(path, gemini, bedrock);

  std::string scratch;
  json::forEachMember(body, 0, [&](std::string_view raw_key, const json::Value& v) {
    std::string_view key = json::normalizeKey(raw_key, &scratch);
    if (key == "model") {
      json::decodeString(v, &out.model, kMaxModelBytes);
    } else if (key == "stream") {
      out.stream = json::asBool(v).value_or(false);
    } else if (key == "stream_options") {
      if (auto inc = json::member(v, "include_usage")) {
        out.include_usage = json::asBool(*inc).value_or(false);
      }
    } else if (key == "max_tokens" || key == "max_completion_tokens" ||
               key == "max_output_tokens") {
      readMaxTokens(v, &out);
    } else if (key == "generationConfig") {
      if (auto m = json::member(v, "maxOutputTokens")) readMaxTokens(*m, &out);
    } else if (key == "inferenceConfig") {
      if (auto m = json::member(v, "maxTokens")) readMaxTokens(*m, &out);
    }
    return true;
  });

  if (gemini.begin != kNpos) {
    out.model = std::string(path.substr(gemini.begin, gemini.end - gemini.begin));
    out.stream = gemini.method == "streamGenerateContent";
  } else if (bedrock.begin != kNpos) {
    out.model = percentDecode(path.substr(bedrock.begin, bedrock.end - bedrock.begin));
    out.stream =
        bedrock.method == "converse-stream" || bedrock.method == "invoke-with-response-stream";
  } else if (out.model.empty() && provider == Provider::kAzureOpenAI) {
    constexpr std::string_view kDeployments = "/openai/deployments/";
    size_t at = path.find(kDeployments);
    if (at != kNpos) {
      size_t begin = at + kDeployments.size();
      size_t slash = path.find('/', begin);
      out.model = std::string(path.substr(begin, slash == kNpos ? kNpos : slash - begin));
    }
  }
  if (out.model.size() > kMaxModelBytes) out.model.resize(kMaxModelBytes);
  return out;
}

std::optional<std::string> ensureStreamUsage(std::string_view body) {
  std::string scratch;
  bool stream = false;
  // Chat completions carry "messages", completions "prompt"; a Responses API body ("input")
  // must not get include_usage.
  bool chat_or_completion = false;
  std::optional<json::Value> options;
  size_t first_member = kNpos;
  size_t end = 0;
  bool ok = json::forEachMember(
      body, 0,
      [&](std::string_view raw_key, const json::Value& v) {
        if (first_member == kNpos) {
          first_member = static_cast<size_t>(raw_key.data() - body.data()) - 1;
        }
        std::string_view key = json::normalizeKey(raw_key, &scratch);
        if (key == "stream") stream = json::asBool(v).value_or(false);
        if (key == "stream_options") options = v;
        if (key == "messages" || key == "prompt") chat_or_completion = true;
        return true;
      },
      &end);
  if (!ok || json::skipWs(body, end) != body.size() || !stream || !chat_or_completion) {
    return std::nullopt;
  }

  std::string out;
  out.reserve(body.size() + 40);
  if (!options) {
    // Insert before the first member (there is one: "stream").
    out.append(body.substr(0, first_member));
    out.append(R"("stream_options":{"include_usage":true},)");
    out.append(body.substr(first_member));
    return out;
  }
  size_t opt_begin = static_cast<size_t>(options->raw.data() - body.data());
  size_t opt_end = opt_begin + options->raw.size();
  if (options->kind != json::Kind::kObject) {
    out.append(body.substr(0, opt_begin));
    out.append(R"({"include_usage":true})");
    out.append(body.substr(opt_end));
    return out;
  }
  std::optional<json::Value> inc;
  bool inner_ok = json::forEachMember(*options, [&](std::string_view key, const json::Value& v) {
    if (json::keyIs(key, "include_usage")) inc = v;
    return true;
  });
  if (!inner_ok) return std::nullopt;
  if (inc) {
    if (inc->kind == json::Kind::kTrue) return std::nullopt;
    size_t b = static_cast<size_t>(inc->raw.data() - body.data());
    out.append(body.substr(0, b));
    out.append("true");
    out.append(body.substr(b + inc->raw.size()));
    return out;
  }
  size_t close = json::skipWs(body, opt_begin + 1);
  bool empty = close < body.size() && body[close] == '}';
  out.append(body.substr(0, opt_begin + 1));
  out.append(empty ? R"("include_usage":true)" : R"("include_usage":true,)");
  out.append(body.substr(opt_begin + 1));
  return out;
}

std::optional<std::string> rewriteModel(std::string_view body, std::string_view new_model) {
  // Every top-level "model" member is rewritten: parsers disagree on which duplicate wins.
  constexpr size_t kMaxSpans = 8;
  std::string_view spans[kMaxSpans];
  size_t count = 0;
  bool too_many = false;
  size_t end = 0;
  bool ok = json::forEachMember(
      body, 0,
      [&](std::string_view key, const json::Value& v) {
        if (json::keyIs(key, "model")) {
          if (count == kMaxSpans) {
            too_many = true;
            return false;
          }
          spans[count++] = v.raw;
        }
        return true;
      },
      &end);
  if (!ok || too_many || json::skipWs(body, end) != body.size() || count == 0) return std::nullopt;
  std::string out;
  out.reserve(body.size() + count * (new_model.size() + 2));
  size_t at = 0;
  for (size_t i = 0; i < count; ++i) {
    size_t b = static_cast<size_t>(spans[i].data() - body.data());
    out.append(body.substr(at, b - at));
    appendJsonString(out, new_model);
    at = b + spans[i].size();
  }
  out.append(body.substr(at));
  return out;
}

std::optional<std::string> rewriteModelInPath(Provider provider, std::string_view path,
                                              std::string_view new_model) {
  size_t q = path.find_first_of("?#");
  std::string_view bare = q == kNpos ? path : path.substr(0, q);
  PathModel pm = provider == Provider::kBedrock ? bedrockModel(bare) : geminiModel(bare);
  if (pm.begin == kNpos) return std::nullopt;
  std::string out;
  out.reserve(path.size() + new_model.size());
  out.append(path.substr(0, pm.begin));
  if (provider == Provider::kBedrock) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char c : new_model) {
      auto u = static_cast<unsigned char>(c);
      bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   c == '-' || c == '_' || c == '.' || c == '~';
      if (plain) {
        out.push_back(c);
      } else {
        out.push_back('%');
        out.push_back(kHex[u >> 4]);
        out.push_back(kHex[u & 0xF]);
      }
    }
  } else {
    out.append(new_model);
  }
  out.append(path.substr(pm.end));
  return out;
}

bool globMatch(std::string_view glob, std::string_view s) {
  size_t g = 0;
  size_t i = 0;
  size_t star = kNpos;
  size_t star_i = 0;
  while (i < s.size()) {
    if (g < glob.size() && glob[g] == '*') {
      star = g++;
      star_i = i;
    } else if (g < glob.size() && (glob[g] == '?' || glob[g] == s[i])) {
      ++g;
      ++i;
    } else if (star != kNpos) {
      g = star + 1;
      i = ++star_i;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
}

}  // namespace clrk::egress::llm
