#include "clrk/cli/printer.h"

#include "clrk/api/generate.h"

#include <algorithm>
#include <cctype>

namespace clrk::cli {
namespace {

std::string upper(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string metaString(const api::Json& object, const char* field) {
  if (!object.is_object() || !object.contains("metadata")) return {};
  const api::Json& meta = object["metadata"];
  if (!meta.is_object() || !meta.contains(field) || !meta[field].is_string()) return {};
  return meta[field].get<std::string>();
}

std::string ageOf(const api::Json& object, SystemTime now) {
  std::string created = metaString(object, "creationTimestamp");
  auto time = parseRfc3339(created);
  if (!time) return "<unknown>";
  return formatAge(std::chrono::duration_cast<std::chrono::seconds>(now - *time));
}

}  // namespace

std::string cellText(const api::PrinterColumn& column, const api::Json& value, SystemTime now) {
  if (value.is_null()) return "<none>";
  if (column.type == "date" && value.is_string()) {
    auto time = parseRfc3339(value.get<std::string>());
    if (time) return formatAge(std::chrono::duration_cast<std::chrono::seconds>(now - *time));
    return value.get<std::string>();
  }
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  return value.dump();
}

std::vector<std::vector<std::string>> tableRows(const api::ResourceType& type,
                                                const std::vector<api::Json>& objects,
                                                const TableOptions& options) {
  std::vector<const api::PrinterColumn*> columns;
  bool has_age_column = false;
  for (const auto& column : type.printer_columns) {
    if (column.priority > 0 && !options.wide) continue;
    columns.push_back(&column);
    if (upper(column.name) == "AGE") has_age_column = true;
  }
  std::vector<std::vector<std::string>> rows;
  if (options.header) {
    std::vector<std::string> header;
    if (options.all_namespaces && type.namespaced) header.push_back("NAMESPACE");
    header.push_back("NAME");
    for (const auto* column : columns) header.push_back(upper(column->name));
    if (!has_age_column) header.push_back("AGE");
    rows.push_back(std::move(header));
  }
  for (const auto& object : objects) {
    std::vector<std::string> row;
    if (options.all_namespaces && type.namespaced) row.push_back(metaString(object, "namespace"));
    row.push_back(metaString(object, "name"));
    for (const auto* column : columns) {
      row.push_back(cellText(*column, api::evalJsonPath(object, column->json_path), options.now));
    }
    if (!has_age_column) row.push_back(ageOf(object, options.now));
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string formatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 3, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

ApplyOutcome decideApplyOutcome(const std::optional<api::Json>& before, const api::Json& after) {
  if (!before) return ApplyOutcome::Created;
  std::string old_rv = metaString(*before, "resourceVersion");
  std::string new_rv = metaString(after, "resourceVersion");
  if (!old_rv.empty() && old_rv == new_rv) return ApplyOutcome::Unchanged;
  return ApplyOutcome::Configured;
}

std::string_view applyOutcomeName(ApplyOutcome outcome) {
  switch (outcome) {
    case ApplyOutcome::Created:
      return "created";
    case ApplyOutcome::Configured:
      return "configured";
    case ApplyOutcome::Unchanged:
      return "unchanged";
  }
  return "configured";
}

}  // namespace clrk::cli
