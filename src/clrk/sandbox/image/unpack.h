// Applies OCI image layers (tar, tar+gzip, tar+zstd) in order onto a root directory.
//
// Security contract: nothing is ever written outside `root`. Entry paths with a ".." component
// or an absolute path are rejected; every parent directory is resolved with openat2
// RESOLVE_IN_ROOT, so symlinks planted by earlier entries or layers (even "evil -> /") resolve
// inside the root, as they will inside the sandbox; leaf entries are created with *at() calls
// and O_NOFOLLOW/O_EXCL, so an existing symlink at the leaf is replaced, never followed. Hard-link
// targets follow the same rules. Character/block devices and sockets are skipped (logged);
// FIFOs are created. Ownership is kept when running as root; permissions are kept (directory
// modes are applied by finish(), so a read-only directory does not block later entries).
// Whiteouts: ".wh.<name>" deletes <name> from lower layers, ".wh..wh..opq" empties its
// directory of lower-layer entries. Linux >= 5.6 (openat2) required.
// Thread model: one LayerUnpacker per root, used by one thread.
#pragma once

#include "clrk/base/status.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

struct archive;
struct archive_entry;

namespace clrk::sandbox::image {

struct UnpackStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;  // regular file content written
  uint64_t skipped_devices = 0;
  uint64_t whiteouts = 0;
};

struct UnpackLimits {
  uint64_t max_bytes = 64ULL << 30;  // total file content over all layers
  uint64_t max_entries = 4'000'000;  // total entries over all layers
};

class LayerUnpacker {
 public:
  // `root` must be an existing directory (normally empty).
  static Result<std::unique_ptr<LayerUnpacker>> open(const std::filesystem::path& root,
                                                     UnpackLimits limits = {});
  ~LayerUnpacker();
  LayerUnpacker(const LayerUnpacker&) = delete;
  LayerUnpacker& operator=(const LayerUnpacker&) = delete;

  // Applies one layer file; `label` names it in errors (e.g. its digest). On error the root is
  // left partially written: the caller discards it.
  Status apply(const std::filesystem::path& layer_file, std::string_view label);
  // Applies deferred directory modes and times. Call once after the last layer.
  Status finish();

  const UnpackStats& stats() const { return stats_; }

 private:
  struct DirMeta {
    unsigned mode = 0755;
    int64_t mtime = 0;
  };
  LayerUnpacker(int root_fd, UnpackLimits limits) : root_fd_(root_fd), limits_(limits) {}
  Status applyEntry(::archive* archive, ::archive_entry* entry, std::string_view label);

  int root_fd_ = -1;
  UnpackLimits limits_;
  UnpackStats stats_;
  std::set<std::string> layer_paths_;    // created by the layer being applied
  std::map<std::string, DirMeta> dirs_;  // deferred directory metadata
};

// "sha256:<hex>" of the decompressed content of a layer file (gzip, zstd or plain): its diff_id.
Result<std::string> uncompressedDigest(const std::filesystem::path& layer_file);

// Normalises a tar entry path: strips "./" and duplicate slashes; InvalidArgument for an empty
// path, an absolute path or a ".." component. Returns "" for the root itself.
Result<std::string> normaliseEntryPath(std::string_view path);

}  // namespace clrk::sandbox::image
