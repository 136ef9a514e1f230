// e2e_bench: trigger-to-response latency and sustained executions/s of TaskAgent HTTP triggers
// against a running `clrk dev` stack (it reads $CLRK_HOME/state/trigger.url). Apply the agents
// first (bench/e2e/README.md), then:
//   e2e_bench --agent bench-true [--requests 200] [--pause-ms 0] [--concurrency 8] [--seconds 30]
// Phase 1 sends --requests requests one at a time, --pause-ms apart (latency p50/p90/p99/max; a
// pause lets a warm pool refill between requests, so it measures claims rather than how fast
// the pool boots); phase 2 keeps
// --concurrency requests in flight for --seconds (executions/s, errors by status). Prints figures;
// asserts nothing.
#include "clrk/base/files.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

struct Target {
  std::string host;
  std::string port;
  std::string path;
};

// One keep-alive connection posting to the trigger.
class TriggerClient {
 public:
  explicit TriggerClient(const Target& target)
      : target_(target), stream_(std::make_unique<beast::tcp_stream>(ioc_)) {}

  // HTTP status, or 0 on a transport error (the connection is reopened next time).
  int post(const std::string& body) {
    try {
      if (!connected_) {
        net::ip::tcp::resolver resolver(ioc_);
        stream_->connect(resolver.resolve(target_.host, target_.port));
        connected_ = true;
      }
      http::request<http::string_body> request{http::verb::post, target_.path, 11};
      request.set(http::field::host, target_.host);
      request.set(http::field::content_type, "application/json");
      request.keep_alive(true);
      request.body() = body;
      request.prepare_payload();
      http::write(*stream_, request);
      http::response<http::string_body> response;
      http::read(*stream_, buffer_, response);
      if (!response.keep_alive()) close();
      return response.result_int();
    } catch (const std::exception&) {
      close();
      return 0;
    }
  }

 private:
  void close() {
    beast::error_code ec;
    stream_->socket().close(ec);
    stream_ = std::make_unique<beast::tcp_stream>(ioc_);
    buffer_.clear();
    connected_ = false;
  }

  Target target_;
  net::io_context ioc_;
  std::unique_ptr<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  bool connected_ = false;
};

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t index = static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[std::min(index, values.size() - 1)];
}

std::string flag(int argc, char** argv, const std::string& name, const std::string& fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (argv[i] == name) return argv[i + 1];
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  std::string agent = flag(argc, argv, "--agent", "bench-true");
  std::string ns = flag(argc, argv, "--namespace", "default");
  int requests = std::atoi(flag(argc, argv, "--requests", "200").c_str());
  int concurrency = std::atoi(flag(argc, argv, "--concurrency", "8").c_str());
  int seconds = std::atoi(flag(argc, argv, "--seconds", "30").c_str());
  int pause_ms = std::atoi(flag(argc, argv, "--pause-ms", "0").c_str());
  std::string url = flag(argc, argv, "--url", "");
  if (url.empty()) {
    auto home = clrk::clrkHome();
    auto text = home.ok() ? clrk::readFile(*home / "state" / "trigger.url")
                          : clrk::Result<std::string>(home.status());
    if (!text.ok()) {
      std::fprintf(stderr, "e2e_bench: no trigger URL (is clrk dev up?): %s\n",
                   text.status().message().c_str());
      return 1;
    }
    url = text->substr(0, text->find('\n'));
  }
  // url = http://HOST:PORT
  std::string rest = url.substr(url.find("://") + 3);
  Target target{rest.substr(0, rest.rfind(':')), rest.substr(rest.rfind(':') + 1),
                "/v1/namespaces/" + ns + "/taskagents/" + agent + "/invoke"};
  std::printf("e2e_bench: %s%s\n", url.c_str(), target.path.c_str());

  // Phase 1: one request at a time.
  TriggerClient client(target);
  std::vector<double> latencies_ms;
  int failures = 0;
  for (int i = 0; i < requests; ++i) {
    if (i > 0 && pause_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    auto start = Clock::now();
    int status = client.post("{\"i\":" + std::to_string(i) + "}");
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (status == 200) {
      latencies_ms.push_back(ms);
    } else {
      ++failures;
    }
  }
  std::printf(
      "sequential: %d requests (%d ms apart), %d failed; trigger-to-response p50 %.1f ms, p90 %.1f "
      "ms, "
      "p99 %.1f ms, max %.1f ms\n",
      requests, pause_ms, failures, percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.9),
      percentile(latencies_ms, 0.99), percentile(latencies_ms, 1.0));

  // Phase 2: `concurrency` requests in flight for `seconds`.
  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::map<int, int> statuses;
  std::vector<double> loaded_ms;
  std::vector<std::thread> threads;
  auto begin = Clock::now();
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      TriggerClient worker_client(target);
      int n = 0;
      while (!stop.load()) {
        auto start = Clock::now();
        int status = worker_client.post("{\"t\":" + std::to_string(t) +
                                        ",\"n\":" + std::to_string(n++) + "}");
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        std::lock_guard lock(mutex);
        ++statuses[status];
        if (status == 200) loaded_ms.push_back(ms);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  stop = true;
  for (auto& thread : threads) thread.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - begin).count();
  int ok = statuses[200];
  std::printf(
      "sustained: %d in flight for %.1f s: %d succeeded (%.1f executions/s); latency p50 "
      "%.1f ms, p99 %.1f ms; statuses:",
      concurrency, elapsed, ok, ok / elapsed, percentile(loaded_ms, 0.5),
      percentile(loaded_ms, 0.99));
  for (const auto& [status, count] : statuses) std::printf(" %d×%d", status, count);
  std::printf("\n");
  return 0;
}
