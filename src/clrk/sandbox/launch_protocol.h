// The launch message a worker writes to the launcher of a booted sandbox (see
// launcher/launcher_main.cc for the format). Shared by both sides; no dependencies, since the
// launcher is linked statically.
#pragma once

#include <cstddef>

namespace clrk::sandbox {

inline constexpr char kLaunchMagic[] = "CLRKLNC1";  // 8 bytes on the wire, no NUL
// When the launcher's stdin is a socket it answers on it, once the agent's process ended, with
// kExitMagic and the 4-byte little-endian wait status (kExitReportBytes in all): the worker knows
// the exit without waiting for the sandbox to be torn down.
inline constexpr char kExitMagic[] = "CLRKEXT1";
inline constexpr size_t kExitReportBytes = sizeof kExitMagic - 1 + 4;
inline constexpr size_t kMaxLaunchBytes = 4u << 20;                      // payload bound
inline constexpr size_t kMaxLaunchStrings = 64u * 1024u;                 // argc and envc bound
inline constexpr const char* kSandboxLauncherPath = "/etc/clrk/launch";  // inside the sandbox
inline constexpr const char* kLauncherBinaryName = "clrk-sandbox-launcher";

}  // namespace clrk::sandbox
