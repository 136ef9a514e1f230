// Leader election on a coordination.k8s.io/v1 Lease, after client-go's leaderelection package.
//
// Every candidate runs a LeaderElector with its own identity on the same Lease. Every
// retry_period a candidate reads the Lease and takes it when it is missing (create; on 409 it
// reads what the winner wrote), released (empty holderIdentity), expired (renewTime +
// leaseDurationSeconds < now) or already its own. Writes carry the resourceVersion just read, so
// of two candidates racing for the same Lease exactly one wins (the other gets 409). Taking the
// Lease from another holder (or after a release) sets acquireTime and increments
// leaseTransitions.
//
// The leader renews every retry_period. When renewals keep failing for longer than
// renew_deadline, or the Lease turns out to name someone else, it stops leading
// (on_stopped_leading) and goes back to acquiring. Each API call is bounded by the time left
// until that deadline, so a hanging API server cannot keep a stale leader going. renew_deadline <
// lease_duration leaves the old leader time to stop before anyone else may take over.
//
// Expiry compares the Lease's renewTime with this host's clock: candidates' clocks must agree to
// well within lease_duration - renew_deadline.
//
// Thread model: start() spawns one elector thread that makes every API call and runs every
// callback, one at a time; callbacks must return promptly (a blocked callback delays renewals).
// isLeader() and stop() are thread-safe.
#pragma once

#include "clrk/base/status.h"
#include "clrk/kube/client.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace clrk::controller {

class LeaderElector {
 public:
  struct Options {
    std::string namespace_name;
    std::string lease_name;
    std::string identity;  // unique per candidate, e.g. the pod name
    // How long a Lease stays valid after its last renewal (leaseDurationSeconds).
    std::chrono::seconds lease_duration{15};
    // How long a leader keeps leading while renewals fail. REQUIRES: < lease_duration.
    std::chrono::milliseconds renew_deadline{10000};
    // The pause between attempts to acquire or renew. REQUIRES: < renew_deadline.
    std::chrono::milliseconds retry_period{2000};
  };

  // Each may be empty.
  struct Callbacks {
    // This candidate became the leader.
    std::function<void()> on_started_leading;
    // This candidate is no longer the leader (lost the Lease, or stop()). Leader-only work must be
    // stopped before it returns: stop() releases the Lease only afterwards.
    std::function<void()> on_stopped_leading;
    // The Lease names a holder other than the one last reported (this candidate included).
    std::function<void(const std::string& identity)> on_new_leader;
  };

  LeaderElector(kube::ClientPtr client, Options options, Callbacks callbacks);
  ~LeaderElector();  // stop(). REQUIRES: not called from a callback.
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Checks the options and starts the elector thread. InvalidArgument for bad options, or when
  // start() or stop() was called before: a LeaderElector runs once.
  Status start();

  // Stops the elector thread; when leading, calls on_stopped_leading and then releases the Lease
  // (holderIdentity "" and leaseDurationSeconds 1) so that another candidate takes over at its
  // next attempt. Idempotent. From a callback it only asks the thread to stop (no join).
  void stop();

  // True from just before on_started_leading until just before on_stopped_leading.
  bool isLeader() const { return leader_.load(); }

 private:
  using Clock = std::chrono::steady_clock;

  void run();
  // Tries every retry_period until the Lease is ours and sets `acquired_at` to the start of the
  // successful attempt; false when stop() came first.
  bool acquire(Clock::time_point& acquired_at);
  // Renews every retry_period until the Lease is lost (true) or stop() is called (false). Gives up
  // once renew_deadline has passed since the start of the last successful attempt.
  bool renewUntilLost(Clock::time_point renewed_at);
  bool stopRequested();
  // Returns after `duration`, or false at once when stop() was called.
  bool sleepFor(Clock::duration duration);
  // One attempt, its API calls bounded by `deadline`: read the Lease and create, take over or
  // renew it. True iff this candidate holds it afterwards; false when another valid holder has it;
  // an error otherwise (409 included).
  Result<bool> tryAcquireOrRenew(Clock::time_point deadline);
  // Clears holderIdentity if the Lease still names this candidate.
  void release();
  // The Lease after taking it over or renewing it at `now` (`current` null: a new Lease).
  api::Json desiredLease(const api::Json* current, std::chrono::system_clock::time_point now) const;
  // Reports a holder differing from the last one reported.
  void observe(const api::Json& lease);
  // A request that must finish by `deadline` (Timeout when no time is left), with errors mapped
  // like kube::Client's typed helpers.
  Result<api::Json> call(std::string_view method, const std::string& target, const api::Json* body,
                         Clock::time_point deadline);

  kube::ClientPtr client_;
  const Options options_;
  const Callbacks callbacks_;
  const std::string log_prefix_;  // "leader election ns/name (identity)"
  std::atomic<bool> leader_{false};
  std::string reported_leader_;  // only the elector thread touches it

  std::mutex mutex_;
  std::condition_variable cv_;
  bool started_ = false;   // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::thread thread_;
};

}  // namespace clrk::controller
