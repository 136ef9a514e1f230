// Background processes that `clrk dev` starts and later finds again: started detached (own
// session, stdin /dev/null, stdout and stderr appended to a log file) with the PID in a pid file,
// and recognised by the basename of /proc/PID/exe, so a recycled PID is never signalled.
// Thread model: free functions over plain values; no shared state.
#pragma once

#include "clrk/base/status.h"

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace clrk::cli {

struct ManagedProcess {
  std::string label;     // for messages: "clrk-worker dev-1"
  std::string exe_name;  // basename of the binary: "clrk-worker"
  std::filesystem::path pid_file;
  std::filesystem::path log;
};

// `name` in the directory of the running executable (/proc/self/exe); NotFound when absent.
Result<std::filesystem::path> siblingBinary(std::string_view name);

// Starts `binary args...` as described above and writes its PID to process.pid_file (0600). The
// log's directory is created. On error nothing is left running.
Result<pid_t> startDetached(const ManagedProcess& process, const std::filesystem::path& binary,
                            const std::vector<std::string>& args);

// True iff `pid` is alive (not a zombie) and the basename of its /proc/PID/exe is `exe_name`.
bool isRunning(pid_t pid, std::string_view exe_name);

// The PID in process.pid_file; 0 when the file is missing or does not hold a number.
pid_t recordedPid(const ManagedProcess& process);
// recordedPid() when it names a running process with the expected binary; 0 otherwise.
pid_t runningPid(const ManagedProcess& process);

// When `pid` is a child of this process that has ended: reaps it and says how ("exited with
// status 1", "was killed by signal 9"). nullopt while it runs or when it is not our child.
std::optional<std::string> reapIfEnded(pid_t pid);

struct StopOutcome {
  pid_t pid = 0;        // 0: was not running
  bool killed = false;  // needed SIGKILL after the grace period
};

// SIGTERM to every running process of `processes`, waits up to `grace` for all of them, SIGKILL to
// what is left and waits until it is gone; removes every pid file. Outcomes in input order.
std::vector<StopOutcome> stopAll(const std::vector<ManagedProcess>& processes,
                                 std::chrono::milliseconds grace);

// The last `lines` lines of `log`, each indented by two spaces ("(no log at ...)" if unreadable).
std::string logTail(const std::filesystem::path& log, size_t lines);

}  // namespace clrk::cli
