// bench/apiserver: figures for the embedded API server over real HTTPS on loopback.
//
// Starts the server in-process on SQLite (a temp state dir), then measures:
//   create   TaskAgents created per second with C concurrent keep-alive clients
//   get      single-object GETs per second
//   list     latency of listing N objects (full JSON list, as kubectl -o json does)
//   watch    create-to-event delivery latency (p50/p99) on a watch stream
// Targets (issue 2): >= 2,000 creates/s, list of 10,000 < 200 ms, watch p99 < 10 ms.
// Usage: apiserver_bench [--objects N] [--clients C] [--watch-events W]
#include "clrk/apiserver/server.h"
#include "clrk/base/ids.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

// One keep-alive HTTPS connection to the server.
class Client {
 public:
  Client(asio::io_context& io, asio::ssl::context& tls, uint16_t port, std::string token)
      : stream_(io, tls), token_(std::move(token)) {
    asio::ip::tcp::resolver resolver(io);
    beast::get_lowest_layer(stream_).connect(
        asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    stream_.handshake(asio::ssl::stream_base::client);
  }

  // Sends one request and returns the response; aborts the benchmark on transport errors.
  http::response<http::string_body> call(http::verb verb, const std::string& target,
                                         std::string body = {}) {
    http::request<http::string_body> request{verb, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.set(http::field::authorization, "Bearer " + token_);
    request.set(http::field::accept, "application/json");
    if (!body.empty()) {
      request.set(http::field::content_type, "application/json");
      request.body() = std::move(body);
      request.prepare_payload();
    }
    http::write(stream_, request);
    http::response<http::string_body> response;
    http::response_parser<http::string_body> parser;
    parser.body_limit(512 * 1024 * 1024);
    http::read(stream_, buffer_, parser);
    return parser.release();
  }

  beast::ssl_stream<beast::tcp_stream>& stream() { return stream_; }
  beast::flat_buffer& buffer() { return buffer_; }
  const std::string& token() const { return token_; }

 private:
  beast::ssl_stream<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
  std::string token_;
};

std::string taskAgentJson(const std::string& name) {
  return R"({"apiVersion":"clrk.apoxy.dev/v1alpha1","kind":"TaskAgent","metadata":{"name":")" +
         name +
         R"(","labels":{"bench":"yes"}},"spec":{"workerPoolRef":"default-workers","template":{"spec":{"image":"busybox"}}}})";
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  size_t idx = static_cast<size_t>(p * static_cast<double>(values.size() - 1));
  return values[idx];
}

int argInt(int argc, char** argv, const char* name, int fallback) {
  for (int arg_idx = 1; arg_idx + 1 < argc; ++arg_idx) {
    if (std::string(argv[arg_idx]) == name) return std::atoi(argv[arg_idx + 1]);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  const int objects = argInt(argc, argv, "--objects", 10000);
  const int clients = argInt(argc, argv, "--clients", 8);
  const int watch_events = argInt(argc, argv, "--watch-events", 500);
  const std::string collection = "/apis/clrk.apoxy.dev/v1alpha1/namespaces/default/taskagents";

  auto state_dir = std::filesystem::temp_directory_path() / ("clrk-bench-" + clrk::randomHex(4));
  clrk::apiserver::ServerOptions options;
  options.state_dir = state_dir;
  options.io_threads = 2;
  auto server = clrk::apiserver::makeServer(options);
  if (auto status = server->start(); !status.ok()) {
    std::fprintf(stderr, "server start failed: %s\n", status.toString().c_str());
    return 1;
  }
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  std::string ca = server->caCertificatePem();
  tls.add_certificate_authority(asio::buffer(ca));
  tls.set_verify_mode(asio::ssl::verify_peer);
  std::printf("apiserver bench: %d objects, %d clients, SQLite at %s\n", objects, clients,
              state_dir.c_str());

  // create: C clients each create objects/C TaskAgents over one keep-alive connection.
  std::atomic<int> failures{0};
  auto create_start = Clock::now();
  std::vector<std::thread> threads;
  for (int client_idx = 0; client_idx < clients; ++client_idx) {
    threads.emplace_back([&, client_idx] {
      asio::io_context client_io;
      Client client(client_io, tls, server->port(), server->token());
      for (int obj_idx = client_idx; obj_idx < objects; obj_idx += clients) {
        auto response = client.call(http::verb::post, collection,
                                    taskAgentJson("agent-" + std::to_string(obj_idx)));
        if (response.result_int() != 201) {
          if (failures++ < 3) {
            std::fprintf(stderr, "create -> %d %s\n", response.result_int(),
                         response.body().substr(0, 300).c_str());
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  double create_seconds = std::chrono::duration<double>(Clock::now() - create_start).count();
  std::printf("create: %d objects in %.2f s = %.0f creates/s (%d failures)  [target >= 2000/s]\n",
              objects, create_seconds, objects / create_seconds, failures.load());

  Client client(io, tls, server->port(), server->token());
  // get
  const int gets = 5000;
  auto get_start = Clock::now();
  for (int get_idx = 0; get_idx < gets; ++get_idx) {
    auto response =
        client.call(http::verb::get, collection + "/agent-" + std::to_string(get_idx % objects));
    if (response.result_int() != 200) failures++;
  }
  double get_seconds = std::chrono::duration<double>(Clock::now() - get_start).count();
  std::printf("get: %d gets in %.2f s = %.0f gets/s, mean %.0f us\n", gets, get_seconds,
              gets / get_seconds, get_seconds * 1e6 / gets);

  // list
  std::vector<double> list_ms;
  size_t list_bytes = 0;
  for (int round = 0; round < 5; ++round) {
    auto start = Clock::now();
    auto response = client.call(http::verb::get, collection);
    list_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    list_bytes = response.body().size();
    if (response.result_int() != 200) failures++;
  }
  std::printf("list: %d objects (%.1f MiB) p50 %.1f ms, best %.1f ms  [target < 200 ms]\n", objects,
              static_cast<double>(list_bytes) / (1024.0 * 1024.0), percentile(list_ms, 0.5),
              percentile(list_ms, 0.0));

  // watch: one watcher connection, one writer; measure create -> event receipt.
  {
    asio::io_context watch_io;
    Client watcher(watch_io, tls, server->port(), server->token());
    auto rv_response = client.call(http::verb::get, collection + "?limit=1");
    std::string body = rv_response.body();
    auto rv_pos = body.find("\"resourceVersion\":\"");
    std::string rv = body.substr(rv_pos + 19, body.find('"', rv_pos + 19) - rv_pos - 19);
    http::request<http::empty_body> request{http::verb::get,
                                            collection + "?watch=true&resourceVersion=" + rv, 11};
    request.set(http::field::host, "127.0.0.1");
    request.set(http::field::authorization, "Bearer " + server->token());
    http::write(watcher.stream(), request);
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    http::read_header(watcher.stream(), watcher.buffer(), parser);
    std::vector<double> latencies_ms;
    std::string pending;
    char chunk[65536];
    for (int event_idx = 0; event_idx < watch_events; ++event_idx) {
      auto sent = Clock::now();
      auto response = client.call(http::verb::post, collection,
                                  taskAgentJson("watched-" + std::to_string(event_idx)));
      if (response.result_int() != 201) failures++;
      while (pending.find('\n') == std::string::npos) {
        parser.get().body().data = chunk;
        parser.get().body().size = sizeof(chunk);
        beast::error_code ec;
        http::read_some(watcher.stream(), watcher.buffer(), parser, ec);
        if (ec && ec != http::error::need_buffer) {
          std::fprintf(stderr, "watch read: %s\n", ec.message().c_str());
          return 1;
        }
        pending.append(chunk, sizeof(chunk) - parser.get().body().size);
      }
      latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(Clock::now() - sent).count());
      pending.erase(0, pending.find('\n') + 1);
    }
    std::printf(
        "watch: %d events, create->event p50 %.2f ms, p99 %.2f ms, max %.2f ms  [target p99 < 10 "
        "ms]\n",
        watch_events, percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99),
        percentile(latencies_ms, 1.0));
    beast::error_code ignored;
    beast::get_lowest_layer(watcher.stream())
        .socket()
        .shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  }
  server->stop();
  std::filesystem::remove_all(state_dir);
  std::printf("failures: %d\n", failures.load());
  return failures.load() == 0 ? 0 : 1;
}
