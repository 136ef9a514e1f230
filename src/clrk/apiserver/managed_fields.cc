#include "clrk/apiserver/managed_fields.h"

#include <set>
#include <utility>

namespace clrk::apiserver {
namespace {

const std::set<std::string, std::less<>>& serverMetadataFields() {
  static const std::set<std::string, std::less<>> fields = {"name",
                                                            "namespace",
                                                            "uid",
                                                            "resourceVersion",
                                                            "generation",
                                                            "creationTimestamp",
                                                            "managedFields",
                                                            "deletionTimestamp",
                                                            "deletionGracePeriodSeconds",
                                                            "selfLink",
                                                            "generateName"};
  return fields;
}

const api::Schema* childSchema(const api::Schema* schema, const std::string& key) {
  if (schema == nullptr) return nullptr;
  if (const api::Schema* property = schema->property(key)) return property;
  if (schema->additional_properties) return schema->additional_properties.get();
  return nullptr;
}

void addValue(api::Json& node, const api::Json& value, const api::Schema* schema);

void addObject(api::Json& node, const api::Json& value, const api::Schema* schema,
               const std::vector<std::string>* skip_keys) {
  for (const auto& [key, child] : value.items()) {
    if (skip_keys != nullptr) {
      bool skip = false;
      for (const auto& skip_key : *skip_keys) skip = skip || skip_key == key;
      if (skip) continue;
    }
    api::Json& child_node = node["f:" + key];
    if (!child_node.is_object()) child_node = api::Json::object();
    addValue(child_node, child, childSchema(schema, key));
  }
}

std::string keyOf(const api::Json& element, const std::vector<std::string>& keys) {
  api::Json key_object = api::Json::object();
  for (const auto& key : keys) {
    auto it = element.find(key);
    if (it != element.end()) key_object[key] = *it;
  }
  return "k:" + key_object.dump();
}

void addValue(api::Json& node, const api::Json& value, const api::Schema* schema) {
  if (value.is_object()) {
    if (schema != nullptr && schema->embedded_resource) {
      return;  // owned atomically
    }
    addObject(node, value, schema, nullptr);
    return;
  }
  if (value.is_array() && schema != nullptr && schema->list_type == "map" &&
      !schema->list_map_keys.empty()) {
    for (const auto& element : value) {
      if (!element.is_object()) continue;
      api::Json& element_node = node[keyOf(element, schema->list_map_keys)];
      if (!element_node.is_object()) element_node = api::Json::object();
      element_node["."] = api::Json::object();
      addObject(element_node, element, schema->items.get(), &schema->list_map_keys);
    }
    return;
  }
  if (value.is_array() && schema != nullptr && schema->list_type == "set") {
    for (const auto& element : value) node["v:" + element.dump()] = api::Json::object();
    return;
  }
  // Scalars and atomic lists are leaves: the node stays an empty object.
}

void collect(const api::Json& node, FieldPath& prefix, std::vector<FieldPath>& out) {
  if (!node.is_object()) return;
  for (const auto& [key, child] : node.items()) {
    prefix.push_back(key);
    if (child.is_object() && !child.empty()) {
      collect(child, prefix, out);
    } else {
      out.push_back(prefix);
    }
    prefix.pop_back();
  }
}

// Finds the element of `list` matching the "k:{...}" key; -1 when absent.
long findKeyed(const api::Json& list, const std::string& step) {
  if (!list.is_array()) return -1;
  api::Json keys = api::Json::parse(step.substr(2), nullptr, false);
  if (!keys.is_object()) return -1;
  for (size_t idx = 0; idx < list.size(); ++idx) {
    const auto& element = list[idx];
    if (!element.is_object()) continue;
    bool match = true;
    for (const auto& [key, value] : keys.items()) {
      auto it = element.find(key);
      if (it == element.end() || *it != value) {
        match = false;
        break;
      }
    }
    if (match) return static_cast<long>(idx);
  }
  return -1;
}

long findValue(const api::Json& list, const std::string& step) {
  if (!list.is_array()) return -1;
  api::Json value = api::Json::parse(step.substr(2), nullptr, false);
  for (size_t idx = 0; idx < list.size(); ++idx) {
    if (list[idx] == value) return static_cast<long>(idx);
  }
  return -1;
}

std::string stringField(const api::Json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

bool pruneRemove(api::Json& node, const FieldPath& path, size_t depth) {
  if (!node.is_object()) return false;
  auto it = node.find(path[depth]);
  if (it == node.end()) return false;
  if (depth + 1 == path.size()) {
    node.erase(it);
    return true;
  }
  bool removed = pruneRemove(*it, path, depth + 1);
  if (removed && it->empty()) node.erase(it);
  return removed;
}

}  // namespace

api::Json fieldSetOf(const api::Json& object, const api::Schema* schema) {
  api::Json set = api::Json::object();
  if (!object.is_object()) return set;
  for (const auto& [key, value] : object.items()) {
    if (key == "apiVersion" || key == "kind") continue;
    if (key == "metadata") {
      if (!value.is_object()) continue;
      api::Json metadata_node = api::Json::object();
      const api::Schema* metadata_schema = childSchema(schema, "metadata");
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (serverMetadataFields().count(meta_key) != 0) continue;
        api::Json& child = metadata_node["f:" + meta_key];
        child = api::Json::object();
        const api::Schema* child_schema = childSchema(metadata_schema, meta_key);
        if (meta_key == "finalizers" && meta_value.is_array()) {
          for (const auto& element : meta_value) child["v:" + element.dump()] = api::Json::object();
        } else if (meta_key == "ownerReferences" && meta_value.is_array()) {
          for (const auto& element : meta_value) {
            if (!element.is_object()) continue;
            api::Json& element_node = child[keyOf(element, {"uid"})];
            element_node = {{".", api::Json::object()}};
          }
        } else {
          addValue(child, meta_value, child_schema);
        }
      }
      if (!metadata_node.empty()) set["f:metadata"] = std::move(metadata_node);
      continue;
    }
    api::Json& child = set["f:" + key];
    child = api::Json::object();
    addValue(child, value, childSchema(schema, key));
  }
  return set;
}

std::vector<FieldPath> fieldLeaves(const api::Json& set) {
  std::vector<FieldPath> out;
  FieldPath prefix;
  collect(set, prefix, out);
  return out;
}

const api::Json* valueAtPath(const api::Json& object, const FieldPath& path) {
  const api::Json* node = &object;
  for (const auto& step : path) {
    if (step == ".") return node;
    if (step.size() < 2) return nullptr;
    if (step.rfind("f:", 0) == 0) {
      if (!node->is_object()) return nullptr;
      auto it = node->find(step.substr(2));
      if (it == node->end()) return nullptr;
      node = &*it;
    } else if (step.rfind("k:", 0) == 0) {
      long idx = findKeyed(*node, step);
      if (idx < 0) return nullptr;
      node = &(*node)[static_cast<size_t>(idx)];
    } else if (step.rfind("v:", 0) == 0) {
      long idx = findValue(*node, step);
      if (idx < 0) return nullptr;
      node = &(*node)[static_cast<size_t>(idx)];
    } else {
      return nullptr;
    }
  }
  return node;
}

bool removeAtPath(api::Json& object, const FieldPath& path) {
  if (path.empty()) return false;
  // The parent of the last real step; "." addresses the list element itself.
  FieldPath target = path;
  if (target.back() == ".") target.pop_back();
  if (target.empty()) return false;
  FieldPath parent_path(target.begin(), target.end() - 1);
  const api::Json* parent_const = valueAtPath(object, parent_path);
  if (parent_const == nullptr) return false;
  auto* parent = const_cast<api::Json*>(parent_const);  // NOLINT: object is mutable here
  const std::string& step = target.back();
  if (step.rfind("f:", 0) == 0) {
    if (!parent->is_object()) return false;
    return parent->erase(step.substr(2)) > 0;
  }
  long idx = step.rfind("k:", 0) == 0 ? findKeyed(*parent, step) : findValue(*parent, step);
  if (idx < 0) return false;
  parent->erase(static_cast<size_t>(idx));
  return true;
}

void addToSet(api::Json& set, const FieldPath& path) {
  api::Json* node = &set;
  for (const auto& step : path) {
    if (!node->is_object()) *node = api::Json::object();
    node = &(*node)[step];
  }
  if (!node->is_object()) *node = api::Json::object();
}

void removeFromSet(api::Json& set, const FieldPath& path) {
  if (path.empty()) return;
  pruneRemove(set, path, 0);
}

bool setContains(const api::Json& set, const FieldPath& path) {
  const api::Json* node = &set;
  for (const auto& step : path) {
    if (!node->is_object()) return false;
    auto it = node->find(step);
    if (it == node->end()) return false;
    node = &*it;
  }
  return true;
}

std::string formatFieldPath(const FieldPath& path) {
  std::string out;
  for (const auto& step : path) {
    if (step == ".") continue;
    if (step.rfind("f:", 0) == 0) {
      out += '.';
      out.append(step, 2, std::string::npos);
    } else if (step.rfind("k:", 0) == 0) {
      api::Json keys = api::Json::parse(step.substr(2), nullptr, false);
      out += "[";
      bool first = true;
      if (keys.is_object()) {
        for (const auto& [key, value] : keys.items()) {
          if (!first) out += ",";
          first = false;
          out += key;
          out += '=';
          out += value.dump();
        }
      }
      out += "]";
    } else if (step.rfind("v:", 0) == 0) {
      out += '[';
      out.append(step, 2, std::string::npos);
      out += ']';
    }
  }
  return out;
}

api::Json recordUpdate(const api::Json& managed_fields, const api::Json& old_object,
                       const api::Json& new_object, const api::Schema* schema,
                       const ManagerUpdate& update) {
  api::Json new_set = fieldSetOf(new_object, schema);
  std::vector<FieldPath> changed;
  std::vector<FieldPath> removed;
  if (old_object.is_null()) {
    changed = fieldLeaves(new_set);
  } else {
    for (auto& leaf : fieldLeaves(new_set)) {
      const api::Json* before = valueAtPath(old_object, leaf);
      const api::Json* after = valueAtPath(new_object, leaf);
      bool same =
          before != nullptr && after != nullptr && (leaf.back() == "." || *before == *after);
      if (!same) changed.push_back(std::move(leaf));
    }
    for (auto& leaf : fieldLeaves(fieldSetOf(old_object, schema))) {
      if (!setContains(new_set, leaf)) removed.push_back(std::move(leaf));
    }
  }

  api::Json result = api::Json::array();
  api::Json own_set = api::Json::object();
  if (managed_fields.is_array()) {
    for (const auto& entry : managed_fields) {
      if (!entry.is_object()) continue;
      api::Json set = entry.contains("fieldsV1") && entry["fieldsV1"].is_object()
                          ? entry["fieldsV1"]
                          : api::Json::object();
      bool mine = stringField(entry, "manager") == update.manager &&
                  stringField(entry, "operation") == update.operation &&
                  stringField(entry, "subresource") == update.subresource;
      for (const auto& leaf : removed) removeFromSet(set, leaf);
      if (mine) {
        own_set = std::move(set);
        continue;
      }
      for (const auto& leaf : changed) removeFromSet(set, leaf);
      if (set.empty()) continue;
      api::Json copy = entry;
      copy["fieldsV1"] = std::move(set);
      result.push_back(std::move(copy));
    }
  }
  for (const auto& leaf : changed) addToSet(own_set, leaf);
  if (!own_set.empty()) {
    api::Json entry = {{"manager", update.manager},        {"operation", update.operation},
                       {"apiVersion", update.api_version}, {"time", update.time},
                       {"fieldsType", "FieldsV1"},         {"fieldsV1", std::move(own_set)}};
    if (!update.subresource.empty()) entry["subresource"] = update.subresource;
    result.push_back(std::move(entry));
  }
  return result;
}

}  // namespace clrk::apiserver
