#include "clrk/controller/invocation_gc.h"

#include "clrk/api/builtin_types.h"
#include "clrk/base/log.h"
#include "clrk/base/time.h"

#include <algorithm>
#include <map>

namespace clrk::controller {
namespace {

using Json = kube::Json;

bool finished(const std::string& phase) {
  return phase == "Succeeded" || phase == "Failed" || phase == "Timeout" || phase == "Rejected";
}

struct Finished {
  std::string ns;
  std::string name;
  std::chrono::system_clock::time_point at;  // completion, else creation
};

}  // namespace

std::vector<std::pair<std::string, std::string>> invocationsToCollect(
    const std::vector<Json>& invocations, const InvocationGcOptions& options,
    std::chrono::system_clock::time_point now) {
  std::map<std::string, std::vector<Finished>> by_agent;  // "namespace/agent"
  for (const auto& invocation : invocations) {
    const Json status = invocation.value("status", Json::object());
    if (!finished(status.value("phase", ""))) continue;
    const Json metadata = invocation.value("metadata", Json::object());
    Finished entry{metadata.value("namespace", "default"), metadata.value("name", ""), {}};
    auto at = parseRfc3339(status.value("completionTime", ""));
    if (!at) at = parseRfc3339(metadata.value("creationTimestamp", ""));
    if (!at) continue;  // no time to judge by: kept
    entry.at = *at;
    std::string agent = invocation.value("spec", Json::object())
                            .value("parentRef", Json::object())
                            .value("name", "");
    by_agent[entry.ns + "/" + agent].push_back(std::move(entry));
  }
  std::vector<std::pair<std::string, std::string>> out;
  for (auto& [agent, list] : by_agent) {
    // Newest first; the name breaks ties so the choice is stable.
    std::sort(list.begin(), list.end(), [](const Finished& a, const Finished& b) {
      return a.at != b.at ? a.at > b.at : a.name > b.name;
    });
    for (size_t i = 0; i < list.size(); ++i) {
      bool over_limit =
          options.history_limit > 0 && i >= static_cast<size_t>(options.history_limit);
      bool expired = options.ttl.count() > 0 && now - list[i].at >= options.ttl;
      if (over_limit || expired) out.emplace_back(list[i].ns, list[i].name);
    }
  }
  return out;
}

InvocationCollector::InvocationCollector(kube::ClientPtr client, kube::Informer& invocations,
                                         InvocationGcOptions options)
    : client_(std::move(client)), invocations_(invocations), options_(options) {}

InvocationCollector::~InvocationCollector() { stop(); }

void InvocationCollector::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      cv_.wait_for(lock, options_.interval, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      sweep();
      lock.lock();
    }
  });
}

void InvocationCollector::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int InvocationCollector::sweep() {
  const auto& type = api::clrkType("Invocation");
  auto doomed =
      invocationsToCollect(invocations_.list(), options_, std::chrono::system_clock::now());
  int deleted = 0;
  for (const auto& [ns, name] : doomed) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) break;
    }
    auto removed = client_->remove(type, ns, name);
    if (removed.ok()) {
      ++deleted;
    } else if (removed.status().code() != Code::NotFound) {
      logger("controller")
          ->warn("deleting finished Invocation {}/{}: {}", ns, name, removed.status().message());
    }
  }
  if (deleted > 0) logger("controller")->info("deleted {} finished Invocations", deleted);
  return deleted;
}

}  // namespace clrk::controller
