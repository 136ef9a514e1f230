#include "clrk/api/registry.h"

#include "clrk/api/cluster_types.h"
#include "clrk/api/core_types.h"
#include "clrk/api/v1alpha1/types.h"
#include "clrk/base/ascii.h"

#include <algorithm>
#include <cctype>

namespace clrk::api {
namespace {

bool matchesName(const ResourceType& type, std::string_view name) {
  if (asciiEqualsIgnoreCase(type.kind, name) || asciiEqualsIgnoreCase(type.plural, name) ||
      asciiEqualsIgnoreCase(type.singular, name)) {
    return true;
  }
  return std::any_of(type.short_names.begin(), type.short_names.end(),
                     [&](const std::string& s) { return asciiEqualsIgnoreCase(s, name); });
}

}  // namespace

Registry::Registry(std::vector<ResourceType> types) : types_(std::move(types)) {}

const Registry& Registry::builtin() {
  static const Registry registry = [] {
    std::vector<ResourceType> types = v1alpha1::types();
    for (auto& type : coreTypes()) types.push_back(std::move(type));
    for (auto& type : clusterTypes()) types.push_back(std::move(type));
    return Registry(std::move(types));
  }();
  return registry;
}

const ResourceType* Registry::byPlural(std::string_view group, std::string_view version,
                                       std::string_view plural) const {
  for (const auto& type : types_) {
    if (type.group == group && type.version == version && type.plural == plural) return &type;
  }
  return nullptr;
}

const ResourceType* Registry::byKind(std::string_view api_version, std::string_view kind) const {
  for (const auto& type : types_) {
    if (type.kind == kind && type.apiVersion() == api_version) return &type;
  }
  return nullptr;
}

const ResourceType* Registry::resolve(std::string_view name) const {
  if (name.empty()) return nullptr;
  // Unqualified first: "secrets", "ta", "TaskAgent".
  for (const auto& type : types_) {
    if (matchesName(type, name)) return &type;
  }
  // "<name>.<group>" or "<name>.<version>.<group>".
  for (size_t dot = name.find('.'); dot != std::string_view::npos; dot = name.find('.', dot + 1)) {
    std::string_view head = name.substr(0, dot);
    std::string_view group = name.substr(dot + 1);
    for (const auto& type : types_) {
      if (type.group.empty()) continue;
      if (asciiEqualsIgnoreCase(type.group, group) && matchesName(type, head)) return &type;
      std::string version_group = type.version + "." + type.group;
      if (asciiEqualsIgnoreCase(version_group, group) && matchesName(type, head)) return &type;
    }
  }
  return nullptr;
}

std::vector<std::string> Registry::groupVersions() const {
  std::vector<std::string> out;
  for (const auto& type : types_) {
    std::string gv = type.apiVersion();
    if (std::find(out.begin(), out.end(), gv) == out.end()) out.push_back(gv);
  }
  auto core = std::find(out.begin(), out.end(), "v1");
  if (core != out.end()) std::rotate(out.begin(), core, core + 1);
  return out;
}

}  // namespace clrk::api
