// A blocking OCI distribution API client on libcurl for one repository: manifests by tag or
// digest, blobs streamed to a file with size and sha256 verified on the fly, Bearer token and
// Basic auth negotiated from 401 challenges, redirects to blob storage followed (libcurl drops
// the Authorization header when a redirect leaves the registry host).
// Thread model: one RegistryClient per pull, used by one thread.
#pragma once

#include "clrk/base/status.h"
#include "clrk/sandbox/image/image_store.h"
#include "clrk/sandbox/image/manifest.h"

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

namespace clrk::sandbox::image {

struct FetchedManifest {
  std::string body;
  std::string content_type;
  std::string digest;  // "sha256:<hex>" of body, verified against the requested digest
};

struct RegistryCounters {
  uint64_t requests = 0;  // HTTP requests sent to the registry or its token service
};

class RegistryClient {
 public:
  RegistryClient(ImageReference ref, PullOptions options);

  // GET /v2/<repo>/manifests/<tag_or_digest> accepting OCI and Docker v2 manifests and indexes.
  Result<FetchedManifest> fetchManifest(const std::string& tag_or_digest);
  // GET /v2/<repo>/blobs/<digest> into `dest` (created/truncated); fails, and removes `dest`,
  // when more than desc.size bytes arrive, fewer arrive, or the sha256 differs.
  Status fetchBlob(const Descriptor& desc, const std::filesystem::path& dest);

  const RegistryCounters& counters() const { return counters_; }

  // Implementation details (defined in the .cc).
  struct Response;
  class Sink;

 private:
  Result<Response> get(const std::string& url, const std::string& accept, Sink& sink);
  Result<Response> perform(const std::string& url, const std::string& accept, Sink& sink,
                           bool with_auth);
  Status authenticate(const std::string& challenge_header);
  Status statusFor(const Response& response, const std::string& what) const;
  long remainingMs() const;

  ImageReference ref_;
  PullOptions options_;
  std::string base_url_;
  std::string authorization_;  // "Bearer ..." / "Basic ..." once negotiated
  std::chrono::steady_clock::time_point deadline_;
  RegistryCounters counters_;
};

}  // namespace clrk::sandbox::image
