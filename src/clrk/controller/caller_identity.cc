#include "clrk/controller/caller_identity.h"

#include "clrk/base/ascii.h"
#include "clrk/base/base64.h"
#include "clrk/egress/identity.h"

#include <algorithm>

namespace clrk::controller {
namespace {

using Json = nlohmann::json;

constexpr size_t kMaxHeaderNameBytes = 256;
constexpr size_t kMaxClaimBytes = 256;

// Headers that carry credentials: copying them into Invocations and telemetry would leak them.
constexpr std::string_view kCredentialHeaders[] = {"authorization", "proxy-authorization",
                                                   "cookie"};

// RFC 9110 token characters (header field names).
bool isTokenChar(char c) {
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool isBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}

const std::string* findHeader(const RequestHeaders& headers, std::string_view name) {
  for (const auto& [key, value] : headers) {
    if (asciiEqualsIgnoreCase(key, name)) return &value;
  }
  return nullptr;
}

// A field of an extractor object as a string, or an error naming it.
Result<std::string> stringMember(const Json& object, std::string_view key,
                                 const std::string& path) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) {
    return invalidArgument(path + "." + std::string(key) + ": Required value");
  }
  if (!it->is_string()) return invalidArgument(path + "." + std::string(key) + ": want a string");
  return it->get<std::string>();
}

Status checkField(const std::string& field, const std::string& path) {
  if (egress::isValidCallerField(field)) return {};
  return invalidArgument(path + ".field \"" + printableForMessage(field) +
                         "\": want [a-z][a-z0-9_]{0,62} (lower snake case, e.g. user, tenant_id)");
}

// The text of a selected value: strings as they are, numbers and booleans as JSON writes them.
Result<std::string> scalarText(const Json& value, std::string_view what) {
  switch (value.type()) {
    case Json::value_t::string:
      return value.get<std::string>();
    case Json::value_t::boolean:
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return value.dump();
    case Json::value_t::object:
      return invalidArgument(std::string(what) + " is an object, want a string or number");
    case Json::value_t::array:
      return invalidArgument(std::string(what) + " is an array, want a string or number");
    default:
      return invalidArgument(std::string(what) + " is null");
  }
}

std::optional<std::string> base64UrlDecode(std::string_view text) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), isBase64UrlChar)) return std::nullopt;
  std::string standard(text);
  std::replace(standard.begin(), standard.end(), '-', '+');
  std::replace(standard.begin(), standard.end(), '_', '/');
  return base64Decode(standard);
}

// The token of "Authorization: Bearer <token>".
Result<std::string_view> bearerToken(const RequestHeaders& headers) {
  const std::string* authorization = findHeader(headers, "Authorization");
  if (authorization == nullptr) return invalidArgument("no Authorization header");
  std::string_view value = *authorization;
  constexpr std::string_view kScheme = "bearer";
  if (value.size() <= kScheme.size() ||
      !asciiEqualsIgnoreCase(value.substr(0, kScheme.size()), kScheme) ||
      (value[kScheme.size()] != ' ' && value[kScheme.size()] != '\t')) {
    return invalidArgument("Authorization is not a Bearer token");
  }
  value.remove_prefix(kScheme.size());
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  if (value.empty()) return invalidArgument("the Bearer token is empty");
  return value;
}

std::string boundedNote(std::string note) {
  if (note.size() <= kMaxIdentityNoteBytes) return note;
  size_t end = kMaxIdentityNoteBytes - 3;
  // Do not split a UTF-8 sequence (notes quote printable ASCII, but be safe).
  while (end > 0 && (static_cast<unsigned char>(note[end]) >> 6) == 0x2) --end;
  note.resize(end);
  return note + "...";
}

}  // namespace

Result<std::vector<IdentityExtractor>> compileIdentityExtractors(const Json& identity) {
  std::vector<IdentityExtractor> out;
  if (identity.is_null()) return out;
  if (!identity.is_object()) return invalidArgument("spec.identity: want an object {extractors}");
  auto list = identity.find("extractors");
  if (list == identity.end() || list->is_null()) return out;
  if (!list->is_array()) return invalidArgument("spec.identity.extractors: want an array");
  if (list->size() > kMaxIdentityExtractors) {
    return invalidArgument("spec.identity.extractors: " + std::to_string(list->size()) +
                           " extractors, at most " + std::to_string(kMaxIdentityExtractors));
  }
  for (size_t extractor_idx = 0; extractor_idx < list->size(); ++extractor_idx) {
    const Json& item = (*list)[extractor_idx];
    const std::string path = "spec.identity.extractors[" + std::to_string(extractor_idx) + "]";
    if (!item.is_object()) return invalidArgument(path + ": want an object {type, ...}");
    CLRK_ASSIGN_OR_RETURN(std::string type, stringMember(item, "type", path));
    IdentityExtractor extractor;
    std::string member;
    if (type == "Header") {
      extractor.type = IdentityExtractor::Type::Header;
      member = "header";
    } else if (type == "Body") {
      extractor.type = IdentityExtractor::Type::Body;
      member = "body";
    } else if (type == "JWT") {
      extractor.type = IdentityExtractor::Type::Jwt;
      member = "jwt";
    } else {
      return invalidArgument(path + ".type \"" + printableForMessage(type) +
                             "\": want Header, Body or JWT");
    }
    for (const char* other : {"header", "body", "jwt"}) {
      if (other != member && item.contains(other) && !item[other].is_null()) {
        return invalidArgument(path + ": type " + type + " reads " + member + ", remove " + other);
      }
    }
    auto settings = item.find(member);
    if (settings == item.end() || !settings->is_object()) {
      std::string wanted = member == "header" ? "{name, field}"
                           : member == "body" ? "{jsonPath, field}"
                                              : "{claim, field}";
      return invalidArgument(path + ": type " + type + " needs " + member + " " + wanted);
    }
    const std::string settings_path = path + "." + member;
    CLRK_ASSIGN_OR_RETURN(extractor.field, stringMember(*settings, "field", settings_path));
    CLRK_RETURN_IF_ERROR(checkField(extractor.field, settings_path));
    switch (extractor.type) {
      case IdentityExtractor::Type::Header: {
        CLRK_ASSIGN_OR_RETURN(extractor.header, stringMember(*settings, "name", settings_path));
        if (extractor.header.empty() || extractor.header.size() > kMaxHeaderNameBytes ||
            !std::all_of(extractor.header.begin(), extractor.header.end(), isTokenChar)) {
          return invalidArgument(settings_path + ".name \"" +
                                 printableForMessage(extractor.header) +
                                 "\": not an HTTP header name");
        }
        for (std::string_view credential : kCredentialHeaders) {
          if (asciiEqualsIgnoreCase(extractor.header, credential)) {
            return invalidArgument(settings_path + ".name " + extractor.header +
                                   ": carries credentials, which clrk never copies into "
                                   "Invocations or telemetry; use type JWT to read one claim of "
                                   "a bearer token");
          }
        }
        extractor.label =
            "extractors[" + std::to_string(extractor_idx) + "] (Header " + extractor.header + ")";
        break;
      }
      case IdentityExtractor::Type::Body: {
        CLRK_ASSIGN_OR_RETURN(std::string text, stringMember(*settings, "jsonPath", settings_path));
        auto parsed = JsonPath::parse(text);
        if (!parsed.ok()) {
          return invalidArgument(settings_path + ".jsonPath: " + parsed.status().message());
        }
        extractor.path = std::move(parsed).value();
        // Quoted names may hold any byte: the label (kept in Invocations) is made printable.
        extractor.label = "extractors[" + std::to_string(extractor_idx) + "] (Body " +
                          printableForMessage(extractor.path->text(), kMaxJsonPathLength) + ")";
        break;
      }
      case IdentityExtractor::Type::Jwt: {
        CLRK_ASSIGN_OR_RETURN(extractor.claim, stringMember(*settings, "claim", settings_path));
        if (extractor.claim.empty() || extractor.claim.size() > kMaxClaimBytes ||
            !egress::callerValueProblem(extractor.claim).empty()) {
          return invalidArgument(settings_path + ".claim \"" +
                                 printableForMessage(extractor.claim) +
                                 "\": want 1 to 256 printable characters");
        }
        extractor.label =
            "extractors[" + std::to_string(extractor_idx) + "] (JWT claim " + extractor.claim + ")";
        break;
      }
    }
    out.push_back(std::move(extractor));
  }
  return out;
}

Result<Json> decodeJwtPayload(std::string_view token) {
  if (token.size() > kMaxJwtBytes) {
    return invalidArgument("the bearer token is longer than " + std::to_string(kMaxJwtBytes) +
                           " bytes");
  }
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (parts.size() < 6) {
    size_t dot = token.find('.', start);
    parts.push_back(token.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (parts.size() == 5) {
    return invalidArgument("the bearer token is an encrypted JWT (JWE), which clrk cannot read");
  }
  if (parts.size() != 3) {
    return invalidArgument("the bearer token is not a JWT (want header.payload.signature)");
  }
  for (size_t part_idx = 0; part_idx < 2; ++part_idx) {
    const char* name = part_idx == 0 ? "header" : "payload";
    auto decoded = base64UrlDecode(parts[part_idx]);
    if (!decoded) {
      return invalidArgument(std::string("the JWT ") + name + " is not base64url");
    }
    Json parsed = Json::parse(*decoded, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded() || !parsed.is_object()) {
      return invalidArgument(std::string("the JWT ") + name + " is not a JSON object");
    }
    if (part_idx == 1) return parsed;
  }
  return invalidArgument("the bearer token is not a JWT");  // not reached
}

CallerIdentity extractCallerIdentity(const std::vector<IdentityExtractor>& extractors,
                                     const RequestHeaders& headers, std::string_view body) {
  CallerIdentity out;
  // Parsed at most once each, when an extractor first needs them.
  std::optional<Json> body_json;
  std::optional<Result<Json>> jwt_payload;
  for (const IdentityExtractor& extractor : extractors) {
    if (out.fields.count(extractor.field) > 0) continue;  // an earlier extractor won
    if (out.fields.size() >= egress::kMaxCallerFields) break;
    Result<std::string> value = invalidArgument("no value");
    switch (extractor.type) {
      case IdentityExtractor::Type::Header: {
        const std::string* found = findHeader(headers, extractor.header);
        value = found != nullptr ? Result<std::string>(*found)
                                 : invalidArgument("no " + extractor.header + " header");
        break;
      }
      case IdentityExtractor::Type::Body: {
        if (!body_json) body_json = Json::parse(body, nullptr, /*allow_exceptions=*/false);
        if (body.empty()) {
          value = invalidArgument("the request body is empty");
        } else if (body_json->is_discarded()) {
          value = invalidArgument("the request body is not JSON");
        } else if (const Json* selected = extractor.path->select(*body_json); selected != nullptr) {
          value = scalarText(*selected, "the selected value");
        } else {
          value = invalidArgument("the path selects nothing in the body");
        }
        break;
      }
      case IdentityExtractor::Type::Jwt: {
        if (!jwt_payload) {
          auto token = bearerToken(headers);
          jwt_payload = token.ok() ? decodeJwtPayload(*token) : Result<Json>(token.status());
        }
        if (!jwt_payload->ok()) {
          value = jwt_payload->status();
        } else if (auto it = (*jwt_payload)->find(extractor.claim); it != (*jwt_payload)->end()) {
          value = scalarText(*it, "claim " + extractor.claim);
        } else {
          value = invalidArgument("the JWT has no claim " + extractor.claim);
        }
        break;
      }
    }
    std::string problem;
    if (!value.ok()) {
      problem = value.status().message();
    } else if (std::string_view why = egress::callerValueProblem(*value); !why.empty()) {
      problem = "unusable value (" + std::string(why) + ")";
    } else {
      out.fields[extractor.field] = std::move(value).value();
      out.sources[extractor.field] = extractor.label;
      continue;
    }
    out.notes.push_back(boundedNote(extractor.label + ": " + problem));
  }
  return out;
}

Json toJson(const CallerIdentity& identity) {
  Json out = Json::object();
  if (!identity.fields.empty()) out["fields"] = identity.fields;
  if (!identity.sources.empty()) out["sources"] = identity.sources;
  out["verified"] = identity.verified;
  if (!identity.notes.empty()) out["notes"] = identity.notes;
  return out;
}

CallerIdentity callerIdentityFromJson(const Json& identity) {
  CallerIdentity out;
  if (!identity.is_object()) return out;
  auto fields = identity.find("fields");
  if (fields == identity.end() || !fields->is_object()) return out;
  for (const auto& [name, value] : fields->items()) {
    std::string problem;
    if (!egress::isValidCallerField(name)) {
      problem = "not a valid field name";
    } else if (!value.is_string()) {
      problem = "not a string";
    } else if (std::string_view why =
                   egress::callerValueProblem(value.get_ref<const std::string&>());
               !why.empty()) {
      problem = std::string(why);
    } else if (out.fields.size() >= egress::kMaxCallerFields) {
      problem = "over " + std::to_string(egress::kMaxCallerFields) + " fields";
    }
    if (!problem.empty()) {
      if (out.notes.size() < kMaxIdentityExtractors) {
        out.notes.push_back(
            boundedNote("spec.identity.fields." + printableForMessage(name) + ": " + problem));
      }
      continue;
    }
    out.fields[name] = value.get<std::string>();
    out.sources[name] = "spec.identity.fields";
  }
  return out;
}

std::string callerFieldsJson(const CallerIdentity& identity) {
  return Json(identity.fields).dump();
}

std::string callerFieldEnvName(std::string_view field) {
  std::string name = "CLRK_IDENTITY_";
  for (char c : field) name.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  return name;
}

}  // namespace clrk::controller
