// WorkerPool: a fleet of worker pods hosting agent executions. The pod template is a curated
// overlay: the sandbox runtime's load-bearing pod settings are owned by the controller.
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

SchemaBuilder toleration() {
  return obj({
      field("key", str().doc("Taint key matched; empty with Exists matches every key.")),
      field("operator", str().oneOf({"Exists", "Equal"}).doc("Exists or Equal (default).")),
      field("value", str().doc("Taint value matched with Equal.")),
      field("effect", str()
                          .oneOf({"NoSchedule", "PreferNoSchedule", "NoExecute"})
                          .doc("Taint effect matched; empty matches all.")),
      field("tolerationSeconds", i64().doc("How long a NoExecute taint is tolerated.")),
  });
}

SchemaBuilder topologySpreadConstraint() {
  return obj({
      field("maxSkew", i32().required().minimum(1).doc("Allowed imbalance between domains.")),
      field("topologyKey", str().required().doc("Node label defining the domains.")),
      field("whenUnsatisfiable", str()
                                     .required()
                                     .oneOf({"DoNotSchedule", "ScheduleAnyway"})
                                     .doc("What to do when the constraint cannot be met.")),
      field("labelSelector", labelSelector().doc("Pods counted in each domain.")),
      field("minDomains", i32().doc("Minimum number of eligible domains.")),
      field("matchLabelKeys", arr(str()).doc("Pod label keys added to the selector.")),
      field("nodeAffinityPolicy",
            str().oneOf({"Honor", "Ignore"}).doc("Whether node affinity limits the domains.")),
      field("nodeTaintsPolicy",
            str().oneOf({"Honor", "Ignore"}).doc("Whether node taints limit the domains.")),
  });
}

SchemaBuilder volumeMount() {
  return obj({
      field("name", str().required().doc("Name of a volume declared in extraVolumes.")),
      field("mountPath", str().required().minLength(1).doc(
                             "Absolute path in the worker container; must not overlap runtime "
                             "paths.")),
      field("readOnly", boolean().doc("Mount read-only.")),
      field("subPath", str().doc("Sub-path of the volume to mount.")),
      field("subPathExpr", str().doc("Sub-path with $(VAR) expansion.")),
      field(
          "mountPropagation",
          str().oneOf({"None", "HostToContainer", "Bidirectional"}).doc("Mount propagation mode.")),
      field("recursiveReadOnly", str()
                                     .oneOf({"Disabled", "IfPossible", "Enabled"})
                                     .doc("Whether read-only applies recursively.")),
  });
}

SchemaBuilder podTemplate() {
  return obj({
      field("image", str()
                         .required()
                         .minLength(1)
                         .pattern("^[A-Za-z0-9][A-Za-z0-9._:@+-]*(/[A-Za-z0-9._:@+-]+)*$")
                         .doc("Worker container image (a clrk worker image).")),
      field("imagePullPolicy", str()
                                   .oneOf({"Always", "IfNotPresent", "Never"})
                                   .defaultTo("IfNotPresent")
                                   .doc("Pull policy of the worker image.")),
      field("imagePullSecrets",
            arr(coreLocalObjectReference()).doc("Secrets used to pull the worker image.")),
      field("resources", resourceRequirements().doc("Worker container requests and limits.")),
      field("env", arr(envVar()).doc("Extra environment for the worker container; "
                                     "controller-owned names are dropped.")),
      field("nodeSelector", mapOf(str()).doc("Node labels worker pods must match.")),
      field("tolerations", arr(toleration()).doc("Taints worker pods tolerate.")),
      field("affinity", anyJson().doc("Pod scheduling affinity (a Kubernetes Affinity).")),
      field("priorityClassName", str().doc("Priority class of worker pods.")),
      field("topologySpreadConstraints",
            arr(topologySpreadConstraint()).doc("How worker pods spread across domains.")),
      field("serviceAccountName",
            str().defaultTo("clrk-worker").doc("Service account of worker pods.")),
      field("extraVolumes",
            arr(obj({field("name", str().required().doc(
                                       "Volume name; state, run and varlog are reserved."))})
                    .preserveUnknownFields()
                    .doc("A Kubernetes pod volume (name plus one volume source)."))
                .doc("Additional pod volumes.")),
      field("extraVolumeMounts", arr(volumeMount()).doc("Additional worker container mounts.")),
      field("metadata", obj({
                                field("labels", mapOf(str()).doc("Extra pod labels.")),
                                field("annotations", mapOf(str()).doc("Extra pod annotations.")),
                            })
                            .doc("Labels and annotations merged onto worker pods; "
                                 "controller-owned keys win.")),
  });
}

SchemaBuilder spec() {
  return obj({
                 field("replicas", i32().minimum(0).defaultTo(1).doc("Desired number of worker "
                                                                     "pods.")),
                 field("template", podTemplate().required().doc(
                                       "Curated worker pod settings merged onto the fixed base.")),
                 field("maxExecutionsPerWorker",
                       i32().minimum(0).doc("Executions one worker pod hosts at once.")),
                 field("warmPool", i32().minimum(0).doc("Pre-spawned sandboxes kept ready.")),
                 field("imageCache", obj({field("enabled", boolean().doc("Cache OCI images on "
                                                                         "worker nodes."))})
                                         .doc("OCI image caching on worker nodes.")),
             })
      .doc("Desired state of the WorkerPool.");
}

SchemaBuilder status() {
  return obj({
                 field("observedGeneration", i64().doc("Generation last reconciled.")),
                 field("readyReplicas", i32().doc("Worker pods that are ready.")),
                 field("capacity",
                       obj({
                               field("maxExecutions", i32().doc("Execution slots across "
                                                                "ready workers.")),
                               field("availableExecutions", i32().doc("Free execution "
                                                                      "slots.")),
                           })
                           .doc("Aggregate execution capacity.")),
                 field("activeExecutions", i32().doc("In-flight invocations across the pool.")),
                 field("conditions", conditions()),
             })
      .doc("Observed state of the WorkerPool.");
}

}  // namespace

ResourceType workerPoolType() {
  ResourceType type = newKind("WorkerPool", "workerpools", {"wp"}, true);
  type.printer_columns = {
      column("Replicas", "integer", ".spec.replicas", "Desired worker pods."),
      column("Ready", "integer", ".status.readyReplicas", "Ready worker pods."),
      column("Active", "integer", ".status.activeExecutions", "In-flight invocations."),
  };
  type.schema =
      objectSchema("WorkerPool runs the worker pods that host agent executions.", spec(), status());
  return type;
}

}  // namespace clrk::api::v1alpha1
