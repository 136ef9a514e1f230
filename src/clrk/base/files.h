// Small file-system helpers with the error model of status.h.
#pragma once

#include "clrk/base/status.h"

#include <filesystem>
#include <string>
#include <string_view>

namespace clrk {

// Reads the whole file; NotFound when absent.
Result<std::string> readFile(const std::filesystem::path& path);

// Writes `content` to `path` atomically (temp file + fsync + rename) with permission `mode`.
Status writeFileAtomic(const std::filesystem::path& path, std::string_view content,
                       unsigned mode = 0644);

// The clrk state directory: $CLRK_HOME, else $HOME/.clrk. Created with mode 0700 when absent.
Result<std::filesystem::path> clrkHome();

}  // namespace clrk
