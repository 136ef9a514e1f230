#include "clrk/controller/manager.h"

#include "clrk/api/builtin_types.h"
#include "clrk/api/registry.h"
#include "clrk/base/log.h"
#include "clrk/controller/daemons.h"
#include "clrk/controller/egress_status.h"
#include "clrk/controller/reconcilers.h"
#include "clrk/controller/trigger_server.h"

namespace clrk::controller {
namespace {

using Json = kube::Json;
using namespace std::chrono_literals;

// Runs starting and ending, and worker capacity moving with them, reach the agents' and pools'
// status after this delay: a burst of them is one reconcile and one status write (each write
// raced the next change and mostly ended in a 409 Conflict and a retry).
constexpr std::chrono::milliseconds kStatusRefreshDelay = 500ms;

// Enqueues the informer key of every object an informer reports.
void enqueueOnChange(kube::Informer& informer, Controller& controller) {
  auto enqueue = [&controller](const Json& object) {
    std::string key = kube::Informer::keyOf(object);
    if (!key.empty()) controller.enqueue(key);
  };
  informer.addHandlers(kube::InformerHandlers{
      .on_add = enqueue,
      .on_update = [enqueue](const Json&, const Json& object) { enqueue(object); },
      .on_delete = enqueue,
  });
}

std::string phaseOf(const Json& invocation) {
  auto status = invocation.find("status");
  if (status == invocation.end() || !status->is_object()) return {};
  return status->value("phase", "");
}

bool isTerminalPhase(const std::string& phase) {
  return phase == "Succeeded" || phase == "Failed" || phase == "Timeout" || phase == "Rejected";
}

class ManagerImpl : public Manager {
 public:
  ManagerImpl(kube::ClientPtr client, ManagerOptions options)
      : client_(std::move(client)),
        options_(std::move(options)),
        task_agents_(client_, api::clrkType("TaskAgent")),
        daemon_agents_(client_, api::clrkType("DaemonAgent")),
        worker_pools_(client_, api::clrkType("WorkerPool")),
        invocations_(client_, api::clrkType("Invocation")),
        registry_(client_, options_.system_namespace),
        invocation_manager_(client_, registry_,
                            [this](const std::string& ns, const std::string& name) {
                              return task_agents_.get(ns + "/" + name);
                            }),
        warm_pools_(task_agents_, registry_, options_.warm_pools,
                    [this](const std::string& key) { task_agent_controller_.enqueue(key); }),
        context_{client_,   task_agents_,        worker_pools_, invocations_,
                 registry_, invocation_manager_, &warm_pools_},
        task_agent_reconciler_(context_),
        worker_pool_reconciler_(context_, options_.worker_deployments),
        invocation_reconciler_(context_),
        daemon_agent_reconciler_(
            context_, daemon_agents_, options_.daemons,
            [this](const std::string& key) { daemon_agent_controller_.enqueue(key); }),
        task_agent_controller_("taskagent", task_agent_reconciler_, options_.reconcile_workers),
        worker_pool_controller_("workerpool", worker_pool_reconciler_, 1),
        invocation_controller_("invocation", invocation_reconciler_, 1),
        daemon_agent_controller_("daemonagent", daemon_agent_reconciler_,
                                 options_.reconcile_workers),
        egress_status_(client_),
        invocation_collector_(client_, invocations_, options_.invocation_gc) {}

  ~ManagerImpl() override { stop(); }

  Status start() override {
    enqueueOnChange(task_agents_, task_agent_controller_);
    enqueueOnChange(worker_pools_, worker_pool_controller_);
    enqueueOnChange(invocations_, invocation_controller_);
    enqueueOnChange(daemon_agents_, daemon_agent_controller_);
    // A pool change affects the agents that use it; a worker change affects every pool and
    // agent (O(agents) per Lease renewal is fine at dev and small-cluster scale).
    worker_pools_.addHandlers(kube::InformerHandlers{
        .on_add = [this](const Json& pool) { enqueueAgentsOfPool(pool); },
        .on_update = [this](const Json&, const Json& pool) { enqueueAgentsOfPool(pool); },
        .on_delete = [this](const Json& pool) { enqueueAgentsOfPool(pool); },
    });
    if (options_.on_invocation_finished) {
      invocations_.addHandlers(kube::InformerHandlers{
          .on_add = nullptr,
          .on_update =
              [this](const Json& old_object, const Json& object) {
                if (!isTerminalPhase(phaseOf(old_object)) && isTerminalPhase(phaseOf(object))) {
                  options_.on_invocation_finished(object);
                }
              },
          .on_delete = nullptr,
      });
    }
    invocation_manager_.setWarmHints(InvocationManager::WarmHints{
        .ready = [this](const std::string& key) { return warm_pools_.readyByWorker(key); },
        .placed = [this](const std::string& worker,
                         const std::string& key) { warm_pools_.notePlaced(worker, key); },
    });
    registry_.onChange([this] {
      enqueueAll();
      warm_pools_.wake();
    });
    task_agents_.addHandlers(kube::InformerHandlers{
        .on_add = [this](const Json&) { warm_pools_.wake(); },
        .on_update = [this](const Json&, const Json&) { warm_pools_.wake(); },
        .on_delete = [this](const Json&) { warm_pools_.wake(); },
    });
    invocation_manager_.onActiveChanged([this](const std::string& agent_key) {
      task_agent_controller_.enqueueAfter(agent_key, kStatusRefreshDelay);
      if (auto agent = task_agents_.get(agent_key)) {
        std::string ns = (*agent)["metadata"].value("namespace", "");
        worker_pool_controller_.enqueueAfter(ns + "/" + (*agent)["spec"].value("workerPoolRef", ""),
                                             kStatusRefreshDelay);
      }
    });

    task_agents_.start();
    daemon_agents_.start();
    worker_pools_.start();
    invocations_.start();
    registry_.start();
    for (auto* informer : {&task_agents_, &daemon_agents_, &worker_pools_, &invocations_}) {
      if (!informer->waitForSync(30s)) {
        return Status(Code::Unavailable, "controller caches did not sync within 30 s");
      }
    }
    if (!registry_.waitForSync(30s)) {
      return Status(Code::Unavailable, "worker Lease cache did not sync within 30 s");
    }
    task_agent_controller_.start();
    worker_pool_controller_.start();
    invocation_controller_.start();
    daemon_agent_controller_.start();
    if (options_.egress_statuses) egress_status_.start();
    invocation_collector_.start();
    warm_pools_.start();
    trigger_ =
        makeTriggerServer(TriggerServerOptions{options_.trigger_listen}, invocation_manager_);
    CLRK_RETURN_IF_ERROR(trigger_->start());
    logger("controller")->info("controllers started; HTTP trigger on {}", trigger_->url());
    return {};
  }

  void stop() override {
    if (stopped_) return;
    stopped_ = true;
    // Order: stop taking triggers, end waits, then controllers and caches.
    invocation_manager_.stop();
    warm_pools_.stop();
    if (trigger_) trigger_->stop();
    task_agent_controller_.stop();
    worker_pool_controller_.stop();
    invocation_controller_.stop();
    daemon_agent_controller_.stop();
    daemon_agent_reconciler_.stop();
    egress_status_.stop();
    invocation_collector_.stop();
    registry_.stop();
    invocations_.stop();
    worker_pools_.stop();
    daemon_agents_.stop();
    task_agents_.stop();
  }

  std::string triggerUrl() const override { return trigger_ ? trigger_->url() : std::string(); }

 private:
  void enqueueAgentsOfPool(const Json& pool) {
    const Json& metadata = pool["metadata"];
    std::string ns = metadata.value("namespace", "");
    std::string name = metadata.value("name", "");
    for (const auto& agent : task_agents_.list()) {
      if (agent["metadata"].value("namespace", "") == ns &&
          agent["spec"].value("workerPoolRef", "") == name) {
        task_agent_controller_.enqueue(kube::Informer::keyOf(agent));
      }
    }
    for (const auto& agent : daemon_agents_.list()) {
      if (agent["metadata"].value("namespace", "") == ns &&
          agent["spec"].value("workerPoolRef", "") == name) {
        daemon_agent_controller_.enqueue(kube::Informer::keyOf(agent));
      }
    }
  }

  // After a worker changed (its Lease: state or free capacity, which moves with every run).
  void enqueueAll() {
    for (const auto& pool : worker_pools_.list()) {
      worker_pool_controller_.enqueueAfter(kube::Informer::keyOf(pool), kStatusRefreshDelay);
    }
    for (const auto& agent : task_agents_.list()) {
      task_agent_controller_.enqueueAfter(kube::Informer::keyOf(agent), kStatusRefreshDelay);
    }
    for (const auto& agent : daemon_agents_.list()) {
      daemon_agent_controller_.enqueueAfter(kube::Informer::keyOf(agent), kStatusRefreshDelay);
    }
  }

  kube::ClientPtr client_;
  ManagerOptions options_;
  kube::Informer task_agents_;
  kube::Informer daemon_agents_;
  kube::Informer worker_pools_;
  kube::Informer invocations_;
  WorkerRegistry registry_;
  InvocationManager invocation_manager_;
  WarmPoolSync warm_pools_;
  ControllerContext context_;
  TaskAgentReconciler task_agent_reconciler_;
  WorkerPoolReconciler worker_pool_reconciler_;
  InvocationReconciler invocation_reconciler_;
  DaemonAgentReconciler daemon_agent_reconciler_;
  Controller task_agent_controller_;
  Controller worker_pool_controller_;
  Controller invocation_controller_;
  Controller daemon_agent_controller_;
  EgressStatusController egress_status_;
  InvocationCollector invocation_collector_;
  std::unique_ptr<TriggerServer> trigger_;
  bool stopped_ = false;
};

}  // namespace

std::unique_ptr<Manager> Manager::create(kube::ClientPtr client, ManagerOptions options) {
  return std::make_unique<ManagerImpl>(std::move(client), std::move(options));
}

}  // namespace clrk::controller
