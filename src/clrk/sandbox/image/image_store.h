// Root filesystems for sandboxes from OCI images: pulled from a registry with the OCI
// distribution API (token and basic auth, manifest lists / image indexes resolved for the host
// platform, gzip and zstd and plain tar layers, whiteouts, every blob's digest verified) into a
// content-addressed cache on disk, and unpacked once per image into a read-only directory that
// sandboxes use as the lower layer of their private writable root.
//
// Cache layout under `root`: blobs/sha256/<hex> (verified blobs), rootfs/<manifest-hex>/ (unpacked,
// never written by a sandbox), refs.json (reference -> manifest digest), tmp/ (partial downloads).
// Thread model: an ImageStore is thread-safe; concurrent pulls of one image are coalesced.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace clrk::sandbox::image {

// "registry/repository:tag" or "...@sha256:<hex>"; Docker Hub short forms ("busybox",
// "library/busybox") are normalised to registry-1.docker.io/library/busybox:latest.
struct ImageReference {
  std::string registry;    // host[:port]
  std::string repository;  // path
  std::string tag;         // empty when pinned by digest only
  std::string digest;      // "sha256:<hex>" or empty
  std::string str() const;
};
// Errors name the offending part ("image reference \"Foo//bar\": empty path component").
Result<ImageReference> parseImageReference(std::string_view text);

// Credentials for one registry, e.g. from a kubernetes.io/dockerconfigjson pull Secret.
struct RegistryAuth {
  std::string username;
  std::string password;  // or identity token
};
// Parses a .dockerconfigjson document; returns credentials keyed by registry host.
Result<std::map<std::string, RegistryAuth>> parseDockerConfigJson(std::string_view json);
// The entry of `auths` (from parseDockerConfigJson) for `ref.registry`, if any.
std::optional<RegistryAuth> findRegistryAuth(const std::map<std::string, RegistryAuth>& auths,
                                             const ImageReference& ref);

// The parts of the OCI image config a sandbox needs.
struct ImageConfig {
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "K=V"
  std::string working_dir;
  std::string user;
};

struct PulledImage {
  std::string reference;        // as requested
  std::string manifest_digest;  // "sha256:<hex>" of the platform manifest
  ImageConfig config;
  std::filesystem::path rootfs;  // unpacked, read-only by contract
  uint64_t size_bytes = 0;       // sum of compressed layer sizes
};

struct PullOptions {
  std::optional<RegistryAuth> auth;
  bool insecure_http = false;  // plain http (a local registry in tests / dev)
  std::string ca_bundle_path;  // extra CA file for the registry's TLS
  std::chrono::seconds timeout{300};
  // Skip the network when the reference (tag) is already cached ("IfNotPresent").
  bool prefer_cached = true;
};

// Counters since open(), for tests and metrics.
struct ImageStoreStats {
  uint64_t registry_requests = 0;  // HTTP requests sent (manifests, blobs, tokens)
  uint64_t blobs_downloaded = 0;   // config and layer blobs fetched (not found in the cache)
  uint64_t unpacks = 0;            // images unpacked into rootfs/
};

class ImageStore {
 public:
  static Result<std::unique_ptr<ImageStore>> open(std::filesystem::path root);
  virtual ~ImageStore() = default;

  // Pulls (or finds in the cache) and unpacks the image for linux/<host arch>.
  virtual Result<PulledImage> pull(const std::string& reference, const PullOptions& options) = 0;
  // Removes unpacked roots and blobs not referenced by `keep` (manifest digests); returns bytes
  // freed.
  virtual Result<uint64_t> garbageCollect(const std::vector<std::string>& keep) = 0;
  virtual const std::filesystem::path& root() const = 0;
  virtual ImageStoreStats stats() const { return {}; }
};

}  // namespace clrk::sandbox::image
