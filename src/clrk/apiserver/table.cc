#include "clrk/apiserver/table.h"

#include "clrk/api/generate.h"
#include "clrk/base/ascii.h"
#include "clrk/base/time.h"

#include <chrono>
#include <functional>
#include <utility>

namespace clrk::apiserver {
namespace {

using CellFn = std::function<api::Json(const api::Json&)>;

struct Column {
  std::string name;
  std::string type;
  std::string format;
  std::string description;
  int priority = 0;
  CellFn cell;
};

std::string ageOf(const api::Json& timestamp) {
  if (!timestamp.is_string()) return "<unknown>";
  auto parsed = parseRfc3339(timestamp.get<std::string>());
  if (!parsed) return "<invalid>";
  auto age =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now() - *parsed);
  return formatAge(age);
}

const api::Json& at(const api::Json& object, std::initializer_list<const char*> path) {
  static const api::Json kNull;
  const api::Json* node = &object;
  for (const char* key : path) {
    if (!node->is_object()) return kNull;
    auto it = node->find(key);
    if (it == node->end()) return kNull;
    node = &*it;
  }
  return *node;
}

api::Json countOf(const api::Json& object, std::initializer_list<const char*> fields) {
  int64_t count = 0;
  for (const char* field : fields) {
    const api::Json& value = at(object, {field});
    if (value.is_object() || value.is_array()) count += static_cast<int64_t>(value.size());
  }
  return count;
}

api::Json stringOr(const api::Json& value, const char* fallback) {
  if (value.is_string()) return value;
  if (value.is_null()) return fallback;
  return value.dump();
}

Column nameColumn() {
  return {"Name",
          "string",
          "name",
          "Name must be unique within a namespace. Is required when creating resources, although "
          "some resources may allow a client to request the generation of an appropriate name "
          "automatically.",
          0,
          [](const api::Json& object) {
            return stringOr(at(object, {"metadata", "name"}), "");
          }};
}

Column ageColumn() {
  return {"Age",
          "string",
          "",
          "CreationTimestamp is a timestamp representing the server time when this object was "
          "created.",
          0,
          [](const api::Json& object) {
            return api::Json(ageOf(at(object, {"metadata", "creationTimestamp"})));
          }};
}

std::vector<Column> coreColumns(const api::ResourceType& type) {
  if (type.group.empty() && type.kind == "Secret") {
    return {nameColumn(),
            {"Type", "string", "", "The type of secret", 0,
             [](const api::Json& object) { return stringOr(at(object, {"type"}), ""); }},
            {"Data", "string", "", "Number of items in the secret", 0,
             [](const api::Json& object) { return countOf(object, {"data"}); }},
            ageColumn()};
  }
  if (type.group.empty() && type.kind == "ConfigMap") {
    return {nameColumn(),
            {"Data", "string", "", "Number of items in the config map", 0,
             [](const api::Json& object) {
               return countOf(object, {"data", "binaryData"});
             }},
            ageColumn()};
  }
  if (type.group.empty() && type.kind == "Namespace") {
    return {nameColumn(),
            {"Status", "string", "", "The status of the namespace", 0,
             [](const api::Json& object) {
               return stringOr(at(object, {"status", "phase"}), "Active");
             }},
            ageColumn()};
  }
  if (type.group.empty() && type.kind == "Event") {
    return {
        {"Last Seen", "string", "", "Time when last event occurred", 0,
         [](const api::Json& object) {
           const api::Json& last = at(object, {"lastTimestamp"});
           if (last.is_string()) return api::Json(ageOf(last));
           const api::Json& event_time = at(object, {"eventTime"});
           if (event_time.is_string()) return api::Json(ageOf(event_time));
           return api::Json(ageOf(at(object, {"metadata", "creationTimestamp"})));
         }},
        {"Type", "string", "", "Type of this event", 0,
         [](const api::Json& object) { return stringOr(at(object, {"type"}), ""); }},
        {"Reason", "string", "", "Reason why this event was generated", 0,
         [](const api::Json& object) { return stringOr(at(object, {"reason"}), ""); }},
        {"Object", "string", "", "The object this event is about", 0,
         [](const api::Json& object) {
           std::string kind =
               stringOr(at(object, {"involvedObject", "kind"}), "").get<std::string>();
           std::string name =
               stringOr(at(object, {"involvedObject", "name"}), "").get<std::string>();
           return api::Json(asciiLowerCopy(kind) + "/" + name);
         }},
        {"Message", "string", "", "A human-readable description of the status of this operation", 0,
         [](const api::Json& object) { return stringOr(at(object, {"message"}), ""); }},
        {"Name", "string", "name", "Name of the event", 1, [](const api::Json& object) {
           return stringOr(at(object, {"metadata", "name"}), "");
         }}};
  }
  if (type.group == "coordination.k8s.io" && type.kind == "Lease") {
    return {nameColumn(),
            {"Holder", "string", "", "The holder of the lease", 0,
             [](const api::Json& object) {
               return stringOr(at(object, {"spec", "holderIdentity"}), "");
             }},
            ageColumn()};
  }
  return {};
}

std::vector<Column> columnsFor(const api::ResourceType& type) {
  std::vector<Column> columns = coreColumns(type);
  if (!columns.empty()) return columns;
  columns.push_back(nameColumn());
  bool has_age = false;
  for (const auto& printer : type.printer_columns) {
    if (printer.name == "Age") has_age = true;
    Column column;
    column.name = printer.name;
    column.type = printer.type == "date" ? "date" : printer.type;
    column.format = printer.format;
    column.description = printer.description;
    column.priority = printer.priority;
    std::string path = printer.json_path;
    std::string column_type = printer.type;
    column.cell = [path, column_type](const api::Json& object) -> api::Json {
      api::Json value = api::evalJsonPath(object, path);
      if (column_type == "date") {
        if (value.is_null()) return api::Json("<unknown>");
        return api::Json(ageOf(value));
      }
      if (value.is_null()) return api::Json(nullptr);
      if (column_type == "string" && !value.is_string()) return api::Json(value.dump());
      return value;
    };
    columns.push_back(std::move(column));
  }
  if (!has_age) columns.push_back(ageColumn());
  return columns;
}

}  // namespace

IncludeObject parseIncludeObject(std::string_view text) {
  if (text == "None") return IncludeObject::None;
  if (text == "Object") return IncludeObject::Object;
  return IncludeObject::Metadata;
}

api::Json buildTable(const api::ResourceType& type, const std::vector<api::Json>& objects,
                     IncludeObject include, std::string_view table_api_version,
                     api::Json list_metadata) {
  std::vector<Column> columns = columnsFor(type);
  api::Json definitions = api::Json::array();
  for (const auto& column : columns) {
    definitions.push_back({{"name", column.name},
                           {"type", column.type},
                           {"format", column.format},
                           {"description", column.description},
                           {"priority", column.priority}});
  }
  api::Json rows = api::Json::array();
  for (const auto& object : objects) {
    api::Json cells = api::Json::array();
    for (const auto& column : columns) {
      try {
        cells.push_back(column.cell(object));
      } catch (const std::exception&) {
        cells.push_back(nullptr);
      }
    }
    api::Json row = {{"cells", std::move(cells)}};
    if (include == IncludeObject::Object) {
      row["object"] = object;
    } else if (include == IncludeObject::Metadata) {
      row["object"] = {
          {"apiVersion", table_api_version},
          {"kind", "PartialObjectMetadata"},
          {"metadata", object.contains("metadata") ? object["metadata"] : api::Json::object()}};
    }
    rows.push_back(std::move(row));
  }
  if (!list_metadata.is_object()) list_metadata = api::Json::object();
  return {{"kind", "Table"},
          {"apiVersion", table_api_version},
          {"metadata", std::move(list_metadata)},
          {"columnDefinitions", std::move(definitions)},
          {"rows", std::move(rows)}};
}

}  // namespace clrk::apiserver
