#include "clrk/apiserver/patch.h"

#include <string>

namespace clrk::apiserver {
namespace {

const api::Schema* childSchema(const api::Schema* schema, const std::string& key) {
  if (schema == nullptr) return nullptr;
  if (const api::Schema* property = schema->property(key)) return property;
  if (schema->additional_properties) return schema->additional_properties.get();
  return nullptr;
}

bool sameKeys(const api::Json& left, const api::Json& right, const std::vector<std::string>& keys) {
  for (const auto& key : keys) {
    auto left_it = left.find(key);
    auto right_it = right.find(key);
    bool left_has = left_it != left.end();
    bool right_has = right_it != right.end();
    if (left_has != right_has) return false;
    if (left_has && *left_it != *right_it) return false;
  }
  return true;
}

std::string stripPrefix(const std::string& message) {
  // nlohmann messages look like "[json.exception.out_of_range.403] key 'x' not found".
  if (!message.empty() && message.front() == '[') {
    size_t end = message.find("] ");
    if (end != std::string::npos) return message.substr(end + 2);
  }
  return message;
}

}  // namespace

Status applyMergePatch(api::Json& target, const api::Json& patch) {
  if (!patch.is_object()) {
    return invalidArgument("a JSON merge patch must be a JSON object");
  }
  try {
    target.merge_patch(patch);
  } catch (const std::exception& error) {
    return invalidArgument(stripPrefix(error.what()));
  }
  return {};
}

Result<api::Json> applyJsonPatch(const api::Json& target, const api::Json& patch) {
  if (!patch.is_array()) {
    return invalidArgument("a JSON patch must be a JSON array of operations");
  }
  for (size_t idx = 0; idx < patch.size(); ++idx) {
    const auto& operation = patch[idx];
    if (!operation.is_object() || !operation.contains("op") || !operation["op"].is_string() ||
        !operation.contains("path") || !operation["path"].is_string()) {
      return invalidArgument("JSON patch operation " + std::to_string(idx) +
                             " must be an object with string \"op\" and \"path\"");
    }
  }
  try {
    return target.patch(patch);
  } catch (const std::exception& error) {
    return invalidArgument("the JSON patch could not be applied: " + stripPrefix(error.what()));
  }
}

api::Json applyMerge(const api::Json& current, const api::Json& applied,
                     const api::Schema* schema) {
  if (applied.is_object() && current.is_object()) {
    api::Json result = current;
    for (const auto& [key, value] : applied.items()) {
      if (value.is_null()) {
        result.erase(key);
        continue;
      }
      auto it = current.find(key);
      result[key] = it == current.end() ? value : applyMerge(*it, value, childSchema(schema, key));
    }
    return result;
  }
  if (applied.is_array() && current.is_array() && schema != nullptr && schema->list_type == "map" &&
      !schema->list_map_keys.empty()) {
    const api::Schema* item_schema = schema->items.get();
    api::Json result = current;
    for (const auto& item : applied) {
      bool merged = false;
      if (item.is_object()) {
        for (auto& existing : result) {
          if (existing.is_object() && sameKeys(existing, item, schema->list_map_keys)) {
            existing = applyMerge(existing, item, item_schema);
            merged = true;
            break;
          }
        }
      }
      if (!merged) result.push_back(item);
    }
    return result;
  }
  if (applied.is_array() && current.is_array() && schema != nullptr && schema->list_type == "set") {
    api::Json result = current;
    for (const auto& item : applied) {
      bool found = false;
      for (const auto& existing : result) found = found || existing == item;
      if (!found) result.push_back(item);
    }
    return result;
  }
  return applied;
}

}  // namespace clrk::apiserver
