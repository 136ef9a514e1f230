// Crash durability of the SQLite store: a forked child writes as fast as it can and reports
// each acknowledged write on a pipe; the parent SIGKILLs it at a random moment, reopens the
// database and checks that every acknowledged write survived and the file is intact.
#include "clrk/apiserver/storage/storage.h"
#include "clrk/apiserver/storage/storage_test_util.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstring>
#include <map>
#include <poll.h>
#include <random>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace clrk::apiserver::storage {
namespace {

using testing::TempDir;

constexpr std::string_view kResource = "clrk.apoxy.dev/taskagents";

RenderFn renderKey(const std::string& name) {
  return [name](int64_t revision) { return name + "@" + std::to_string(revision); };
}

void writeAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::_exit(3);
    }
    done += static_cast<size_t>(n);
  }
}

// Runs in the forked child: SQLite is first touched here, after fork. Never returns.
[[noreturn]] void childWriter(const std::string& path, int round, int fd) {
  SqliteOptions options;
  options.path = path;
  auto opened = openSqliteStorage(options);
  if (!opened.ok()) {
    writeAll(fd, "E " + opened.status().toString() + "\n");
    ::_exit(2);
  }
  Storage& store = **opened;
  std::mt19937 rng(static_cast<unsigned>(round) * 7919u + 1);
  std::vector<std::string> names;
  for (int i = 0;; ++i) {
    Result<StoredObject> written = Status(Code::Internal, "unset");
    std::string name;
    if (names.empty() || i % 3 == 0) {
      name = "r" + std::to_string(round) + "-" + std::to_string(i);
      written = store.create(ObjectKey{std::string(kResource), "ns", name}, renderKey(name));
      if (written.ok()) names.push_back(name);
    } else {
      name = names[rng() % names.size()];
      written = store.update(ObjectKey{std::string(kResource), "ns", name}, 0, renderKey(name));
    }
    if (!written.ok()) {
      writeAll(fd, "E " + written.status().toString() + "\n");
      ::_exit(2);
    }
    // Reported only after the call returned: this is an acknowledged write.
    writeAll(fd, "A " + name + " " + std::to_string(written->revision) + "\n");
  }
}

struct RoundResult {
  std::map<std::string, int64_t> acked;  // name -> highest acknowledged revision
  int64_t max_revision = 0;
  size_t acks = 0;
  std::string child_error;
};

// Parses complete lines from `buffer`, leaving a trailing partial line in place.
void consume(std::string& buffer, RoundResult& result) {
  size_t start = 0;
  while (true) {
    const size_t end = buffer.find('\n', start);
    if (end == std::string::npos) break;
    std::istringstream line(buffer.substr(start, end - start));
    start = end + 1;
    std::string tag;
    line >> tag;
    if (tag == "E") {
      std::getline(line, result.child_error);
      continue;
    }
    std::string name;
    int64_t revision = 0;
    line >> name >> revision;
    auto& best = result.acked[name];
    best = std::max(best, revision);
    result.max_revision = std::max(result.max_revision, revision);
    ++result.acks;
  }
  buffer.erase(0, start);
}

// Reads the pipe until `deadline` (or EOF), feeding `result`. Returns false on EOF.
bool drainUntil(int fd, std::chrono::steady_clock::time_point deadline, std::string& buffer,
                RoundResult& result, bool stop_at_first_ack) {
  char chunk[8192];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return true;
    pollfd pfd{fd, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return true;
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buffer.append(chunk, static_cast<size_t>(n));
    consume(buffer, result);
    if (stop_at_first_ack && result.acks > 0) return true;
  }
}

std::string integrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    out = std::string("open failed: ") + sqlite3_errmsg(db);
    sqlite3_close(db);
    return out;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) != SQLITE_OK) {
    out = std::string("prepare failed: ") + sqlite3_errmsg(db);
  } else {
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      if (!out.empty()) out += "; ";
      out += reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

TEST(SqliteCrash, AcknowledgedWritesSurviveSigkill) {
  TempDir dir;
  const std::string path = dir.file("crash.db");
  std::mt19937 rng(
      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));
  std::uniform_int_distribution<int> delay_ms(50, 300);
  std::map<std::string, int64_t> all_acked;
  int64_t previous_max = 0;
  size_t total_acks = 0;

  for (int round = 0; round < 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << std::strerror(errno);
    if (pid == 0) {
      ::close(fds[0]);
      childWriter(path, round, fds[1]);
    }
    ::close(fds[1]);
    RoundResult result;
    std::string buffer;
    // Wait for the child's first acknowledged write, then let it run a random while.
    const bool alive =
        drainUntil(fds[0], std::chrono::steady_clock::now() + std::chrono::seconds(20), buffer,
                   result, /*stop_at_first_ack=*/true);
    const int delay = delay_ms(rng);
    if (alive && result.child_error.empty()) {
      drainUntil(fds[0], std::chrono::steady_clock::now() + std::chrono::milliseconds(delay),
                 buffer, result, false);
    }
    ::kill(pid, SIGKILL);
    int wait_status = 0;
    ASSERT_EQ(::waitpid(pid, &wait_status, 0), pid);
    // Whatever the child reported before it died.
    drainUntil(fds[0], std::chrono::steady_clock::now() + std::chrono::seconds(5), buffer, result,
               false);
    ::close(fds[0]);
    ASSERT_TRUE(result.child_error.empty()) << "child failed: " << result.child_error;
    ASSERT_TRUE(WIFSIGNALED(wait_status) && WTERMSIG(wait_status) == SIGKILL)
        << "child ended by itself, status " << wait_status;
    ASSERT_GT(result.acks, 0u) << "child made no acknowledged write";
    std::printf("round %d: killed after %d ms, %zu acknowledged writes, max revision %lld\n", round,
                delay, result.acks, static_cast<long long>(result.max_revision));
    total_acks += result.acks;

    // Revisions keep rising across crashes and restarts.
    for (const auto& [name, revision] : result.acked) {
      EXPECT_GT(revision, previous_max) << name;
      all_acked[name] = revision;
    }
    previous_max = result.max_revision;

    EXPECT_EQ(integrityCheck(path), "ok");
    SqliteOptions options;
    options.path = path;
    auto store = openSqliteStorage(options);
    ASSERT_TRUE(store.ok()) << store.status().toString();
    EXPECT_GE((*store)->currentRevision(), result.max_revision);
    size_t missing = 0;
    for (const auto& [name, revision] : all_acked) {
      auto got = (*store)->get(ObjectKey{std::string(kResource), "ns", name});
      if (!got.ok()) {
        ++missing;
        ADD_FAILURE() << "acknowledged " << name << "@" << revision
                      << " lost: " << got.status().toString();
        continue;
      }
      EXPECT_GE(got->revision, revision) << name;
      EXPECT_EQ(got->value, name + "@" + std::to_string(got->revision)) << name;
    }
    ASSERT_EQ(missing, 0u);
    // Everything acknowledged is listed too (one consistent snapshot).
    auto listed = (*store)->list(kResource, {});
    ASSERT_TRUE(listed.ok());
    EXPECT_GE(listed->items.size(), all_acked.size());
    previous_max = std::max(previous_max, (*store)->currentRevision());
  }
  EXPECT_GT(total_acks, 0u);
}

}  // namespace
}  // namespace clrk::apiserver::storage
