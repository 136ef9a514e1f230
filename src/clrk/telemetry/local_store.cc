#include "clrk/telemetry/local_store.h"

#include "clrk/base/log.h"
#include "clrk/telemetry/attributes.h"

#include <sqlite3.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <mutex>
#include <sys/stat.h>
#include <unistd.h>

namespace clrk::telemetry {
namespace {

constexpr size_t kMaxQueryLimit = 10000;

std::shared_ptr<spdlog::logger> log() {
  static std::shared_ptr<spdlog::logger> instance = clrk::logger("telemetry");
  return instance;
}

int64_t toNanos(std::chrono::system_clock::time_point tp) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(tp.time_since_epoch()).count();
}

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS records (
  trace_id     BLOB    NOT NULL,
  span_id      BLOB    NOT NULL,
  start_ns     INTEGER NOT NULL,
  end_ns       INTEGER NOT NULL,
  name         TEXT    NOT NULL,
  namespace    TEXT,
  agent        TEXT,
  execution_id TEXT,
  request_id   TEXT,
  record       TEXT    NOT NULL,
  UNIQUE (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS records_start ON records (start_ns);
CREATE INDEX IF NOT EXISTS records_execution ON records (execution_id, start_ns);
CREATE INDEX IF NOT EXISTS records_agent ON records (namespace, agent, start_ns);
CREATE INDEX IF NOT EXISTS records_request ON records (request_id);
)sql";

// Finalizes a statement on scope exit.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

void bindText(sqlite3_stmt* stmt, int index, const std::string* text) {
  if (text == nullptr) {
    sqlite3_bind_null(stmt, index);
  } else {
    sqlite3_bind_text(stmt, index, text->data(), static_cast<int>(text->size()), SQLITE_TRANSIENT);
  }
}

}  // namespace

class LocalStore::Impl {
 public:
  ~Impl() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }

  Status open(const std::filesystem::path& path) {
    path_ = path;
    // Create the file 0600 first: SQLite gives its -wal and -shm files the database's mode.
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return internalError(path.string() + ": " + std::strerror(errno));
    ::fchmod(fd, 0600);
    ::close(fd);
    int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) return error("open");
    sqlite3_busy_timeout(db_, 5000);
    CLRK_RETURN_IF_ERROR(exec("PRAGMA journal_mode=WAL"));
    CLRK_RETURN_IF_ERROR(exec("PRAGMA synchronous=NORMAL"));
    CLRK_RETURN_IF_ERROR(exec(kSchema));
    return {};
  }

  Status deliver(std::span<const Record> batch) {
    std::lock_guard lock(mu_);
    CLRK_RETURN_IF_ERROR(exec("BEGIN IMMEDIATE"));
    Status status = insertAll(batch);
    if (!status.ok()) {
      (void)exec("ROLLBACK");
      return status;
    }
    return exec("COMMIT");
  }

  Result<std::vector<Record>> query(const Query& query) {
    std::string sql = "SELECT record FROM records WHERE 1=1";
    std::vector<const std::string*> params;
    auto add = [&](const std::string& value, const char* column) {
      if (value.empty()) return;
      sql += std::string(" AND ") + column + " = ?";
      params.push_back(&value);
    };
    add(query.execution_id, "execution_id");
    add(query.agent, "agent");
    add(query.ns, "namespace");
    add(query.request_id, "request_id");
    if (query.since) sql += " AND start_ns >= ?";
    sql += " ORDER BY start_ns DESC, rowid DESC LIMIT ?";

    std::lock_guard lock(mu_);
    Statement stmt(db_, sql.c_str());
    if (!stmt.ok()) return error("query");
    int index = 1;
    for (const std::string* param : params) bindText(stmt.get(), index++, param);
    if (query.since) sqlite3_bind_int64(stmt.get(), index++, toNanos(*query.since));
    size_t limit = std::min(query.limit == 0 ? size_t{100} : query.limit, kMaxQueryLimit);
    sqlite3_bind_int64(stmt.get(), index, static_cast<int64_t>(limit));
    std::vector<Record> out;
    while (true) {
      int rc = sqlite3_step(stmt.get());
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return error("query");
      auto text = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), 0));
      int size = sqlite3_column_bytes(stmt.get(), 0);
      auto record =
          recordFromJson(std::string_view(text == nullptr ? "" : text, static_cast<size_t>(size)));
      if (!record.ok()) {
        log()->warn("telemetry store: skipping unreadable record: {}", record.status().toString());
        continue;
      }
      out.push_back(std::move(record).value());
    }
    return out;
  }

  Result<uint64_t> pruneBefore(std::chrono::system_clock::time_point cutoff) {
    std::lock_guard lock(mu_);
    Statement stmt(db_, "DELETE FROM records WHERE start_ns < ?");
    if (!stmt.ok()) return error("prune");
    sqlite3_bind_int64(stmt.get(), 1, toNanos(cutoff));
    if (sqlite3_step(stmt.get()) != SQLITE_DONE) return error("prune");
    return static_cast<uint64_t>(sqlite3_changes(db_));
  }

 private:
  Status insertAll(std::span<const Record> batch) {
    Statement stmt(db_,
                   "INSERT INTO records (trace_id, span_id, start_ns, end_ns, name, namespace, "
                   "agent, execution_id, request_id, record) VALUES (?,?,?,?,?,?,?,?,?,?) "
                   "ON CONFLICT (trace_id, span_id) DO UPDATE SET start_ns=excluded.start_ns, "
                   "end_ns=excluded.end_ns, name=excluded.name, namespace=excluded.namespace, "
                   "agent=excluded.agent, execution_id=excluded.execution_id, "
                   "request_id=excluded.request_id, record=excluded.record");
    if (!stmt.ok()) return error("insert");
    for (const Record& record : batch) {
      sqlite3_stmt* s = stmt.get();
      sqlite3_reset(s);
      sqlite3_clear_bindings(s);
      sqlite3_bind_blob(s, 1, record.trace_id.data(), static_cast<int>(record.trace_id.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_blob(s, 2, record.span_id.data(), static_cast<int>(record.span_id.size()),
                        SQLITE_TRANSIENT);
      sqlite3_bind_int64(s, 3, toNanos(record.start));
      sqlite3_bind_int64(s, 4, toNanos(record.end));
      sqlite3_bind_text(s, 5, record.name.data(), static_cast<int>(record.name.size()),
                        SQLITE_TRANSIENT);
      bindText(s, 6, findString(record, attr::kClrkNamespace));
      bindText(s, 7, findString(record, attr::kClrkAgent));
      bindText(s, 8, findString(record, attr::kClrkExecutionId));
      bindText(s, 9, findString(record, attr::kClrkRequestId));
      std::string json = toJson(record);
      sqlite3_bind_text(s, 10, json.data(), static_cast<int>(json.size()), SQLITE_TRANSIENT);
      if (sqlite3_step(s) != SQLITE_DONE) return error("insert");
    }
    return {};
  }

  Status exec(const char* sql) {
    char* message = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
    if (rc == SQLITE_OK) return {};
    std::string text = message != nullptr ? message : sqlite3_errstr(rc);
    sqlite3_free(message);
    return {Code::Unavailable, "telemetry store " + path_.string() + ": " + text};
  }

  Status error(const char* what) const {
    const char* message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    return {Code::Unavailable, "telemetry store " + path_.string() + ": " + what + ": " + message};
  }

  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

Result<std::unique_ptr<LocalStore>> LocalStore::open(const std::filesystem::path& path) {
  try {
    auto impl = std::make_unique<Impl>();
    CLRK_RETURN_IF_ERROR(impl->open(path));
    return std::unique_ptr<LocalStore>(new LocalStore(std::move(impl)));
  } catch (const std::exception& e) {
    return internalError(std::string("telemetry store: ") + e.what());
  }
}

LocalStore::LocalStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LocalStore::~LocalStore() = default;

std::string LocalStore::name() const { return "local"; }

Status LocalStore::deliver(std::span<const Record> batch) {
  try {
    return impl_->deliver(batch);
  } catch (const std::exception& e) {
    return internalError(std::string("telemetry store: ") + e.what());
  }
}

Result<std::vector<Record>> LocalStore::query(const Query& query) const {
  try {
    return impl_->query(query);
  } catch (const std::exception& e) {
    return internalError(std::string("telemetry store: ") + e.what());
  }
}

Result<uint64_t> LocalStore::pruneBefore(std::chrono::system_clock::time_point cutoff) {
  try {
    return impl_->pruneBefore(cutoff);
  } catch (const std::exception& e) {
    return internalError(std::string("telemetry store: ") + e.what());
  }
}

}  // namespace clrk::telemetry
