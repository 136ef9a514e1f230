#include "clrk/apiserver/resource_handler.h"

#include "clrk/api/codec.h"
#include "clrk/api/validation.h"
#include "clrk/apiserver/garbage_collector.h"
#include "clrk/apiserver/label_selector.h"
#include "clrk/apiserver/managed_fields.h"
#include "clrk/apiserver/patch.h"
#include "clrk/apiserver/protobuf.h"
#include "clrk/apiserver/render.h"
#include "clrk/apiserver/status_errors.h"
#include "clrk/apiserver/table.h"
#include "clrk/apiserver/watch_stream.h"
#include "clrk/base/ascii.h"
#include "clrk/base/base64.h"
#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

namespace clrk::apiserver {
namespace {

using api::Json;

constexpr int kMaxNestingDepth = 100;
constexpr int kMaxAttempts = 16;
constexpr std::string_view kImmutableDetail =
    "Forbidden: field is immutable when `immutable` is set";

// Internal control flow: thrown inside the handler, turned into a Response at handle().
struct ApiException {
  ApiError error;
};

[[noreturn]] void fail(ApiError error) { throw ApiException{std::move(error)}; }

enum class FieldValidation { Strict, Warn, Ignore };
enum class Sub { Main, Status, Finalize };
enum class OutputKind { Plain, Table, PartialMetadata };

struct Output {
  OutputKind kind = OutputKind::Plain;
  std::string version = "meta.k8s.io/v1";
};

struct Route {
  const api::ResourceType* type = nullptr;
  std::string ns;
  std::string name;
  std::string subresource;
  bool watch_path = false;
};

struct Ctx {
  Ctx(const Request& req, Route r) : request(req), route(std::move(r)) {}
  const Request& request;
  Route route;
  bool dry_run = false;
  FieldValidation validation = FieldValidation::Warn;
  std::string manager;
  std::vector<std::string> warnings;
};

// ---- small helpers ---------------------------------------------------------------------------

std::string storageResource(const api::ResourceType& type) {
  return type.group.empty() ? type.plural : type.group + "/" + type.plural;
}

std::string nowRfc3339() { return formatRfc3339(std::chrono::system_clock::now()); }

Json& metadataOf(Json& object) {
  Json& metadata = object["metadata"];
  if (!metadata.is_object()) metadata = Json::object();
  return metadata;
}

std::string stringAt(const Json& object, std::string_view key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::string metaString(const Json& object, std::string_view key) {
  auto it = object.find("metadata");
  if (it == object.end()) return {};
  return stringAt(*it, key);
}

std::vector<std::string> stringList(const Json& value) {
  std::vector<std::string> out;
  if (!value.is_array()) return out;
  for (const auto& item : value) {
    if (item.is_string()) out.push_back(item.get<std::string>());
  }
  return out;
}

std::vector<std::string> finalizersOf(const Json& object) {
  auto it = object.find("metadata");
  if (it == object.end() || !it->is_object()) return {};
  auto fin = it->find("finalizers");
  return fin == it->end() ? std::vector<std::string>{} : stringList(*fin);
}

std::vector<std::string> namespaceSpecFinalizers(const Json& object) {
  auto spec = object.find("spec");
  if (spec == object.end() || !spec->is_object()) return {};
  auto fin = spec->find("finalizers");
  return fin == spec->end() ? std::vector<std::string>{} : stringList(*fin);
}

bool isDeleting(const Json& object) { return !metaString(object, "deletionTimestamp").empty(); }

bool isNamespaceType(const api::ResourceType& type) {
  return type.group.empty() && type.kind == "Namespace";
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::string mediaType(std::string_view content_type) {
  std::string_view base = content_type.substr(0, content_type.find(';'));
  return asciiLowerCopy(trim(base));
}

std::optional<int64_t> parseInt(std::string_view text) {
  int64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string randomSuffix() {
  static constexpr char kChars[] = "bcdfghjklmnpqrstvwxz2456789";  // as the real server
  unsigned char bytes[5];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    for (auto& byte : bytes) byte = static_cast<unsigned char>(std::rand());
  }
  std::string out;
  for (unsigned char byte : bytes) out += kChars[byte % (sizeof(kChars) - 1)];
  return out;
}

// Rejects JSON nested deeper than kMaxNestingDepth (the parser and validators recurse).
bool nestingWithinLimit(std::string_view body) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxNestingDepth) return false;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

Json parseJson(std::string_view body) {
  if (!nestingWithinLimit(body)) {
    fail(badRequestError("the request body nests deeper than " + std::to_string(kMaxNestingDepth) +
                         " levels"));
  }
  try {
    return Json::parse(body);
  } catch (const Json::parse_error& error) {
    std::string message = error.what();
    size_t end = message.find("] ");
    if (end != std::string::npos) message = message.substr(end + 2);
    fail(badRequestError("the request body is not valid JSON (byte " + std::to_string(error.byte) +
                         "): " + message));
  }
}

// JSON, or YAML when the body does not look like JSON (apply-patch+yaml, application/yaml).
Json parseJsonOrYaml(std::string_view body) {
  std::string_view head = body;
  while (!head.empty() && std::isspace(static_cast<unsigned char>(head.front())))
    head.remove_prefix(1);
  if (!head.empty() && (head.front() == '{' || head.front() == '[')) return parseJson(body);
  auto documents = api::decodeManifests(body, "request body");
  if (!documents.ok()) fail(badRequestError(documents.status().message()));
  if (documents->size() != 1) {
    fail(badRequestError("the request body must hold exactly one YAML document, found " +
                         std::to_string(documents->size())));
  }
  return std::move((*documents)[0].object);
}

constexpr std::string_view kProtobufMediaType = "application/vnd.kubernetes.protobuf";

// A Kubernetes protobuf body as the JSON object its JSON form would carry: 400 when malformed,
// 415 for kinds the protobuf decoder does not know.
Json protobufBodyToJson(std::string_view body, std::string_view content_type) {
  Result<ProtobufEnvelope> envelope = readProtobufEnvelope(body);
  if (!envelope.ok()) fail(badRequestError(envelope.status().message()));
  if (!isDecodableProtobufKind(envelope->api_version, envelope->kind)) {
    fail(unsupportedMediaTypeError(content_type));
  }
  Result<Json> object = decodeProtobufObject(*envelope);
  if (!object.ok()) fail(badRequestError(object.status().message()));
  return std::move(object).value();
}

Output parseAccept(std::string_view accept) {
  if (trim(accept).empty()) return {};
  size_t start = 0;
  while (start <= accept.size()) {
    size_t comma = accept.find(',', start);
    std::string_view range = accept.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    std::string type = mediaType(range);
    std::string as;
    std::string group;
    std::string version;
    size_t semi = range.find(';');
    while (semi != std::string_view::npos) {
      size_t next = range.find(';', semi + 1);
      std::string_view param = trim(range.substr(
          semi + 1, next == std::string_view::npos ? std::string_view::npos : next - semi - 1));
      size_t eq = param.find('=');
      if (eq != std::string_view::npos) {
        std::string_view key = trim(param.substr(0, eq));
        std::string_view value = trim(param.substr(eq + 1));
        if (key == "as") as = value;
        if (key == "g") group = value;
        if (key == "v") version = value;
      }
      semi = next;
    }
    bool json_like = type == "application/json" || type == "*/*" || type == "application/*";
    if (json_like) {
      if (as.empty()) return {};
      if (as == "Table" && group == "meta.k8s.io" && (version == "v1" || version == "v1beta1")) {
        return {OutputKind::Table, "meta.k8s.io/" + version};
      }
      if ((as == "PartialObjectMetadata" || as == "PartialObjectMetadataList") &&
          group == "meta.k8s.io" && (version == "v1" || version == "v1beta1")) {
        return {OutputKind::PartialMetadata, "meta.k8s.io/" + version};
      }
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  fail(notAcceptableError(accept));
}

Response jsonResponse(int code, std::string body) {
  Response response;
  response.status = code;
  response.body = std::move(body);
  return response;
}

std::vector<std::string> allowedFieldSelectors(const api::ResourceType& type) {
  std::vector<std::string> fields = {"metadata.name", "metadata.namespace"};
  if (type.group.empty() && type.kind == "Event") {
    for (const char* field :
         {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
          "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
          "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}) {
      fields.emplace_back(field);
    }
  } else if (type.group.empty() && type.kind == "Secret") {
    fields.emplace_back("type");
  } else if (isNamespaceType(type)) {
    fields.emplace_back("status.phase");
  }
  return fields;
}

bool specChanged(const api::ResourceType& type, const Json& before, const Json& after) {
  auto ignored = [&](const std::string& key) {
    return key == "metadata" || (type.has_status_subresource && key == "status");
  };
  for (const auto& [key, value] : after.items()) {
    if (ignored(key)) continue;
    auto it = before.find(key);
    if (it == before.end() || *it != value) return true;
  }
  for (const auto& [key, value] : before.items()) {
    if (!ignored(key) && !after.contains(key)) return true;
  }
  return false;
}

// ---- the handler -----------------------------------------------------------------------------

class Handler final : public ResourceHandler {
 public:
  Handler(storage::Storage& storage, const api::Registry& registry, ResourceHandlerOptions options)
      : storage_(storage),
        registry_(registry),
        options_(options),
        streams_(std::make_shared<StreamRegistry>()),
        namespace_type_(registry.byPlural("", "v1", "namespaces")) {}

  ~Handler() override { stop(); }

  Response handle(const Request& request) override {
    try {
      return dispatch(request);
    } catch (const ApiException& exception) {
      return exception.error.toResponse();
    } catch (const std::exception& exception) {
      logger("apiserver")->error("{} {}: {}", request.method, request.path, exception.what());
      return internalError(exception.what()).toResponse();
    }
  }

  void start() override {
    std::lock_guard lock(lifecycle_mutex_);
    if (started_) return;
    started_ = true;
    ensureDefaultNamespace();
    gc_ =
        std::make_unique<GarbageCollector>(storage_, registry_, *this, options_.gc_resync_interval);
    gc_->start();
  }

  void stop() override {
    std::unique_ptr<GarbageCollector> gc;
    {
      std::lock_guard lock(lifecycle_mutex_);
      gc = std::move(gc_);
    }
    if (gc) gc->stop();
    streams_->stopAll();
  }

 private:
  // ---- routing -------------------------------------------------------------------------------

  Route parseRoute(std::string_view path) const {
    std::vector<std::string_view> segments;
    size_t start = 0;
    while (start < path.size()) {
      size_t slash = path.find('/', start);
      if (slash == std::string_view::npos) slash = path.size();
      if (slash > start) segments.push_back(path.substr(start, slash - start));
      start = slash + 1;
    }
    std::string_view group;
    std::string_view version;
    size_t rest = 0;
    if (segments.size() >= 2 && segments[0] == "api") {
      version = segments[1];
      rest = 2;
    } else if (segments.size() >= 3 && segments[0] == "apis") {
      group = segments[1];
      version = segments[2];
      rest = 3;
    } else {
      fail(unknownResourceError(path));
    }
    Route route;
    std::vector<std::string_view> parts(segments.begin() + static_cast<long>(rest), segments.end());
    if (!parts.empty() && parts[0] == "watch") {
      route.watch_path = true;
      parts.erase(parts.begin());
    }
    if (parts.empty()) fail(unknownResourceError(path));
    std::string_view plural;
    std::string_view name;
    std::string_view sub;
    size_t extra = 0;
    const api::ResourceType* namespaced_type = parts.size() >= 3 && parts[0] == "namespaces"
                                                   ? registry_.byPlural(group, version, parts[2])
                                                   : nullptr;
    if (namespaced_type != nullptr && namespaced_type->namespaced) {
      route.ns = std::string(parts[1]);
      plural = parts[2];
      if (parts.size() > 3) name = parts[3];
      if (parts.size() > 4) sub = parts[4];
      extra = parts.size() > 5 ? parts.size() - 5 : 0;
    } else {
      plural = parts[0];
      if (parts.size() > 1) name = parts[1];
      if (parts.size() > 2) sub = parts[2];
      extra = parts.size() > 3 ? parts.size() - 3 : 0;
    }
    route.type = registry_.byPlural(group, version, plural);
    if (route.type == nullptr || extra > 0) fail(unknownResourceError(path));
    if (route.type->namespaced && route.ns.empty() && !name.empty()) {
      fail(unknownResourceError(path));
    }
    route.name = std::string(name);
    route.subresource = std::string(sub);
    if (!route.subresource.empty()) {
      bool known = (route.subresource == "status" && route.type->has_status_subresource) ||
                   (route.subresource == "finalize" && isNamespaceType(*route.type));
      if (!known) fail(unknownResourceError(path));
    }
    return route;
  }

  Response dispatch(const Request& request) {
    Ctx ctx{request, parseRoute(request.path)};
    const api::ResourceType& type = *ctx.route.type;
    if (request.body.size() > options_.max_body_bytes) {
      fail(tooLargeError(options_.max_body_bytes));
    }
    if (auto dry_run = request.param("dryRun")) {
      if (*dry_run == "All") {
        ctx.dry_run = true;
      } else if (!dry_run->empty()) {
        fail(badRequestError("Invalid dry run value: unsupported dry run value \"" +
                             std::string(*dry_run) + "\" (supported: All)"));
      }
    }
    if (auto validation = request.param("fieldValidation")) {
      if (*validation == "Strict") {
        ctx.validation = FieldValidation::Strict;
      } else if (*validation == "Ignore") {
        ctx.validation = FieldValidation::Ignore;
      } else if (*validation == "Warn" || validation->empty()) {
        ctx.validation = FieldValidation::Warn;
      } else {
        fail(badRequestError("fieldValidation: Unsupported value: \"" + std::string(*validation) +
                             "\": supported values: \"Ignore\", \"Strict\", \"Warn\""));
      }
    }
    if (auto manager = request.param("fieldManager")) ctx.manager = std::string(*manager);
    if (ctx.manager.size() > 128) {
      fail(badRequestError("fieldManager: Too long: may not be more than 128 bytes"));
    }

    const std::string& method = request.method;
    bool item = !ctx.route.name.empty();
    Response response;
    if (ctx.route.watch_path) {
      if (method != "GET") fail(methodNotAllowedError());
      response = watch(ctx);
    } else if (method == "GET") {
      Output output = parseAccept(request.accept);
      if (!item) {
        auto watch_param = request.param("watch");
        if (watch_param && (*watch_param == "1" || *watch_param == "true")) {
          response = watch(ctx);
        } else {
          response = list(ctx, output);
        }
      } else {
        response = get(ctx, output);
      }
    } else if (method == "POST") {
      if (item || (type.namespaced && ctx.route.ns.empty())) fail(methodNotAllowedError());
      response = create(ctx);
    } else if (method == "PUT") {
      if (!item) fail(methodNotAllowedError());
      response = put(ctx);
    } else if (method == "PATCH") {
      if (!item || ctx.route.subresource == "finalize") fail(methodNotAllowedError());
      response = patch(ctx);
    } else if (method == "DELETE") {
      if (!ctx.route.subresource.empty()) fail(methodNotAllowedError());
      response = item ? deleteItem(ctx) : deleteCollection(ctx);
    } else {
      fail(methodNotAllowedError());
    }
    for (const auto& warning : ctx.warnings) {
      response.headers.emplace_back("Warning", "299 - " + dumpJson(Json(warning)));
    }
    return response;
  }

  // ---- reads ---------------------------------------------------------------------------------

  storage::ObjectKey keyFor(const Route& route) const {
    return {storageResource(*route.type), route.type->namespaced ? route.ns : "", route.name};
  }

  Response renderOne(const api::ResourceType& type, const Output& output, std::string raw) {
    if (output.kind == OutputKind::Plain) return jsonResponse(200, std::move(raw));
    Json object = Json::parse(raw);
    if (output.kind == OutputKind::Table) {
      return jsonResponse(200, dumpJson(buildTable(type, {object}, IncludeObject::Metadata,
                                                   output.version, Json::object())));
    }
    Json partial = {{"apiVersion", output.version},
                    {"kind", "PartialObjectMetadata"},
                    {"metadata", object["metadata"]}};
    return jsonResponse(200, dumpJson(partial));
  }

  Response get(Ctx& ctx, const Output& output) {
    const api::ResourceType& type = *ctx.route.type;
    auto stored = storage_.get(keyFor(ctx.route));
    if (!stored.ok()) fail(fromStatus(stored.status(), type, ctx.route.name));
    if (output.kind == OutputKind::Table) {
      Json object = Json::parse(stored->value);
      IncludeObject include =
          parseIncludeObject(ctx.request.param("includeObject").value_or("Metadata"));
      return jsonResponse(
          200, dumpJson(buildTable(type, {object}, include, output.version,
                                   {{"resourceVersion", std::to_string(stored->revision)}})));
    }
    return renderOne(type, output, std::move(stored->value));
  }

  struct Selectors {
    LabelSelector labels;
    FieldSelector fields;
    bool empty() const { return labels.empty() && fields.empty(); }
  };

  Selectors parseSelectors(const Ctx& ctx) const {
    Selectors selectors;
    if (auto text = ctx.request.param("labelSelector")) {
      auto parsed = LabelSelector::parse(*text);
      if (!parsed.ok()) fail(badRequestError(parsed.status().message()));
      selectors.labels = std::move(parsed).value();
    }
    if (auto text = ctx.request.param("fieldSelector")) {
      auto parsed = FieldSelector::parse(*text, allowedFieldSelectors(*ctx.route.type));
      if (!parsed.ok()) fail(badRequestError(parsed.status().message()));
      selectors.fields = std::move(parsed).value();
    }
    return selectors;
  }

  static bool matches(const Selectors& selectors, const Json& object) {
    if (!selectors.labels.empty()) {
      static const Json kNull;
      const Json* labels = &kNull;
      auto meta = object.find("metadata");
      if (meta != object.end() && meta->is_object()) {
        auto it = meta->find("labels");
        if (it != meta->end()) labels = &*it;
      }
      if (!selectors.labels.matches(*labels)) return false;
    }
    return selectors.fields.matches(object);
  }

  struct Listed {
    std::vector<std::string> raw;
    std::vector<Json> parsed;  // filled when selectors or a table need them
    int64_t revision = 0;
    std::string continue_token;
    int64_t remaining = -1;
  };

  Listed listObjects(const Ctx& ctx, const Selectors& selectors, bool need_parsed) {
    const api::ResourceType& type = *ctx.route.type;
    int64_t limit = 0;
    if (auto text = ctx.request.param("limit")) {
      auto value = parseInt(*text);
      if (!value || *value < 0)
        fail(badRequestError("limit: Invalid value: \"" + std::string(*text) + "\""));
      limit = *value;
    }
    std::string token(ctx.request.param("continue").value_or(""));
    std::string resource = storageResource(type);
    Listed out;
    bool filtered = !selectors.empty();
    while (true) {
      storage::ListOptions options;
      options.ns = type.namespaced ? std::string_view(ctx.route.ns) : std::string_view();
      options.limit = limit > 0 ? limit - static_cast<int64_t>(out.raw.size()) : 0;
      options.continue_token = token;
      auto page = storage_.list(resource, options);
      if (!page.ok()) {
        if (page.status().code() == Code::Gone) {
          fail(expiredError(
              "The provided continue parameter is too old to display a consistent list result. "
              "You can start a new list without the continue parameter."));
        }
        if (page.status().code() == Code::InvalidArgument) {
          fail(badRequestError(page.status().message()));
        }
        fail(internalError(page.status().message()));
      }
      if (out.revision == 0) out.revision = page->revision;
      for (auto& item : page->items) {
        if (filtered || need_parsed) {
          Json object = Json::parse(item.value, nullptr, false);
          if (object.is_discarded()) continue;
          if (filtered && !matches(selectors, object)) continue;
          if (need_parsed) out.parsed.push_back(std::move(object));
        }
        out.raw.push_back(std::move(item.value));
      }
      token = page->continue_token;
      if (token.empty()) break;
      if (limit > 0 && static_cast<int64_t>(out.raw.size()) >= limit) {
        out.continue_token = token;
        if (!filtered) out.remaining = page->remaining;
        break;
      }
      if (limit == 0) continue;
    }
    return out;
  }

  Json listMetadata(const Listed& listed) const {
    Json metadata = {{"resourceVersion", std::to_string(listed.revision)}};
    if (!listed.continue_token.empty()) {
      metadata["continue"] = listed.continue_token;
      if (listed.remaining >= 0) metadata["remainingItemCount"] = listed.remaining;
    }
    return metadata;
  }

  std::string listBody(const api::ResourceType& type, const Listed& listed) const {
    size_t total = 128;
    for (const auto& item : listed.raw) total += item.size() + 1;
    std::string body;
    body.reserve(total);
    body += "{\"kind\":";
    body += dumpJson(Json(type.list_kind.empty() ? type.kind + "List" : type.list_kind));
    body += ",\"apiVersion\":";
    body += dumpJson(Json(type.apiVersion()));
    body += ",\"metadata\":";
    body += dumpJson(listMetadata(listed));
    body += ",\"items\":[";
    for (size_t idx = 0; idx < listed.raw.size(); ++idx) {
      if (idx > 0) body += ',';
      body += listed.raw[idx];
    }
    body += "]}";
    return body;
  }

  Response list(Ctx& ctx, const Output& output) {
    const api::ResourceType& type = *ctx.route.type;
    Selectors selectors = parseSelectors(ctx);
    bool need_parsed = output.kind != OutputKind::Plain;
    Listed listed = listObjects(ctx, selectors, need_parsed);
    if (output.kind == OutputKind::Table) {
      IncludeObject include =
          parseIncludeObject(ctx.request.param("includeObject").value_or("Metadata"));
      return jsonResponse(200, dumpJson(buildTable(type, listed.parsed, include, output.version,
                                                   listMetadata(listed))));
    }
    if (output.kind == OutputKind::PartialMetadata) {
      Json items = Json::array();
      for (auto& object : listed.parsed) {
        items.push_back({{"apiVersion", output.version},
                         {"kind", "PartialObjectMetadata"},
                         {"metadata", object["metadata"]}});
      }
      Json body = {{"kind", "PartialObjectMetadataList"},
                   {"apiVersion", output.version},
                   {"metadata", listMetadata(listed)},
                   {"items", std::move(items)}};
      return jsonResponse(200, dumpJson(body));
    }
    return jsonResponse(200, listBody(type, listed));
  }

  Response watch(Ctx& ctx) {
    const api::ResourceType& type = *ctx.route.type;
    Selectors selectors = parseSelectors(ctx);
    WatchParams params;
    params.type = &type;
    params.resource = storageResource(type);
    params.ns = type.namespaced ? ctx.route.ns : "";
    if (!ctx.route.name.empty()) {
      // Watching one item (legacy /watch/.../name paths): a metadata.name field selector.
      auto by_name =
          FieldSelector::parse("metadata.name=" + ctx.route.name, allowedFieldSelectors(type));
      if (by_name.ok() && selectors.fields.empty()) selectors.fields = std::move(by_name).value();
    }
    params.labels = std::move(selectors.labels);
    params.fields = std::move(selectors.fields);
    std::string rv(ctx.request.param("resourceVersion").value_or(""));
    if (rv.empty() || rv == "0") {
      params.send_initial_events = true;
    } else {
      auto revision = parseInt(rv);
      if (!revision || *revision < 0) {
        fail(badRequestError("resourceVersion: Invalid value: \"" + rv + "\": must be an integer"));
      }
      params.send_initial_events = false;
      params.from_revision = *revision;
    }
    auto send_initial = ctx.request.param("sendInitialEvents");
    if (send_initial && *send_initial == "true") {
      params.send_initial_events = true;
      params.initial_events_end_bookmark = true;
    }
    auto bookmarks = ctx.request.param("allowWatchBookmarks");
    params.bookmarks = bookmarks && (*bookmarks == "true" || *bookmarks == "1");
    params.bookmark_interval = options_.bookmark_interval;
    params.timeout = options_.default_watch_timeout;
    if (auto timeout = ctx.request.param("timeoutSeconds")) {
      auto seconds = parseInt(*timeout);
      if (!seconds || *seconds < 0) {
        fail(badRequestError("timeoutSeconds: Invalid value: \"" + std::string(*timeout) + "\""));
      }
      if (*seconds > 0) params.timeout = std::chrono::seconds(*seconds);
    }
    if (streams_->stopped()) {
      fail(ApiError{503, "ServiceUnavailable", "the server is shutting down", Json()});
    }
    auto stream = openWatchStream(storage_, std::move(params), streams_);
    if (!stream.ok()) fail(fromStatus(stream.status(), type, ""));
    Response response;
    response.status = 200;
    response.stream = std::move(stream).value();
    return response;
  }

  // ---- validation and object preparation -----------------------------------------------------

  void checkKind(const api::ResourceType& type, Json& object) const {
    std::string api_version = stringAt(object, "apiVersion");
    std::string kind = stringAt(object, "kind");
    if (object.contains("apiVersion") && !object["apiVersion"].is_string()) {
      fail(badRequestError("apiVersion must be a string"));
    }
    if (object.contains("kind") && !object["kind"].is_string()) {
      fail(badRequestError("kind must be a string"));
    }
    if (!kind.empty() && kind != type.kind) {
      fail(badRequestError("the kind in the request body (" + kind +
                           ") does not match the kind of the resource (" + type.kind + ")"));
    }
    if (!api_version.empty() && api_version != type.apiVersion()) {
      fail(badRequestError("the API version in the data (" + api_version +
                           ") does not match the expected API version (" + type.apiVersion() +
                           ")"));
    }
    object["apiVersion"] = type.apiVersion();
    object["kind"] = type.kind;
  }

  void validate(Ctx& ctx, const api::ResourceType& type, Json& object, const std::string& name) {
    api::applyDefaults(type, object);
    auto errors = api::validateObject(type, object, api::UnknownFields::Reject);
    std::vector<api::FieldError> unknown;
    std::vector<api::FieldError> others;
    for (auto& error : errors) {
      (error.type == api::FieldErrorType::Unknown ? unknown : others).push_back(std::move(error));
    }
    if (!unknown.empty()) {
      if (ctx.validation == FieldValidation::Strict) {
        std::string message = "strict decoding error: ";
        for (size_t idx = 0; idx < unknown.size(); ++idx) {
          if (idx > 0) message += ", ";
          message += "unknown field " + dumpJson(Json(unknown[idx].path));
        }
        fail(badRequestError(message));
      }
      if (ctx.validation == FieldValidation::Warn) {
        for (const auto& error : unknown)
          ctx.warnings.push_back("unknown field \"" + error.path + "\"");
      }
      others.clear();
      for (auto& error : api::validateObject(type, object, api::UnknownFields::Drop)) {
        if (error.type != api::FieldErrorType::Unknown) others.push_back(std::move(error));
      }
    }
    if (!others.empty()) fail(invalidError(type, name, others));
  }

  static void mergeStringData(Json& object) {
    auto it = object.find("stringData");
    if (it == object.end()) return;
    if (!it->is_object()) return;  // validation reports the type
    Json& data = object["data"];
    if (!data.is_object()) data = Json::object();
    for (const auto& [key, value] : it->items()) {
      if (!value.is_string()) return;
    }
    for (const auto& [key, value] : it->items()) {
      data[key] = base64Encode(value.get<std::string>());
    }
    object.erase("stringData");
  }

  void prepareKindSpecific(const api::ResourceType& type, Json& object, const Json* old) const {
    if (!type.group.empty()) return;
    if (type.kind == "Secret") {
      mergeStringData(object);
      if (!object.contains("type")) object["type"] = "Opaque";
    }
    if (type.kind == "Namespace") {
      Json& metadata = metadataOf(object);
      Json& labels = metadata["labels"];
      if (!labels.is_object()) labels = Json::object();
      labels["kubernetes.io/metadata.name"] = metadata.value("name", "");
      if (old == nullptr) {
        Json& spec = object["spec"];
        if (!spec.is_object()) spec = Json::object();
        if (!spec.contains("finalizers")) spec["finalizers"] = Json::array({"kubernetes"});
        object["status"] = {{"phase", "Active"}};
      }
    }
    if (old != nullptr && (type.kind == "Secret" || type.kind == "ConfigMap")) {
      auto immutable = old->find("immutable");
      if (immutable != old->end() && immutable->is_boolean() && immutable->get<bool>()) {
        std::vector<api::FieldError> errors;
        for (const char* field : {"data", "binaryData"}) {
          Json before = old->contains(field) ? (*old)[field] : Json();
          Json after = object.contains(field) ? object[field] : Json();
          if (before != after) {
            errors.push_back({api::FieldErrorType::Invalid, field, std::string(kImmutableDetail)});
          }
        }
        auto now_immutable = object.find("immutable");
        if (now_immutable == object.end() || *now_immutable != true) {
          errors.push_back(
              {api::FieldErrorType::Invalid, "immutable", std::string(kImmutableDetail)});
        }
        if (!errors.empty()) fail(invalidError(type, metaString(*old, "name"), errors));
      }
    }
  }

  void checkNamespaceWritable(const api::ResourceType& type, const std::string& ns,
                              const std::string& name) {
    if (namespace_type_ == nullptr) return;
    auto stored = storage_.get({storageResource(*namespace_type_), "", ns});
    if (!stored.ok()) {
      if (stored.status().code() == Code::NotFound) fail(notFoundError(*namespace_type_, ns));
      fail(fromStatus(stored.status(), *namespace_type_, ns));
    }
    // The namespace's state is cached per revision: creates need not re-parse it.
    bool terminating = false;
    bool cached = false;
    {
      std::lock_guard lock(namespace_cache_mutex_);
      auto it = namespace_cache_.find(ns);
      if (it != namespace_cache_.end() && it->second.first == stored->revision) {
        terminating = it->second.second;
        cached = true;
      }
    }
    if (!cached) {
      Json object = Json::parse(stored->value, nullptr, false);
      terminating =
          !object.is_discarded() &&
          (isDeleting(object) || (object.contains("status") && object["status"].is_object() &&
                                  stringAt(object["status"], "phase") == "Terminating"));
      std::lock_guard lock(namespace_cache_mutex_);
      if (namespace_cache_.size() > 10000) namespace_cache_.clear();
      namespace_cache_[ns] = {stored->revision, terminating};
    }
    if (terminating) {
      ApiError error = forbiddenError(
          type, name,
          "unable to create new content in namespace " + ns + " because it is being terminated");
      error.details["causes"] =
          Json::array({{{"reason", "NamespaceTerminating"},
                        {"message", "namespace " + ns + " is being terminated"},
                        {"field", "metadata.namespace"}}});
      fail(error);
    }
  }

  std::string managerName(const Ctx& ctx) const {
    if (!ctx.manager.empty()) return ctx.manager;
    return "unknown";
  }

  // ---- create --------------------------------------------------------------------------------

  Json parseObjectBody(const Ctx& ctx) const {
    std::string type = mediaType(ctx.request.content_type);
    Json object;
    if (type.empty() || type == "application/json" || type == "*/*") {
      object = parseJson(ctx.request.body);
    } else if (type == "application/yaml" || type == "application/x-yaml" || type == "text/yaml") {
      object = parseJsonOrYaml(ctx.request.body);
    } else if (type == kProtobufMediaType) {
      object = protobufBodyToJson(ctx.request.body, ctx.request.content_type);
    } else {
      fail(unsupportedMediaTypeError(ctx.request.content_type));
    }
    if (!object.is_object()) fail(badRequestError("the request body must be a JSON object"));
    return object;
  }

  Response create(Ctx& ctx) { return createObject(ctx, parseObjectBody(ctx), nullptr); }

  // `managed_fields` (server-side apply) replaces the Update entry recorded for a create.
  Response createObject(Ctx& ctx, Json object, const Json* managed_fields) {
    const api::ResourceType& type = *ctx.route.type;
    checkKind(type, object);
    Json& metadata = metadataOf(object);
    if (type.namespaced) {
      if (metadata.contains("namespace") && !metadata["namespace"].is_null()) {
        std::string body_ns = stringAt(metadata, "namespace");
        if (!metadata["namespace"].is_string() || (!body_ns.empty() && body_ns != ctx.route.ns)) {
          fail(badRequestError(
              "the namespace of the provided object does not match the namespace sent on the "
              "request"));
        }
      }
      metadata["namespace"] = ctx.route.ns;
    } else {
      metadata.erase("namespace");
    }
    std::string name = stringAt(metadata, "name");
    std::string generate_name = stringAt(metadata, "generateName");
    if (name.empty() && generate_name.empty()) {
      fail(invalidError(type, "",
                        {{api::FieldErrorType::Required, "metadata.name",
                          "Required value: name or generateName is required"}}));
    }
    for (const char* field :
         {"uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
          "deletionGracePeriodSeconds", "generation", "selfLink", "managedFields"}) {
      metadata.erase(field);
    }
    std::string now = nowRfc3339();
    metadata["uid"] = newUuid();
    metadata["creationTimestamp"] = now;
    metadata["generation"] = 1;
    if (type.has_status_subresource && !isNamespaceType(type)) object.erase("status");
    if (type.namespaced)
      checkNamespaceWritable(type, ctx.route.ns, name.empty() ? generate_name : name);

    bool generated = name.empty();
    if (generated) metadataOf(object)["name"] = generate_name + randomSuffix();
    prepareKindSpecific(type, object, nullptr);
    validate(ctx, type, object, stringAt(metadataOf(object), "name"));
    if (managed_fields != nullptr) {
      metadataOf(object)["managedFields"] = *managed_fields;
    } else {
      metadataOf(object)["managedFields"] =
          recordUpdate(Json(), Json(), object, type.schema.get(),
                       {managerName(ctx), "Update", type.apiVersion(), "", now});
    }
    if (metadataOf(object)["managedFields"].empty()) metadataOf(object).erase("managedFields");
    if (ctx.dry_run) return jsonResponse(201, dumpJson(object));

    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      name = stringAt(metadataOf(object), "name");
      RenderedObject rendered = renderObject(object);
      auto created =
          storage_.create({storageResource(type), type.namespaced ? ctx.route.ns : "", name},
                          [&](int64_t revision) { return rendered.withRevision(revision); });
      if (created.ok()) return jsonResponse(201, std::move(created->value));
      if (created.status().code() == Code::AlreadyExists && generated) {
        metadataOf(object)["name"] = generate_name + randomSuffix();
        continue;
      }
      fail(fromStatus(created.status(), type, name));
    }
    fail(alreadyExistsError(type, name));
  }

  // ---- update, patch, apply ------------------------------------------------------------------

  using MutateFn = std::function<Json(const Json& current)>;

  // Builds the object to store from the current one and the client's desired one.
  Json prepareUpdate(Ctx& ctx, Sub sub, const Json& current, Json desired, bool keep_managed) {
    const api::ResourceType& type = *ctx.route.type;
    if (!desired.is_object()) fail(badRequestError("the request body must be a JSON object"));
    Json next;
    if (sub == Sub::Status) {
      next = current;
      if (desired.contains("status")) {
        next["status"] = desired["status"];
      } else {
        next.erase("status");
      }
    } else if (sub == Sub::Finalize) {
      next = current;
      Json& spec = next["spec"];
      if (!spec.is_object()) spec = Json::object();
      if (desired.contains("spec") && desired["spec"].is_object() &&
          desired["spec"].contains("finalizers")) {
        spec["finalizers"] = desired["spec"]["finalizers"];
      } else {
        spec.erase("finalizers");
      }
    } else {
      next = std::move(desired);
      checkKind(type, next);
      Json& metadata = metadataOf(next);
      std::string body_name = stringAt(metadata, "name");
      if (!body_name.empty() && body_name != ctx.route.name) {
        fail(badRequestError("the name of the object (" + body_name +
                             ") does not match the name on the URL (" + ctx.route.name + ")"));
      }
      std::string body_ns = stringAt(metadata, "namespace");
      if (type.namespaced && !body_ns.empty() && body_ns != ctx.route.ns) {
        fail(badRequestError(
            "the namespace of the provided object does not match the namespace sent on the "
            "request"));
      }
      if (type.has_status_subresource) {
        if (current.contains("status")) {
          next["status"] = current["status"];
        } else {
          next.erase("status");
        }
      }
    }
    const Json& old_meta = current["metadata"];
    Json& metadata = metadataOf(next);
    for (const char* field : {"uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
                              "deletionGracePeriodSeconds", "generation"}) {
      if (old_meta.contains(field)) {
        metadata[field] = old_meta[field];
      } else {
        metadata.erase(field);
      }
    }
    if (!keep_managed || !metadata.contains("managedFields") ||
        !metadata["managedFields"].is_array() || metadata["managedFields"].empty()) {
      if (old_meta.contains("managedFields")) {
        metadata["managedFields"] = old_meta["managedFields"];
      } else {
        metadata.erase("managedFields");
      }
    }
    if (isDeleting(current)) {
      std::vector<std::string> before = finalizersOf(current);
      std::vector<std::string> added;
      for (const auto& finalizer : finalizersOf(next)) {
        if (std::find(before.begin(), before.end(), finalizer) == before.end()) {
          added.push_back(finalizer);
        }
      }
      if (!added.empty()) {
        std::string list;
        for (const auto& finalizer : added)
          list += (list.empty() ? "\"" : ", \"") + finalizer + "\"";
        fail(invalidError(type, ctx.route.name,
                          {{api::FieldErrorType::Invalid, "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being "
                            "deleted, found new finalizers []string{" +
                                list + "}"}}));
      }
    }
    prepareKindSpecific(type, next, &current);
    validate(ctx, type, next, ctx.route.name);
    if (specChanged(type, current, next)) {
      int64_t generation = 0;
      if (old_meta.contains("generation") && old_meta["generation"].is_number_integer()) {
        generation = old_meta["generation"].get<int64_t>();
      }
      metadata["generation"] = generation + 1;
    }
    return next;
  }

  static bool readyToRemove(const api::ResourceType& type, const Json& object) {
    if (!isDeleting(object) || !finalizersOf(object).empty()) return false;
    return !isNamespaceType(type) || namespaceSpecFinalizers(object).empty();
  }

  // Read-modify-write with optimistic concurrency: retries on storage conflicts; a
  // resourceVersion the client set must match the current one.
  Response writeLoop(Ctx& ctx, Sub sub, const MutateFn& mutate, bool is_apply,
                     const std::function<Response()>& create_if_absent) {
    const api::ResourceType& type = *ctx.route.type;
    storage::ObjectKey key = keyFor(ctx.route);
    std::string subresource = sub == Sub::Status ? "status" : "";
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto stored = storage_.get(key);
      if (!stored.ok()) {
        if (stored.status().code() == Code::NotFound && create_if_absent) {
          return create_if_absent();
        }
        fail(fromStatus(stored.status(), type, ctx.route.name));
      }
      Json current = Json::parse(stored->value);
      std::string current_rv = std::to_string(stored->revision);
      Json desired = mutate(current);
      std::string wanted_rv;
      if (desired.is_object() && desired.contains("metadata") && desired["metadata"].is_object()) {
        const Json& rv = desired["metadata"]["resourceVersion"];
        if (rv.is_string()) wanted_rv = rv.get<std::string>();
        if (rv.is_number()) wanted_rv = rv.dump();
      }
      if (!wanted_rv.empty() && wanted_rv != current_rv) fail(conflictError(type, ctx.route.name));
      ctx.warnings.clear();
      Json next = prepareUpdate(ctx, sub, current, std::move(desired), is_apply);
      metadataOf(next)["resourceVersion"] = current_rv;
      if (next == current) return jsonResponse(200, std::move(stored->value));
      if (!is_apply) {
        metadataOf(next)["managedFields"] = recordUpdate(
            current["metadata"].value("managedFields", Json::array()), current, next,
            type.schema.get(),
            {managerName(ctx), "Update", type.apiVersion(), subresource, nowRfc3339()});
        if (metadataOf(next)["managedFields"].empty()) metadataOf(next).erase("managedFields");
      }
      if (readyToRemove(type, next)) {
        if (ctx.dry_run) return jsonResponse(200, dumpJson(next));
        auto removed = storage_.remove(key, stored->revision);
        if (!removed.ok()) {
          if (removed.status().code() == Code::Conflict) continue;
          fail(fromStatus(removed.status(), type, ctx.route.name));
        }
        return jsonResponse(200, dumpJson(next));
      }
      if (ctx.dry_run) return jsonResponse(200, dumpJson(next));
      RenderedObject rendered = renderObject(next);
      auto updated = storage_.update(
          key, stored->revision, [&](int64_t revision) { return rendered.withRevision(revision); });
      if (updated.ok()) return jsonResponse(200, std::move(updated->value));
      if (updated.status().code() == Code::Conflict) continue;
      fail(fromStatus(updated.status(), type, ctx.route.name));
    }
    fail(conflictError(type, ctx.route.name));
  }

  Sub subOf(const Ctx& ctx) const {
    if (ctx.route.subresource == "status") return Sub::Status;
    if (ctx.route.subresource == "finalize") return Sub::Finalize;
    return Sub::Main;
  }

  Response put(Ctx& ctx) {
    Json body = parseObjectBody(ctx);
    return writeLoop(
        ctx, subOf(ctx), [&](const Json&) { return body; }, false, nullptr);
  }

  Response patch(Ctx& ctx) {
    std::string type = mediaType(ctx.request.content_type);
    if (type == "application/apply-patch+yaml" || type == "application/apply-patch+cbor") {
      return apply(ctx);
    }
    bool json_patch = type == "application/json-patch+json";
    bool merge =
        type == "application/merge-patch+json" || type == "application/strategic-merge-patch+json";
    if (!json_patch && !merge) fail(unsupportedMediaTypeError(ctx.request.content_type));
    Json patch_body = parseJson(ctx.request.body);
    if (merge && !patch_body.is_object()) {
      fail(badRequestError("a merge patch must be a JSON object"));
    }
    MutateFn mutate = [&](const Json& current) -> Json {
      if (merge) {
        // Strategic merge patches are applied as JSON merge patches (lists are replaced whole).
        Json result = current;
        Status status = applyMergePatch(result, patch_body);
        if (!status.ok()) fail(badRequestError(status.message()));
        return result;
      }
      auto result = applyJsonPatch(current, patch_body);
      if (!result.ok()) {
        fail(ApiError{422, "Invalid", result.status().message(), Json()});
      }
      return std::move(result).value();
    };
    return writeLoop(ctx, subOf(ctx), mutate, false, nullptr);
  }

  Response apply(Ctx& ctx) {
    const api::ResourceType& type = *ctx.route.type;
    if (ctx.manager.empty()) {
      fail(badRequestError("PATCH, application/apply-patch+yaml requires fieldManager to be set"));
    }
    Json applied = parseJsonOrYaml(ctx.request.body);
    if (!applied.is_object()) fail(badRequestError("the applied configuration must be an object"));
    if (stringAt(applied, "apiVersion").empty() || stringAt(applied, "kind").empty()) {
      fail(
          badRequestError("invalid object type: apiVersion and kind must be set in the applied "
                          "configuration"));
    }
    checkKind(type, applied);
    Json& metadata = metadataOf(applied);
    std::string name = stringAt(metadata, "name");
    if (name.empty()) {
      metadata["name"] = ctx.route.name;
    } else if (name != ctx.route.name) {
      fail(badRequestError("the name of the object (" + name +
                           ") does not match the name on the URL (" + ctx.route.name + ")"));
    }
    if (type.namespaced) {
      std::string body_ns = stringAt(metadata, "namespace");
      if (!body_ns.empty() && body_ns != ctx.route.ns) {
        fail(badRequestError(
            "the namespace of the provided object does not match the namespace sent on the "
            "request"));
      }
    }
    Sub sub = subOf(ctx);
    bool force = ctx.request.param("force").value_or("false") == "true";
    const api::Schema* schema = type.schema.get();
    Json applied_set = fieldSetOf(applied, schema);
    if (sub == Sub::Status) {
      Json only = Json::object();
      if (applied_set.contains("f:status")) only["f:status"] = applied_set["f:status"];
      applied_set = std::move(only);
    } else if (type.has_status_subresource) {
      applied_set.erase("f:status");
    }
    std::string subresource = sub == Sub::Status ? "status" : "";
    Json own_entry = {{"manager", ctx.manager},          {"operation", "Apply"},
                      {"apiVersion", type.apiVersion()}, {"time", nowRfc3339()},
                      {"fieldsType", "FieldsV1"},        {"fieldsV1", applied_set}};
    if (!subresource.empty()) own_entry["subresource"] = subresource;

    MutateFn mutate = [&](const Json& current) -> Json {
      Json managed = Json::array();
      if (current.contains("metadata") && current["metadata"].contains("managedFields") &&
          current["metadata"]["managedFields"].is_array()) {
        managed = current["metadata"]["managedFields"];
      }
      std::vector<FieldPath> leaves = fieldLeaves(applied_set);
      struct Conflict {
        std::string manager;
        std::string api_version;
        FieldPath path;
      };
      std::vector<Conflict> conflicts;
      Json previous_set = Json::object();
      Json others = Json::array();
      for (auto& entry : managed) {
        if (!entry.is_object()) continue;
        bool mine = entry.value("manager", "") == ctx.manager &&
                    entry.value("operation", "") == "Apply" &&
                    entry.value("subresource", "") == subresource;
        if (mine) {
          if (entry.contains("fieldsV1")) previous_set = entry["fieldsV1"];
          continue;
        }
        Json& set = entry["fieldsV1"];
        if (!set.is_object()) set = Json::object();
        for (const auto& leaf : leaves) {
          if (leaf.back() == "." || !setContains(set, leaf)) continue;
          const Json* before = valueAtPath(current, leaf);
          const Json* after = valueAtPath(applied, leaf);
          if (before == nullptr || after == nullptr || *before != *after) {
            conflicts.push_back({entry.value("manager", ""), entry.value("apiVersion", ""), leaf});
          }
        }
        others.push_back(entry);
      }
      if (!conflicts.empty() && !force)
        fail(applyConflictError(type, conflicts.size(), [&] {
          std::vector<std::tuple<std::string, std::string, std::string>> out;
          for (const auto& conflict : conflicts) {
            out.emplace_back(conflict.manager, conflict.api_version,
                             formatFieldPath(conflict.path));
          }
          return out;
        }()));
      if (force) {
        for (auto& entry : others) {
          for (const auto& conflict : conflicts) {
            if (entry.value("manager", "") == conflict.manager) {
              removeFromSet(entry["fieldsV1"], conflict.path);
            }
          }
        }
      }
      Json result = current;
      for (const auto& leaf : fieldLeaves(previous_set)) {
        if (setContains(applied_set, leaf)) continue;
        bool owned_elsewhere = false;
        for (const auto& entry : others) {
          owned_elsewhere = owned_elsewhere || setContains(entry["fieldsV1"], leaf);
        }
        if (!owned_elsewhere) removeAtPath(result, leaf);
      }
      Json to_merge = applied;
      if (sub == Sub::Status) {
        Json status_only = Json::object();
        if (applied.contains("status")) status_only["status"] = applied["status"];
        to_merge = std::move(status_only);
      }
      result = applyMerge(result, to_merge, schema);
      // Keep the entries' order; an unchanged own entry keeps its time (no-op applies write
      // nothing).
      Json entry_now = own_entry;
      Json new_managed = Json::array();
      bool placed = false;
      size_t other_idx = 0;
      for (const auto& entry : managed) {
        if (!entry.is_object()) continue;
        bool mine = entry.value("manager", "") == ctx.manager &&
                    entry.value("operation", "") == "Apply" &&
                    entry.value("subresource", "") == subresource;
        if (mine) {
          if (entry.contains("fieldsV1") && entry["fieldsV1"] == applied_set &&
              entry.contains("time")) {
            entry_now["time"] = entry["time"];
          }
          if (!applied_set.empty() && !placed) new_managed.push_back(entry_now);
          placed = true;
          continue;
        }
        Json& other = others[other_idx++];
        if (other["fieldsV1"].empty()) continue;
        new_managed.push_back(std::move(other));
      }
      if (!placed && !applied_set.empty()) new_managed.push_back(entry_now);
      Json& result_meta = metadataOf(result);
      result_meta["managedFields"] = std::move(new_managed);
      std::string applied_rv = stringAt(applied["metadata"], "resourceVersion");
      result_meta["resourceVersion"] =
          applied_rv.empty() ? current["metadata"].value("resourceVersion", "") : applied_rv;
      return result;
    };
    std::function<Response()> create_if_absent;
    if (sub == Sub::Main) {
      create_if_absent = [&]() {
        Json managed = Json::array();
        if (!applied_set.empty()) managed.push_back(own_entry);
        return createObject(ctx, applied, &managed);
      };
    }
    return writeLoop(ctx, sub, mutate, true, create_if_absent);
  }

  static ApiError applyConflictError(
      const api::ResourceType& type, size_t count,
      const std::vector<std::tuple<std::string, std::string, std::string>>& conflicts) {
    std::string message = "Apply failed with " + std::to_string(count) +
                          (count == 1 ? " conflict: " : " conflicts: ");
    Json causes = Json::array();
    if (count == 1) {
      const auto& [manager, api_version, field] = conflicts[0];
      message += "conflict with \"" + manager + "\"" +
                 (api_version.empty() ? "" : " using " + api_version) + ": " + field;
    } else {
      std::string last_manager;
      bool first_group = true;
      for (const auto& [manager, api_version, field] : conflicts) {
        if (manager != last_manager || first_group) {
          message += (first_group ? "" : "\n") + std::string("conflicts with \"") + manager + "\"" +
                     (api_version.empty() ? "" : " using " + api_version) + ":";
          last_manager = manager;
          first_group = false;
        }
        message += "\n- " + field;
      }
    }
    for (const auto& [manager, api_version, field] : conflicts) {
      causes.push_back({{"reason", "FieldManagerConflict"},
                        {"message", "conflict with \"" + manager + "\"" +
                                        (api_version.empty() ? "" : " using " + api_version)},
                        {"field", field}});
    }
    ApiError error{409, "Conflict", message, {{"causes", causes}}};
    (void)type;
    return error;
  }

  // ---- delete --------------------------------------------------------------------------------

  struct DeleteOptions {
    std::string propagation;  // Background | Foreground | Orphan
    std::string uid_precondition;
    std::string rv_precondition;
    bool dry_run = false;
  };

  DeleteOptions parseDeleteOptions(const Ctx& ctx) const {
    DeleteOptions options;
    options.dry_run = ctx.dry_run;
    std::string_view body = trim(ctx.request.body);
    if (!body.empty()) {
      Json parsed = mediaType(ctx.request.content_type) == kProtobufMediaType
                        ? protobufBodyToJson(ctx.request.body, ctx.request.content_type)
                        : parseJson(body);
      if (!parsed.is_object()) fail(badRequestError("DeleteOptions must be a JSON object"));
      if (parsed.contains("propagationPolicy") && parsed["propagationPolicy"].is_string()) {
        options.propagation = parsed["propagationPolicy"].get<std::string>();
      }
      if (parsed.contains("orphanDependents") && parsed["orphanDependents"].is_boolean() &&
          options.propagation.empty()) {
        options.propagation = parsed["orphanDependents"].get<bool>() ? "Orphan" : "Background";
      }
      if (parsed.contains("preconditions") && parsed["preconditions"].is_object()) {
        options.uid_precondition = stringAt(parsed["preconditions"], "uid");
        options.rv_precondition = stringAt(parsed["preconditions"], "resourceVersion");
      }
      if (parsed.contains("dryRun") && parsed["dryRun"].is_array()) {
        for (const auto& value : parsed["dryRun"]) {
          if (value == "All") options.dry_run = true;
        }
      }
    }
    if (auto policy = ctx.request.param("propagationPolicy")) {
      options.propagation = std::string(*policy);
    }
    if (options.propagation.empty()) options.propagation = "Background";
    if (options.propagation != "Background" && options.propagation != "Foreground" &&
        options.propagation != "Orphan") {
      fail(badRequestError("propagationPolicy: Unsupported value: \"" + options.propagation +
                           "\": supported values: \"Foreground\", \"Background\", \"Orphan\""));
    }
    return options;
  }

  // Deletes one object; returns the response (200 with the object, 202 for a pending
  // foreground deletion).
  Response deleteOne(Ctx& ctx, const storage::ObjectKey& key, const DeleteOptions& options) {
    const api::ResourceType& type = *ctx.route.type;
    for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
      auto stored = storage_.get(key);
      if (!stored.ok()) fail(fromStatus(stored.status(), type, key.name));
      Json current = Json::parse(stored->value);
      std::string uid = metaString(current, "uid");
      if (!options.uid_precondition.empty() && options.uid_precondition != uid) {
        fail(conflictError(type, key.name,
                           "Precondition failed: UID in precondition: " + options.uid_precondition +
                               ", UID in object meta: " + uid));
      }
      std::string rv = std::to_string(stored->revision);
      if (!options.rv_precondition.empty() && options.rv_precondition != rv) {
        fail(conflictError(
            type, key.name,
            "Precondition failed: ResourceVersion in precondition: " + options.rv_precondition +
                ", ResourceVersion in object meta: " + rv));
      }
      if (options.dry_run) return jsonResponse(200, std::move(stored->value));
      bool foreground = options.propagation == "Foreground";
      Json next = current;
      Json& metadata = metadataOf(next);
      std::vector<std::string> finalizers = finalizersOf(current);
      bool pending = false;
      if (isNamespaceType(type)) {
        if (isDeleting(current)) return jsonResponse(200, std::move(stored->value));
        Json& status = next["status"];
        if (!status.is_object()) status = Json::object();
        status["phase"] = "Terminating";
        pending = !readyToRemoveIgnoringTimestamp(type, next);
      } else {
        if (isDeleting(current)) {
          return jsonResponse(foreground ? 202 : 200, std::move(stored->value));
        }
        auto add = [&](const char* finalizer) {
          if (std::find(finalizers.begin(), finalizers.end(), finalizer) == finalizers.end()) {
            finalizers.emplace_back(finalizer);
          }
        };
        if (options.propagation == "Orphan") add("orphan");
        if (foreground) add("foregroundDeletion");
        pending = !finalizers.empty();
        if (pending) metadata["finalizers"] = finalizers;
      }
      if (!pending) {
        auto removed = storage_.remove(key, stored->revision);
        if (!removed.ok()) {
          if (removed.status().code() == Code::Conflict) continue;
          fail(fromStatus(removed.status(), type, key.name));
        }
        return jsonResponse(200, std::move(stored->value));
      }
      metadata["deletionTimestamp"] = nowRfc3339();
      metadata["deletionGracePeriodSeconds"] = 0;
      metadata.erase("resourceVersion");
      RenderedObject rendered = renderObject(next);
      auto updated = storage_.update(
          key, stored->revision, [&](int64_t revision) { return rendered.withRevision(revision); });
      if (!updated.ok()) {
        if (updated.status().code() == Code::Conflict) continue;
        fail(fromStatus(updated.status(), type, key.name));
      }
      return jsonResponse(foreground ? 202 : 200, std::move(updated->value));
    }
    fail(conflictError(type, key.name));
  }

  static bool readyToRemoveIgnoringTimestamp(const api::ResourceType& type, const Json& object) {
    return finalizersOf(object).empty() &&
           (!isNamespaceType(type) || namespaceSpecFinalizers(object).empty());
  }

  Response deleteItem(Ctx& ctx) {
    DeleteOptions options = parseDeleteOptions(ctx);
    return deleteOne(ctx, keyFor(ctx.route), options);
  }

  Response deleteCollection(Ctx& ctx) {
    const api::ResourceType& type = *ctx.route.type;
    DeleteOptions options = parseDeleteOptions(ctx);
    Selectors selectors = parseSelectors(ctx);
    Listed listed = listObjects(ctx, selectors, true);
    Listed deleted;
    deleted.revision = listed.revision;
    for (const auto& object : listed.parsed) {
      storage::ObjectKey key{storageResource(type), metaString(object, "namespace"),
                             metaString(object, "name")};
      try {
        Response response = deleteOne(ctx, key, options);
        deleted.raw.push_back(std::move(response.body));
      } catch (const ApiException& exception) {
        if (exception.error.code != 404) throw;
      }
    }
    return jsonResponse(200, listBody(type, deleted));
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  void ensureDefaultNamespace() {
    if (namespace_type_ == nullptr) return;
    Request request;
    request.method = "POST";
    request.path = "/api/v1/namespaces";
    request.content_type = "application/json";
    request.body = R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"default"}})";
    request.query = {{"fieldManager", "clrk-apiserver"}};
    Response response = handle(request);
    if (response.status != 201 && response.status != 409) {
      logger("apiserver")->error("creating namespace default failed: {}", response.body);
    }
  }

  storage::Storage& storage_;
  const api::Registry& registry_;
  ResourceHandlerOptions options_;
  std::shared_ptr<StreamRegistry> streams_;
  const api::ResourceType* namespace_type_;
  std::mutex lifecycle_mutex_;
  bool started_ = false;
  std::mutex namespace_cache_mutex_;
  std::unordered_map<std::string, std::pair<int64_t, bool>> namespace_cache_;
  std::unique_ptr<GarbageCollector> gc_;
};

}  // namespace

ResourceHandlerPtr makeResourceHandler(storage::Storage& storage, const api::Registry& registry) {
  return makeResourceHandler(storage, registry, ResourceHandlerOptions{});
}

ResourceHandlerPtr makeResourceHandler(storage::Storage& storage, const api::Registry& registry,
                                       ResourceHandlerOptions options) {
  return std::make_unique<Handler>(storage, registry, options);
}

}  // namespace clrk::apiserver
