#include "clrk/sandbox/image/image_store.h"

#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/sandbox/image/manifest.h"
#include "clrk/sandbox/image/registry_client.h"
#include "clrk/sandbox/image/unpack.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <sys/stat.h>
#include <thread>

namespace clrk::sandbox::image {

namespace {

namespace fs = std::filesystem;

std::string hexOf(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

uint64_t treeBytes(const fs::path& path) {
  std::error_code ec;
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  if (!S_ISDIR(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  uint64_t total = 0;
  for (fs::recursive_directory_iterator it(path, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    if (::lstat(it->path().c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
      total += static_cast<uint64_t>(st.st_size);
    }
  }
  return total;
}

Status removeTree(const fs::path& path) {
  std::error_code ec;
  fs::remove_all(path, ec);
  if (ec) return internalError("removing " + path.string() + ": " + ec.message());
  return {};
}

class ImageStoreImpl final : public ImageStore {
 public:
  explicit ImageStoreImpl(fs::path root) : root_(std::move(root)) {}

  Status init() {
    std::error_code ec;
    for (const char* dir : {"blobs/sha256", "rootfs", "tmp"}) {
      fs::create_directories(root_ / dir, ec);
      if (ec) return internalError((root_ / dir).string() + ": " + ec.message());
    }
    ::chmod(root_.c_str(), 0700);
    // Leftovers of a crash: partial downloads and half-unpacked roots.
    for (const auto& entry : fs::directory_iterator(root_ / "tmp", ec)) {
      CLRK_RETURN_IF_ERROR(removeTree(entry.path()));
    }
    for (const auto& entry : fs::directory_iterator(root_ / "rootfs", ec)) {
      if (entry.path().filename().string().find(".tmp") != std::string::npos) {
        logger("image")->info("removing half-unpacked {}", entry.path().string());
        CLRK_RETURN_IF_ERROR(removeTree(entry.path()));
      }
    }
    auto text = readFile(root_ / "refs.json");
    if (text.ok()) {
      nlohmann::json doc = nlohmann::json::parse(*text, nullptr, false);
      bool good =
          !doc.is_discarded() && doc.is_object() && doc.contains("refs") && doc["refs"].is_object();
      if (good) {
        for (const auto& [key, value] : doc["refs"].items()) {
          if (value.is_string() && checkDigest(value.get<std::string>()).empty()) {
            refs_[key] = value.get<std::string>();
          }
        }
      } else {
        logger("image")->warn("{}: unreadable, starting with no cached references",
                              (root_ / "refs.json").string());
      }
    }
    return {};
  }

  Result<PulledImage> pull(const std::string& reference, const PullOptions& options) override {
    CLRK_ASSIGN_OR_RETURN(ImageReference ref, parseImageReference(reference));
    std::string key = ref.str();
    std::shared_lock gc_guard(gc_mutex_);
    std::shared_future<Result<PulledImage>> waiting;
    std::promise<Result<PulledImage>> promise;
    {
      std::lock_guard lock(mutex_);
      auto it = inflight_.find(key);
      if (it != inflight_.end()) {
        waiting = it->second;
      } else {
        inflight_[key] = promise.get_future().share();
      }
    }
    if (waiting.valid()) {
      Result<PulledImage> result = waiting.get();
      if (result.ok()) result->reference = reference;
      return result;
    }
    Result<PulledImage> result = doPull(ref, key, options);
    if (result.ok()) result->reference = reference;
    promise.set_value(result);
    {
      std::lock_guard lock(mutex_);
      inflight_.erase(key);
    }
    return result;
  }

  Result<uint64_t> garbageCollect(const std::vector<std::string>& keep) override {
    for (const std::string& digest : keep) {
      if (std::string why = checkDigest(digest); !why.empty()) {
        return invalidArgument("garbageCollect: keep entry \"" + digest + "\": " + why);
      }
    }
    std::unique_lock gc_guard(gc_mutex_);
    std::set<std::string> keep_manifests(keep.begin(), keep.end());
    std::set<std::string> keep_blobs;
    for (const std::string& digest : keep) {
      keep_blobs.insert(hexOf(digest));
      auto body = readFile(blobPath(digest));
      if (!body.ok()) continue;
      auto manifest = parseManifest(*body, "");
      if (!manifest.ok() || manifest->kind != ManifestKind::Image) continue;
      keep_blobs.insert(hexOf(manifest->config.digest));
      for (const Descriptor& layer : manifest->layers) keep_blobs.insert(hexOf(layer.digest));
    }
    uint64_t freed = 0;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(root_ / "rootfs", ec)) {
      if (keep_manifests.contains("sha256:" + entry.path().filename().string())) continue;
      freed += treeBytes(entry.path());
      CLRK_RETURN_IF_ERROR(removeTree(entry.path()));
    }
    for (const auto& entry : fs::directory_iterator(root_ / "blobs" / "sha256", ec)) {
      if (keep_blobs.contains(entry.path().filename().string())) continue;
      freed += treeBytes(entry.path());
      CLRK_RETURN_IF_ERROR(removeTree(entry.path()));
    }
    std::lock_guard lock(mutex_);
    for (auto it = refs_.begin(); it != refs_.end();) {
      it = keep_manifests.contains(it->second) ? std::next(it) : refs_.erase(it);
    }
    CLRK_RETURN_IF_ERROR(saveRefsLocked());
    return freed;
  }

  const fs::path& root() const override { return root_; }

  ImageStoreStats stats() const override {
    ImageStoreStats out;
    out.registry_requests = registry_requests_.load();
    out.blobs_downloaded = blobs_downloaded_.load();
    out.unpacks = unpacks_.load();
    return out;
  }

 private:
  fs::path blobPath(const std::string& digest) const {
    return root_ / "blobs" / "sha256" / hexOf(digest);
  }
  fs::path rootfsPath(const std::string& digest) const { return root_ / "rootfs" / hexOf(digest); }

  Status saveRefsLocked() {
    nlohmann::json doc = {{"refs", refs_}};
    return writeFileAtomic(root_ / "refs.json", doc.dump(2) + "\n", 0600);
  }

  // The cached image for `key`, or NotFound when anything is missing.
  Result<PulledImage> lookupCached(const std::string& key) {
    std::string digest;
    {
      std::lock_guard lock(mutex_);
      auto it = refs_.find(key);
      if (it == refs_.end()) return notFound(key + " is not cached");
      digest = it->second;
    }
    return lookupDigest(digest, /*allow_index=*/false);
  }

  // The cached image for a manifest digest (or, with `allow_index`, an index digest whose
  // host-platform entry is cached), or NotFound.
  Result<PulledImage> lookupDigest(const std::string& digest, bool allow_index) {
    auto body = readFile(blobPath(digest));
    if (!body.ok()) return notFound(digest + ": manifest not cached");
    if ("sha256:" + sha256Hex(*body) != digest) {
      return notFound(digest + ": cached manifest is corrupt");
    }
    auto manifest = parseManifest(*body, "");
    if (!manifest.ok()) return notFound(digest + ": " + manifest.status().message());
    if (manifest->kind == ManifestKind::Index) {
      if (!allow_index) return notFound(digest + ": cached entry is an index");
      auto chosen = selectPlatform(*manifest, "linux", hostArchitecture(), hostVariant());
      if (!chosen.ok()) return chosen.status();
      return lookupDigest(chosen->digest, /*allow_index=*/false);
    }
    std::error_code ec;
    if (!fs::is_directory(rootfsPath(digest), ec))
      return notFound(digest + ": rootfs not unpacked");
    auto config_body = readFile(blobPath(manifest->config.digest));
    if (!config_body.ok()) return notFound(digest + ": config not cached");
    auto config = parseImageConfig(*config_body);
    if (!config.ok()) return config.status();
    PulledImage out;
    out.manifest_digest = digest;
    out.config = std::move(*config);
    out.rootfs = rootfsPath(digest);
    for (const Descriptor& layer : manifest->layers) out.size_bytes += layer.size;
    return out;
  }

  Status storeManifestBlob(const FetchedManifest& fetched) {
    fs::path path = blobPath(fetched.digest);
    std::error_code ec;
    if (fs::exists(path, ec)) return {};
    return writeFileAtomic(path, fetched.body, 0644);
  }

  // Downloads a blob into the cache unless present; the cache only ever holds verified blobs.
  Status ensureBlob(RegistryClient& client, const Descriptor& desc) {
    fs::path path = blobPath(desc.digest);
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && static_cast<uint64_t>(st.st_size) == desc.size) {
      return {};
    }
    fs::path tmp = root_ / "tmp" / (hexOf(desc.digest) + "." + randomHex(6));
    // Transient failures (connection reset, 5xx, 429) are retried twice; a digest or size
    // mismatch is not transient.
    Status fetched;
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (attempt > 0) {
        logger("image")->warn("retrying blob {}: {}", desc.digest, fetched.message());
        std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt));
      }
      fetched = client.fetchBlob(desc, tmp);
      if (fetched.ok() || fetched.code() != Code::Unavailable) break;
    }
    CLRK_RETURN_IF_ERROR(fetched);
    ++blobs_downloaded_;
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      int err = errno;
      ::unlink(tmp.c_str());
      return internalError("storing blob " + desc.digest + ": " + std::strerror(err));
    }
    return {};
  }

  std::shared_ptr<std::mutex> unpackLock(const std::string& digest) {
    std::lock_guard lock(mutex_);
    auto& slot = unpack_locks_[digest];
    if (!slot) slot = std::make_shared<std::mutex>();
    return slot;
  }

  // Unpacks into rootfs/<hex>.tmp and renames; a failure leaves nothing under rootfs/.
  // Each layer's decompressed digest is checked against the config's diff_id first.
  Status ensureUnpacked(const std::string& digest, const Manifest& manifest,
                        const std::vector<std::string>& diff_ids) {
    auto lock_ptr = unpackLock(digest);
    std::lock_guard unpack_guard(*lock_ptr);
    fs::path final_path = rootfsPath(digest);
    std::error_code ec;
    if (fs::is_directory(final_path, ec)) return {};
    fs::path tmp = final_path;
    tmp += ".tmp";
    CLRK_RETURN_IF_ERROR(removeTree(tmp));
    if (::mkdir(tmp.c_str(), 0755) != 0) {
      return internalError(tmp.string() + ": " + std::strerror(errno));
    }
    ::chmod(tmp.c_str(), 0755);
    auto unpack = [&]() -> Status {
      CLRK_ASSIGN_OR_RETURN(auto unpacker, LayerUnpacker::open(tmp));
      for (size_t i = 0; i < manifest.layers.size(); ++i) {
        const Descriptor& layer = manifest.layers[i];
        if (!diff_ids.empty()) {
          CLRK_ASSIGN_OR_RETURN(std::string got, uncompressedDigest(blobPath(layer.digest)));
          if (got != diff_ids[i]) {
            return invalidArgument("layer " + layer.digest + ": uncompressed digest " + got +
                                   " does not match the config's diff_id " + diff_ids[i]);
          }
        }
        CLRK_RETURN_IF_ERROR(unpacker->apply(blobPath(layer.digest), layer.digest));
      }
      CLRK_RETURN_IF_ERROR(unpacker->finish());
      logger("image")->info("unpacked {} ({} entries, {} bytes, {} devices skipped)", digest,
                            unpacker->stats().entries, unpacker->stats().bytes,
                            unpacker->stats().skipped_devices);
      return {};
    };
    Status status = unpack();
    if (status.ok() && ::rename(tmp.c_str(), final_path.c_str()) != 0) {
      status = internalError(final_path.string() + ": " + std::strerror(errno));
    }
    if (!status.ok()) {
      (void)removeTree(tmp);
      return status;
    }
    ++unpacks_;
    return {};
  }

  Result<PulledImage> doPull(const ImageReference& ref, const std::string& key,
                             const PullOptions& options) {
    if (options.prefer_cached) {
      auto cached = lookupCached(key);
      // Pinned by digest: content-addressed, so any cached copy is the right one.
      if (!cached.ok() && !ref.digest.empty()) cached = lookupDigest(ref.digest, true);
      if (cached.ok()) return cached;
    }
    auto started = std::chrono::steady_clock::now();
    RegistryClient client(ref, options);
    auto result = pullFromRegistry(client, ref, key);
    registry_requests_ += client.counters().requests;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    if (!result.ok()) {
      logger("image")->warn("pull of {} failed after {} ms: {}", key, ms,
                            result.status().toString());
      return result.status().withContext("pulling " + key);
    }
    logger("image")->info("pulled {} as {} in {} ms ({} registry requests)", key,
                          result->manifest_digest, ms, client.counters().requests);
    return result;
  }

  Result<PulledImage> pullFromRegistry(RegistryClient& client, const ImageReference& ref,
                                       const std::string& key) {
    CLRK_ASSIGN_OR_RETURN(FetchedManifest top,
                          client.fetchManifest(ref.digest.empty() ? ref.tag : ref.digest));
    CLRK_ASSIGN_OR_RETURN(Manifest manifest, parseManifest(top.body, top.content_type));
    CLRK_RETURN_IF_ERROR(storeManifestBlob(top));
    FetchedManifest platform_manifest = top;
    if (manifest.kind == ManifestKind::Index) {
      CLRK_ASSIGN_OR_RETURN(Descriptor chosen,
                            selectPlatform(manifest, "linux", hostArchitecture(), hostVariant()));
      if (chosen.size > kMaxManifestBytes) {
        return invalidArgument("index entry " + chosen.digest + " is larger than 4 MiB");
      }
      CLRK_ASSIGN_OR_RETURN(platform_manifest, client.fetchManifest(chosen.digest));
      if (platform_manifest.body.size() != chosen.size) {
        return invalidArgument("manifest " + chosen.digest + ": size " +
                               std::to_string(platform_manifest.body.size()) +
                               " differs from the index's " + std::to_string(chosen.size));
      }
      CLRK_ASSIGN_OR_RETURN(manifest,
                            parseManifest(platform_manifest.body, platform_manifest.content_type));
      if (manifest.kind != ManifestKind::Image) {
        return invalidArgument("index entry " + chosen.digest +
                               " is itself an index (nested indexes are not supported)");
      }
      CLRK_RETURN_IF_ERROR(storeManifestBlob(platform_manifest));
    }
    const std::string& digest = platform_manifest.digest;
    CLRK_RETURN_IF_ERROR(ensureBlob(client, manifest.config));
    CLRK_ASSIGN_OR_RETURN(std::string config_body, readFile(blobPath(manifest.config.digest)));
    CLRK_ASSIGN_OR_RETURN(ImageConfig config, parseImageConfig(config_body));
    CLRK_ASSIGN_OR_RETURN(std::vector<std::string> diff_ids, parseDiffIds(config_body));
    if (!diff_ids.empty() && diff_ids.size() != manifest.layers.size()) {
      return invalidArgument("image config lists " + std::to_string(diff_ids.size()) +
                             " diff_ids for " + std::to_string(manifest.layers.size()) + " layers");
    }
    PulledImage out;
    for (const Descriptor& layer : manifest.layers) {
      CLRK_RETURN_IF_ERROR(ensureBlob(client, layer));
      out.size_bytes += layer.size;
    }
    CLRK_RETURN_IF_ERROR(ensureUnpacked(digest, manifest, diff_ids));
    {
      std::lock_guard lock(mutex_);
      refs_[key] = digest;
      CLRK_RETURN_IF_ERROR(saveRefsLocked());
    }
    out.manifest_digest = digest;
    out.config = std::move(config);
    out.rootfs = rootfsPath(digest);
    return out;
  }

  const fs::path root_;
  std::shared_mutex gc_mutex_;  // pulls shared, garbageCollect exclusive
  std::mutex mutex_;            // guards refs_, inflight_, unpack_locks_
  std::map<std::string, std::string> refs_;
  std::map<std::string, std::shared_future<Result<PulledImage>>> inflight_;
  std::map<std::string, std::shared_ptr<std::mutex>> unpack_locks_;
  std::atomic<uint64_t> registry_requests_{0};
  std::atomic<uint64_t> blobs_downloaded_{0};
  std::atomic<uint64_t> unpacks_{0};
};

}  // namespace

Result<std::unique_ptr<ImageStore>> ImageStore::open(std::filesystem::path root) {
  if (root.empty()) return invalidArgument("image store: empty root path");
  auto store = std::make_unique<ImageStoreImpl>(std::filesystem::absolute(root));
  CLRK_RETURN_IF_ERROR(store->init());
  return std::unique_ptr<ImageStore>(std::move(store));
}

}  // namespace clrk::sandbox::image
