// net_bench: allocate/release latency of per-sandbox networks (netns + veth + nft elements).
// Usage (root): net_bench [count] [spare_namespaces]   Prints percentiles; removes what it made.
#include "clrk/base/ids.h"
#include "clrk/base/log.h"
#include "clrk/sandbox/net/network.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void print(const char* what, std::vector<double> values) {
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  auto at = [&](double q) { return values[static_cast<size_t>(q * (values.size() - 1))]; };
  std::printf("%-34s n=%zu mean=%.2f p50=%.2f p90=%.2f max=%.2f ms\n", what, values.size(),
              sum / static_cast<double>(values.size()), at(0.5), at(0.9), values.back());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace clrk::sandbox::net;
  int count = argc > 1 ? std::atoi(argv[1]) : 40;
  if (count < 1 || count > 60) count = 40;
  if (std::getenv("CLRK_NET_DEBUG") != nullptr) clrk::setLogLevel("debug");
  NetworkOptions options;
  options.tag = fmt::format("n{}", clrk::randomHex(1));  // bench/sandbox uses "b.."
  options.pool_cidr = fmt::format("10.254.{}.0/24", std::stoi(clrk::randomHex(1), nullptr, 16));
  options.egress_tcp_port = 1;  // no traffic is sent
  options.egress_dns_port = 2;
  if (argc > 2) options.spare_namespaces = std::atoi(argv[2]);
  auto start = Clock::now();
  auto manager = NetworkManager::create(options);
  if (!manager.ok()) {
    std::fprintf(stderr, "%s\n", manager.status().toString().c_str());
    return 1;
  }
  std::printf("create (sweep + tables): %.2f ms\n", since(start));
  std::vector<double> allocate_ms, spaced_ms, release_ms, soon_ms;
  std::vector<SandboxNetwork> made;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < count; ++i) {
      // Round 1 leaves the spare-namespace filler time to keep up, as a worker would.
      if (round == 1) std::this_thread::sleep_for(std::chrono::milliseconds(25));
      start = Clock::now();
      auto network = manager.value()->allocate(fmt::format("bench-{}", i));
      (round == 0 ? allocate_ms : spaced_ms).push_back(since(start));
      if (!network.ok()) {
        std::fprintf(stderr, "%s\n", network.status().toString().c_str());
        break;
      }
      made.push_back(network.value());
    }
    for (const auto& network : made) {
      start = Clock::now();
      clrk::Status status =
          round == 0 ? manager.value()->release(network) : manager.value()->releaseSoon(network);
      (round == 0 ? release_ms : soon_ms).push_back(since(start));
      if (!status.ok()) std::fprintf(stderr, "%s\n", status.toString().c_str());
    }
    made.clear();
    start = Clock::now();
    (void)manager.value()->waitForReleases();
    if (round == 1)
      std::printf("background releases drained %.2f ms after the last call\n", since(start));
  }
  for (int i = 0; i < count; ++i) {
    if (!manager.value()->allocate(fmt::format("all-{}", i)).ok()) break;
  }
  start = Clock::now();
  (void)manager.value()->releaseAll();
  std::printf("releaseAll of %d networks: %.2f ms\n", count, since(start));
  print("allocate back-to-back", allocate_ms);
  print("allocate 25 ms apart", spaced_ms);
  print("release", release_ms);
  print("releaseSoon", soon_ms);
  (void)manager.value()->releaseAll();
  (void)manager.value()->destroyTables();
  return 0;
}
