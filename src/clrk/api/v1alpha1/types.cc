// TEMPORARY placeholder (written by the api engine owner so clrk::api links); the v1alpha1 owner
// replaces this file with the real kinds.
#include "clrk/api/v1alpha1/types.h"

#include "clrk/api/core_types.h"

namespace clrk::api::v1alpha1 {

std::vector<ResourceType> types() {
  ResourceType t;
  t.group = std::string(kGroup);
  t.version = std::string(kVersion);
  t.kind = "TaskAgent";
  t.list_kind = "TaskAgentList";
  t.plural = "taskagents";
  t.singular = "taskagent";
  t.short_names = {"ta"};
  t.categories = {"clrk", "all"};
  t.has_status_subresource = true;
  t.printer_columns = {{"Image", "string", ".spec.image", "Container image.", "", 0}};
  auto fields = objectEnvelope();
  fields.push_back(field("spec", obj({field("image", str().required().doc("Image to run.")),
                                      field("timeout", duration().defaultTo("100s"))})
                                     .required()));
  fields.push_back(field("status", obj({field("conditions", conditions())})));
  t.schema = obj(std::move(fields)).doc("TaskAgent runs an agent as a task.");
  return {t};
}

}  // namespace clrk::api::v1alpha1
