// Egress status: the controller compiles the egress configuration exactly as the workers do
// (worker::EgressFeed + egress::config::compile) and writes what compile() decided about each
// object into its status, so `kubectl get` and `clrk get` show why a route or policy is not in
// effect:
//   - EgressGateway: conditions Accepted and Ready (reason Accepted, or compile()'s reason such
//     as InvalidListener, with its message), listeners[] {name, port, attachedRoutes},
//     listenerCount;
//   - Backend: conditions Accepted and ResolvedRefs;
//   - AIProviderRoute, MCPRoute, EgressL4Route: status.parents[], one entry per spec.parentRefs
//     entry, with an Accepted condition;
//   - policies: status.ancestors[], one entry per target reference, with an Accepted condition.
// Every condition carries the object's metadata.generation as observedGeneration. Writes go
// through the status subresource and only when something other than timestamps changed.
// Thread model: the feed's compile thread does the writes; start()/stop() from one thread.
#pragma once

#include "clrk/egress/config/snapshot.h"
#include "clrk/kube/client.h"

#include <memory>

namespace clrk::worker {
class EgressFeed;
}

namespace clrk::controller {

inline constexpr std::string_view kEgressControllerName = "clrk.apoxy.dev/egress-controller";

// The status `object` should have given what compile() said about it. `now` stamps new
// conditions (kept when a condition's status did not change).
kube::Json egressStatusFor(const kube::Json& object, const egress::config::ObjectStatus& compiled);

class EgressStatusController {
 public:
  explicit EgressStatusController(kube::ClientPtr client);
  ~EgressStatusController();

  void start();
  void stop();

 private:
  void write(const std::vector<kube::Json>& objects, const egress::config::CompileResult& result);

  kube::ClientPtr client_;
  egress::config::SnapshotHolder holder_;  // the compiled snapshot itself is not used here
  std::unique_ptr<worker::EgressFeed> feed_;
};

}  // namespace clrk::controller
