// Test helpers: writes tar layers (plain, gzip or zstd) with libarchive, and temp directories.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace clrk::sandbox::image::testing {

struct TarEntry {
  enum Type { File, Dir, Symlink, Hardlink, CharDevice, Fifo };
  Type type = File;
  std::string path;
  std::string content;  // File: data; Symlink/Hardlink: target
  unsigned mode = 0644;
  int64_t uid = 0;
  int64_t gid = 0;
};

inline TarEntry file(std::string path, std::string content, unsigned mode = 0644) {
  return {TarEntry::File, std::move(path), std::move(content), mode, 0, 0};
}
inline TarEntry dir(std::string path, unsigned mode = 0755) {
  return {TarEntry::Dir, std::move(path), "", mode, 0, 0};
}
inline TarEntry symlink(std::string path, std::string target) {
  return {TarEntry::Symlink, std::move(path), std::move(target), 0777, 0, 0};
}
inline TarEntry hardlink(std::string path, std::string target) {
  return {TarEntry::Hardlink, std::move(path), std::move(target), 0644, 0, 0};
}

enum class Compression { None, Gzip, Zstd };

// Writes `entries` as a pax tar to `path`.
inline void writeTar(const std::filesystem::path& path, const std::vector<TarEntry>& entries,
                     Compression compression = Compression::Gzip) {
  struct archive* out = archive_write_new();
  archive_write_set_format_pax_restricted(out);
  if (compression == Compression::Gzip) archive_write_add_filter_gzip(out);
  if (compression == Compression::Zstd) archive_write_add_filter_zstd(out);
  if (archive_write_open_filename(out, path.c_str()) != ARCHIVE_OK) {
    throw std::runtime_error(std::string("archive open: ") + archive_error_string(out));
  }
  for (const TarEntry& e : entries) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, e.mode);
    archive_entry_set_uid(entry, e.uid);
    archive_entry_set_gid(entry, e.gid);
    archive_entry_set_mtime(entry, 1700000000, 0);
    switch (e.type) {
      case TarEntry::File:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, static_cast<la_int64_t>(e.content.size()));
        break;
      case TarEntry::Dir:
        archive_entry_set_filetype(entry, AE_IFDIR);
        break;
      case TarEntry::Symlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, e.content.c_str());
        break;
      case TarEntry::Hardlink:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_hardlink(entry, e.content.c_str());
        archive_entry_set_size(entry, 0);
        break;
      case TarEntry::CharDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdevmajor(entry, 1);
        archive_entry_set_rdevminor(entry, 3);
        break;
      case TarEntry::Fifo:
        archive_entry_set_filetype(entry, AE_IFIFO);
        break;
    }
    if (archive_write_header(out, entry) != ARCHIVE_OK) {
      throw std::runtime_error(std::string("archive header: ") + archive_error_string(out));
    }
    if (e.type == TarEntry::File && !e.content.empty()) {
      archive_write_data(out, e.content.data(), e.content.size());
    }
    archive_entry_free(entry);
  }
  archive_write_close(out);
  archive_write_free(out);
}

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "clrk-image-test-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace clrk::sandbox::image::testing
