#include "clrk/api/generate.h"

#include "clrk/api/codec.h"
#include "clrk/api/core_types.h"

#include <set>

namespace clrk::api {
namespace {

// The Kubernetes resource.Quantity pattern, as published for quantities in CRDs.
constexpr const char* kQuantityPattern =
    "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+("
    "\\.[0-9]*)?)|(\\.[0-9]+))))?$";

constexpr const char* kMetaPrefix = "io.k8s.apimachinery.pkg.apis.meta.v1.";

// Formats Kubernetes' OpenAPI validation knows; others are not emitted.
bool knownFormat(const std::string& format) {
  static const std::set<std::string> kFormats = {
      "int32",    "int64",    "float", "double", "byte",     "binary", "date", "date-time",
      "duration", "password", "uri",   "email",  "hostname", "ipv4",   "ipv6", "uuid"};
  return kFormats.count(format) > 0;
}

enum class Flavor { Crd, OpenApi };

Json schemaJson(const Schema& schema, Flavor flavor, int depth) {
  Json out = Json::object();
  if (depth > 64) return out;  // schemas are finite trees; this only guards against mistakes
  switch (schema.type) {
    case SchemaType::Object:
      out["type"] = "object";
      break;
    case SchemaType::Array:
      out["type"] = "array";
      break;
    case SchemaType::String:
      out["type"] = "string";
      break;
    case SchemaType::Integer:
      out["type"] = "integer";
      break;
    case SchemaType::Number:
      out["type"] = "number";
      break;
    case SchemaType::Boolean:
      out["type"] = "boolean";
      break;
    case SchemaType::IntOrString:
      out["x-kubernetes-int-or-string"] = true;
      out["anyOf"] = Json::array({{{"type", "integer"}}, {{"type", "string"}}});
      break;
    case SchemaType::Any:
      if (!schema.properties.empty() || schema.embedded_resource) out["type"] = "object";
      out["x-kubernetes-preserve-unknown-fields"] = true;
      break;
  }
  if (!schema.description.empty()) out["description"] = schema.description;
  if (!schema.properties.empty()) {
    Json properties = Json::object();
    for (const auto& [name, property] : schema.properties) {
      properties[name] = schemaJson(*property, flavor, depth + 1);
    }
    out["properties"] = std::move(properties);
  }
  if (!schema.required.empty()) out["required"] = schema.required;
  if (schema.additional_properties) {
    out["additionalProperties"] = schemaJson(*schema.additional_properties, flavor, depth + 1);
  }
  if (schema.items) out["items"] = schemaJson(*schema.items, flavor, depth + 1);
  if (!schema.enum_values.empty()) out["enum"] = schema.enum_values;
  if (schema.default_value) out["default"] = *schema.default_value;
  if (schema.minimum) out["minimum"] = *schema.minimum;
  if (schema.maximum) out["maximum"] = *schema.maximum;
  if (schema.min_length) out["minLength"] = *schema.min_length;
  if (schema.max_length) out["maxLength"] = *schema.max_length;
  if (schema.min_items) out["minItems"] = *schema.min_items;
  if (schema.max_items) out["maxItems"] = *schema.max_items;
  if (!schema.pattern.empty()) {
    out["pattern"] = schema.pattern;
  } else if (schema.format == "quantity") {
    out["pattern"] = kQuantityPattern;
  }
  if (knownFormat(schema.format)) out["format"] = schema.format;
  if (schema.nullable) out["nullable"] = true;
  if (schema.preserve_unknown_fields) out["x-kubernetes-preserve-unknown-fields"] = true;
  if (schema.embedded_resource) out["x-kubernetes-embedded-resource"] = true;
  if (!schema.list_type.empty()) out["x-kubernetes-list-type"] = schema.list_type;
  if (!schema.list_map_keys.empty()) out["x-kubernetes-list-map-keys"] = schema.list_map_keys;
  return out;
}

// Whole-object schema: apiVersion/kind/metadata always present; in CRDs metadata is only
// `type: object` (the API server owns ObjectMeta validation).
Json objectSchemaJson(const ResourceType& type, Flavor flavor) {
  Json out = type.schema ? schemaJson(*type.schema, flavor, 0) : Json::object();
  out["type"] = "object";
  Json& properties = out["properties"];
  if (!properties.is_object()) properties = Json::object();
  if (!properties.contains("apiVersion")) {
    properties["apiVersion"] = {{"type", "string"},
                                {"description",
                                 "APIVersion defines the versioned schema of this representation "
                                 "of an object."}};
  }
  if (!properties.contains("kind")) {
    properties["kind"] = {{"type", "string"},
                          {"description",
                           "Kind is a string value representing the REST resource this object "
                           "represents."}};
  }
  if (flavor == Flavor::Crd) {
    properties["metadata"] = {{"type", "object"}};
  } else {
    properties["metadata"] = schemaJson(*objectMetaSchema(), flavor, 1);
  }
  if (out.contains("required")) {
    // ObjectMeta requirements are enforced by the server, not by the schema.
    Json required = Json::array();
    for (const auto& name : out["required"]) {
      if (name != "metadata" && name != "apiVersion" && name != "kind") required.push_back(name);
    }
    if (required.empty()) {
      out.erase("required");
    } else {
      out["required"] = std::move(required);
    }
  }
  return out;
}

Json printerColumnJson(const PrinterColumn& column) {
  Json out = {{"name", column.name}, {"type", column.type}, {"jsonPath", column.json_path}};
  if (!column.description.empty()) out["description"] = column.description;
  if (!column.format.empty()) out["format"] = column.format;
  if (column.priority > 0) out["priority"] = column.priority;
  return out;
}

// "clrk.apoxy.dev" -> "dev.apoxy.clrk"; "" -> "io.k8s.api.core";
// "coordination.k8s.io" -> "io.k8s.api.coordination".
std::string schemaPrefix(const std::string& group) {
  if (group.empty()) return "io.k8s.api.core";
  const std::string k8s_suffix = ".k8s.io";
  if (group.size() > k8s_suffix.size() &&
      group.compare(group.size() - k8s_suffix.size(), k8s_suffix.size(), k8s_suffix) == 0) {
    return "io.k8s.api." + group.substr(0, group.size() - k8s_suffix.size());
  }
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = group.find('.', start);
    parts.push_back(group.substr(start, dot == std::string::npos ? dot : dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  std::string out;
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (!out.empty()) out += '.';
    out += *it;
  }
  return out;
}

std::string schemaName(const ResourceType& type, const std::string& kind) {
  return schemaPrefix(type.group) + "." + type.version + "." + kind;
}

Json schemaRef(const std::string& name) { return {{"$ref", "#/components/schemas/" + name}}; }

Json gvk(const ResourceType& type) {
  return {{"group", type.group}, {"version", type.version}, {"kind", type.kind}};
}

Json queryParam(const std::string& name, const std::string& description,
                const std::string& schema_type = "string") {
  return {{"name", name},
          {"in", "query"},
          {"description", description},
          {"schema", {{"type", schema_type}, {"uniqueItems", true}}}};
}

Json writeParams(bool with_force) {
  Json params = Json::array({
      queryParam("dryRun", "When present, modifications are not persisted (All)."),
      queryParam("fieldManager", "Name of the actor making these changes."),
      queryParam("fieldValidation",
                 "How the server handles unknown or duplicate fields: Ignore, Warn or Strict."),
  });
  if (with_force) {
    params.push_back(queryParam("force", "Force an apply request (server-side apply).", "boolean"));
  }
  return params;
}

Json listParams() {
  return Json::array({
      queryParam("labelSelector", "Restrict the list by labels."),
      queryParam("fieldSelector", "Restrict the list by fields."),
      queryParam("limit", "Maximum number of items to return.", "integer"),
      queryParam("continue", "Continue token from a previous list."),
      queryParam("resourceVersion", "Resource version to list or watch from."),
      queryParam("watch", "Watch for changes instead of listing.", "boolean"),
      queryParam("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
  });
}

Json jsonContent(const Json& schema) {
  return {{"application/json", {{"schema", schema}}}, {"application/yaml", {{"schema", schema}}}};
}

Json response(const std::string& description, const Json& schema) {
  return {{"description", description}, {"content", jsonContent(schema)}};
}

Json operation(const ResourceType& type, const std::string& id, const std::string& action,
               const std::string& description, Json responses, Json parameters = Json::array()) {
  Json op = {{"operationId", id},
             {"description", description},
             {"tags", Json::array({type.group.empty() ? "core_" + type.version
                                                      : type.group + "_" + type.version})},
             {"x-kubernetes-action", action},
             {"x-kubernetes-group-version-kind", gvk(type)},
             {"responses", std::move(responses)}};
  if (!parameters.empty()) op["parameters"] = std::move(parameters);
  return op;
}

Json pathParam(const std::string& name, const std::string& description) {
  return {{"name", name},
          {"in", "path"},
          {"required", true},
          {"description", description},
          {"schema", {{"type", "string"}, {"uniqueItems", true}}}};
}

std::string capitalized(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

void addPaths(const ResourceType& type, Json& paths) {
  const std::string base =
      type.group.empty() ? "/api/" + type.version : "/apis/" + type.group + "/" + type.version;
  const std::string object = schemaName(type, type.kind);
  const std::string list = schemaName(type, type.list_kind);
  const std::string id_suffix =
      capitalized(type.group.empty() ? "core" : type.group.substr(0, type.group.find('.'))) +
      capitalized(type.version) + (type.namespaced ? "Namespaced" : "") + type.kind;
  const Json status = schemaRef(std::string(kMetaPrefix) + "Status");
  const Json patch_body = {{"required", true},
                           {"content", [&] {
                              Json content = {
                                  {"application/json-patch+json",
                                   {{"schema", schemaRef(std::string(kMetaPrefix) + "Patch")}}},
                                  {"application/merge-patch+json",
                                   {{"schema", schemaRef(std::string(kMetaPrefix) + "Patch")}}},
                                  {"application/apply-patch+yaml",
                                   {{"schema", schemaRef(std::string(kMetaPrefix) + "Patch")}}}};
                              if (type.group.empty()) {
                                content["application/strategic-merge-patch+json"] = {
                                    {"schema", schemaRef(std::string(kMetaPrefix) + "Patch")}};
                              }
                              return content;
                            }()}};
  const Json body = {{"required", true}, {"content", jsonContent(schemaRef(object))}};

  const std::string collection =
      type.namespaced ? base + "/namespaces/{namespace}/" + type.plural : base + "/" + type.plural;
  const std::string item = collection + "/{name}";
  Json scope_params = Json::array();
  if (type.namespaced) {
    scope_params.push_back(pathParam("namespace", "Object name and auth scope, for teams."));
  }

  // Collection: list, create, delete collection.
  Json collection_item = {{"parameters", scope_params}};
  collection_item["get"] =
      operation(type, "list" + id_suffix, "list", "list or watch objects of kind " + type.kind,
                {{"200", response("OK", schemaRef(list))}}, listParams());
  Json post = operation(type, "create" + id_suffix, "post", "create a " + type.kind,
                        {{"200", response("OK", schemaRef(object))},
                         {"201", response("Created", schemaRef(object))},
                         {"202", response("Accepted", schemaRef(object))}},
                        writeParams(false));
  post["requestBody"] = body;
  collection_item["post"] = std::move(post);
  collection_item["delete"] = operation(type, "deletecollection" + id_suffix, "deletecollection",
                                        "delete collection of " + type.kind,
                                        {{"200", response("OK", status)}}, listParams());
  paths[collection] = std::move(collection_item);

  // Item: read, replace, patch, delete.
  Json item_params = scope_params;
  item_params.insert(item_params.begin(), pathParam("name", "Name of the " + type.kind + "."));
  Json item_path = {{"parameters", item_params}};
  item_path["get"] = operation(type, "read" + id_suffix, "get", "read the specified " + type.kind,
                               {{"200", response("OK", schemaRef(object))}});
  Json put = operation(
      type, "replace" + id_suffix, "put", "replace the specified " + type.kind,
      {{"200", response("OK", schemaRef(object))}, {"201", response("Created", schemaRef(object))}},
      writeParams(false));
  put["requestBody"] = body;
  item_path["put"] = std::move(put);
  Json patch = operation(
      type, "patch" + id_suffix, "patch", "partially update the specified " + type.kind,
      {{"200", response("OK", schemaRef(object))}, {"201", response("Created", schemaRef(object))}},
      writeParams(true));
  patch["requestBody"] = patch_body;
  item_path["patch"] = std::move(patch);
  item_path["delete"] =
      operation(type, "delete" + id_suffix, "delete", "delete a " + type.kind,
                {{"200", response("OK", status)}, {"202", response("Accepted", status)}});
  paths[item] = std::move(item_path);

  if (type.has_status_subresource) {
    Json status_path = {{"parameters", item_params}};
    status_path["get"] = operation(type, "read" + id_suffix + "Status", "get",
                                   "read status of the specified " + type.kind,
                                   {{"200", response("OK", schemaRef(object))}});
    Json status_put = operation(type, "replace" + id_suffix + "Status", "put",
                                "replace status of the specified " + type.kind,
                                {{"200", response("OK", schemaRef(object))}}, writeParams(false));
    status_put["requestBody"] = body;
    status_path["put"] = std::move(status_put);
    Json status_patch = operation(type, "patch" + id_suffix + "Status", "patch",
                                  "partially update status of the specified " + type.kind,
                                  {{"200", response("OK", schemaRef(object))}}, writeParams(true));
    status_patch["requestBody"] = patch_body;
    status_path["patch"] = std::move(status_patch);
    paths[item + "/status"] = std::move(status_path);
  }

  if (type.namespaced) {
    Json all = Json::object();
    all["get"] = operation(
        type,
        "list" +
            capitalized(type.group.empty() ? "core" : type.group.substr(0, type.group.find('.'))) +
            capitalized(type.version) + type.kind + "ForAllNamespaces",
        "list", "list objects of kind " + type.kind + " in all namespaces",
        {{"200", response("OK", schemaRef(list))}}, listParams());
    paths[base + "/" + type.plural] = std::move(all);
  }
}

Json metaSchemas() {
  Json schemas = Json::object();
  schemas[std::string(kMetaPrefix) + "ObjectMeta"] =
      schemaJson(*objectMetaSchema(), Flavor::OpenApi, 0);
  schemas[std::string(kMetaPrefix) + "ListMeta"] = {
      {"type", "object"},
      {"description", "Metadata of a list: resourceVersion and continue token."},
      {"properties",
       {{"resourceVersion", {{"type", "string"}}},
        {"continue", {{"type", "string"}}},
        {"remainingItemCount", {{"type", "integer"}, {"format", "int64"}}}}}};
  schemas[std::string(kMetaPrefix) + "Patch"] = {
      {"type", "object"}, {"description", "Patch body; its format depends on the Content-Type."}};
  schemas[std::string(kMetaPrefix) + "Status"] = {
      {"type", "object"},
      {"description", "Status is a return value for calls that don't return other objects."},
      {"properties",
       {{"apiVersion", {{"type", "string"}}},
        {"kind", {{"type", "string"}}},
        {"status", {{"type", "string"}}},
        {"message", {{"type", "string"}}},
        {"reason", {{"type", "string"}}},
        {"code", {{"type", "integer"}, {"format", "int32"}}},
        {"details", {{"type", "object"}, {"x-kubernetes-preserve-unknown-fields", true}}},
        {"metadata", schemaRef(std::string(kMetaPrefix) + "ListMeta")}}},
      {"x-kubernetes-group-version-kind",
       Json::array({{{"group", ""}, {"version", "v1"}, {"kind", "Status"}}})}};
  return schemas;
}

// ---- JSONPath ---------------------------------------------------------------------------------

Json evalPath(const Json& value, std::string_view path, int depth);

// Reads a field name up to '.' or '[' (backslash escapes a dot).
std::string readName(std::string_view& path) {
  std::string name;
  while (!path.empty() && path[0] != '.' && path[0] != '[') {
    if (path[0] == '\\' && path.size() > 1) path.remove_prefix(1);
    name += path[0];
    path.remove_prefix(1);
  }
  return name;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

// A filter literal: 'x', "x", a number, true/false; nullopt when unparsable.
std::optional<Json> literal(std::string_view text) {
  text = trim(text);
  if (text.size() >= 2 && (text.front() == '"' || text.front() == '\'') &&
      text.back() == text.front()) {
    return Json(std::string(text.substr(1, text.size() - 2)));
  }
  if (text == "true") return Json(true);
  if (text == "false") return Json(false);
  Json parsed = Json::parse(text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_number()) return std::nullopt;
  return parsed;
}

bool filterMatches(const Json& item, std::string_view expression, int depth) {
  expression = trim(expression);
  size_t op = expression.find("==");
  bool negate = false;
  if (op == std::string_view::npos) {
    op = expression.find("!=");
    negate = true;
  }
  if (op == std::string_view::npos) {
    // Existence test: [?(@.field)]
    if (expression.substr(0, 1) != "@") return false;
    return !evalPath(item, expression.substr(1), depth + 1).is_null();
  }
  std::string_view lhs = trim(expression.substr(0, op));
  auto rhs = literal(expression.substr(op + 2));
  if (!rhs || lhs.empty() || lhs[0] != '@') return false;
  bool equal = evalPath(item, lhs.substr(1), depth + 1) == *rhs;
  return negate ? !equal : equal;
}

Json evalPath(const Json& value, std::string_view path, int depth) {
  if (depth > 32) return nullptr;
  if (path.empty()) return value;
  if (path[0] == '.') {
    path.remove_prefix(1);
    if (path.empty()) return value;
    if (path[0] == '[') return evalPath(value, path, depth + 1);
    std::string name = readName(path);
    if (!value.is_object()) return nullptr;
    auto it = value.find(name);
    if (it == value.end()) return nullptr;
    return evalPath(*it, path, depth + 1);
  }
  if (path[0] == '[') {
    // Find the matching ']' (quotes and parentheses may contain ']').
    size_t close = std::string_view::npos;
    char quote = 0;
    int parens = 0;
    for (size_t i = 1; i < path.size(); ++i) {
      char c = path[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '(') {
        ++parens;
      } else if (c == ')') {
        --parens;
      } else if (c == ']' && parens <= 0) {
        close = i;
        break;
      }
    }
    if (close == std::string_view::npos) return nullptr;
    std::string_view inside = trim(path.substr(1, close - 1));
    std::string_view rest = path.substr(close + 1);
    if (inside == "*") {
      Json out = Json::array();
      if (value.is_array()) {
        for (const auto& item : value) out.push_back(evalPath(item, rest, depth + 1));
      } else if (value.is_object()) {
        for (const auto& item : value) out.push_back(evalPath(item, rest, depth + 1));
      }
      return out;
    }
    if (inside.size() >= 3 && inside[0] == '?' && inside[1] == '(' && inside.back() == ')') {
      if (!value.is_array()) return nullptr;
      std::string_view expression = inside.substr(2, inside.size() - 3);
      for (const auto& item : value) {
        if (filterMatches(item, expression, depth)) return evalPath(item, rest, depth + 1);
      }
      return nullptr;
    }
    if (inside.size() >= 2 && (inside[0] == '\'' || inside[0] == '"') &&
        inside.back() == inside[0]) {
      if (!value.is_object()) return nullptr;
      auto it = value.find(std::string(inside.substr(1, inside.size() - 2)));
      if (it == value.end()) return nullptr;
      return evalPath(*it, rest, depth + 1);
    }
    // Array index, negative counts from the end.
    int64_t index = 0;
    bool negative = false;
    size_t i = 0;
    if (i < inside.size() && inside[i] == '-') {
      negative = true;
      ++i;
    }
    if (i == inside.size()) return nullptr;
    for (; i < inside.size(); ++i) {
      if (inside[i] < '0' || inside[i] > '9' || index > 1'000'000'000) return nullptr;
      index = index * 10 + (inside[i] - '0');
    }
    if (!value.is_array()) return nullptr;
    auto size = static_cast<int64_t>(value.size());
    if (negative) index = size - index;
    if (index < 0 || index >= size) return nullptr;
    return evalPath(value[static_cast<size_t>(index)], rest, depth + 1);
  }
  // A bare leading name ("spec.x").
  std::string name = readName(path);
  if (!value.is_object()) return nullptr;
  auto it = value.find(name);
  if (it == value.end()) return nullptr;
  return evalPath(*it, path, depth + 1);
}

}  // namespace

Json crdFor(const ResourceType& type) {
  Json names = {{"kind", type.kind},
                {"listKind", type.list_kind},
                {"plural", type.plural},
                {"singular", type.singular}};
  if (!type.short_names.empty()) names["shortNames"] = type.short_names;
  if (!type.categories.empty()) names["categories"] = type.categories;

  Json version = {{"name", type.version},
                  {"served", true},
                  {"storage", true},
                  {"schema", {{"openAPIV3Schema", objectSchemaJson(type, Flavor::Crd)}}}};
  if (type.has_status_subresource) version["subresources"] = {{"status", Json::object()}};
  Json columns = Json::array();
  for (const auto& column : type.printer_columns) columns.push_back(printerColumnJson(column));
  columns.push_back(
      {{"name", "Age"}, {"type", "date"}, {"jsonPath", ".metadata.creationTimestamp"}});
  version["additionalPrinterColumns"] = std::move(columns);

  return {{"apiVersion", "apiextensions.k8s.io/v1"},
          {"kind", "CustomResourceDefinition"},
          {"metadata", {{"name", type.qualifiedName()}}},
          {"spec",
           {{"group", type.group},
            {"names", std::move(names)},
            {"scope", type.namespaced ? "Namespaced" : "Cluster"},
            {"versions", Json::array({std::move(version)})}}}};
}

std::string crdYaml(const ResourceType& type) {
  return "# Generated by clrk-gen-crds from src/clrk/api; do not edit.\n---\n" +
         toYaml(crdFor(type));
}

Json openApiV3(const Registry& registry, std::string_view group_version) {
  Json paths = Json::object();
  Json schemas = metaSchemas();
  for (const auto& type : registry.types()) {
    if (type.apiVersion() != group_version) continue;
    Json object = objectSchemaJson(type, Flavor::OpenApi);
    object["properties"]["metadata"] = schemaRef(std::string(kMetaPrefix) + "ObjectMeta");
    object["x-kubernetes-group-version-kind"] = Json::array({gvk(type)});
    schemas[schemaName(type, type.kind)] = std::move(object);
    Json list_gvk = gvk(type);
    list_gvk["kind"] = type.list_kind;
    schemas[schemaName(type, type.list_kind)] = {
        {"type", "object"},
        {"description", type.list_kind + " is a list of " + type.kind + "."},
        {"required", Json::array({"items"})},
        {"properties",
         {{"apiVersion", {{"type", "string"}}},
          {"kind", {{"type", "string"}}},
          {"metadata", schemaRef(std::string(kMetaPrefix) + "ListMeta")},
          {"items", {{"type", "array"}, {"items", schemaRef(schemaName(type, type.kind))}}}}},
        {"x-kubernetes-group-version-kind", Json::array({list_gvk})}};
    addPaths(type, paths);
  }
  return {{"openapi", "3.0.0"},
          {"info", {{"title", "clrk"}, {"version", std::string(group_version)}}},
          {"paths", std::move(paths)},
          {"components", {{"schemas", std::move(schemas)}}}};
}

Json evalJsonPath(const Json& object, std::string_view json_path) {
  std::string_view path = trim(json_path);
  if (path.size() >= 2 && path.front() == '{' && path.back() == '}') {
    path = trim(path.substr(1, path.size() - 2));
  }
  if (!path.empty() && path[0] == '$') path.remove_prefix(1);
  try {
    return evalPath(object, path, 0);
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace clrk::api
