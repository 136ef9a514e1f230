#include "clrk/egress/dns/server.h"

#include "clrk/base/log.h"
#include "clrk/egress/dns/message.h"

#include <boost/asio/buffer.hpp>
#include <fmt/format.h>

#include <array>
#include <charconv>
#include <exception>
#include <mutex>
#include <string_view>

namespace clrk::egress::dns {

namespace asio = boost::asio;
using asio::ip::udp;

struct DnsServer::State : std::enable_shared_from_this<DnsServer::State> {
  State(asio::io_context& io, NameTable& table, Policy policy, Options options)
      : socket(io),
        responder(table, std::move(policy),
                  Responder::Options{options.ttl, std::move(options.on_query)}) {}

  // REQUIRES: mutex held.
  void receive() {
    socket.async_receive_from(asio::buffer(buffer), sender,
                              [self = shared_from_this()](const boost::system::error_code& ec,
                                                          size_t n) { self->onReceive(ec, n); });
  }

  void onReceive(const boost::system::error_code& ec, size_t n) {
    std::lock_guard lock(mutex);
    if (stopped || ec == asio::error::operation_aborted) return;
    if (ec) {
      log->debug("receive failed: {}", ec.message());
    } else {
      handle(std::span<const uint8_t>(buffer.data(), n), sender);
    }
    if (socket.is_open()) receive();
  }

  void handle(std::span<const uint8_t> packet, const udp::endpoint& from) {
    boost::system::error_code ec;
    asio::ip::address client = from.address();
    if (client.is_v6() && client.to_v6().is_v4_mapped()) {
      client = asio::ip::make_address_v4(asio::ip::v4_mapped, client.to_v6());
    }
    const std::string client_ip = client.to_string(ec);
    std::vector<uint8_t> out = responder.respond(packet, client_ip, from.port());
    if (out.empty()) return;
    socket.send_to(asio::buffer(out), from, 0, ec);
    if (ec) log->debug("reply to {}:{} failed: {}", client_ip, from.port(), ec.message());
  }

  udp::socket socket;
  Responder responder;
  std::shared_ptr<spdlog::logger> log = clrk::logger("dns");

  std::mutex mutex;  // serialises handling with stop()
  bool stopped = false;
  std::array<uint8_t, 65536> buffer{};
  udp::endpoint sender;
};

Result<std::unique_ptr<DnsServer>> DnsServer::start(asio::io_context& io,
                                                    const udp::endpoint& listen, NameTable& table,
                                                    Policy policy) {
  return start(io, listen, table, std::move(policy), Options{});
}

Result<std::unique_ptr<DnsServer>> DnsServer::start(asio::io_context& io,
                                                    const udp::endpoint& listen, NameTable& table,
                                                    Policy policy, Options options) {
  if (!policy) return invalidArgument("DNS server: a policy is required");
  if (options.ttl.count() < 0 || options.ttl.count() > 0x7FFFFFFF) {
    return invalidArgument(fmt::format("DNS server: TTL {} s out of range", options.ttl.count()));
  }
  std::shared_ptr<State> state;
  try {
    state = std::make_shared<State>(io, table, std::move(policy), std::move(options));
  } catch (const std::exception& e) {
    return internalError(fmt::format("DNS server: {}", e.what()));
  }
  boost::system::error_code ec;
  const std::string where = fmt::format("{}:{}", listen.address().to_string(ec), listen.port());
  state->socket.open(listen.protocol(), ec);
  if (ec)
    return Status(Code::Unavailable, fmt::format("DNS server: open {}: {}", where, ec.message()));
  state->socket.bind(listen, ec);
  if (ec)
    return Status(Code::Unavailable, fmt::format("DNS server: bind {}: {}", where, ec.message()));
  const uint16_t port = state->socket.local_endpoint(ec).port();
  if (ec) {
    return Status(Code::Unavailable, fmt::format("DNS server: local endpoint: {}", ec.message()));
  }
  {
    std::lock_guard lock(state->mutex);
    state->receive();
  }
  state->log->info("DNS resolver listening on {}:{}", listen.address().to_string(ec), port);
  return std::unique_ptr<DnsServer>(new DnsServer(std::move(state), port));
}

DnsServer::~DnsServer() { stop(); }

void DnsServer::stop() {
  if (!state_) return;
  std::lock_guard lock(state_->mutex);
  if (state_->stopped) return;
  state_->stopped = true;
  boost::system::error_code ec;
  state_->socket.close(ec);
}

}  // namespace clrk::egress::dns
