// clrk-mock-providers: runs a MockServer until SIGTERM/SIGINT.
//
//   clrk-mock-providers [--listen 127.0.0.1:0] [--tls-cert F --tls-key F] [--port-file F]
//                       [--name NAME] [--fail-status N] [--mcp-sse]
//
// Prints "listening on <base url>" on stdout once bound; --port-file receives the port.
#include "clrk/base/files.h"
#include "clrk/mockprovider/mock_server.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

int usage(const std::string& error) {
  std::cerr << "clrk-mock-providers: " << error << "\n"
            << "usage: clrk-mock-providers [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE]\n"
            << "                           [--port-file FILE] [--name NAME] [--fail-status N]\n"
            << "                           [--mcp-sse]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  clrk::mockprovider::MockOptions options;
  std::string cert_file, key_file, port_file;
  for (int arg_idx = 1; arg_idx < argc; ++arg_idx) {
    std::string arg = argv[arg_idx];
    auto next = [&](std::string& out) {
      if (arg_idx + 1 >= argc) return false;
      out = argv[++arg_idx];
      return true;
    };
    std::string value;
    if (arg == "--help" || arg == "-h") {
      usage("mock OpenAI, Anthropic, Gemini and MCP upstreams");
      return 0;
    } else if (arg == "--mcp-sse") {
      options.mcp_sse = true;
    } else if (!next(value)) {
      return usage("unknown flag or missing value: " + arg);
    } else if (arg == "--listen") {
      options.listen = value;
    } else if (arg == "--tls-cert") {
      cert_file = value;
    } else if (arg == "--tls-key") {
      key_file = value;
    } else if (arg == "--port-file") {
      port_file = value;
    } else if (arg == "--name") {
      options.name = value;
    } else if (arg == "--fail-status") {
      try {
        options.fail_status = std::stoi(value);
      } catch (...) {
        return usage("--fail-status needs an integer, got \"" + value + "\"");
      }
    } else {
      return usage("unknown flag: " + arg);
    }
  }
  if (cert_file.empty() != key_file.empty()) return usage("--tls-cert and --tls-key go together");
  if (!cert_file.empty()) {
    auto cert = clrk::readFile(cert_file);
    if (!cert.ok()) return usage(cert.status().toString());
    auto key = clrk::readFile(key_file);
    if (!key.ok()) return usage(key.status().toString());
    options.tls_cert_pem = *cert;
    options.tls_key_pem = *key;
  }

  // Block the stop signals before the server thread starts so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto server = clrk::mockprovider::MockServer::start(options);
  if (!server.ok()) {
    std::cerr << "clrk-mock-providers: " << server.status().toString() << "\n";
    return 1;
  }
  if (!port_file.empty()) {
    clrk::Status written =
        clrk::writeFileAtomic(port_file, std::to_string((*server)->port()) + "\n");
    if (!written.ok()) {
      std::cerr << "clrk-mock-providers: " << written.toString() << "\n";
      return 1;
    }
  }
  std::cout << "listening on " << (*server)->baseUrl() << std::endl;
  int received = 0;
  sigwait(&signals, &received);
  (*server)->stop();
  std::cout << "stopped on signal " << received << std::endl;
  return 0;
}
