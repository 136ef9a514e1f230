#include "clrk/controller/warm_pools.h"

#include "clrk/base/log.h"
#include "clrk/base/time.h"
#include "clrk/controller/invocations.h"

namespace clrk::controller {

using Json = kube::Json;

std::vector<worker::WarmPoolSpec> desiredWarmPools(const std::vector<Json>& task_agents,
                                                   const WorkerInfo& worker) {
  std::vector<worker::WarmPoolSpec> pools;
  for (const Json& agent : task_agents) {
    const Json metadata = agent.value("metadata", Json::object());
    const Json spec = agent.value("spec", Json::object());
    if (metadata.contains("deletionTimestamp")) continue;
    int size = spec.value("warmPoolSize", 0);
    std::string ns = metadata.value("namespace", "");
    if (size <= 0 || !worker.serves(ns, spec.value("workerPoolRef", ""))) continue;
    auto request = executionFromTaskAgent(agent);
    if (!request.ok()) continue;  // the TaskAgent's Ready condition says why
    worker::WarmPoolSpec pool;
    pool.key = ns + "/" + metadata.value("name", "");
    pool.size = size;
    pool.request = std::move(request).value();
    pool.request.execution_id = "warm-pool";
    if (auto ttl = parseDuration(spec.value("warmPoolIdleTTL", "")); ttl && ttl->count() > 0) {
      pool.idle_ttl_seconds = std::max<int64_t>(1, (ttl->count() + 999) / 1000);
    }
    pools.push_back(std::move(pool));
  }
  return pools;
}

WarmPoolSync::WarmPoolSync(kube::Informer& task_agents, WorkerRegistry& workers,
                           WarmPoolSyncOptions options,
                           std::function<void(const std::string&)> on_change)
    : task_agents_(task_agents),
      workers_(workers),
      options_(options),
      on_change_(std::move(on_change)) {}

WarmPoolSync::~WarmPoolSync() { stop(); }

void WarmPoolSync::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] {
    std::unique_lock held(mutex_);
    while (!stopping_) {
      held.unlock();
      syncOnce();
      held.lock();
      auto until = std::chrono::steady_clock::now() + options_.interval;
      if (refresh_at_) until = std::min(until, *refresh_at_);
      cv_.wait_until(held, until, [this] { return stopping_ || woken_; });
      woken_ = false;
      refresh_at_.reset();
    }
  });
}

void WarmPoolSync::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cancel_.request_stop();  // ends a PUT in flight
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void WarmPoolSync::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  cv_.notify_all();
}

int WarmPoolSync::ready(const std::string& agent_key) const {
  int total = 0;
  for (const auto& [worker, count] : readyByWorker(agent_key)) total += count;
  return total;
}

std::map<std::string, int> WarmPoolSync::readyByWorker(const std::string& agent_key) const {
  std::lock_guard lock(mutex_);
  auto it = ready_.find(agent_key);
  return it == ready_.end() ? std::map<std::string, int>() : it->second;
}

void WarmPoolSync::notePlaced(const std::string& worker, const std::string& agent_key) {
  std::lock_guard lock(mutex_);
  auto agent = ready_.find(agent_key);
  if (agent == ready_.end()) return;
  auto count = agent->second.find(worker);
  if (count == agent->second.end() || count->second <= 0) return;
  --count->second;
  auto soon = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  if (!refresh_at_ || *refresh_at_ > soon) refresh_at_ = soon;
  // No notify: the thread picks refresh_at_ up when it next waits, at most one interval late;
  // a claim that drained the pool is refreshed by then anyway.
}

void WarmPoolSync::syncOnce() {
  auto agents = task_agents_.list();
  auto now = std::chrono::system_clock::now();
  std::map<std::string, std::map<std::string, int>> ready;
  std::set<std::string> pushed;
  {
    std::lock_guard lock(mutex_);
    pushed = pushed_;
  }
  for (const WorkerInfo& worker : workers_.workers()) {
    if (!worker.alive(now) || worker.state != "Ready") continue;
    auto pools = desiredWarmPools(agents, worker);
    if (pools.empty() && pushed.count(worker.name) == 0) continue;
    auto client = workers_.clientFor(worker);
    if (!client.ok()) continue;
    auto states = (*client)->setWarmPools(pools, cancel_.get_token());
    if (!states.ok()) {
      logger("controller")
          ->warn("warm pools: worker {}: {}", worker.name, states.status().toString());
      continue;
    }
    if (pools.empty()) {
      pushed.erase(worker.name);
    } else {
      pushed.insert(worker.name);
    }
    for (const auto& state : *states) ready[state.key][worker.name] = state.ready;
  }
  std::vector<std::string> changed;
  {
    std::lock_guard lock(mutex_);
    pushed_ = std::move(pushed);
    auto total = [](const std::map<std::string, int>& by_worker) {
      int sum = 0;
      for (const auto& [worker, count] : by_worker) sum += count;
      return sum;
    };
    for (const auto& [key, by_worker] : ready) {
      auto it = ready_.find(key);
      if (it == ready_.end() || total(it->second) != total(by_worker)) changed.push_back(key);
    }
    for (const auto& [key, by_worker] : ready_) {
      if (ready.count(key) == 0 && total(by_worker) != 0) changed.push_back(key);
    }
    ready_ = std::move(ready);
  }
  if (on_change_) {
    for (const auto& key : changed) on_change_(key);
  }
}

}  // namespace clrk::controller
