// Pure output helpers of `clrk get` and `clrk apply`: kubectl-style tables and the apply outcome.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/base/time.h"

#include <optional>
#include <string>
#include <vector>

namespace clrk::cli {

struct TableOptions {
  bool wide = false;            // include printer columns with priority > 0
  bool all_namespaces = false;  // NAMESPACE column first
  bool header = true;
  SystemTime now = std::chrono::system_clock::now();
};

// Rows of a table: header (upper-case names) then one row per object.
std::vector<std::vector<std::string>> tableRows(const api::ResourceType& type,
                                                const std::vector<api::Json>& objects,
                                                const TableOptions& options);

// Aligns rows in columns separated by three spaces (kubectl's tabwriter padding); one line per
// row with a trailing newline; no trailing spaces.
std::string formatTable(const std::vector<std::vector<std::string>>& rows);

// Text of one printer-column cell for the value at its json_path: strings as is, numbers and
// booleans in JSON, dates as an age, missing values as "<none>", lists/maps as compact JSON.
std::string cellText(const api::PrinterColumn& column, const api::Json& value, SystemTime now);

enum class ApplyOutcome { Created, Configured, Unchanged };

// kubectl's wording for an apply: created when the object did not exist before, unchanged when
// the server kept the same resourceVersion, configured otherwise.
ApplyOutcome decideApplyOutcome(const std::optional<api::Json>& before, const api::Json& after);
std::string_view applyOutcomeName(ApplyOutcome outcome);

}  // namespace clrk::cli
