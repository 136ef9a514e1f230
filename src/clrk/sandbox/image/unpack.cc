#include "clrk/sandbox/image/unpack.h"

#include "clrk/base/log.h"

#include <openssl/evp.h>

#include <archive.h>
#include <archive_entry.h>
#include <cerrno>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <vector>

namespace clrk::sandbox::image {

namespace {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = other.fd_;
      other.fd_ = -1;
    }
    return *this;
  }
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 300)) {
    auto u = static_cast<unsigned char>(c);
    if (u == '"' || u == '\\') out += '\\';
    out += (u >= 0x20 && u < 0x7f) ? c : '?';
  }
  if (text.size() > 300) out += "...";
  return out;
}

std::string errnoText(int err) { return std::strerror(err); }

// openat2 relative to the root with every symlink resolved as if `root_fd` were "/".
int openInRoot(int root_fd, const std::string& rel, uint64_t flags) {
  struct open_how how {};
  how.flags = flags | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  const char* path = rel.empty() ? "." : rel.c_str();
  long fd = ::syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
  return static_cast<int>(fd);
}

std::string joinPath(const std::vector<std::string_view>& parts, size_t count) {
  std::string out;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0) out += '/';
    out += parts[i];
  }
  return out;
}

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (i > start) parts.push_back(path.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

// Removes `name` in `dir_fd` (recursively for directories) without following symlinks.
Status removeAt(int dir_fd, const char* name, int depth = 0) {
  if (depth > 4096) return internalError("directory tree too deep to remove");
  struct stat st {};
  if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return internalError(std::string("stat ") + name + ": " + errnoText(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return internalError(std::string("open ") + name + ": " + errnoText(errno));
    DIR* dir = ::fdopendir(fd);
    if (dir == nullptr) {
      ::close(fd);
      return internalError(std::string("opendir ") + name + ": " + errnoText(errno));
    }
    std::vector<std::string> children;
    while (struct dirent* ent = ::readdir(dir)) {
      std::string_view child = ent->d_name;
      if (child == "." || child == "..") continue;
      children.emplace_back(child);
    }
    Status status;
    for (const std::string& child : children) {
      status = removeAt(::dirfd(dir), child.c_str(), depth + 1);
      if (!status.ok()) break;
    }
    ::closedir(dir);
    CLRK_RETURN_IF_ERROR(status);
    if (::unlinkat(dir_fd, name, AT_REMOVEDIR) != 0) {
      return internalError(std::string("rmdir ") + name + ": " + errnoText(errno));
    }
    return {};
  }
  if (::unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT) {
    return internalError(std::string("unlink ") + name + ": " + errnoText(errno));
  }
  return {};
}

}  // namespace

Result<std::string> normaliseEntryPath(std::string_view path) {
  if (path.empty()) return invalidArgument("empty path");
  if (path.front() == '/') {
    return invalidArgument("absolute path \"" + printable(path) + "\" is not allowed in a layer");
  }
  if (path.find('\0') != std::string_view::npos) return invalidArgument("path contains NUL");
  std::string out;
  for (std::string_view part : splitPath(path)) {
    if (part == ".") continue;
    if (part == "..") {
      return invalidArgument("path \"" + printable(path) +
                             "\" has a \"..\" component (path traversal)");
    }
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

Result<std::string> uncompressedDigest(const std::filesystem::path& layer_file) {
  struct archive* archive = ::archive_read_new();
  if (archive == nullptr) return internalError("archive_read_new failed");
  ::archive_read_support_filter_gzip(archive);
  ::archive_read_support_filter_zstd(archive);
  ::archive_read_support_format_raw(archive);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  Status status;
  struct archive_entry* entry = nullptr;
  if (::archive_read_open_filename(archive, layer_file.c_str(), 1 << 16) != ARCHIVE_OK ||
      ::archive_read_next_header(archive, &entry) != ARCHIVE_OK) {
    const char* text = ::archive_error_string(archive);
    status = invalidArgument(layer_file.filename().string() + ": " + (text ? text : "unreadable"));
  }
  std::vector<char> buffer(1 << 16);
  while (status.ok()) {
    la_ssize_t n = ::archive_read_data(archive, buffer.data(), buffer.size());
    if (n == 0) break;
    if (n < 0) {
      const char* text = ::archive_error_string(archive);
      status = invalidArgument(layer_file.filename().string() +
                               ": decompressing: " + (text ? text : "unknown error"));
      break;
    }
    EVP_DigestUpdate(ctx, buffer.data(), static_cast<size_t>(n));
  }
  ::archive_read_free(archive);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx, md, &len);
  EVP_MD_CTX_free(ctx);
  if (!status.ok()) return status;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "sha256:";
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

Result<std::unique_ptr<LayerUnpacker>> LayerUnpacker::open(const std::filesystem::path& root,
                                                           UnpackLimits limits) {
  int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return internalError(root.string() + ": " + errnoText(errno));
  // Probe openat2 once so an old kernel gives one clear error.
  int probe = openInRoot(fd, "", O_PATH | O_DIRECTORY);
  if (probe < 0) {
    int err = errno;
    ::close(fd);
    if (err == ENOSYS) {
      return internalError("unpacking image layers needs openat2 (Linux >= 5.6)");
    }
    return internalError(root.string() + ": openat2: " + errnoText(err));
  }
  ::close(probe);
  return std::unique_ptr<LayerUnpacker>(new LayerUnpacker(fd, limits));
}

LayerUnpacker::~LayerUnpacker() {
  if (root_fd_ >= 0) ::close(root_fd_);
}

Status LayerUnpacker::apply(const std::filesystem::path& layer_file, std::string_view label) {
  layer_paths_.clear();
  struct archive* archive = ::archive_read_new();
  if (archive == nullptr) return internalError("archive_read_new failed");
  ::archive_read_support_filter_gzip(archive);
  ::archive_read_support_filter_zstd(archive);
  ::archive_read_support_format_tar(archive);
  std::string where = "layer " + std::string(label);
  Status status;
  if (::archive_read_open_filename(archive, layer_file.c_str(), 1 << 16) != ARCHIVE_OK) {
    status = invalidArgument(where + ": " + ::archive_error_string(archive));
  }
  while (status.ok()) {
    struct archive_entry* entry = nullptr;
    int rc = ::archive_read_next_header(archive, &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc == ARCHIVE_WARN) {
      logger("image")->warn("{}: {}", where, ::archive_error_string(archive));
    } else if (rc != ARCHIVE_OK) {
      const char* text = ::archive_error_string(archive);
      status = invalidArgument(where + ": not a valid tar stream: " + (text ? text : "unknown"));
      break;
    }
    if (++stats_.entries > limits_.max_entries) {
      status = invalidArgument(where + ": more than " + std::to_string(limits_.max_entries) +
                               " entries in the image");
      break;
    }
    status = applyEntry(archive, entry, where);
  }
  ::archive_read_free(archive);
  return status;
}

Status LayerUnpacker::applyEntry(struct archive* archive, struct archive_entry* entry,
                                 std::string_view where) {
  const char* raw = ::archive_entry_pathname(entry);
  if (raw == nullptr) return invalidArgument(std::string(where) + ": entry without a path");
  auto fail = [&](const std::string& why) {
    return invalidArgument(std::string(where) + ": entry \"" + printable(raw) + "\": " + why);
  };
  auto normalised = normaliseEntryPath(raw);
  if (!normalised.ok()) return fail(normalised.status().message());
  const std::string& rel = *normalised;
  if (rel.empty()) return {};  // the root directory itself ("./")
  std::vector<std::string_view> parts = splitPath(rel);
  std::string name(parts.back());
  std::string parent_rel = joinPath(parts, parts.size() - 1);

  // Resolves (and with `create` makes) the parent directory inside the root.
  auto openParent = [&](const std::string& dir_rel, bool create) -> Result<Fd> {
    int fd = openInRoot(root_fd_, dir_rel, O_PATH | O_DIRECTORY);
    if (fd >= 0) return Fd(fd);
    if (errno != ENOENT || !create) {
      int err = errno;
      if (err == ENOENT) return notFound("parent \"" + printable(dir_rel) + "\" does not exist");
      return fail("parent \"" + printable(dir_rel) + "\": " + errnoText(err));
    }
    std::vector<std::string_view> dir_parts = splitPath(dir_rel);
    Fd current(openInRoot(root_fd_, "", O_PATH | O_DIRECTORY));
    for (size_t i = 0; i < dir_parts.size(); ++i) {
      std::string prefix = joinPath(dir_parts, i + 1);
      int next = openInRoot(root_fd_, prefix, O_PATH | O_DIRECTORY);
      if (next < 0 && errno == ENOENT) {
        std::string comp(dir_parts[i]);
        if (::mkdirat(current.get(), comp.c_str(), 0755) != 0) {
          if (errno != EEXIST)
            return fail("mkdir \"" + printable(prefix) + "\": " + errnoText(errno));
        } else {
          ::fchmodat(current.get(), comp.c_str(), 0755, 0);  // whatever the umask
        }
        next = openInRoot(root_fd_, prefix, O_PATH | O_DIRECTORY);
      }
      if (next < 0) return fail("parent \"" + printable(prefix) + "\": " + errnoText(errno));
      current = Fd(next);
    }
    return current;
  };

  // Whiteouts apply to lower layers only; what this layer created stays.
  if (name.starts_with(".wh.")) {
    ++stats_.whiteouts;
    if (name == ".wh..wh..opq") {
      auto dir = openParent(parent_rel, /*create=*/true);
      if (!dir.ok()) return dir.status();
      int fd = openInRoot(root_fd_, parent_rel, O_RDONLY | O_DIRECTORY);
      if (fd < 0) return fail("open opaque directory: " + errnoText(errno));
      DIR* listing = ::fdopendir(fd);
      if (listing == nullptr) {
        ::close(fd);
        return fail("opendir: " + errnoText(errno));
      }
      std::vector<std::string> victims;
      while (struct dirent* ent = ::readdir(listing)) {
        std::string_view child = ent->d_name;
        if (child == "." || child == "..") continue;
        std::string child_rel =
            parent_rel.empty() ? std::string(child) : parent_rel + "/" + std::string(child);
        if (!layer_paths_.contains(child_rel)) victims.emplace_back(child);
      }
      Status status;
      for (const std::string& victim : victims) {
        status = removeAt(::dirfd(listing), victim.c_str());
        if (!status.ok()) break;
      }
      ::closedir(listing);
      if (!status.ok()) return fail(status.message());
      return {};
    }
    if (name.starts_with(".wh..wh.")) {
      logger("image")->debug("{}: ignoring special whiteout {}", where, printable(raw));
      return {};
    }
    std::string target = name.substr(4);
    if (target.empty() || target == "." || target == "..") return fail("invalid whiteout name");
    std::string target_rel = parent_rel.empty() ? target : parent_rel + "/" + target;
    if (layer_paths_.contains(target_rel)) return {};
    auto dir = openParent(parent_rel, /*create=*/false);
    if (!dir.ok()) {
      if (dir.status().code() == Code::NotFound) return {};  // nothing to delete
      return dir.status();
    }
    Status removed = removeAt(dir->get(), target.c_str());
    if (!removed.ok()) return fail("whiteout: " + removed.message());
    return {};
  }

  auto parent = openParent(parent_rel, /*create=*/true);
  if (!parent.ok()) {
    if (parent.status().code() == Code::NotFound) return fail(parent.status().message());
    return parent.status();
  }
  int dir_fd = parent->get();
  const char* leaf = name.c_str();
  const char* hardlink = ::archive_entry_hardlink(entry);
  mode_t type = ::archive_entry_filetype(entry);
  unsigned mode = static_cast<unsigned>(::archive_entry_perm(entry)) & 07777;
  bool as_root = ::geteuid() == 0;
  auto uid = static_cast<uid_t>(::archive_entry_uid(entry));
  auto gid = static_cast<gid_t>(::archive_entry_gid(entry));
  struct timespec times[2] = {};
  times[0].tv_sec = times[1].tv_sec = ::archive_entry_mtime(entry);
  times[0].tv_nsec = times[1].tv_nsec = ::archive_entry_mtime_nsec(entry);

  // Replace whatever is at the leaf, except a directory over a directory (merged).
  struct stat existing {};
  bool exists = ::fstatat(dir_fd, leaf, &existing, AT_SYMLINK_NOFOLLOW) == 0;
  bool merge_dir = exists && hardlink == nullptr && type == AE_IFDIR && S_ISDIR(existing.st_mode);
  if (exists && !merge_dir) {
    Status removed = removeAt(dir_fd, leaf);
    if (!removed.ok()) return fail("replacing: " + removed.message());
  }
  layer_paths_.insert(rel);

  if (hardlink != nullptr) {
    auto target = normaliseEntryPath(hardlink);
    if (!target.ok()) return fail("hard link target: " + target.status().message());
    if (target->empty()) return fail("hard link to the root directory");
    std::vector<std::string_view> target_parts = splitPath(*target);
    std::string target_name(target_parts.back());
    int target_dir =
        openInRoot(root_fd_, joinPath(target_parts, target_parts.size() - 1), O_PATH | O_DIRECTORY);
    if (target_dir < 0) {
      return fail("hard link target \"" + printable(*target) + "\": " + errnoText(errno));
    }
    Fd target_guard(target_dir);
    if (::linkat(target_dir, target_name.c_str(), dir_fd, leaf, 0) != 0) {
      return fail("hard link to \"" + printable(*target) + "\": " + errnoText(errno));
    }
    return {};
  }

  switch (type) {
    case AE_IFREG: {
      Fd file(::openat(dir_fd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (file.get() < 0) return fail("create: " + errnoText(errno));
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      while (true) {
        int rc = ::archive_read_data_block(archive, &block, &size, &offset);
        if (rc == ARCHIVE_EOF) break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
          const char* text = ::archive_error_string(archive);
          return fail(std::string("reading data: ") + (text ? text : "unknown error"));
        }
        stats_.bytes += size;
        if (stats_.bytes > limits_.max_bytes) {
          return fail("image content exceeds " + std::to_string(limits_.max_bytes) + " bytes");
        }
        const char* data = static_cast<const char*>(block);
        size_t done = 0;
        while (done < size) {
          ssize_t n = ::pwrite(file.get(), data + done, size - done,
                               static_cast<off_t>(offset) + static_cast<off_t>(done));
          if (n < 0) {
            if (errno == EINTR) continue;
            return fail("write: " + errnoText(errno));
          }
          done += static_cast<size_t>(n);
        }
      }
      // Sparse files end in a hole the data blocks do not cover.
      if (::archive_entry_size_is_set(entry) && ::archive_entry_size(entry) >= 0) {
        if (::ftruncate(file.get(), static_cast<off_t>(::archive_entry_size(entry))) != 0) {
          return fail("truncate: " + errnoText(errno));
        }
      }
      if (as_root && ::fchown(file.get(), uid, gid) != 0) return fail("chown: " + errnoText(errno));
      if (::fchmod(file.get(), mode) != 0) return fail("chmod: " + errnoText(errno));
      ::futimens(file.get(), times);
      return {};
    }
    case AE_IFDIR: {
      if (!merge_dir && ::mkdirat(dir_fd, leaf, 0755) != 0) {
        return fail("mkdir: " + errnoText(errno));
      }
      if (as_root && ::fchownat(dir_fd, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
        return fail("chown: " + errnoText(errno));
      }
      dirs_[rel] = DirMeta{mode, static_cast<int64_t>(times[1].tv_sec)};
      return {};
    }
    case AE_IFLNK: {
      const char* target = ::archive_entry_symlink(entry);
      if (target == nullptr || *target == '\0') return fail("symlink without a target");
      if (::symlinkat(target, dir_fd, leaf) != 0) return fail("symlink: " + errnoText(errno));
      if (as_root && ::fchownat(dir_fd, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
        return fail("chown: " + errnoText(errno));
      }
      ::utimensat(dir_fd, leaf, times, AT_SYMLINK_NOFOLLOW);
      return {};
    }
    case AE_IFIFO: {
      if (::mkfifoat(dir_fd, leaf, 0600) != 0) return fail("mkfifo: " + errnoText(errno));
      if (as_root && ::fchownat(dir_fd, leaf, uid, gid, AT_SYMLINK_NOFOLLOW) != 0) {
        return fail("chown: " + errnoText(errno));
      }
      ::fchmodat(dir_fd, leaf, mode, 0);
      return {};
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFSOCK:
      ++stats_.skipped_devices;
      layer_paths_.erase(rel);
      logger("image")->info("{}: skipping device/socket entry {}", where, printable(raw));
      return {};
    default:
      return fail("unsupported entry type " + std::to_string(type));
  }
}

Status LayerUnpacker::finish() {
  // Deepest first (a path sorts after its parent), so a read-only parent comes last.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    int fd = openInRoot(root_fd_, it->first, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    if (fd < 0) continue;  // deleted or replaced by a later layer
    Fd guard(fd);
    if (::fchmod(fd, it->second.mode) != 0) {
      return internalError("chmod \"" + printable(it->first) + "\": " + errnoText(errno));
    }
    struct timespec times[2] = {};
    times[0].tv_sec = times[1].tv_sec = it->second.mtime;
    ::futimens(fd, times);
  }
  dirs_.clear();
  return {};
}

}  // namespace clrk::sandbox::image
