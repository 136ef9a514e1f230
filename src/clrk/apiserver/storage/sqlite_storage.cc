// SQLite Storage.
//
// Layout: one table `objects(id, resource, ns, name, value, revision)` with a unique index on
// (resource, ns, name), so a list is an index range scan in (ns, name) order and counting the
// rest of a paginated list only walks the small index; and `meta(key, value)` holding the global
// revision (stored, so it never goes backwards after deletes and a restart) and the schema
// version. (A WITHOUT ROWID table keyed by the name was measured and rejected: its rows must
// stay under ~1/4 of a page or spill into overflow pages, so 1 KiB objects made the file 3x
// larger and every read slower.)
//
// Writes go through one writer connection under write_mu_: BEGIN IMMEDIATE, check, render,
// write, bump the revision, COMMIT; the call returns only after COMMIT did, and the event is
// published to the WatchHub before the lock is released, so events leave in revision order.
// Reads use a pool of reader connections (WAL lets them run beside the writer); a list is one
// read transaction, so its items and revision are one consistent snapshot.
//
// Durability: WAL + synchronous=NORMAL. A COMMIT has written its frames to the WAL file before
// it returns, so a crash of the process never loses an acknowledged write; power loss may lose
// the last commits unless SqliteOptions::sync_full selects synchronous=FULL.
//
// The database file is created 0600 (and forced to 0600 when it exists); SQLite gives its -wal
// and -shm files the database's mode, and we chmod them as well. An exclusive flock on the
// database file keeps a second process (or a second store in this process) from opening it and
// forking the revision counter.
#include "clrk/apiserver/storage/common.h"
#include "clrk/apiserver/storage/continue_token.h"
#include "clrk/apiserver/storage/storage.h"
#include "clrk/apiserver/storage/watch_hub.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <sys/file.h>
#include <sys/stat.h>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

namespace clrk::apiserver::storage {

namespace {

constexpr int64_t kSchemaVersion = 1;
constexpr int kBusyTimeoutMs = 5000;
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();
constexpr size_t kMaxReaders = 8;
// WAL size (pages) at which the background checkpointer copies the WAL into the database.
constexpr int kCheckpointPages = 1000;
// WAL size at which the writer checkpoints inline. The WAL only rewinds once a checkpoint has
// caught up with the writer, which a background checkpoint never does while writes arrive
// back to back; this bounds the WAL (~16 MiB) in that case, at the cost of one inline
// checkpoint of the (mostly already copied) remainder.
constexpr int kInlineCheckpointPages = 4000;

Status sqliteError(sqlite3* db, int rc, std::string_view what) {
  std::string message = "sqlite: " + std::string(what) + ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  message += " (code " + std::to_string(rc) + ")";
  const int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return {Code::Unavailable, message};
  return internalError(std::move(message));
}

// Owns a connection; closes it last (statements are finalized first by member order).
class Db {
 public:
  Db() = default;
  ~Db() {
    if (db_ != nullptr) sqlite3_close_v2(db_);
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;

  Status open(const std::string& path, bool create) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (create) flags |= SQLITE_OPEN_CREATE;
    const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
    if (rc != SQLITE_OK) {
      Status status = sqliteError(db_, rc, "cannot open database " + path);
      return status;
    }
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    return {};
  }

  Status exec(const char* sql) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
      std::string message = std::string(sql) + ": " + (error != nullptr ? error : "");
      sqlite3_free(error);
      return sqliteError(nullptr, rc, message);
    }
    return {};
  }

  sqlite3* get() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// A cached prepared statement.
class Stmt {
 public:
  Stmt() = default;
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Status prepare(const Db& db, const char* sql) {
    const int rc =
        sqlite3_prepare_v3(db.get(), sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc != SQLITE_OK) return sqliteError(db.get(), rc, std::string("prepare ") + sql);
    return {};
  }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// One use of a cached statement: binds, steps, and resets it on scope exit.
class Use {
 public:
  explicit Use(const Stmt& stmt) : stmt_(stmt.get()) {}
  ~Use() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;

  // Text and blobs are bound without copying: they must outlive the step.
  void text(int index, std::string_view value) {
    // A null pointer would bind SQL NULL; an empty view must bind ''.
    sqlite3_bind_text(stmt_, index, value.empty() ? "" : value.data(),
                      static_cast<int>(value.size()), SQLITE_STATIC);
  }
  void blob(int index, std::string_view value) {
    sqlite3_bind_blob(stmt_, index, value.empty() ? "" : value.data(),
                      static_cast<int>(value.size()), SQLITE_STATIC);
  }
  void integer(int index, int64_t value) { sqlite3_bind_int64(stmt_, index, value); }
  void key(const ObjectKey& key) {
    text(1, key.resource);
    text(2, key.ns);
    text(3, key.name);
  }

  // SQLITE_ROW -> true, SQLITE_DONE -> false, else an error.
  Result<bool> step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return sqliteError(sqlite3_db_handle(stmt_), rc, sqlite3_sql(stmt_));
  }
  Status run() {
    auto stepped = step();
    if (!stepped.ok()) return stepped.status();
    return {};
  }

  int64_t columnInt(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string columnString(int column) const {
    const void* data = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return {};
    return {static_cast<const char*>(data), static_cast<size_t>(size)};
  }

 private:
  sqlite3_stmt* stmt_;
};

constexpr const char* kSelectRevision =
    "SELECT revision FROM objects WHERE resource = ?1 AND ns = ?2 AND name = ?3";
constexpr const char* kSelectObject =
    "SELECT value, revision FROM objects WHERE resource = ?1 AND ns = ?2 AND name = ?3";

Status configure(Db& db, bool sync_full) {
  CLRK_RETURN_IF_ERROR(
      db.exec(sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL"));
  CLRK_RETURN_IF_ERROR(db.exec("PRAGMA temp_store=MEMORY"));
  // Map the database file: reads of checkpointed pages become memory copies instead of
  // read() calls, and the pages are shared by every connection through the OS page cache.
  CLRK_RETURN_IF_ERROR(db.exec("PRAGMA mmap_size=268435456"));
  return {};
}

// A reader connection with its cached statements.
struct Reader {
  Db db;
  Stmt get;
  Stmt begin;
  Stmt commit;
  Stmt meta_revision;
  Stmt list_all;  // all namespaces, after (ns, name)
  Stmt list_ns;   // one namespace, after name
  Stmt count_all;
  Stmt count_ns;

  Status open(const std::string& path, bool sync_full) {
    CLRK_RETURN_IF_ERROR(db.open(path, false));
    CLRK_RETURN_IF_ERROR(configure(db, sync_full));
    CLRK_RETURN_IF_ERROR(db.exec("PRAGMA query_only=1"));
    CLRK_RETURN_IF_ERROR(get.prepare(db, kSelectObject));
    CLRK_RETURN_IF_ERROR(begin.prepare(db, "BEGIN"));
    CLRK_RETURN_IF_ERROR(commit.prepare(db, "COMMIT"));
    CLRK_RETURN_IF_ERROR(
        meta_revision.prepare(db, "SELECT value FROM meta WHERE key = 'revision'"));
    CLRK_RETURN_IF_ERROR(list_all.prepare(db,
                                          "SELECT ns, name, value, revision FROM objects WHERE "
                                          "resource = ?1 AND (ns, name) > (?2, ?3) "
                                          "ORDER BY ns, name LIMIT ?4"));
    CLRK_RETURN_IF_ERROR(
        list_ns.prepare(db,
                        "SELECT ns, name, value, revision FROM objects WHERE resource = ?1 AND "
                        "ns = ?2 AND name > ?3 ORDER BY ns, name LIMIT ?4"));
    CLRK_RETURN_IF_ERROR(count_all.prepare(
        db, "SELECT count(*) FROM objects WHERE resource = ?1 AND (ns, name) > (?2, ?3)"));
    CLRK_RETURN_IF_ERROR(count_ns.prepare(
        db, "SELECT count(*) FROM objects WHERE resource = ?1 AND ns = ?2 AND name > ?3"));
    return {};
  }

  // Ends a read transaction left open by an early return.
  void finish() {
    if (sqlite3_get_autocommit(db.get()) == 0) (void)db.exec("ROLLBACK");
  }
};

class ReaderPool {
 public:
  ReaderPool(std::string path, bool sync_full) : path_(std::move(path)), sync_full_(sync_full) {}

  class Lease {
   public:
    Lease(ReaderPool* pool, std::unique_ptr<Reader> reader)
        : pool_(pool), reader_(std::move(reader)) {}
    ~Lease() {
      if (reader_ != nullptr) pool_->release(std::move(reader_));
    }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Lease(Lease&&) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Reader* operator->() const { return reader_.get(); }

   private:
    ReaderPool* pool_;
    std::unique_ptr<Reader> reader_;
  };

  Result<Lease> acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty() || open_ < kMaxReaders; });
    if (!free_.empty()) {
      auto reader = std::move(free_.back());
      free_.pop_back();
      return Lease(this, std::move(reader));
    }
    ++open_;
    lock.unlock();
    auto reader = std::make_unique<Reader>();
    if (Status status = reader->open(path_, sync_full_); !status.ok()) {
      lock.lock();
      --open_;
      cv_.notify_one();
      return status;
    }
    return Lease(this, std::move(reader));
  }

 private:
  void release(std::unique_ptr<Reader> reader) {
    reader->finish();
    std::lock_guard lock(mu_);
    free_.push_back(std::move(reader));
    cv_.notify_one();
  }

  const std::string path_;
  const bool sync_full_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Reader>> free_;
  size_t open_ = 0;
};

// Copies the WAL back into the database on its own thread and connection, so the fsyncs of a
// checkpoint never run inside a write (SQLite's default autocheckpoint runs them in the COMMIT
// that crosses the threshold, under our write lock). PASSIVE checkpoints never block writers
// or readers.
class Checkpointer {
 public:
  Checkpointer() = default;
  ~Checkpointer() { stop(); }
  Checkpointer(const Checkpointer&) = delete;
  Checkpointer& operator=(const Checkpointer&) = delete;

  Status start(const std::string& path, bool sync_full) {
    CLRK_RETURN_IF_ERROR(db_.open(path, false));
    CLRK_RETURN_IF_ERROR(configure(db_, sync_full));
    thread_ = std::thread([this] { run(); });
    return {};
  }

  // Called from the writer's WAL hook after each commit: cheap, never blocks on the checkpoint.
  void request() {
    std::lock_guard lock(mu_);
    pending_ = true;
    cv_.notify_one();
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      cv_.notify_one();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return pending_ || stopping_; });
      if (stopping_) return;
      pending_ = false;
      lock.unlock();
      // Failures (e.g. SQLITE_BUSY) are harmless: the next request retries.
      (void)sqlite3_wal_checkpoint_v2(db_.get(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                      nullptr);
      lock.lock();
    }
  }

  Db db_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pending_ = false;
  bool stopping_ = false;
};

class SqliteStorage final : public Storage {
 public:
  SqliteStorage(const SqliteOptions& options, int lock_fd)
      : options_(options),
        lock_fd_(lock_fd),
        readers_(std::in_place, options.path, options.sync_full),
        hub_(WatchHubOptions{options.watch_history, options.watch_history_bytes,
                             options.watch_queue}) {}

  ~SqliteStorage() override {
    // Every connection closes before the flock'd descriptor: closing any descriptor of the file
    // would drop SQLite's POSIX locks while they are in use. The writer goes last (its close
    // checkpoints and removes the WAL) and after the checkpointer, whose hook it calls.
    if (writer_ != nullptr && writer_->db.get() != nullptr) {
      sqlite3_wal_hook(writer_->db.get(), nullptr, nullptr);
    }
    checkpointer_.reset();
    readers_.reset();
    writer_.reset();
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }
  SqliteStorage(const SqliteStorage&) = delete;
  SqliteStorage& operator=(const SqliteStorage&) = delete;

  Status open() {
    writer_ = std::make_unique<Writer>();
    Writer& w = *writer_;
    CLRK_RETURN_IF_ERROR(w.db.open(options_.path, true));
    CLRK_RETURN_IF_ERROR(w.db.exec("PRAGMA journal_mode=WAL"));
    {
      Stmt mode;
      CLRK_RETURN_IF_ERROR(mode.prepare(w.db, "PRAGMA journal_mode"));
      Use use(mode);
      CLRK_ASSIGN_OR_RETURN(bool row, use.step());
      if (!row || use.columnString(0) != "wal") {
        return internalError("sqlite: cannot switch " + options_.path + " to WAL mode");
      }
    }
    CLRK_RETURN_IF_ERROR(configure(w.db, options_.sync_full));
    CLRK_RETURN_IF_ERROR(w.db.exec(
        "BEGIN IMMEDIATE;"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) "
        "WITHOUT ROWID;"
        "INSERT OR IGNORE INTO meta(key, value) VALUES('revision', 0);"
        "INSERT OR IGNORE INTO meta(key, value) VALUES('schema', 1);"
        "CREATE TABLE IF NOT EXISTS objects(id INTEGER PRIMARY KEY, resource TEXT NOT NULL, "
        "ns TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, "
        "revision INTEGER NOT NULL);"
        "CREATE UNIQUE INDEX IF NOT EXISTS objects_key ON objects(resource, ns, name);"
        "COMMIT;"));
    int64_t schema = 0;
    int64_t revision = 0;
    {
      Stmt select;
      CLRK_RETURN_IF_ERROR(select.prepare(w.db,
                                          "SELECT (SELECT value FROM meta WHERE key = 'schema'), "
                                          "max((SELECT value FROM meta WHERE key = 'revision'), "
                                          "    (SELECT coalesce(max(revision), 0) FROM objects))"));
      Use use(select);
      CLRK_ASSIGN_OR_RETURN(bool row, use.step());
      if (!row) return internalError("sqlite: cannot read the revision of " + options_.path);
      schema = use.columnInt(0);
      revision = use.columnInt(1);
    }
    if (schema != kSchemaVersion) {
      return internalError("storage database " + options_.path + " has schema version " +
                           std::to_string(schema) + "; this build supports version " +
                           std::to_string(kSchemaVersion));
    }
    CLRK_RETURN_IF_ERROR(w.begin.prepare(w.db, "BEGIN IMMEDIATE"));
    CLRK_RETURN_IF_ERROR(w.commit.prepare(w.db, "COMMIT"));
    CLRK_RETURN_IF_ERROR(w.rollback.prepare(w.db, "ROLLBACK"));
    CLRK_RETURN_IF_ERROR(w.select_revision.prepare(w.db, kSelectRevision));
    CLRK_RETURN_IF_ERROR(w.select_object.prepare(w.db, kSelectObject));
    CLRK_RETURN_IF_ERROR(w.insert.prepare(
        w.db,
        "INSERT INTO objects(resource, ns, name, value, revision) VALUES(?1, ?2, ?3, ?4, ?5)"));
    CLRK_RETURN_IF_ERROR(w.update.prepare(
        w.db,
        "UPDATE objects SET value = ?4, revision = ?5 WHERE resource = ?1 AND ns = ?2 AND "
        "name = ?3"));
    CLRK_RETURN_IF_ERROR(w.remove.prepare(
        w.db, "DELETE FROM objects WHERE resource = ?1 AND ns = ?2 AND name = ?3"));
    CLRK_RETURN_IF_ERROR(
        w.set_revision.prepare(w.db, "UPDATE meta SET value = ?1 WHERE key = 'revision'"));
    revision_ = revision;
    current_.store(revision, std::memory_order_release);
    hub_.reset(revision);
    // SQLite gives -wal/-shm the database's mode; make sure of it for files left by older runs.
    for (const char* suffix : {"-wal", "-shm"}) {
      const std::string path = options_.path + suffix;
      if (::chmod(path.c_str(), S_IRUSR | S_IWUSR) != 0 && errno != ENOENT) {
        return internalError("cannot chmod " + path + ": " + std::strerror(errno));
      }
    }
    checkpointer_ = std::make_unique<Checkpointer>();
    CLRK_RETURN_IF_ERROR(checkpointer_->start(options_.path, options_.sync_full));
    // Replaces SQLite's autocheckpoint on the writer connection.
    sqlite3_wal_hook(
        w.db.get(),
        [](void* self, sqlite3* db, const char*, int pages) {
          if (pages >= kInlineCheckpointPages) {
            (void)sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                            nullptr);
          } else if (pages >= kCheckpointPages) {
            static_cast<Checkpointer*>(self)->request();
          }
          return SQLITE_OK;
        },
        checkpointer_.get());
    // Open one reader now so a broken setup fails at open, not at the first read.
    CLRK_ASSIGN_OR_RETURN(auto lease, readers_->acquire());
    (void)lease;
    return {};
  }

  Result<StoredObject> create(const ObjectKey& key, const RenderFn& render) override {
    std::lock_guard lock(write_mu_);
    Writer& w = *writer_;
    CLRK_RETURN_IF_ERROR(beginWrite());
    Transaction txn(w);
    {
      Use select(w.select_revision);
      select.key(key);
      CLRK_ASSIGN_OR_RETURN(bool exists, select.step());
      if (exists) return Status(Code::AlreadyExists, describeKey(key) + " already exists");
    }
    const int64_t revision = revision_ + 1;
    std::string value;
    CLRK_RETURN_IF_ERROR(renderValue(render, revision, value));
    {
      Use insert(w.insert);
      insert.key(key);
      insert.blob(4, value);
      insert.integer(5, revision);
      CLRK_RETURN_IF_ERROR(insert.run());
    }
    CLRK_RETURN_IF_ERROR(commitWrite(txn, revision));
    return publish(EventType::Added, StoredObject{key, std::move(value), revision});
  }

  Result<StoredObject> get(const ObjectKey& key) override {
    CLRK_ASSIGN_OR_RETURN(auto reader, readers_->acquire());
    Use select(reader->get);
    select.key(key);
    CLRK_ASSIGN_OR_RETURN(bool found, select.step());
    if (!found) return notFound(describeKey(key) + " not found");
    return StoredObject{key, select.columnString(0), select.columnInt(1)};
  }

  Result<StoredObject> update(const ObjectKey& key, int64_t expected_revision,
                              const RenderFn& render) override {
    std::lock_guard lock(write_mu_);
    Writer& w = *writer_;
    CLRK_RETURN_IF_ERROR(beginWrite());
    Transaction txn(w);
    {
      Use select(w.select_revision);
      select.key(key);
      CLRK_ASSIGN_OR_RETURN(bool exists, select.step());
      if (!exists) return notFound(describeKey(key) + " not found");
      const int64_t current = select.columnInt(0);
      if (expected_revision != 0 && expected_revision != current) {
        return conflictError(key, expected_revision, current);
      }
    }
    const int64_t revision = revision_ + 1;
    std::string value;
    CLRK_RETURN_IF_ERROR(renderValue(render, revision, value));
    {
      Use update(w.update);
      update.key(key);
      update.blob(4, value);
      update.integer(5, revision);
      CLRK_RETURN_IF_ERROR(update.run());
    }
    CLRK_RETURN_IF_ERROR(commitWrite(txn, revision));
    return publish(EventType::Modified, StoredObject{key, std::move(value), revision});
  }

  Result<StoredObject> remove(const ObjectKey& key, int64_t expected_revision) override {
    std::lock_guard lock(write_mu_);
    Writer& w = *writer_;
    CLRK_RETURN_IF_ERROR(beginWrite());
    Transaction txn(w);
    std::string value;
    {
      Use select(w.select_object);
      select.key(key);
      CLRK_ASSIGN_OR_RETURN(bool exists, select.step());
      if (!exists) return notFound(describeKey(key) + " not found");
      const int64_t current = select.columnInt(1);
      if (expected_revision != 0 && expected_revision != current) {
        return conflictError(key, expected_revision, current);
      }
      value = select.columnString(0);
    }
    const int64_t revision = revision_ + 1;
    {
      Use remove(w.remove);
      remove.key(key);
      CLRK_RETURN_IF_ERROR(remove.run());
    }
    CLRK_RETURN_IF_ERROR(commitWrite(txn, revision));
    return publish(EventType::Deleted, StoredObject{key, std::move(value), revision});
  }

  Result<ListResult> list(std::string_view resource, const ListOptions& options) override {
    if (options.limit < 0) return invalidArgument("limit must not be negative");
    ContinueToken from;
    const bool continued = !options.continue_token.empty();
    if (continued) {
      CLRK_ASSIGN_OR_RETURN(from, decodeContinueToken(options.continue_token));
    }
    const std::string_view ns = options.ns;
    // Where the page starts: strictly after (after_ns, after_name).
    std::string_view after_ns = ns;
    std::string_view after_name;
    if (continued) {
      if (ns.empty() || from.ns == ns) {
        after_ns = from.ns;
        after_name = from.name;
      } else if (from.ns > ns) {
        // The token points past this namespace: nothing is left.
        ListResult result;
        result.revision = from.revision;
        return result;
      }
    }

    CLRK_ASSIGN_OR_RETURN(auto reader, readers_->acquire());
    {
      Use begin(reader->begin);
      CLRK_RETURN_IF_ERROR(begin.run());
    }
    ListResult result;
    {
      Use meta(reader->meta_revision);
      CLRK_ASSIGN_OR_RETURN(bool row, meta.step());
      if (!row) return internalError("sqlite: the meta table has no revision");
      result.revision = continued ? from.revision : meta.columnInt(0);
    }
    bool more = false;
    {
      Use select(ns.empty() ? reader->list_all : reader->list_ns);
      select.text(1, resource);
      select.text(2, after_ns);
      select.text(3, after_name);
      // One row more than the page tells whether more remain; a limit too large to add one to
      // is no limit. Reserve only a bounded amount: the limit comes from the client.
      const bool limited = options.limit > 0 && options.limit < kNoLimit;
      select.integer(4, limited ? options.limit + 1 : -1);
      if (limited)
        result.items.reserve(static_cast<size_t>(std::min<int64_t>(options.limit, 1024)));
      while (true) {
        CLRK_ASSIGN_OR_RETURN(bool row, select.step());
        if (!row) break;
        if (limited && static_cast<int64_t>(result.items.size()) == options.limit) {
          more = true;
          break;
        }
        result.items.push_back(StoredObject{
            ObjectKey{std::string(resource), select.columnString(0), select.columnString(1)},
            select.columnString(2), select.columnInt(3)});
      }
    }
    if (more) {
      const ObjectKey& last = result.items.back().key;
      Use count(ns.empty() ? reader->count_all : reader->count_ns);
      count.text(1, resource);
      count.text(2, last.ns);
      count.text(3, last.name);
      CLRK_ASSIGN_OR_RETURN(bool row, count.step());
      if (row) result.remaining = count.columnInt(0);
      result.continue_token =
          encodeContinueToken(ContinueToken{result.revision, last.ns, last.name});
    }
    {
      Use commit(reader->commit);
      CLRK_RETURN_IF_ERROR(commit.run());
    }
    return result;
  }

  Result<WatchPtr> watch(std::string_view resource, std::string_view ns,
                         int64_t from_revision) override {
    return hub_.watch(resource, ns, from_revision);
  }

  int64_t currentRevision() override { return current_.load(std::memory_order_acquire); }

 private:
  struct Writer {
    Db db;
    Stmt begin;
    Stmt commit;
    Stmt rollback;
    Stmt select_revision;
    Stmt select_object;
    Stmt insert;
    Stmt update;
    Stmt remove;
    Stmt set_revision;
  };

  // Rolls the write transaction back unless it was committed.
  class Transaction {
   public:
    explicit Transaction(Writer& writer) : writer_(writer) {}
    ~Transaction() {
      if (!committed_ && sqlite3_get_autocommit(writer_.db.get()) == 0) {
        Use rollback(writer_.rollback);
        (void)rollback.run();
      }
    }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void markCommitted() { committed_ = true; }

   private:
    Writer& writer_;
    bool committed_ = false;
  };

  // REQUIRES: write_mu_ held.
  Status beginWrite() {
    Use begin(writer_->begin);
    return begin.run();
  }

  // REQUIRES: write_mu_ held, inside the transaction. Stores the revision and commits.
  Status commitWrite(Transaction& txn, int64_t revision) {
    {
      Use set(writer_->set_revision);
      set.integer(1, revision);
      CLRK_RETURN_IF_ERROR(set.run());
    }
    {
      Use commit(writer_->commit);
      CLRK_RETURN_IF_ERROR(commit.run());
    }
    txn.markCommitted();
    revision_ = revision;
    current_.store(revision, std::memory_order_release);
    return {};
  }

  // REQUIRES: write_mu_ held, the write committed.
  StoredObject publish(EventType type, StoredObject object) {
    hub_.publish(WatchEvent{type, object});
    return object;
  }

  const SqliteOptions options_;
  const int lock_fd_;
  std::mutex write_mu_;
  std::unique_ptr<Writer> writer_;  // used under write_mu_
  int64_t revision_ = 0;            // guarded by write_mu_
  std::atomic<int64_t> current_{0};
  std::optional<ReaderPool> readers_;
  std::unique_ptr<Checkpointer> checkpointer_;
  WatchHub hub_;
};

}  // namespace

Result<StoragePtr> openSqliteStorage(const SqliteOptions& options) {
  if (options.path.empty()) return invalidArgument("storage database path is empty");
  // Create the file ourselves so it is born 0600 (SQLite would use 0644 minus the umask).
  const int fd = ::open(options.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (fd < 0) {
    return Status(Code::Internal,
                  "cannot open storage database " + options.path + ": " + std::strerror(errno));
  }
  if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
    const int error = errno;
    ::close(fd);
    return internalError("cannot chmod storage database " + options.path + ": " +
                         std::strerror(error));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    ::close(fd);
    if (error == EWOULDBLOCK) {
      return Status(Code::Unavailable, "storage database " + options.path +
                                           " is already in use by another store or process");
    }
    return internalError("cannot lock storage database " + options.path + ": " +
                         std::strerror(error));
  }
  auto store = std::make_unique<SqliteStorage>(options, fd);
  if (Status status = store->open(); !status.ok()) {
    return status.withContext("opening storage database " + options.path);
  }
  return StoragePtr(std::move(store));
}

}  // namespace clrk::apiserver::storage
