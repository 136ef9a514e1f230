// bench/sandbox: sandbox start latency, idle density and teardown, measured on this machine with
// the real runtime (clrk::sandbox, backends gvisor and namespaces) and the real per-sandbox
// network (clrk::sandbox_net: netns + veth + nftables elements).
//
// Workloads (host rootfs, the host's binaries):
//   true     start-to-exit: /bin/true              first instruction: /bin/busybox echo R
//   python3  start-to-exit: python3 -c pass        first instruction: python3 -c "print('R')"
//   node     start-to-exit: node -e 0              first instruction: node -e "write('R\n')"
// "First instruction" = the process's first action writes a line to stdout; measured until the
// runtime hands that line to SandboxSpec::on_log (i.e. until the worker has read it).
//
// Modes:
//   cold   network allocate + prepare + start + (first line) + wait; teardown (destroy + release)
//          measured separately right after.
//   warm   a pool of networks allocated and sandboxes booted in advance (netns, veth, runsc
//          sandbox created and started with clrk-sandbox-launcher waiting as its process: what
//          the worker's warm pool holds); claim = launch (argv, env, stdin to the launcher,
//          which execs it) + wait.
// Idle density: N sandboxes running `sleep 3600`, each in its own network; memory = PSS sum of
//   every host process of the sandboxes (runsc boot/gofer/stubs or the namespaces init and its
//   children; found through Sandbox::hostPid(), sandbox ids in command lines and descendants;
//   helpers that share the worker's address space through CLONE_VM are not counted twice),
//   plus the kernel's share (delta of Slab + PageTables + KernelStack), and the system-wide
//   MemAvailable drop; extrapolated to 24 GiB. Stops early when MemAvailable would fall under
//   --reserve-gib. Teardown of the running idle sandboxes is timed too.
//
// Percentiles are nearest-rank over the iterations (p99 of 20 samples is their maximum).
// The machine is shared (2 vCPU, other builds running): figures are noisy.
//
// Usage: sandbox_bench [--iterations N] [--backends gvisor,namespaces]
//                      [--workloads true,python3,node] [--idle N] [--idle-backends gvisor]
//                      [--reserve-gib G] [--skip-cold] [--skip-warm] [--skip-idle]
// Needs root. Creates netns/veths/nft tables under tag "b<hex>" and state under
// /var/tmp/clrk-sandbox-bench-<pid>; removes all of it before exiting.
#include "clrk/base/ids.h"
#include "clrk/sandbox/net/network.h"
#include "clrk/sandbox/runtime.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <filesystem>
#include <fstream>
#include <linux/kcmp.h>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace clrk {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

double msSince(Clock::time_point start, Clock::time_point end) {
  return std::chrono::duration<double, std::milli>(end - start).count();
}

// Nearest-rank percentile; NaN-free: -1 when empty.
double percentile(std::vector<double> values, double p) {
  if (values.empty()) return -1;
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::min(values.size() - 1, rank == 0 ? 0 : rank - 1)];
}

struct Workload {
  std::string name;
  std::vector<std::string> exit_argv;
  std::vector<std::string> first_argv;
};

std::vector<Workload> allWorkloads() {
  return {
      {"true", {"/bin/true"}, {"/bin/busybox", "echo", "R"}},
      {"python3",
       {"/usr/bin/python3", "-c", "pass"},
       {"/usr/bin/python3", "-c", "print('R', flush=True)"}},
      {"node",
       {"/usr/bin/node", "-e", "0"},
       {"/usr/bin/node", "-e", "process.stdout.write('R\\n')"}},
  };
}

// When the first stdout line arrived (set from a runtime thread).
struct FirstLine {
  std::mutex mutex;
  std::optional<Clock::time_point> at;
  void mark() {
    std::lock_guard lock(mutex);
    if (!at) at = Clock::now();
  }
  std::optional<Clock::time_point> get() {
    std::lock_guard lock(mutex);
    return at;
  }
};

struct Env {
  std::unique_ptr<sandbox::net::NetworkManager> networks;
  std::map<std::string, std::unique_ptr<sandbox::Runtime>> runtimes;
  fs::path base;
  std::string token = randomHex(4);
  std::atomic<int> counter{0};

  std::string newId(const std::string& backend) {
    return fmt::format("esb-{}-{}-{}", backend.substr(0, 2), token, counter++);
  }
};

sandbox::SandboxSpec makeSpec(const std::string& id, std::vector<std::string> argv,
                              const std::string& netns_path,
                              const std::shared_ptr<FirstLine>& first) {
  sandbox::SandboxSpec spec;
  spec.id = id;
  spec.rootfs_kind = sandbox::RootfsKind::Host;
  spec.argv = std::move(argv);
  spec.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  spec.netns_path = netns_path;
  spec.timeout = 120s;
  if (first) {
    spec.on_log = [first](const sandbox::LogLine& line) {
      if (!line.is_stderr) first->mark();
    };
  }
  return spec;
}

struct Samples {
  std::vector<double> first, exit, teardown, allocate, prepare;
  std::vector<double> boot;        // warm: prepare + start of a booted sandbox (network excluded)
  double cpu_ms_per_sandbox = -1;  // warm: CPU of everything runsc ran, boot to teardown
  int failures = 0;
  std::string last_error;
};

void fail(Samples& samples, const std::string& what) {
  ++samples.failures;
  samples.last_error = what;
}

double childrenCpuMs() {
  rusage usage = {};
  ::getrusage(RUSAGE_CHILDREN, &usage);
  auto ms = [](const timeval& time) { return time.tv_sec * 1e3 + time.tv_usec / 1e3; };
  return ms(usage.ru_utime) + ms(usage.ru_stime);
}

// One cold run: allocate + prepare + start + wait; then destroy + release.
void runCold(Env& env, sandbox::Runtime& runtime, const std::vector<std::string>& argv,
             bool want_first, Samples& samples) {
  std::string id = env.newId(runtime.name());
  auto first = want_first ? std::make_shared<FirstLine>() : nullptr;
  auto t0 = Clock::now();
  auto network = env.networks->allocate(id);
  if (!network.ok()) return fail(samples, "allocate: " + network.status().toString());
  auto t1 = Clock::now();
  auto prepared = runtime.prepare(makeSpec(id, argv, network->netns_path, first));
  if (!prepared.ok()) {
    (void)env.networks->release(network.value());
    return fail(samples, "prepare: " + prepared.status().toString());
  }
  auto t2 = Clock::now();
  auto& box = *prepared.value();
  Status started = box.start();
  std::optional<sandbox::ExitStatus> exit;
  if (started.ok()) {
    auto waited = box.wait(60s);
    if (waited.ok()) exit = waited.value();
  }
  auto t3 = Clock::now();
  Status destroyed = box.destroy();
  // As the worker does: the veth is deleted on a background thread (its rules stay until then).
  Status released = env.networks->releaseSoon(network.value());
  auto t4 = Clock::now();
  if (released.ok()) released = env.networks->waitForReleases();  // outside the timed part
  if (!started.ok()) return fail(samples, "start: " + started.toString());
  if (!exit || exit->exit_code != 0) {
    return fail(samples, "exit: " + (exit ? exit->message : std::string("wait failed")));
  }
  if (!destroyed.ok() || !released.ok()) {
    return fail(samples, "teardown: " + destroyed.toString() + " " + released.toString());
  }
  if (want_first) {
    auto at = first->get();
    if (!at) return fail(samples, "no first line");
    samples.first.push_back(msSince(t0, *at));
  } else {
    samples.exit.push_back(msSince(t0, t3));
    samples.allocate.push_back(msSince(t0, t1));
    samples.prepare.push_back(msSince(t1, t2));
  }
  samples.teardown.push_back(msSince(t3, t4));
}

struct Pooled {
  std::string id;
  sandbox::net::SandboxNetwork network;
  std::unique_ptr<sandbox::Sandbox> box;
  std::shared_ptr<FirstLine> first;
};

// Warm: boot `count` sandboxes, then claim each (launch + wait).
void runWarm(Env& env, sandbox::Runtime& runtime, const std::vector<std::string>& argv,
             bool want_first, int count, Samples& samples) {
  // Every runsc process is reaped by the sandbox's shim and the shim by this process, so the
  // CPU of whole sandbox lives (boot, run, teardown) shows in RUSAGE_CHILDREN once destroyed.
  double cpu_before = childrenCpuMs();
  std::vector<Pooled> pool;
  for (int i = 0; i < count; ++i) {
    Pooled entry;
    entry.id = env.newId(runtime.name());
    if (want_first) entry.first = std::make_shared<FirstLine>();
    auto network = env.networks->allocate(entry.id);
    if (!network.ok()) {
      fail(samples, "allocate: " + network.status().toString());
      break;
    }
    entry.network = network.value();
    sandbox::SandboxSpec spec = makeSpec(entry.id, {}, entry.network.netns_path, nullptr);
    spec.await_launch = true;
    auto boot_start = Clock::now();
    auto prepared = runtime.prepare(spec);
    Status started = prepared.ok() ? (*prepared)->start() : prepared.status();
    samples.boot.push_back(msSince(boot_start, Clock::now()));
    if (!started.ok()) {
      (void)env.networks->release(entry.network);
      fail(samples, "boot: " + started.toString());
      break;
    }
    entry.box = std::move(prepared).value();
    pool.push_back(std::move(entry));
  }
  std::this_thread::sleep_for(200ms);  // let the pool settle (runsc sandboxes booted)
  for (auto& entry : pool) {
    sandbox::SandboxSpec process = makeSpec(entry.id, argv, "", entry.first);
    sandbox::Launch launch;
    launch.argv = process.argv;
    launch.env = process.env;
    launch.timeout = process.timeout;
    launch.on_log = process.on_log;
    auto t0 = Clock::now();
    Status started = entry.box->launch(std::move(launch));
    std::optional<sandbox::ExitStatus> exit;
    if (started.ok()) {
      auto waited = entry.box->wait(60s);
      if (waited.ok()) exit = waited.value();
    }
    auto t1 = Clock::now();
    Status destroyed = entry.box->destroy();
    Status released = env.networks->releaseSoon(entry.network);
    auto t2 = Clock::now();
    if (released.ok()) released = env.networks->waitForReleases();
    if (!started.ok()) {
      fail(samples, "start: " + started.toString());
      continue;
    }
    if (!exit || exit->exit_code != 0) {
      fail(samples, "exit: " + (exit ? exit->message : std::string("wait failed")));
      continue;
    }
    if (!destroyed.ok() || !released.ok()) {
      fail(samples, "teardown: " + destroyed.toString() + " " + released.toString());
      continue;
    }
    if (want_first) {
      auto at = entry.first->get();
      if (!at) {
        fail(samples, "no first line");
        continue;
      }
      samples.first.push_back(msSince(t0, *at));
    } else {
      samples.exit.push_back(msSince(t0, t1));
    }
    samples.teardown.push_back(msSince(t1, t2));
  }
  if (!pool.empty()) samples.cpu_ms_per_sandbox = (childrenCpuMs() - cpu_before) / pool.size();
}

// --------------------------------------------------------------------------------------------
// Memory accounting.

std::map<std::string, int64_t> meminfo() {
  std::map<std::string, int64_t> out;
  std::ifstream file("/proc/meminfo");
  std::string key;
  int64_t value = 0;
  std::string unit;
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream in(line);
    if (in >> key >> value) {
      key.pop_back();  // ':'
      out[key] = value * 1024;
    }
  }
  return out;
}

int64_t kernelBytes(const std::map<std::string, int64_t>& info) {
  auto get = [&](const char* key) {
    auto it = info.find(key);
    return it == info.end() ? 0 : it->second;
  };
  return get("Slab") + get("PageTables") + get("KernelStack");
}

std::string readAll(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  return {(std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>()};
}

struct ProcessInfo {
  int ppid = 0;
  std::string cmdline;
};

std::map<int, ProcessInfo> processTable() {
  std::map<int, ProcessInfo> table;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return table;
  while (dirent* entry = ::readdir(proc)) {
    int pid = std::atoi(entry->d_name);
    if (pid <= 0) continue;
    std::string stat = readAll(fmt::format("/proc/{}/stat", pid));
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    ProcessInfo info;
    rest >> state >> info.ppid;
    info.cmdline = readAll(fmt::format("/proc/{}/cmdline", pid));
    table[pid] = std::move(info);
  }
  ::closedir(proc);
  return table;
}

int64_t pssBytes(int pid) {
  std::ifstream file(fmt::format("/proc/{}/smaps_rollup", pid));
  std::string line;
  while (std::getline(file, line)) {
    if (line.rfind("Pss:", 0) == 0) return std::atoll(line.c_str() + 4) * 1024;
  }
  return 0;
}

// Host processes of the sandboxes: roots (host pids, command lines naming the bench's token)
// and all their descendants.
std::set<int> sandboxProcesses(const std::vector<int>& roots, const std::string& token) {
  auto table = processTable();
  std::set<int> found;
  for (int pid : roots) {
    if (pid > 0 && table.count(pid)) found.insert(pid);
  }
  for (const auto& [pid, info] : table) {
    if (pid != getpid() && info.cmdline.find(token) != std::string::npos) found.insert(pid);
  }
  bool grew = true;
  while (grew) {
    grew = false;
    for (const auto& [pid, info] : table) {
      if (!found.count(pid) && found.count(info.ppid) && pid != getpid()) {
        found.insert(pid);
        grew = true;
      }
    }
  }
  return found;
}

struct IdleResult {
  int requested = 0;
  int started = 0;
  int alive = 0;
  int processes = 0;
  int shared_mm = 0;  // processes sharing the bench's address space (not counted in pss)
  int64_t pss = 0;
  int64_t kernel = 0;
  int64_t available_drop = 0;
  double start_seconds = 0;
  std::vector<double> teardown;
  std::string note;
};

IdleResult runIdle(Env& env, sandbox::Runtime& runtime, int count, double reserve_gib) {
  IdleResult result;
  result.requested = count;
  struct Idle {
    sandbox::net::SandboxNetwork network;
    std::unique_ptr<sandbox::Sandbox> box;
  };
  std::vector<Idle> idle;
  auto before = meminfo();
  auto t0 = Clock::now();
  int64_t reserve = static_cast<int64_t>(reserve_gib * 1024 * 1024 * 1024);
  for (int i = 0; i < count; ++i) {
    if (i >= 10 && i % 10 == 0) {
      auto now = meminfo();
      int64_t used = before["MemAvailable"] - now["MemAvailable"];
      int64_t per = used / i;
      if (now["MemAvailable"] - per * 10 < reserve) {
        result.note =
            fmt::format("stopped at {}: MemAvailable {:.1f} GiB, reserve {:.1f} GiB", i,
                        static_cast<double>(now["MemAvailable"]) / (1 << 30), reserve_gib);
        break;
      }
    }
    std::string id = env.newId(runtime.name());
    auto network = env.networks->allocate(id);
    if (!network.ok()) {
      result.note = "allocate: " + network.status().toString();
      break;
    }
    auto prepared =
        runtime.prepare(makeSpec(id, {"/bin/sleep", "3600"}, network->netns_path, nullptr));
    if (!prepared.ok()) {
      (void)env.networks->release(network.value());
      result.note = "prepare: " + prepared.status().toString();
      break;
    }
    Status started = prepared.value()->start();
    idle.push_back({network.value(), std::move(prepared).value()});
    if (!started.ok()) {
      result.note = "start: " + started.toString();
      break;
    }
    ++result.started;
  }
  result.start_seconds = msSince(t0, Clock::now()) / 1000;
  std::this_thread::sleep_for(3s);
  std::vector<int> roots;
  for (auto& entry : idle) {
    roots.push_back(entry.box->hostPid());
    if (!entry.box->wait(0ms).ok()) ++result.alive;  // still running = wait timed out
  }
  auto after = meminfo();
  auto processes = sandboxProcesses(roots, env.token);
  result.processes = static_cast<int>(processes.size());
  for (int pid : processes) {
    // A helper cloned with CLONE_VM (the runtime's init/shim) shares this process's memory:
    // its PSS is ours, not the sandbox's.
    if (::syscall(SYS_kcmp, getpid(), pid, KCMP_VM, 0, 0) == 0) {
      ++result.shared_mm;
      continue;
    }
    result.pss += pssBytes(pid);
  }
  result.kernel = kernelBytes(after) - kernelBytes(before);
  result.available_drop = before["MemAvailable"] - after["MemAvailable"];
  for (auto& entry : idle) {
    auto t1 = Clock::now();
    Status destroyed = entry.box->destroy();
    Status released = env.networks->releaseSoon(entry.network);
    if (destroyed.ok() && released.ok()) result.teardown.push_back(msSince(t1, Clock::now()));
  }
  (void)env.networks->waitForReleases();
  return result;
}

// --------------------------------------------------------------------------------------------

std::string verdict(double value, double target) {
  if (value < 0) return "n/a";
  return value <= target ? "PASS" : "FAIL";
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

volatile std::sig_atomic_t interrupted = 0;

int run(int argc, char** argv) {
  int iterations = 20;
  int idle_count = 200;
  double reserve_gib = 4;
  std::vector<std::string> backends = {"gvisor", "namespaces"};
  std::vector<std::string> idle_backends = {"gvisor", "namespaces"};
  std::vector<std::string> workload_names = {"true", "python3", "node"};
  bool cold = true, warm = true, idle = true;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--iterations") {
      iterations = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--idle") {
      idle_count = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--reserve-gib") {
      reserve_gib = std::atof(next().c_str());
    } else if (arg == "--backends") {
      backends = split(next());
    } else if (arg == "--idle-backends") {
      idle_backends = split(next());
    } else if (arg == "--workloads") {
      workload_names = split(next());
    } else if (arg == "--skip-cold") {
      cold = false;
    } else if (arg == "--skip-warm") {
      warm = false;
    } else if (arg == "--skip-idle") {
      idle = false;
    } else {
      fmt::print(stderr,
                 "usage: sandbox_bench [--iterations N] [--backends a,b] [--workloads a,b] "
                 "[--idle N] [--idle-backends a,b] [--reserve-gib G] [--skip-cold] "
                 "[--skip-warm] [--skip-idle]\n");
      return 2;
    }
  }
  if (geteuid() != 0) {
    fmt::print(stderr, "sandbox_bench: needs root (netns, veth, nftables, runsc)\n");
    return 2;
  }

  Env env;
  env.base = fs::path("/var/tmp") / fmt::format("clrk-sandbox-bench-{}", getpid());
  sandbox::net::NetworkOptions net_options;
  net_options.tag = "b" + randomHex(1);
  unsigned seed = static_cast<unsigned>(std::stoul(randomHex(1), nullptr, 16));
  net_options.pool_cidr = fmt::format("10.{}.0.0/16", 150 + seed % 50);
  auto networks = sandbox::net::NetworkManager::create(net_options);
  if (!networks.ok()) {
    fmt::print(stderr, "sandbox::net: {}\n", networks.status().toString());
    return 1;
  }
  env.networks = std::move(networks).value();
  for (const auto& backend : backends) {
    sandbox::RuntimeOptions options;
    options.state_dir = env.base / backend;
    options.cgroup_parent = "clrk-bench-" + env.token;
    auto runtime = sandbox::makeRuntime(backend, options);
    if (!runtime.ok()) {
      fmt::print("backend {}: unavailable: {}\n", backend, runtime.status().toString());
      continue;
    }
    fmt::print("backend {}: limits: {}\n", backend, runtime.value()->limitsSupport());
    env.runtimes[backend] = std::move(runtime).value();
  }
  std::fflush(stdout);

  auto workloads = allWorkloads();
  std::erase_if(workloads, [&](const Workload& w) {
    return std::find(workload_names.begin(), workload_names.end(), w.name) == workload_names.end();
  });

  fmt::print("\nLatency, ms (p50 / p99 over {} iterations; nearest rank)\n", iterations);
  fmt::print("{:<11} {:<8} {:<5} {:>17} {:>17} {:>17} {:>15}  {}\n", "backend", "workload", "mode",
             "first line", "start-to-exit", "teardown", "target(exit)", "verdict");
  std::vector<double> all_teardown;
  for (const auto& [backend, runtime] : env.runtimes) {
    for (const auto& workload : workloads) {
      for (bool is_warm : {false, true}) {
        if ((is_warm && !warm) || (!is_warm && !cold) || interrupted) continue;
        Samples samples;
        if (is_warm) {
          runWarm(env, *runtime, workload.first_argv, true, iterations, samples);
          runWarm(env, *runtime, workload.exit_argv, false, iterations, samples);
        } else {
          runCold(env, *runtime, workload.first_argv, true, samples);  // warm-up, not counted
          samples = {};
          for (int i = 0; i < iterations && !interrupted; ++i) {
            runCold(env, *runtime, workload.first_argv, true, samples);
            runCold(env, *runtime, workload.exit_argv, false, samples);
          }
        }
        double target = -1;
        if (workload.name == "true") {
          if (backend == "gvisor") target = is_warm ? 30 : 200;
          if (backend == "namespaces") target = 15;
        }
        double p50 = percentile(samples.exit, 50);
        std::string target_text = target < 0 ? "-" : fmt::format("<= {:.0f}", target);
        std::string verdict_text = target < 0 ? "" : verdict(p50, target) + " (p50)";
        fmt::print(
            "{:<11} {:<8} {:<5} {:>8.1f} /{:>7.1f} {:>8.1f} /{:>7.1f} {:>8.1f} /{:>7.1f} {:>15}  "
            "{}",
            backend, workload.name, is_warm ? "warm" : "cold", percentile(samples.first, 50),
            percentile(samples.first, 99), p50, percentile(samples.exit, 99),
            percentile(samples.teardown, 50), percentile(samples.teardown, 99), target_text,
            verdict_text);
        if (!is_warm && !samples.allocate.empty()) {
          fmt::print("  [net allocate p50 {:.1f}, prepare p50 {:.1f}]",
                     percentile(samples.allocate, 50), percentile(samples.prepare, 50));
        }
        if (is_warm && !samples.boot.empty()) {
          fmt::print("  [boot p50 {:.1f}; CPU per sandbox, boot to teardown, {:.0f} ms]",
                     percentile(samples.boot, 50), samples.cpu_ms_per_sandbox);
        }
        if (samples.failures > 0) {
          fmt::print("  ({} failed; last: {})", samples.failures, samples.last_error);
        }
        fmt::print("\n");
        std::fflush(stdout);
        all_teardown.insert(all_teardown.end(), samples.teardown.begin(), samples.teardown.end());
      }
    }
  }
  if (!all_teardown.empty()) {
    fmt::print(
        "\nTeardown (destroy + release) after exit, all runs: p50 {:.1f} ms, p99 {:.1f} ms "
        "(target <= 50 ms: {} at p50)\n",
        percentile(all_teardown, 50), percentile(all_teardown, 99),
        verdict(percentile(all_teardown, 50), 50));
  }

  if (idle) {
    for (const auto& backend : idle_backends) {
      auto it = env.runtimes.find(backend);
      if (it == env.runtimes.end() || interrupted) continue;
      fmt::print("\nIdle density: {} sandboxes of {} running `sleep 3600`, each in its own netns\n",
                 idle_count, backend);
      std::fflush(stdout);
      IdleResult result = runIdle(env, *it->second, idle_count, reserve_gib);
      double n = std::max(1, result.started);
      double pss = static_cast<double>(result.pss) / n;
      double kernel = static_cast<double>(result.kernel) / n;
      double drop = static_cast<double>(result.available_drop) / n;
      double per = std::max(pss + kernel, drop);
      double mib = 1024.0 * 1024.0;
      fmt::print(
          "  started {} / {} in {:.1f} s, alive after 3 s: {}; host processes: {} ({:.1f} "
          "per sandbox)\n",
          result.started, result.requested, result.start_seconds, result.alive, result.processes,
          result.processes / n);
      fmt::print(
          "  ({} of them share the worker's address space (CLONE_VM helpers): not counted)\n",
          result.shared_mm);
      fmt::print(
          "  per sandbox: PSS {:.1f} MiB + kernel (Slab+PageTables+KernelStack) {:.1f} MiB "
          "= {:.1f} MiB; MemAvailable drop {:.1f} MiB\n",
          pss / mib, kernel / mib, (pss + kernel) / mib, drop / mib);
      fmt::print("  fit in 24 GiB (using the larger, {:.1f} MiB): {:.0f}  (target 200: {})\n",
                 per / mib, 24.0 * 1024 * mib / per,
                 24.0 * 1024 * mib / per >= 200 ? "PASS" : "FAIL");
      fmt::print("  held concurrently: {} (target 200: {})\n", result.alive,
                 result.alive >= 200 ? "PASS" : "FAIL");
      fmt::print(
          "  teardown of running idle sandboxes: p50 {:.1f} ms, p99 {:.1f} ms (target <= "
          "50 ms: {} at p50)\n",
          percentile(result.teardown, 50), percentile(result.teardown, 99),
          verdict(percentile(result.teardown, 50), 50));
      if (!result.note.empty()) fmt::print("  note: {}\n", result.note);
      std::fflush(stdout);
    }
  }

  env.runtimes.clear();
  (void)env.networks->releaseAll();
  (void)env.networks->destroyTables();
  std::error_code ignored;
  fs::remove_all(env.base, ignored);
  return 0;
}

}  // namespace
}  // namespace clrk

int main(int argc, char** argv) {
  std::signal(SIGINT, [](int) { clrk::interrupted = 1; });
  return clrk::run(argc, argv);
}
