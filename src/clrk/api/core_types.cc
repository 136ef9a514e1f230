#include "clrk/api/core_types.h"

namespace clrk::api {
namespace {

SchemaBuilder objectMeta() {
  auto owner_reference = obj({
      field("apiVersion", str().required().doc("API version of the referent.")),
      field("kind", str().required().doc("Kind of the referent.")),
      field("name", str().required().doc("Name of the referent.")),
      field("uid", str().required().doc("UID of the referent.")),
      field("controller",
            boolean().doc("If true, this reference points to the managing controller.")),
      field("blockOwnerDeletion",
            boolean().doc("If true, the owner cannot be deleted before this object.")),
  });
  auto meta = obj({
      field("name", str().doc("Name must be unique within a namespace.")),
      field("generateName",
            str().doc("Optional prefix used by the server to generate a unique name.")),
      field("namespace", str().doc("Namespace defines the space within which the name is unique.")),
      field("uid", str().doc("Unique identifier set by the server.")),
      field("resourceVersion",
            str().doc("Opaque value identifying the internal version of this object.")),
      field("generation", i64().doc("Sequence number of the desired state (spec) generation.")),
      field("creationTimestamp", timestamp().doc("When this object was created (server-set).")),
      field("deletionTimestamp", timestamp().doc("When this object will be deleted (server-set).")),
      field("deletionGracePeriodSeconds",
            i64().doc("Seconds allowed for graceful termination before removal.")),
      field("labels", mapOf(str()).doc("Map of string keys and values to organize and select "
                                       "objects.")),
      field("annotations", mapOf(str()).doc("Unstructured key/value map for arbitrary metadata.")),
      field("ownerReferences", arr(owner_reference).doc("Objects depended on by this object.")),
      field("finalizers", arr(str()).doc("Must be empty before the object is deleted.")),
      field("managedFields", arr(anyJson()).doc("Field ownership (server-side apply).")),
      field("selfLink", str().doc("Deprecated; not set by the server.")),
  });
  meta.doc("Standard object metadata.");
  return meta;
}

Field statusPhase(std::vector<Json> phases, std::string doc) {
  return field("status", obj({field("phase", str().oneOf(std::move(phases)).doc(std::move(doc)))})
                             .doc("Most recently observed status."));
}

ResourceType namespaceType() {
  ResourceType t;
  t.version = "v1";
  t.kind = "Namespace";
  t.list_kind = "NamespaceList";
  t.plural = "namespaces";
  t.singular = "namespace";
  t.short_names = {"ns"};
  t.namespaced = false;
  t.has_status_subresource = true;
  t.verbs = {"create", "delete", "get", "list", "patch", "update", "watch"};
  t.printer_columns = {{"Status", "string", ".status.phase", "Namespace phase.", "", 0}};
  auto fields = objectEnvelope();
  fields.push_back(
      field("spec", obj({field("finalizers", arr(str()).doc("Finalizers to run before removal."))})
                        .doc("Behavior of the Namespace.")));
  fields.push_back(statusPhase({"Active", "Terminating"}, "Current lifecycle phase."));
  t.schema = obj(std::move(fields)).doc("Namespace provides a scope for names.");
  return t;
}

ResourceType secretType() {
  ResourceType t;
  t.version = "v1";
  t.kind = "Secret";
  t.list_kind = "SecretList";
  t.plural = "secrets";
  t.singular = "secret";
  t.printer_columns = {{"Type", "string", ".type", "Secret type.", "", 0}};
  auto fields = objectEnvelope();
  fields.push_back(field(
      "data", mapOf(str().format("byte")).doc("Secret data; values are base64-encoded bytes.")));
  fields.push_back(
      field("stringData", mapOf(str()).doc("Write-only convenience: plain strings merged into "
                                           "data on write.")));
  fields.push_back(field("type", str().doc("Used to facilitate programmatic handling of secret "
                                           "data (default Opaque).")));
  fields.push_back(
      field("immutable", boolean().doc("If true, data cannot be updated after creation.")));
  t.schema = obj(std::move(fields)).doc("Secret holds secret data of a certain type.");
  return t;
}

ResourceType configMapType() {
  ResourceType t;
  t.version = "v1";
  t.kind = "ConfigMap";
  t.list_kind = "ConfigMapList";
  t.plural = "configmaps";
  t.singular = "configmap";
  t.short_names = {"cm"};
  auto fields = objectEnvelope();
  fields.push_back(field("data", mapOf(str()).doc("Configuration data (UTF-8 strings).")));
  fields.push_back(field(
      "binaryData", mapOf(str().format("byte")).doc("Binary configuration data, base64-encoded.")));
  fields.push_back(
      field("immutable", boolean().doc("If true, data cannot be updated after creation.")));
  t.schema = obj(std::move(fields)).doc("ConfigMap holds configuration data for consumption.");
  return t;
}

ResourceType eventType() {
  ResourceType t;
  t.version = "v1";
  t.kind = "Event";
  t.list_kind = "EventList";
  t.plural = "events";
  t.singular = "event";
  t.short_names = {"ev"};
  t.printer_columns = {
      {"Type", "string", ".type", "Normal or Warning.", "", 0},
      {"Reason", "string", ".reason", "Short machine-readable reason.", "", 0},
      {"Object", "string", ".involvedObject.name", "Object the event is about.", "", 0},
      {"Message", "string", ".message", "Human-readable description.", "", 0},
  };
  auto fields = objectEnvelope();
  fields.push_back(
      field("involvedObject", objectReference().required().doc("The object this event is about.")));
  fields.push_back(field("reason", str().doc("Short, machine-understandable reason.")));
  fields.push_back(field("message", str().doc("Human-readable description of the status.")));
  fields.push_back(
      field("source", obj({field("component", str().doc("Component from which the event came.")),
                           field("host", str().doc("Node name on which the event was generated."))})
                          .doc("The component reporting this event.")));
  fields.push_back(field("firstTimestamp", timestamp().doc("First time the event was recorded.")));
  fields.push_back(field("lastTimestamp", timestamp().doc("Most recent time the event occurred.")));
  fields.push_back(field("count", i32().doc("Number of times this event has occurred.")));
  fields.push_back(field("type", str().doc("Type of this event (Normal, Warning).")));
  fields.push_back(
      field("eventTime",
            str().format("date-time").doc("Time when this event was first observed (MicroTime).")));
  fields.push_back(
      field("series",
            obj({field("count", i32().doc("Number of occurrences in this series up to the last "
                                          "heartbeat.")),
                 field("lastObservedTime",
                       str().format("date-time").doc("Time of the last occurrence (MicroTime)."))})
                .doc("Data about the event series this event represents.")));
  fields.push_back(field("action", str().doc("What action was taken/failed.")));
  fields.push_back(field("related", objectReference().doc("Optional secondary object.")));
  fields.push_back(
      field("reportingComponent", str().doc("Name of the controller that emitted this event.")));
  fields.push_back(field("reportingInstance", str().doc("ID of the controller instance.")));
  t.schema = obj(std::move(fields)).doc("Event is a report of an event somewhere in the cluster.");
  return t;
}

ResourceType leaseType() {
  ResourceType t;
  t.group = "coordination.k8s.io";
  t.version = "v1";
  t.kind = "Lease";
  t.list_kind = "LeaseList";
  t.plural = "leases";
  t.singular = "lease";
  t.printer_columns = {
      {"Holder", "string", ".spec.holderIdentity", "Current holder of the lease.", "", 0}};
  auto fields = objectEnvelope();
  fields.push_back(field(
      "spec",
      obj({
              field("holderIdentity", str().doc("Identity of the holder of the current lease.")),
              field("leaseDurationSeconds",
                    i32().doc("Seconds candidates wait before forcibly acquiring the lease.")),
              field("acquireTime", str()
                                       .format("date-time")
                                       .doc("When the current lease was acquired (MicroTime).")),
              field("renewTime", str()
                                     .format("date-time")
                                     .doc("When the current holder last renewed (MicroTime).")),
              field("leaseTransitions",
                    i32().doc("Number of transitions of the lease between holders.")),
              field("strategy",
                    str().doc("Strategy for picking the leader (coordinated election).")),
              field("preferredHolder",
                    str().doc("Signals to a lease holder that it should yield.")),
          })
          .doc("Specification of the Lease.")));
  t.schema = obj(std::move(fields)).doc("Lease defines a lease concept.");
  return t;
}

}  // namespace

std::vector<Field> objectEnvelope() {
  return {
      field("apiVersion", str().doc("APIVersion defines the versioned schema of this "
                                    "representation of an object.")),
      field("kind", str().doc("Kind is a string value representing the REST resource this "
                              "object represents.")),
      field("metadata", objectMetaSchema()),
  };
}

SchemaConstSharedPtr objectMetaSchema() {
  static const SchemaConstSharedPtr schema = objectMeta().build();
  return schema;
}

SchemaBuilder objectReference() {
  return obj({
      field("apiVersion", str().doc("API version of the referent.")),
      field("kind", str().doc("Kind of the referent.")),
      field("name", str().doc("Name of the referent.")),
      field("namespace", str().doc("Namespace of the referent.")),
      field("uid", str().doc("UID of the referent.")),
      field("resourceVersion", str().doc("Specific resourceVersion of the referent.")),
      field("fieldPath", str().doc("Piece of an object instead of the entire object.")),
  });
}

std::vector<ResourceType> coreTypes() {
  return {namespaceType(), secretType(), configMapType(), eventType(), leaseType()};
}

}  // namespace clrk::api
