// A small in-process plain-HTTP Kubernetes-like API server for the client tests: CRUD on any
// /api or /apis path, list, chunked watch with BOOKMARKs, 410 Gone after compaction (as an HTTP
// status or an ERROR event), bearer-token check and a connection counter.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace clrk::kube::testing {

class FakeServer {
 public:
  explicit FakeServer(std::string token = "test-token");
  ~FakeServer();

  std::string url() const;
  int connectionsAccepted() const { return connections_.load(); }
  int requestCount() const { return requests_.load(); }

  // Watches started with a resourceVersion older than the current one get 410 afterwards.
  // Ends the open watch streams so clients must reconnect.
  void compact();
  // How 410 is reported: as an HTTP 410 response (false) or an ERROR watch event (true).
  void setGoneAsEvent(bool as_event) { gone_as_event_ = as_event; }
  // Sends a BOOKMARK to each open watch.
  void bookmark();
  // Server-side store edits (bypass HTTP), e.g. to make changes while a client watches.
  // With emit_event=false the change is invisible to watches (only a relist sees it).
  void put(const std::string& path_key, nlohmann::json object, bool emit_event = true);
  // The next watch request is answered with 410 Gone whatever its resourceVersion.
  void failNextWatchWithGone() {
    std::lock_guard lock(mutex_);
    fail_next_watch_ = true;
  }
  void erase(const std::string& path_key);
  int64_t resourceVersion() const;
  std::vector<std::string> watchTargets() const;

 private:
  struct Event {
    int64_t rv;
    std::string type;
    std::string collection;  // "<prefix>/<plural>" without namespace
    std::string ns;
    nlohmann::json object;
  };
  void acceptLoop();
  void serve(int fd);
  void record(const std::string& type, const std::string& collection, const std::string& ns,
              nlohmann::json object);

  std::string token_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread accept_thread_;
  std::vector<std::thread> threads_;
  std::vector<int> fds_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  std::atomic<bool> gone_as_event_{false};
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  int64_t rv_ = 100;
  int64_t compacted_rv_ = 0;
  int generation_ = 0;  // bumped by compact() to end open watches
  int bookmarks_ = 0;
  bool fail_next_watch_ = false;
  std::map<std::string, nlohmann::json> objects_;  // key: collection|ns|name
  std::vector<Event> events_;
  std::vector<std::string> watch_targets_;
};

}  // namespace clrk::kube::testing
