#include "clrk/base/files.h"

#include "clrk/base/ids.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

namespace clrk {

Result<std::string> readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return notFound(path.string() + ": no such file");
    return internalError(path.string() + ": " + std::strerror(errno));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

Status writeFileAtomic(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  std::filesystem::path tmp = path;
  tmp += ".tmp-" + randomHex(4);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return internalError(tmp.string() + ": " + std::strerror(errno));
  ::fchmod(fd, mode);
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return internalError(tmp.string() + ": " + std::strerror(saved));
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return internalError(tmp.string() + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(tmp.c_str());
    return internalError(path.string() + ": " + std::strerror(saved));
  }
  return {};
}

Result<std::filesystem::path> clrkHome() {
  std::filesystem::path home;
  if (const char* env = std::getenv("CLRK_HOME"); env != nullptr && *env != '\0') {
    home = env;
  } else if (const char* user_home = std::getenv("HOME"); user_home != nullptr && *user_home) {
    home = std::filesystem::path(user_home) / ".clrk";
  } else {
    return invalidArgument("neither CLRK_HOME nor HOME is set");
  }
  std::error_code ec;
  std::filesystem::create_directories(home, ec);
  if (ec) return internalError(home.string() + ": " + ec.message());
  ::chmod(home.c_str(), 0700);
  return home;
}

}  // namespace clrk
