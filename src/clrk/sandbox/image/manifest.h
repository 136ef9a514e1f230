// OCI / Docker v2 manifest, index and image-config parsing, platform selection, digests and the
// WWW-Authenticate challenge parser. Pure functions on untrusted bytes (no I/O), so the fuzzer
// links them alone. Every size limit is checked before parsing.
#pragma once

#include "clrk/base/status.h"
#include "clrk/sandbox/image/image_store.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace clrk::sandbox::image {

inline constexpr size_t kMaxManifestBytes = 4 << 20;     // manifests and indexes
inline constexpr size_t kMaxConfigBytes = 1 << 20;       // image config blobs
inline constexpr size_t kMaxConfigJsonBytes = 1 << 20;   // .dockerconfigjson
inline constexpr uint64_t kMaxLayerBytes = 16ULL << 30;  // one compressed layer
inline constexpr size_t kMaxLayers = 256;
inline constexpr size_t kMaxIndexEntries = 1024;

inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";

// "" when `digest` is "sha256:" + 64 lower-case hex; otherwise what is wrong with it.
std::string checkDigest(std::string_view digest);
// Lower-case hex SHA-256 of `data`.
std::string sha256Hex(std::string_view data);

struct Platform {
  std::string os;
  std::string architecture;
  std::string variant;
};

struct Descriptor {
  std::string media_type;
  std::string digest;  // validated by checkDigest
  uint64_t size = 0;
  Platform platform;  // index entries only
};

enum class ManifestKind { Index, Image };

struct Manifest {
  ManifestKind kind = ManifestKind::Image;
  std::string media_type;
  Descriptor config;                  // Image
  std::vector<Descriptor> layers;     // Image, in application order
  std::vector<Descriptor> manifests;  // Index
};

// Parses a manifest or index; `content_type` (the HTTP header, may be empty) is used when the
// document has no mediaType. Rejects schema 1, unknown media types, bad digests, absurd sizes.
Result<Manifest> parseManifest(std::string_view body, std::string_view content_type);

// The index entry for os/architecture(/variant); NotFound lists the platforms on offer.
Result<Descriptor> selectPlatform(const Manifest& index, std::string_view os,
                                  std::string_view architecture, std::string_view variant);

// The OCI architecture name of this machine ("amd64", "arm64", ...) and its variant ("" or "v8").
std::string hostArchitecture();
std::string hostVariant();

// Parses the image config blob (config.Entrypoint, Cmd, Env, WorkingDir, User).
Result<ImageConfig> parseImageConfig(std::string_view body);

// The config's rootfs.diff_ids (digests of the uncompressed layer tars, in layer order); an
// empty list when the config has no "rootfs" (then nothing can be checked).
Result<std::vector<std::string>> parseDiffIds(std::string_view body);

// A parsed WWW-Authenticate challenge: scheme lower-cased ("bearer", "basic"), parameter names
// lower-cased, values unquoted.
struct AuthChallenge {
  std::string scheme;
  std::map<std::string, std::string> params;
};
Result<AuthChallenge> parseAuthChallenge(std::string_view header);

// True when `media_type` is a layer this store can unpack (tar, tar+gzip, tar+zstd, Docker gzip).
bool isSupportedLayerType(std::string_view media_type);

}  // namespace clrk::sandbox::image
