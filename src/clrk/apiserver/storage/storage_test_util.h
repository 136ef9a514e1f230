// Helpers shared by the storage tests: a temporary directory and small watch/render utilities.
#pragma once

#include "clrk/apiserver/storage/storage.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace clrk::apiserver::storage::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/clrk-storage-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A RenderFn producing "<prefix>@<revision>" so tests can see which revision it was given.
inline RenderFn renderAt(std::string prefix) {
  return [prefix = std::move(prefix)](int64_t revision) {
    return prefix + "@" + std::to_string(revision);
  };
}

// Collects events until `count` arrived or `timeout` passed.
inline std::vector<WatchEvent> collect(
    Watch& watch, size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  std::vector<WatchEvent> out;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < count) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto events = watch.next(left);
    if (!events.ok()) {
      ADD_FAILURE() << "watch ended: " << events.status().toString();
      break;
    }
    for (auto& event : *events) out.push_back(std::move(event));
  }
  return out;
}

}  // namespace clrk::apiserver::storage::testing
