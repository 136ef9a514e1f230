// Micro benchmarks of the storage backends: create, update, get, list of 10,000 objects, and
// end-to-end watch delivery latency (write call -> event out of next() on another thread).
// Databases live in a temporary directory on the same filesystem as $TMPDIR (or /tmp).
#include "clrk/apiserver/storage/storage.h"

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace clrk::apiserver::storage {
namespace {

constexpr std::string_view kResource = "clrk.apoxy.dev/taskagents";
constexpr int kListObjects = 10000;

// A JSON-ish value of about 1 KiB, the size of a typical small custom resource.
std::string sampleValue(int64_t revision) {
  std::string value = R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"TaskAgent","metadata":{)"
                      R"("name":"agent","namespace":"default","resourceVersion":")";
  value += std::to_string(revision);
  value += R"("},"spec":{"prompt":")";
  value.append(900, 'x');
  value += R"("}})";
  return value;
}
const RenderFn kRender = [](int64_t revision) { return sampleValue(revision); };

class TempDb {
 public:
  TempDb() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr ? base : "/tmp") + "/clrk-storage-bench-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    dir_ = pattern;
  }
  ~TempDb() {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  TempDb(const TempDb&) = delete;
  TempDb& operator=(const TempDb&) = delete;
  std::string path() const { return dir_ + "/bench.db"; }

 private:
  std::string dir_;
};

enum Kind : int64_t { kMemory = 0, kSqlite = 1, kSqliteFull = 2 };

StoragePtr openStore(int64_t kind, const TempDb& db) {
  if (kind == kMemory) return makeMemoryStorage();
  SqliteOptions options;
  options.path = db.path();
  options.sync_full = kind == kSqliteFull;
  auto store = openSqliteStorage(options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().toString().c_str());
    std::abort();
  }
  return std::move(store).value();
}

const char* kindName(int64_t kind) {
  return kind == kMemory ? "memory" : kind == kSqlite ? "sqlite" : "sqlite-sync-full";
}

ObjectKey key(int64_t i) {
  return ObjectKey{std::string(kResource), "ns" + std::to_string(i % 10),
                   "agent-" + std::to_string(i)};
}

void populate(Storage& store, int count) {
  for (int i = 0; i < count; ++i) {
    if (!store.create(key(i), kRender).ok()) std::abort();
  }
}

void BM_Create(benchmark::State& state) {
  TempDb db;
  auto store = openStore(state.range(0), db);
  int64_t i = 0;
  for (auto _ : state) {
    auto created = store->create(key(i++), kRender);
    if (!created.ok()) state.SkipWithError(created.status().toString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(kindName(state.range(0)));
}
BENCHMARK(BM_Create)->Arg(kMemory)->Arg(kSqlite)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Create)->Arg(kSqliteFull)->Unit(benchmark::kMicrosecond)->Iterations(300);

// Several threads creating concurrently into one store.
void BM_CreateParallel(benchmark::State& state) {
  static TempDb* db = nullptr;
  static StoragePtr store;
  static std::atomic<int64_t> next{0};
  if (state.thread_index() == 0) {
    db = new TempDb();
    store = openStore(kSqlite, *db);
  }
  for (auto _ : state) {
    auto created = store->create(key(next++), kRender);
    if (!created.ok()) state.SkipWithError(created.status().toString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0) {
    store.reset();
    delete db;
    db = nullptr;
  }
}
BENCHMARK(BM_CreateParallel)->Threads(4)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_Update(benchmark::State& state) {
  TempDb db;
  auto store = openStore(state.range(0), db);
  populate(*store, 1000);
  int64_t i = 0;
  for (auto _ : state) {
    auto updated = store->update(key(i++ % 1000), 0, kRender);
    if (!updated.ok()) state.SkipWithError(updated.status().toString().c_str());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(kindName(state.range(0)));
}
BENCHMARK(BM_Update)->Arg(kMemory)->Arg(kSqlite)->Unit(benchmark::kMicrosecond);

void BM_Get(benchmark::State& state) {
  TempDb db;
  auto store = openStore(state.range(0), db);
  populate(*store, kListObjects);
  int64_t i = 0;
  for (auto _ : state) {
    auto got = store->get(key((i++ * 7919) % kListObjects));
    if (!got.ok()) state.SkipWithError(got.status().toString().c_str());
    benchmark::DoNotOptimize(got);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(kindName(state.range(0)));
}
BENCHMARK(BM_Get)->Arg(kMemory)->Arg(kSqlite)->Unit(benchmark::kMicrosecond);

// One unpaginated list of 10,000 objects (~10 MB of values).
void BM_List10k(benchmark::State& state) {
  TempDb db;
  auto store = openStore(state.range(0), db);
  populate(*store, kListObjects);
  for (auto _ : state) {
    auto listed = store->list(kResource, {});
    if (!listed.ok() || listed->items.size() != kListObjects) state.SkipWithError("bad list");
    benchmark::DoNotOptimize(listed);
  }
  state.SetItemsProcessed(state.iterations() * kListObjects);
  state.SetLabel(kindName(state.range(0)));
}
BENCHMARK(BM_List10k)->Arg(kMemory)->Arg(kSqlite)->Unit(benchmark::kMillisecond);

// The same 10,000 objects in pages of 500 (what kubectl and informers do).
void BM_List10kPaged(benchmark::State& state) {
  TempDb db;
  auto store = openStore(state.range(0), db);
  populate(*store, kListObjects);
  for (auto _ : state) {
    ListOptions options;
    options.limit = 500;
    size_t total = 0;
    while (true) {
      auto page = store->list(kResource, options);
      if (!page.ok()) {
        state.SkipWithError(page.status().toString().c_str());
        break;
      }
      total += page->items.size();
      if (page->continue_token.empty()) break;
      options.continue_token = std::move(page->continue_token);
    }
    if (total != kListObjects) state.SkipWithError("bad paged list");
  }
  state.SetItemsProcessed(state.iterations() * kListObjects);
  state.SetLabel(kindName(state.range(0)));
}
BENCHMARK(BM_List10kPaged)->Arg(kMemory)->Arg(kSqlite)->Unit(benchmark::kMillisecond);

// Latency from just before a create() call to the event leaving next() on a watcher thread,
// with `range(1)` watchers on the resource and `range(2)` microseconds between writes (0: as fast
// as possible, so events batch up). Reports p50/p99/max in microseconds.
void BM_WatchDelivery(benchmark::State& state) {
  using Clock = std::chrono::steady_clock;
  TempDb db;
  auto store = openStore(state.range(0), db);
  const int watchers = static_cast<int>(state.range(1));
  const std::chrono::microseconds pace(state.range(2));  // pause between writes (0 = flat out)
  constexpr size_t kMax = 1 << 20;
  std::vector<Clock::time_point> sent(kMax);
  std::vector<std::vector<double>> latencies(watchers);
  std::vector<std::thread> threads;
  std::vector<WatchPtr> watches;
  for (int w = 0; w < watchers; ++w) {
    auto watch = store->watch(kResource, "", 0);
    if (!watch.ok()) std::abort();
    watches.push_back(std::move(*watch));
  }
  for (int w = 0; w < watchers; ++w) {
    threads.emplace_back([&, w] {
      while (true) {
        auto events = watches[w]->next(std::chrono::milliseconds(1000));
        if (!events.ok()) return;
        const auto now = Clock::now();
        for (const auto& event : *events) {
          const auto rev = static_cast<size_t>(event.object.revision);
          // The send stamp is written before create(); the event exists only after it.
          if (rev < kMax) {
            latencies[w].push_back(
                std::chrono::duration<double, std::micro>(now - sent[rev]).count());
          }
        }
      }
    });
  }
  int64_t i = 0;
  for (auto _ : state) {
    const auto revision = static_cast<size_t>(store->currentRevision() + 1);
    if (revision < kMax) sent[revision] = Clock::now();
    auto created = store->create(key(i++), kRender);
    if (!created.ok()) state.SkipWithError(created.status().toString().c_str());
    if (pace.count() > 0) std::this_thread::sleep_for(pace);
  }
  // Let the watchers drain, then end them.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (auto& watch : watches) watch->stop();
  for (auto& thread : threads) thread.join();
  std::vector<double> all;
  for (auto& list : latencies) all.insert(all.end(), list.begin(), list.end());
  std::sort(all.begin(), all.end());
  if (!all.empty()) {
    state.counters["p50_us"] = all[all.size() / 2];
    state.counters["p99_us"] = all[all.size() * 99 / 100];
    state.counters["max_us"] = all.back();
  }
  state.counters["delivered"] = static_cast<double>(all.size());
  state.SetItemsProcessed(state.iterations());
  state.SetLabel(kindName(state.range(0)));
}
BENCHMARK(BM_WatchDelivery)
    ->Args({kMemory, 1, 0})
    ->Args({kSqlite, 1, 0})
    ->Args({kSqlite, 8, 0})
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(20000);
BENCHMARK(BM_WatchDelivery)
    ->Args({kSqlite, 1, 500})
    ->Args({kSqlite, 8, 500})
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(2000);

}  // namespace
}  // namespace clrk::apiserver::storage

BENCHMARK_MAIN();
