// Decoding of user manifests (YAML or JSON, multi-document) into JSON objects, with errors that
// name the source, the document, the field path and the line.
#pragma once

#include "clrk/api/registry.h"
#include "clrk/api/validation.h"
#include "clrk/base/status.h"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::api {

struct Document {
  std::string source;  // file name or "<stdin>"
  int index = 0;       // 0-based document number within the source
  int line = 0;        // 1-based line where the document starts
  Json object;
  // Field path ("spec.env[2].name"; map entries also as "metadata.labels[app]") -> 1-based line
  // of the field in the source, for error messages. Empty for JSON input parsed as JSON.
  std::map<std::string, int> field_lines;
};

// Splits `text` into documents (YAML `---` separators; a JSON document or a `kind: List` with
// `items` expands into its items); skips empty documents. Errors name source, document and line.
// Bounds: rejects input over 16 MiB and nesting deeper than 100 levels.
Result<std::vector<Document>> decodeManifests(std::string_view text, std::string_view source);

// Resolves the document's apiVersion/kind in `registry`, applies defaults and validates strictly.
// The error message names source, document index, kind/name, field path and the line of the
// offending field when known, e.g.
//   agents.yaml: document 2 (TaskAgent "echo"): line 9: spec.timeout: Invalid value: "abc": ...
// ("document N" counts from 1.) With several field errors the message has one such line per
// error, joined with '\n'. Unknown apiVersion/kind:
//   agents.yaml: document 1: line 1: no kind "Foo" is registered for version
//   "clrk.apoxy.dev/v1alpha1"
Status checkDocument(const Registry& registry, Document& document);

// YAML rendering of a JSON value (for `-o yaml`), keys in the object's order.
std::string toYaml(const Json& value);

}  // namespace clrk::api
