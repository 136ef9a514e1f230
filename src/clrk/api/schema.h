// Structural schemas (the OpenAPI v3 subset Kubernetes CRDs allow) and a small builder DSL to
// declare them. One Schema tree per kind is the single source for validation, defaulting, CRD
// generation, the server's OpenAPI v3 document and kubectl's field documentation.
//
// Builder example:
//   obj({
//     field("workerPoolRef", str().required().doc("WorkerPool in the same namespace.")),
//     field("timeout", str().format("duration").defaultTo("100s")),
//     field("maxConcurrent", i32().minimum(0)),
//     field("env", arr(obj({field("name", str().required()), field("value", str())}))),
//     field("labels", mapOf(str())),
//   })
// Thread model: schemas are immutable after construction and shared freely across threads.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace clrk::api {

using Json = nlohmann::json;

struct Schema;
using SchemaConstSharedPtr = std::shared_ptr<const Schema>;

enum class SchemaType { Object, Array, String, Integer, Number, Boolean, IntOrString, Any };

struct Schema {
  SchemaType type = SchemaType::Any;
  std::string description;
  // Object: declared properties, in declaration order (generation is deterministic).
  std::vector<std::pair<std::string, SchemaConstSharedPtr>> properties;
  std::vector<std::string> required;
  // Object used as a map (`additionalProperties`); set iff this is a map.
  SchemaConstSharedPtr additional_properties;
  // Array element schema; set iff type == Array.
  SchemaConstSharedPtr items;
  std::vector<Json> enum_values;
  std::optional<Json> default_value;
  std::optional<double> minimum;
  std::optional<double> maximum;
  std::optional<int64_t> min_length;
  std::optional<int64_t> max_length;
  std::optional<int64_t> min_items;
  std::optional<int64_t> max_items;
  std::string pattern;  // ECMA regex the string must match (anchors explicit)
  // "int32", "int64", "date-time", "duration" (Go duration string), "byte" (base64),
  // "quantity" (Kubernetes resource quantity). Validated where clrk knows the format.
  std::string format;
  bool nullable = false;
  // x-kubernetes-preserve-unknown-fields: free-form JSON kept as is (e.g. scheduleInput).
  bool preserve_unknown_fields = false;
  // x-kubernetes-embedded-resource: the value is a full object with apiVersion/kind/metadata.
  bool embedded_resource = false;
  // x-kubernetes-list-type ("atomic", "set", "map") and list-map-keys for arrays.
  std::string list_type;
  std::vector<std::string> list_map_keys;

  const Schema* property(std::string_view name) const;
};

// A mutable builder; converts implicitly to SchemaConstSharedPtr when done.
class SchemaBuilder {
 public:
  explicit SchemaBuilder(SchemaType type) : schema_(std::make_shared<Schema>()) {
    schema_->type = type;
  }

  SchemaBuilder& doc(std::string text) {
    schema_->description = std::move(text);
    return *this;
  }
  // Marks this field required in its parent object (read by field()).
  SchemaBuilder& required() {
    required_ = true;
    return *this;
  }
  SchemaBuilder& defaultTo(Json value) {
    schema_->default_value = std::move(value);
    return *this;
  }
  SchemaBuilder& oneOf(std::vector<Json> values) {
    schema_->enum_values = std::move(values);
    return *this;
  }
  SchemaBuilder& minimum(double value) {
    schema_->minimum = value;
    return *this;
  }
  SchemaBuilder& maximum(double value) {
    schema_->maximum = value;
    return *this;
  }
  SchemaBuilder& minLength(int64_t value) {
    schema_->min_length = value;
    return *this;
  }
  SchemaBuilder& maxLength(int64_t value) {
    schema_->max_length = value;
    return *this;
  }
  SchemaBuilder& minItems(int64_t value) {
    schema_->min_items = value;
    return *this;
  }
  SchemaBuilder& maxItems(int64_t value) {
    schema_->max_items = value;
    return *this;
  }
  SchemaBuilder& pattern(std::string regex) {
    schema_->pattern = std::move(regex);
    return *this;
  }
  SchemaBuilder& format(std::string name) {
    schema_->format = std::move(name);
    return *this;
  }
  SchemaBuilder& nullable() {
    schema_->nullable = true;
    return *this;
  }
  SchemaBuilder& preserveUnknownFields() {
    schema_->preserve_unknown_fields = true;
    return *this;
  }
  SchemaBuilder& embeddedResource() {
    schema_->embedded_resource = true;
    return *this;
  }
  SchemaBuilder& listType(std::string type, std::vector<std::string> map_keys = {}) {
    schema_->list_type = std::move(type);
    schema_->list_map_keys = std::move(map_keys);
    return *this;
  }

  bool isRequired() const { return required_; }
  Schema& mutableSchema() { return *schema_; }
  operator SchemaConstSharedPtr() const { return schema_; }  // NOLINT(google-explicit-constructor)
  SchemaConstSharedPtr build() const { return schema_; }

 private:
  std::shared_ptr<Schema> schema_;
  bool required_ = false;
};

// One property of an object schema.
struct Field {
  std::string name;
  SchemaConstSharedPtr schema;
  bool required = false;
};

inline Field field(std::string name, const SchemaBuilder& builder) {
  return {std::move(name), builder.build(), builder.isRequired()};
}
inline Field field(std::string name, SchemaConstSharedPtr schema, bool required = false) {
  return {std::move(name), std::move(schema), required};
}

SchemaBuilder str();
SchemaBuilder boolean();
SchemaBuilder i32();  // integer, format int32
SchemaBuilder i64();  // integer, format int64
SchemaBuilder number();
SchemaBuilder intOrString();  // x-kubernetes-int-or-string
SchemaBuilder anyJson();      // free-form: type object + preserve-unknown-fields
SchemaBuilder obj(std::vector<Field> fields);
SchemaBuilder arr(SchemaConstSharedPtr items);
SchemaBuilder mapOf(SchemaConstSharedPtr values);
// A Kubernetes quantity ("500m", "1Gi", 2): int-or-string with format quantity.
SchemaBuilder quantity();
// A Go duration string ("100s", "1h30m"): string with format duration.
SchemaBuilder duration();
// metav1.Time: string with format date-time.
SchemaBuilder timestamp();
// The standard status conditions array (type, status, observedGeneration, lastTransitionTime,
// reason, message), list-type map keyed by type.
SchemaBuilder conditions();
// A reference to another object by name: {name: string (required)}.
SchemaBuilder localObjectReference();

}  // namespace clrk::api
