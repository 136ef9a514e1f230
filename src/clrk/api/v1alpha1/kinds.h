// One constructor per clrk.apoxy.dev/v1alpha1 kind; types.cc assembles them in a stable order.
#pragma once

#include "clrk/api/registry.h"

namespace clrk::api::v1alpha1 {

ResourceType taskAgentType();
ResourceType daemonAgentType();
ResourceType agentSandboxRevisionType();
ResourceType sandboxStateType();
ResourceType workerPoolType();
ResourceType egressGatewayType();
ResourceType egressL4RouteType();
ResourceType mcpRouteType();
ResourceType aiProviderRouteType();
ResourceType backendType();
ResourceType credentialInjectionPolicyType();
ResourceType fallbackRoutingPolicyType();
ResourceType rateLimitPolicyType();
ResourceType loggingPolicyType();
ResourceType egressDenyPolicyType();
ResourceType invocationType();
ResourceType clrkConfigType();

}  // namespace clrk::api::v1alpha1
