// CLRKConfig: the install-wide singleton configuration object (named "default").
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {

ResourceType clrkConfigType() {
  ResourceType type = newKind("CLRKConfig", "clrkconfigs", {"cc"}, true);
  type.printer_columns = {
      column("Email", "string", ".spec.notifications.email", "Notification sign-up email."),
  };
  auto notifications = obj({
      field("email", str().doc("Sign-up email; empty leaves notifications off.")),
      field("signedUpAt", timestamp().doc("When the email was first set.")),
      field("advisoryPollEnabled", boolean().doc("Poll for security advisories.")),
      field("eventRetention", duration().doc("How long notification Events are kept.")),
  });
  auto token_ref = obj({
      field("name", str().required().doc("Secret name.")),
      field("namespace", str().required().doc("Secret namespace.")),
      field("key", str().required().doc("Key within the Secret.")),
  });
  auto notifications_status = obj({
      field("conditions", conditions().doc("Registered, PhoneHomeHealthy, AdvisorySyncHealthy.")),
      field("deploymentID", str().doc("Non-secret id returned at registration.")),
      field("registeredEmail", str().doc("Email the current registration was made with.")),
      field("advisoryPollIntervalSeconds", i64().doc("Advisory poll cadence from the server.")),
      field("registrationTokenSecretRef", token_ref.doc("Secret holding the registration "
                                                        "token.")),
      field("registeredAt", timestamp().doc("When registration succeeded.")),
      field("lastAdvisorySync", timestamp().doc("Last advisory sync.")),
      field("lastReportAt", timestamp().doc("Last report sent.")),
      field("reportsDropped", i64().doc("Reports dropped under backpressure.")),
      field("observedGeneration", i64().doc("Generation this status reflects.")),
  });
  auto spec = obj({field("notifications", notifications.doc("Notification settings."))});
  auto status = obj({field("notifications", notifications_status.doc("Registration health."))});
  type.schema = objectSchema(
      "CLRKConfig is the install-wide configuration singleton, named "
      "\"default\".",
      spec.doc("Install-wide settings."), status.doc("Controller-reported state."));
  return type;
}

}  // namespace clrk::api::v1alpha1
