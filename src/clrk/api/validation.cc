#include "clrk/api/validation.h"

#include "clrk/api/core_types.h"
#include "clrk/base/time.h"

#include <cmath>
#include <iterator>
#include <limits>
#include <mutex>
#include <regex>
#include <set>
#include <unordered_map>

namespace clrk::api {
namespace {

constexpr int kMaxDepth = 100;
// libstdc++'s std::regex matcher recurses per input character; longer strings are refused.
constexpr size_t kMaxPatternInput = 4096;
constexpr size_t kMaxAnnotationBytes = 256 * 1024;
constexpr size_t kMaxShownValue = 64;

// ---- value rendering and paths -------------------------------------------------------------

std::string showValue(const Json& value) {
  switch (value.type()) {
    case Json::value_t::string: {
      const auto& text = value.get_ref<const std::string&>();
      if (text.size() <= kMaxShownValue)
        return Json(text).dump(-1, ' ', false, Json::error_handler_t::replace);
      return Json(text.substr(0, kMaxShownValue) + "...")
          .dump(-1, ' ', false, Json::error_handler_t::replace);
    }
    case Json::value_t::object:
      return "\"object\"";
    case Json::value_t::array:
      return "\"array\"";
    case Json::value_t::discarded:
      return "\"\"";
    default:
      return value.dump();
  }
}

const char* typeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "object";
    case Json::value_t::array:
      return "array";
    case Json::value_t::string:
      return "string";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "integer";
    case Json::value_t::number_float:
      return "number";
    default:
      return "unknown";
  }
}

const char* schemaTypeName(SchemaType type) {
  switch (type) {
    case SchemaType::Object:
      return "object";
    case SchemaType::Array:
      return "array";
    case SchemaType::String:
      return "string";
    case SchemaType::Integer:
      return "integer";
    case SchemaType::Number:
      return "number";
    case SchemaType::Boolean:
      return "boolean";
    case SchemaType::IntOrString:
      return "integer or string";
    case SchemaType::Any:
      return "any";
  }
  return "any";
}

std::string child(const std::string& path, std::string_view name) {
  if (path.empty()) return std::string(name);
  std::string out = path;
  out += '.';
  out += name;
  return out;
}

std::string index(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

std::string key(const std::string& path, std::string_view k) {
  std::string out = path;
  out += '[';
  out += k;
  out += ']';
  return out;
}

std::string formatNumber(double value) {
  if (std::isfinite(value) && value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return Json(value).dump();
}

// ---- name rules (hand-written: no regex recursion on untrusted input) -------------------------

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool isAlnum(char c) { return isLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

bool isDns1123Label(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!isLowerAlnum(s.front()) || !isLowerAlnum(s.back())) return false;
  for (char c : s) {
    if (!isLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

bool isDns1123Subdomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view part = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (part.empty() || !isLowerAlnum(part.front()) || !isLowerAlnum(part.back())) return false;
    for (char c : part) {
      if (!isLowerAlnum(c) && c != '-') return false;
    }
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63 characters.
bool isQualifiedNamePart(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  if (!isAlnum(s.front()) || !isAlnum(s.back())) return false;
  for (char c : s) {
    if (!isAlnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

const char* const kSubdomainMessage =
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const char* const kLabelMessage =
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

// Empty when `k` is a valid qualified name ("prefix/name" or "name"), else the reason.
std::string qualifiedNameProblem(std::string_view k) {
  std::string_view name = k;
  size_t slash = k.find('/');
  if (slash != std::string_view::npos) {
    std::string_view prefix = k.substr(0, slash);
    name = k.substr(slash + 1);
    if (prefix.empty()) return "prefix part must be non-empty";
    if (!isDns1123Subdomain(prefix)) return std::string("prefix part ") + kSubdomainMessage;
    if (name.find('/') != std::string_view::npos) {
      return "a qualified name must consist of alphanumeric characters, '-', '_' or '.', with an "
             "optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
    }
  }
  if (name.empty()) return "name part must be non-empty";
  if (name.size() > 63) return "name part must be no more than 63 characters";
  if (!isQualifiedNamePart(name)) {
    return "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
           "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
           "regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
  }
  return {};
}

// ---- formats ---------------------------------------------------------------------------------

bool isBase64(std::string_view s) {
  if (s.size() % 4 != 0) return false;
  size_t padding = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '=') {
      ++padding;
      continue;
    }
    if (padding > 0) return false;  // data after padding
    bool ok = isAlnum(c) || c == '+' || c == '/';
    if (!ok) return false;
  }
  return padding <= 2;
}

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// Kubernetes resource.Quantity: <signedNumber><suffix>, suffix one of Ki Mi Gi Ti Pi Ei, n u m k
// M G T P E, or a decimal exponent e<signedNumber>.
bool isQuantity(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t digits = 0;
  while (i < s.size() && isDigit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && isDigit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  std::string_view suffix = s.substr(i);
  if (suffix.empty()) return true;
  static const char* const kSuffixes[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u",
                                          "m",  "k",  "M",  "G",  "T",  "P",  "E"};
  for (const char* candidate : kSuffixes) {
    if (suffix == candidate) return true;
  }
  if (suffix[0] == 'e' || suffix[0] == 'E') {
    size_t j = 1;
    if (j < suffix.size() && (suffix[j] == '+' || suffix[j] == '-')) ++j;
    if (j >= suffix.size()) return false;
    for (; j < suffix.size(); ++j) {
      if (!isDigit(suffix[j])) return false;
    }
    return true;
  }
  return false;
}

// ---- regex cache -----------------------------------------------------------------------------

struct CachedRegex {
  std::string pattern;
  std::shared_ptr<const std::regex> regex;  // null when the pattern does not compile
};

std::shared_ptr<const std::regex> compiledPattern(const Schema& schema, bool& valid) {
  static std::mutex mutex;
  static std::unordered_map<const Schema*, CachedRegex> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(&schema);
  if (it == cache.end() || it->second.pattern != schema.pattern) {
    CachedRegex entry{schema.pattern, nullptr};
    try {
      entry.regex = std::make_shared<const std::regex>(schema.pattern, std::regex::ECMAScript);
    } catch (const std::regex_error&) {
      entry.regex = nullptr;
    }
    it = cache.insert_or_assign(&schema, std::move(entry)).first;
  }
  valid = it->second.regex != nullptr;
  return it->second.regex;
}

// ---- the walker ------------------------------------------------------------------------------

class Validator {
 public:
  explicit Validator(UnknownFields unknown) : unknown_(unknown) {}

  std::vector<FieldError> take() { return std::move(errors_); }

  void add(FieldErrorType type, std::string path, std::string detail) {
    errors_.push_back({type, std::move(path), std::move(detail)});
  }

  void invalid(const std::string& path, const Json& value, const std::string& why) {
    add(FieldErrorType::Invalid, path, "Invalid value: " + showValue(value) + ": " + why);
  }

  void unknownField(const std::string& path) {
    add(FieldErrorType::Unknown, path, "unknown field \"" + path + "\"");
  }

  void walk(const Schema& schema, Json& value, const std::string& path, int depth);
  void walkObjectProperties(const Schema& schema, Json& value, const std::string& path, int depth,
                            const std::set<std::string, std::less<>>& implicit);
  void validateMetadata(const ResourceType& type, Json& metadata);
  void validateEnvelope(const ResourceType& type, Json& object);

 private:
  bool checkType(const Schema& schema, Json& value, const std::string& path);
  void checkString(const Schema& schema, const Json& value, const std::string& path);
  void checkNumber(const Schema& schema, const Json& value, const std::string& path);
  void checkArray(const Schema& schema, Json& value, const std::string& path, int depth);
  void checkEnum(const Schema& schema, const Json& value, const std::string& path);

  UnknownFields unknown_;
  std::vector<FieldError> errors_;
};

// Integral JSON floats (3.0) are accepted as integers and normalized in place.
bool normalizeInteger(Json& value) {
  if (value.is_number_integer()) return true;
  if (!value.is_number_float()) return false;
  double d = value.get<double>();
  if (!std::isfinite(d) || d != std::floor(d)) return false;
  if (d < -9.2e18 || d > 9.2e18) return false;
  value = static_cast<int64_t>(d);
  return true;
}

bool Validator::checkType(const Schema& schema, Json& value, const std::string& path) {
  bool ok = true;
  switch (schema.type) {
    case SchemaType::Object:
      ok = value.is_object();
      break;
    case SchemaType::Array:
      ok = value.is_array();
      break;
    case SchemaType::String:
      ok = value.is_string();
      break;
    case SchemaType::Integer:
      ok = normalizeInteger(value);
      break;
    case SchemaType::Number:
      ok = value.is_number();
      break;
    case SchemaType::Boolean:
      ok = value.is_boolean();
      break;
    case SchemaType::IntOrString:
      ok = value.is_string() || normalizeInteger(value) ||
           (schema.format == "quantity" && value.is_number());
      break;
    case SchemaType::Any:
      ok = true;
      break;
  }
  if (!ok) {
    add(FieldErrorType::TypeMismatch, path,
        "Invalid value: " + showValue(value) + ": must be of type " + schemaTypeName(schema.type) +
            ", got " + typeName(value));
  }
  return ok;
}

void Validator::checkEnum(const Schema& schema, const Json& value, const std::string& path) {
  if (schema.enum_values.empty()) return;
  for (const auto& allowed : schema.enum_values) {
    if (allowed == value) return;
  }
  std::string supported;
  for (const auto& allowed : schema.enum_values) {
    if (!supported.empty()) supported += ", ";
    supported += allowed.dump();
  }
  add(FieldErrorType::Invalid, path,
      "Unsupported value: " + showValue(value) + ": supported values: " + supported);
}

void Validator::checkString(const Schema& schema, const Json& value, const std::string& path) {
  const auto& text = value.get_ref<const std::string&>();
  // Length in characters (UTF-8 code points), as OpenAPI defines it.
  int64_t length = 0;
  for (unsigned char c : text) {
    if ((c & 0xC0) != 0x80) ++length;
  }
  if (schema.max_length && length > *schema.max_length) {
    add(FieldErrorType::Invalid, path,
        "Too long: may not be longer than " + std::to_string(*schema.max_length));
  }
  if (schema.min_length && length < *schema.min_length) {
    invalid(path, value,
            "should be at least " + std::to_string(*schema.min_length) + " chars long");
  }
  if (!schema.pattern.empty()) {
    bool valid = false;
    auto regex = compiledPattern(schema, valid);
    if (!valid) {
      invalid(path, value, "schema pattern '" + schema.pattern + "' is not a valid regex");
    } else if (text.size() > kMaxPatternInput) {
      invalid(path, value, "too long to match pattern '" + schema.pattern + "'");
    } else {
      bool matched = false;
      try {
        matched = std::regex_search(text, *regex);
      } catch (const std::regex_error&) {
        matched = false;
      }
      if (!matched) invalid(path, value, "should match '" + schema.pattern + "'");
    }
  }
  const std::string& format = schema.format;
  if (format.empty()) return;
  if (format == "duration") {
    if (!parseDuration(text)) {
      invalid(path, value, "must be a duration such as \"30s\", \"5m\" or \"1h30m\"");
    }
  } else if (format == "date-time") {
    // clrk::parseRfc3339 converts to system_clock (nanoseconds), which overflows outside
    // 1678..2261; Kubernetes accepts years 0000..9999, so check the syntax with a stand-in
    // (leap) year.
    std::string probe = text;
    if (probe.size() >= 4 && isDigit(probe[0]) && isDigit(probe[1]) && isDigit(probe[2]) &&
        isDigit(probe[3])) {
      probe.replace(0, 4, "2000");
    }
    if (!parseRfc3339(probe)) {
      invalid(path, value, "must be an RFC 3339 date-time such as \"2026-01-02T15:04:05Z\"");
    }
  } else if (format == "byte") {
    if (!isBase64(text)) invalid(path, value, "must be base64-encoded data");
  } else if (format == "quantity") {
    if (!isQuantity(text)) {
      invalid(path, value,
              "quantities must match the regular expression "
              "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'");
    }
  }
}

void Validator::checkNumber(const Schema& schema, const Json& value, const std::string& path) {
  double d = value.get<double>();
  if (schema.format == "int32" && value.is_number_integer()) {
    bool out_of_range =
        value.is_number_unsigned()
            ? value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int32_t>::max())
            : (value.get<int64_t>() < std::numeric_limits<int32_t>::min() ||
               value.get<int64_t>() > std::numeric_limits<int32_t>::max());
    if (out_of_range) {
      invalid(path, value, "must fit in a 32-bit signed integer");
      return;
    }
  }
  if (schema.format == "int64" && value.is_number_unsigned() &&
      value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    invalid(path, value, "must fit in a 64-bit signed integer");
    return;
  }
  if (schema.minimum && d < *schema.minimum) {
    invalid(path, value, "must be greater than or equal to " + formatNumber(*schema.minimum));
  }
  if (schema.maximum && d > *schema.maximum) {
    invalid(path, value, "must be less than or equal to " + formatNumber(*schema.maximum));
  }
}

void Validator::checkArray(const Schema& schema, Json& value, const std::string& path, int depth) {
  auto size = static_cast<int64_t>(value.size());
  if (schema.max_items && size > *schema.max_items) {
    add(FieldErrorType::Invalid, path,
        "Too many: " + std::to_string(size) + ": must have at most " +
            std::to_string(*schema.max_items) + " items");
  }
  if (schema.min_items && size < *schema.min_items) {
    invalid(path, value, "should have at least " + std::to_string(*schema.min_items) + " items");
  }
  if (schema.items) {
    for (size_t i = 0; i < value.size(); ++i) {
      walk(*schema.items, value[i], index(path, i), depth + 1);
    }
  }
  if (schema.list_type == "set") {
    for (size_t i = 0; i < value.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (value[i] == value[j]) {
          add(FieldErrorType::Invalid, index(path, i), "Duplicate value: " + showValue(value[i]));
          break;
        }
      }
    }
  } else if (schema.list_type == "map" && !schema.list_map_keys.empty()) {
    std::vector<Json> seen;
    for (size_t i = 0; i < value.size(); ++i) {
      if (!value[i].is_object()) continue;
      Json k = Json::object();
      for (const auto& name : schema.list_map_keys) {
        auto it = value[i].find(name);
        k[name] = it == value[i].end() ? Json() : *it;
      }
      bool duplicate = false;
      for (const auto& other : seen) {
        if (other == k) duplicate = true;
      }
      if (duplicate) {
        add(FieldErrorType::Invalid, index(path, i), "Duplicate value: " + k.dump());
      } else {
        seen.push_back(std::move(k));
      }
    }
  }
}

void Validator::walkObjectProperties(const Schema& schema, Json& value, const std::string& path,
                                     int depth,
                                     const std::set<std::string, std::less<>>& implicit) {
  for (const auto& name : schema.required) {
    if (implicit.count(name)) continue;
    if (!value.contains(name)) add(FieldErrorType::Required, child(path, name), "Required value");
  }
  for (auto it = value.begin(); it != value.end();) {
    const std::string& name = it.key();
    if (implicit.count(name)) {
      ++it;
      continue;
    }
    if (const Schema* property = schema.property(name)) {
      walk(*property, it.value(), child(path, name), depth + 1);
      ++it;
    } else if (schema.additional_properties) {
      walk(*schema.additional_properties, it.value(), key(path, name), depth + 1);
      ++it;
    } else if (schema.preserve_unknown_fields || schema.type == SchemaType::Any) {
      ++it;
    } else if (unknown_ == UnknownFields::Drop) {
      it = value.erase(it);
    } else {
      unknownField(child(path, name));
      ++it;
    }
  }
}

void Validator::walk(const Schema& schema, Json& value, const std::string& path, int depth) {
  if (depth > kMaxDepth) {
    add(FieldErrorType::Invalid, path, "Invalid value: nesting is deeper than 100 levels");
    return;
  }
  if (value.is_null()) {
    if (schema.nullable || schema.type == SchemaType::Any) return;
    add(FieldErrorType::TypeMismatch, path,
        std::string("Invalid value: null: must be of type ") + schemaTypeName(schema.type));
    return;
  }
  if (!checkType(schema, value, path)) return;
  checkEnum(schema, value, path);
  if (value.is_string()) checkString(schema, value, path);
  if (value.is_number() && schema.type != SchemaType::Any) checkNumber(schema, value, path);
  if (schema.type == SchemaType::Array) {
    checkArray(schema, value, path, depth);
    return;
  }
  if (!value.is_object()) return;
  if (schema.type == SchemaType::Any && schema.properties.empty()) return;
  std::set<std::string, std::less<>> implicit;
  if (schema.embedded_resource) {
    implicit = {"apiVersion", "kind", "metadata"};
    for (const char* name : {"apiVersion", "kind"}) {
      auto it = value.find(name);
      if (it == value.end()) {
        add(FieldErrorType::Required, child(path, name), "Required value");
      } else if (!it->is_string()) {
        add(FieldErrorType::TypeMismatch, child(path, name),
            "Invalid value: " + showValue(*it) + ": must be of type string");
      }
    }
    auto meta = value.find("metadata");
    if (meta != value.end() && !meta->is_object()) {
      add(FieldErrorType::TypeMismatch, child(path, "metadata"),
          "Invalid value: " + showValue(*meta) + ": must be of type object");
    }
  }
  walkObjectProperties(schema, value, path, depth, implicit);
}

void Validator::validateMetadata(const ResourceType& type, Json& metadata) {
  const std::string path = "metadata";
  if (metadata.is_object()) {
    // `creationTimestamp: null` (as `kubectl create --dry-run -o yaml` writes) means unset.
    for (auto it = metadata.begin(); it != metadata.end();) {
      it = it->is_null() ? metadata.erase(it) : std::next(it);
    }
  }
  walk(*objectMetaSchema(), metadata, path, 1);
  if (!metadata.is_object()) return;

  auto name = metadata.find("name");
  auto generate_name = metadata.find("generateName");
  bool has_name =
      name != metadata.end() && name->is_string() && !name->get_ref<const std::string&>().empty();
  bool has_generate = generate_name != metadata.end() && generate_name->is_string() &&
                      !generate_name->get_ref<const std::string&>().empty();
  bool label_names = type.group.empty() && type.kind == "Namespace";
  if (has_name) {
    const auto& text = name->get_ref<const std::string&>();
    if (label_names ? !isDns1123Label(text) : !isDns1123Subdomain(text)) {
      invalid("metadata.name", *name, label_names ? kLabelMessage : kSubdomainMessage);
    }
  } else if (has_generate) {
    // The server appends a random suffix; the prefix must form a valid name with it.
    std::string candidate = generate_name->get<std::string>() + "x";
    if (candidate.size() > 253) candidate.resize(253);
    if (label_names ? !isDns1123Label(candidate) : !isDns1123Subdomain(candidate)) {
      invalid("metadata.generateName", *generate_name,
              label_names ? kLabelMessage : kSubdomainMessage);
    }
  } else if (name == metadata.end() || name->is_string()) {
    add(FieldErrorType::Required, "metadata.name",
        "Required value: name or generateName is required");
  }

  auto ns = metadata.find("namespace");
  if (ns != metadata.end() && ns->is_string() && !ns->get_ref<const std::string&>().empty() &&
      !isDns1123Label(ns->get_ref<const std::string&>())) {
    invalid("metadata.namespace", *ns, kLabelMessage);
  }

  auto labels = metadata.find("labels");
  if (labels != metadata.end() && labels->is_object()) {
    for (auto it = labels->begin(); it != labels->end(); ++it) {
      std::string label_path = key("metadata.labels", it.key());
      std::string problem = qualifiedNameProblem(it.key());
      if (!problem.empty()) invalid(label_path, Json(it.key()), problem);
      if (!it->is_string()) continue;
      const auto& v = it->get_ref<const std::string&>();
      if (v.size() > 63) {
        invalid(label_path, *it, "must be no more than 63 characters");
      } else if (!v.empty() && !isQualifiedNamePart(v)) {
        invalid(label_path, *it,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')");
      }
    }
  }

  auto annotations = metadata.find("annotations");
  if (annotations != metadata.end() && annotations->is_object()) {
    size_t total = 0;
    for (auto it = annotations->begin(); it != annotations->end(); ++it) {
      std::string problem = qualifiedNameProblem(it.key());
      if (!problem.empty()) {
        invalid(key("metadata.annotations", it.key()), Json(it.key()), problem);
      }
      total += it.key().size();
      if (it->is_string()) total += it->get_ref<const std::string&>().size();
    }
    if (total > kMaxAnnotationBytes) {
      add(FieldErrorType::Invalid, "metadata.annotations",
          "Too long: must have at most " + std::to_string(kMaxAnnotationBytes) + " bytes");
    }
  }
}

void Validator::validateEnvelope(const ResourceType& type, Json& object) {
  auto api_version = object.find("apiVersion");
  if (api_version == object.end()) {
    add(FieldErrorType::Required, "apiVersion", "Required value");
  } else if (!api_version->is_string() || *api_version != type.apiVersion()) {
    invalid("apiVersion", *api_version, "must be \"" + type.apiVersion() + "\"");
  }
  auto kind = object.find("kind");
  if (kind == object.end()) {
    add(FieldErrorType::Required, "kind", "Required value");
  } else if (!kind->is_string() || *kind != type.kind) {
    invalid("kind", *kind, "must be \"" + type.kind + "\"");
  }
  auto metadata = object.find("metadata");
  if (metadata == object.end()) {
    add(FieldErrorType::Required, "metadata.name",
        "Required value: name or generateName is required");
  } else {
    validateMetadata(type, *metadata);
  }
}

void defaultValue(const Schema& schema, Json& value, int depth) {
  if (depth > kMaxDepth) return;
  if (value.is_object() && schema.type != SchemaType::Any) {
    for (const auto& [name, property] : schema.properties) {
      auto it = value.find(name);
      if (it != value.end() && it->is_null() && !property->nullable &&
          property->type != SchemaType::Any) {
        // Kubernetes prunes nulls of non-nullable fields before defaulting.
        value.erase(it);
        it = value.end();
      }
      if (it == value.end()) {
        if (property->default_value) value[name] = *property->default_value;
        continue;
      }
      defaultValue(*property, *it, depth + 1);
    }
    if (schema.additional_properties) {
      for (auto it = value.begin(); it != value.end(); ++it) {
        if (schema.property(it.key())) continue;
        defaultValue(*schema.additional_properties, it.value(), depth + 1);
      }
    }
  } else if (value.is_array() && schema.items) {
    for (auto& item : value) defaultValue(*schema.items, item, depth + 1);
  }
}

}  // namespace

std::string FieldError::toString() const {
  if (type == FieldErrorType::Unknown) return detail;
  if (path.empty()) return detail;
  return path + ": " + detail;
}

std::vector<FieldError> validateObject(const ResourceType& type, Json& object,
                                       UnknownFields unknown_fields) {
  Validator validator(unknown_fields);
  try {
    if (!object.is_object()) {
      validator.add(FieldErrorType::TypeMismatch, "",
                    std::string("Invalid value: ") + showValue(object) +
                        ": the object must be a JSON object, got " + typeName(object));
      return validator.take();
    }
    validator.validateEnvelope(type, object);
    if (type.schema) {
      std::set<std::string, std::less<>> implicit = {"apiVersion", "kind", "metadata"};
      validator.walkObjectProperties(*type.schema, object, "", 0, implicit);
    }
  } catch (const std::exception& e) {
    validator.add(FieldErrorType::Invalid, "", std::string("Invalid value: ") + e.what());
  }
  return validator.take();
}

void applyDefaults(const ResourceType& type, Json& object) {
  if (!type.schema) return;
  try {
    defaultValue(*type.schema, object, 0);
  } catch (const std::exception&) {
    // Defaulting is best effort; validation reports what is wrong with the object.
  }
}

}  // namespace clrk::api
