// EgressGateway: the transparent egress proxy that intercepts agents' outbound traffic, declared
// as listeners by protocol layer (TCP, TLS passthrough or termination, HTTP, HTTPS, UDP).
#include "clrk/api/v1alpha1/kinds.h"
#include "clrk/api/v1alpha1/shared.h"

namespace clrk::api::v1alpha1 {
namespace {

SchemaBuilder listener() {
  return obj({
      field("name", str().required().minLength(1).maxLength(63).doc(
                        "Listener name; routes attach to it through parentRef.sectionName.")),
      field("protocol", str()
                            .required()
                            .oneOf({"TCP", "TLS", "HTTP", "HTTPS", "UDP"})
                            .doc("Interception layer: TCP, TLS, HTTP, HTTPS or UDP.")),
      field("port", i32().minimum(1).maximum(65535).doc(
                        "Destination port intercepted; every port when unset.")),
      field("tls",
            obj({
                    field("mode",
                          str()
                              .required()
                              .oneOf({"Passthrough", "Terminate"})
                              .defaultTo("Passthrough")
                              .doc("Passthrough routes on SNI only; Terminate decrypts for L7 "
                                   "inspection and re-encrypts upstream.")),
                    field("caCertRef", secretObjectReference().doc(
                                           "Secret with the CA certificate and key used to mint "
                                           "leaf certificates; required for Terminate.")),
                })
                .doc("TLS handling; required for TLS, optional for HTTP, invalid for TCP/UDP.")),
      field("allowedRoutes", allowedRoutes().doc("Route kinds and namespaces that may attach.")),
  });
}

SchemaBuilder spec() {
  auto capture_body = obj({
      field("maxBytes", i32().defaultTo(65536).doc(
                            "Captured body bytes per direction; larger bodies are truncated.")),
      field("includeContentTypes",
            arr(str()).doc("Content-Type prefixes captured; empty means JSON, NDJSON "
                           "and event streams.")),
  });
  auto otlp = obj({
      field("endpoint", str().doc("OTLP/HTTP base URL captured records are also exported to.")),
      field("headers", mapOf(str()).doc("Headers added to each export (e.g. auth tokens).")),
      field("captureBody", capture_body.doc("Bounds of request/response body capture.")),
  });
  auto upstream_tls = obj({
      field("additionalTrustBundleSecretRef",
            secretObjectReference().doc("Secret whose PEM values are trusted in addition to the "
                                        "system CA bundle.")),
      field("hostAliases", arr(obj({
                                   field("ip", str().required().doc("IP address of the entry.")),
                                   field("hostnames", arr(str()).doc("Hostnames for the IP.")),
                               }))
                               .doc("Static host entries for the proxy's resolver.")),
  });
  auto dns = obj({field("lookupFamily",
                        str()
                            .oneOf({"V4Preferred", "V4Only", "V6Only", "Auto", "All"})
                            .defaultTo("V4Preferred")
                            .doc("IP families considered when resolving upstream hostnames."))});
  return obj({
                 field("defaultPolicy", str()
                                            .required()
                                            .oneOf({"allow-all", "deny-all"})
                                            .defaultTo("deny-all")
                                            .doc("Action for traffic no route matches.")),
                 field("listeners", arr(listener())
                                        .required()
                                        .minItems(1)
                                        .doc("Interception capabilities by protocol layer.")),
                 field("otlp", otlp.doc("Capture export and body-capture bounds.")),
                 field("upstreamTLS", upstream_tls.doc("How the proxy validates upstream TLS after "
                                                       "termination.")),
                 field("dns", dns.doc("Upstream DNS resolution settings.")),
                 field("requestTimeout",
                       duration().doc("Cap on one outbound request through the gateway (5m "
                                      "when unset).")),
             })
      .doc("Desired state of the EgressGateway.");
}

SchemaBuilder status() {
  auto listener_status = obj({
      field("name", str().required().doc("Listener name.")),
      field("port", i32().doc("Port the proxy listens on for this listener.")),
      field("backendAddress", str().doc("host:port workers dial for this listener.")),
      field("attachedRoutes", i32().required().doc("Routes attached to this listener.")),
      field("conditions", conditions()),
  });
  return obj({
                 field("conditions", conditions()),
                 field("listeners", arr(listener_status).doc("Per-listener state.")),
                 field("listenerCount", i32().doc("Number of listeners.")),
             })
      .doc("Observed state of the EgressGateway.");
}

}  // namespace

ResourceType egressGatewayType() {
  ResourceType type = newKind("EgressGateway", "egressgateways", {"egw"}, true);
  type.printer_columns = {
      column("Policy", "string", ".spec.defaultPolicy", "Action for unmatched traffic."),
      column("Listeners", "integer", ".status.listenerCount", "Number of listeners."),
  };
  type.schema = objectSchema(
      "EgressGateway is a transparent proxy intercepting outbound traffic of agent sandboxes.",
      spec(), status());
  return type;
}

}  // namespace clrk::api::v1alpha1
