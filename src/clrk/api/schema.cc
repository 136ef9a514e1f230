#include "clrk/api/schema.h"

namespace clrk::api {

const Schema* Schema::property(std::string_view name) const {
  for (const auto& [key, value] : properties) {
    if (key == name) return value.get();
  }
  return nullptr;
}

SchemaBuilder str() { return SchemaBuilder(SchemaType::String); }

SchemaBuilder boolean() { return SchemaBuilder(SchemaType::Boolean); }

SchemaBuilder i32() {
  SchemaBuilder builder(SchemaType::Integer);
  builder.format("int32");
  return builder;
}

SchemaBuilder i64() {
  SchemaBuilder builder(SchemaType::Integer);
  builder.format("int64");
  return builder;
}

SchemaBuilder number() { return SchemaBuilder(SchemaType::Number); }

SchemaBuilder intOrString() { return SchemaBuilder(SchemaType::IntOrString); }

SchemaBuilder anyJson() {
  SchemaBuilder builder(SchemaType::Any);
  builder.preserveUnknownFields();
  return builder;
}

SchemaBuilder obj(std::vector<Field> fields) {
  SchemaBuilder builder(SchemaType::Object);
  Schema& schema = builder.mutableSchema();
  schema.properties.reserve(fields.size());
  for (auto& f : fields) {
    if (f.required) schema.required.push_back(f.name);
    schema.properties.emplace_back(std::move(f.name), std::move(f.schema));
  }
  return builder;
}

SchemaBuilder arr(SchemaConstSharedPtr items) {
  SchemaBuilder builder(SchemaType::Array);
  builder.mutableSchema().items = std::move(items);
  return builder;
}

SchemaBuilder mapOf(SchemaConstSharedPtr values) {
  SchemaBuilder builder(SchemaType::Object);
  builder.mutableSchema().additional_properties = std::move(values);
  return builder;
}

SchemaBuilder quantity() {
  SchemaBuilder builder(SchemaType::IntOrString);
  builder.format("quantity");
  return builder;
}

SchemaBuilder duration() {
  SchemaBuilder builder(SchemaType::String);
  builder.format("duration");
  return builder;
}

SchemaBuilder timestamp() {
  SchemaBuilder builder(SchemaType::String);
  builder.format("date-time");
  return builder;
}

SchemaBuilder conditions() {
  auto condition = obj({
      field("type", str().required().maxLength(316).doc("Type of condition in CamelCase.")),
      field("status", str()
                          .required()
                          .oneOf({"True", "False", "Unknown"})
                          .doc("Status of the condition: True, False or Unknown.")),
      field("observedGeneration",
            i64().minimum(0).doc("The .metadata.generation the condition was set based upon.")),
      field("lastTransitionTime",
            timestamp().doc("Last time the condition transitioned from one status to another.")),
      field("reason", str().maxLength(1024).doc("Programmatic identifier for the last transition, "
                                                "in CamelCase.")),
      field("message", str().maxLength(32768).doc("Human-readable details about the transition.")),
  });
  condition.doc("One aspect of the object's current state.");
  SchemaBuilder builder = arr(condition);
  builder.listType("map", {"type"});
  builder.doc("The latest available observations of the object's state.");
  return builder;
}

SchemaBuilder localObjectReference() {
  SchemaBuilder builder =
      obj({field("name", str().required().doc("Name of the referent, in the same namespace."))});
  return builder;
}

}  // namespace clrk::api
