#include "clrk/api/v1alpha1/types.h"

#include "clrk/api/v1alpha1/kinds.h"

namespace clrk::api::v1alpha1 {

std::vector<ResourceType> types() {
  return {
      taskAgentType(),
      daemonAgentType(),
      agentSandboxRevisionType(),
      workerPoolType(),
      egressGatewayType(),
      egressL4RouteType(),
      mcpRouteType(),
      aiProviderRouteType(),
      backendType(),
      credentialInjectionPolicyType(),
      fallbackRoutingPolicyType(),
      rateLimitPolicyType(),
      loggingPolicyType(),
      egressDenyPolicyType(),
      invocationType(),
      sandboxStateType(),
      clrkConfigType(),
  };
}

}  // namespace clrk::api::v1alpha1
