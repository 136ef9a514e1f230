#include "clrk/controller/egress_status.h"

#include "clrk/api/builtin_types.h"
#include "clrk/api/registry.h"
#include "clrk/base/log.h"
#include "clrk/controller/reconcilers.h"
#include "clrk/worker/egress_feed.h"

#include <map>

namespace clrk::controller {
namespace {

using Json = kube::Json;

// Sets condition `type` in holder["conditions"] (see setStatusCondition) with observedGeneration.
void setCondition(Json& holder, const std::string& type, bool value, const std::string& reason,
                  const std::string& message, int64_t generation) {
  setStatusCondition(holder, type, value, reason, message);
  for (auto& cond : holder["conditions"]) {
    if (cond.value("type", "") == type) cond["observedGeneration"] = generation;
  }
}

// The entry of `list` whose `ref_field` equals `ref`, or a new one.
Json entryFor(const Json& list, const char* ref_field, const Json& ref) {
  if (list.is_array()) {
    for (const auto& entry : list) {
      if (entry.contains(ref_field) && entry[ref_field] == ref) return entry;
    }
  }
  return Json{{ref_field, ref}};
}

// spec.targetRefs, or the single spec.targetRef some policies use.
Json targetRefsOf(const Json& spec) {
  if (spec.contains("targetRefs") && spec["targetRefs"].is_array()) return spec["targetRefs"];
  if (spec.contains("targetRef") && spec["targetRef"].is_object()) {
    return Json::array({spec["targetRef"]});
  }
  return Json::array();
}

bool isRoute(const std::string& kind) {
  return kind == "AIProviderRoute" || kind == "MCPRoute" || kind == "EgressL4Route";
}

bool isPolicy(const std::string& kind) {
  return kind.size() > 6 && kind.compare(kind.size() - 6, 6, "Policy") == 0;
}

}  // namespace

Json egressStatusFor(const Json& object, const egress::config::ObjectStatus& compiled) {
  const std::string kind = object.value("kind", "");
  const Json& metadata = object["metadata"];
  const int64_t generation = metadata.value("generation", int64_t{1});
  const std::string ns = metadata.value("namespace", "default");
  const Json spec = object.value("spec", Json::object());
  const Json current = object.value("status", Json::object());
  const bool ok = compiled.accepted;
  const std::string reason = ok ? "Accepted" : compiled.reason;
  const std::string message =
      ok ? "accepted by the egress configuration compiler" : compiled.message;

  Json status = current;
  if (kind == "EgressGateway") {
    setCondition(status, "Accepted", ok, reason, message, generation);
    setCondition(status, "Ready", ok, ok ? "Ready" : reason,
                 ok ? "in effect on every worker's egress" : message, generation);
    Json listeners = Json::array();
    const Json spec_listeners = spec.value("listeners", Json::array());
    for (size_t i = 0; i < spec_listeners.size(); ++i) {
      Json entry = {{"name", spec_listeners[i].value("name", "")}, {"attachedRoutes", 0}};
      if (spec_listeners[i].contains("port")) entry["port"] = spec_listeners[i]["port"];
      for (const auto& listener : compiled.listeners) {
        if (listener.name == entry["name"]) entry["attachedRoutes"] = listener.attached_routes;
      }
      listeners.push_back(std::move(entry));
    }
    status["listeners"] = std::move(listeners);
    status["listenerCount"] = static_cast<int64_t>(spec_listeners.size());
  } else if (kind == "Backend") {
    setCondition(status, "Accepted", ok, reason, message, generation);
    bool refs_ok = ok || (compiled.reason.find("Ref") == std::string::npos &&
                          compiled.reason.find("NotFound") == std::string::npos);
    setCondition(status, "ResolvedRefs", refs_ok, refs_ok ? "ResolvedRefs" : compiled.reason,
                 refs_ok ? "every reference resolves" : compiled.message, generation);
  } else if (isRoute(kind)) {
    Json parents = Json::array();
    for (Json ref : spec.value("parentRefs", Json::array())) {
      if (!ref.contains("namespace")) ref["namespace"] = ns;
      Json entry = entryFor(current.value("parents", Json::array()), "parentRef", ref);
      entry["controllerName"] = std::string(kEgressControllerName);
      setCondition(entry, "Accepted", ok, reason, message, generation);
      parents.push_back(std::move(entry));
    }
    status["parents"] = std::move(parents);
  } else if (isPolicy(kind)) {
    Json ancestors = Json::array();
    for (Json ref : targetRefsOf(spec)) {
      if (!ref.contains("namespace")) ref["namespace"] = ns;
      Json entry = entryFor(current.value("ancestors", Json::array()), "ancestorRef", ref);
      entry["controllerName"] = std::string(kEgressControllerName);
      setCondition(entry, "Accepted", ok, reason, message, generation);
      ancestors.push_back(std::move(entry));
      if (ancestors.size() == 16) break;  // the schema's maxItems
    }
    status["ancestors"] = std::move(ancestors);
  }
  return status;
}

EgressStatusController::EgressStatusController(kube::ClientPtr client)
    : client_(std::move(client)) {}

EgressStatusController::~EgressStatusController() { stop(); }

void EgressStatusController::start() {
  worker::EgressFeedOptions options;
  options.on_compiled = [this](const std::vector<Json>& objects,
                               const egress::config::CompileResult& result) {
    write(objects, result);
  };
  feed_ = std::make_unique<worker::EgressFeed>(client_, holder_, options);
  feed_->start();
}

void EgressStatusController::stop() {
  if (feed_) feed_->stop();
  feed_.reset();
}

void EgressStatusController::write(const std::vector<Json>& objects,
                                   const egress::config::CompileResult& result) {
  std::map<std::string, const Json*> by_key;
  for (const auto& object : objects) {
    const Json& metadata = object["metadata"];
    by_key[object.value("kind", "") + "/" + metadata.value("namespace", "") + "/" +
           metadata.value("name", "")] = &object;
  }
  for (const auto& compiled : result.statuses) {
    // A second copy of one object (compile() reports it as Duplicate) says nothing about the
    // object itself; its verdict is the first copy's.
    if (compiled.kind.empty() || compiled.reason == "Duplicate") continue;
    auto it = by_key.find(compiled.kind + "/" + compiled.namespace_name + "/" + compiled.name);
    if (it == by_key.end()) continue;
    const auto* type = api::Registry::builtin().byKind("clrk.apoxy.dev/v1alpha1", compiled.kind);
    if (type == nullptr) continue;
    Json status = egressStatusFor(*it->second, compiled);
    Status written = updateStatusIfChanged(*client_, *type, *it->second, std::move(status));
    // A conflict means the object changed: the watch event brings another compile.
    if (!written.ok() && written.code() != Code::Conflict && written.code() != Code::NotFound) {
      logger("controller")
          ->warn("{} {}/{}: writing status: {}", compiled.kind, compiled.namespace_name,
                 compiled.name, written.message());
    }
  }
}

}  // namespace clrk::controller
