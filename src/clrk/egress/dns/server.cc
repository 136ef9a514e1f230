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

namespace {

constexpr std::string_view kReverseV4Suffix = ".in-addr.arpa";
constexpr std::string_view kReverseV6Suffix = ".ip6.arpa";
constexpr Ipv4 kLoopback = {127, 0, 0, 1};

bool endsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool isLocalhost(std::string_view name) {
  return name == "localhost" || endsWith(name, ".localhost");
}

// "4.3.2.1.in-addr.arpa" -> 1.2.3.4; nullopt unless exactly four decimal octets.
std::optional<Ipv4> reverseV4(std::string_view name) {
  if (!endsWith(name, kReverseV4Suffix)) return std::nullopt;
  std::string_view rest = name.substr(0, name.size() - kReverseV4Suffix.size());
  Ipv4 out{};
  for (int i = 3; i >= 0; --i) {
    size_t dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.empty() || label.size() > 3 || (label.size() > 1 && label[0] == '0')) {
      return std::nullopt;
    }
    unsigned value = 0;
    auto [ptr, ec] = std::from_chars(label.data(), label.data() + label.size(), value);
    if (ec != std::errc() || ptr != label.data() + label.size() || value > 255) {
      return std::nullopt;
    }
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(value);
    if (i == 0) {
      if (dot != std::string_view::npos) return std::nullopt;
    } else {
      if (dot == std::string_view::npos) return std::nullopt;
      rest = rest.substr(dot + 1);
    }
  }
  return out;
}

}  // namespace

struct DnsServer::State : std::enable_shared_from_this<DnsServer::State> {
  State(asio::io_context& io, NameTable& name_table, Policy decide, Options opts)
      : socket(io), table(name_table), policy(std::move(decide)), options(std::move(opts)) {}

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
    QueryLog entry;
    boost::system::error_code ec;
    asio::ip::address client = from.address();
    if (client.is_v6() && client.to_v6().is_v4_mapped()) {
      client = asio::ip::make_address_v4(asio::ip::v4_mapped, client.to_v6());
    }
    entry.client_ip = client.to_string(ec);
    entry.client_port = from.port();
    if (packet.size() < kHeaderSize || (packet[2] & 0x80) != 0) {
      log->debug("dropped {}-byte packet from {}:{} (no header or a response)", packet.size(),
                 entry.client_ip, entry.client_port);
      return;
    }
    std::vector<uint8_t> out;
    const uint8_t opcode = static_cast<uint8_t>((packet[2] >> 3) & 0x0F);
    if (opcode != 0) {
      entry.rcode = kRcodeNotImp;
      entry.error = fmt::format("opcode {} is not supported", opcode);
      out = buildError(packet, kRcodeNotImp);
    } else if (auto query = parseQuery(packet); !query.ok()) {
      entry.rcode = kRcodeFormErr;
      entry.error = query.status().message();
      out = buildError(packet, kRcodeFormErr);
    } else {
      out = answer(*query, entry);
    }
    log->debug("{} {} from {} -> {}{}", typeName(entry.type), entry.name, entry.client_ip,
               rcodeName(entry.rcode), entry.answers.empty() ? "" : " " + entry.answers.front());
    if (options.on_query) {
      try {
        options.on_query(entry);
      } catch (const std::exception& e) {
        log->warn("query log callback threw: {}", e.what());
      } catch (...) {
        log->warn("query log callback threw");
      }
    }
    // Sent after the log callback so whoever sees the reply can rely on the record existing.
    socket.send_to(asio::buffer(out), from, 0, ec);
    if (ec) {
      log->debug("reply to {}:{} failed: {}", entry.client_ip, entry.client_port, ec.message());
    }
  }

  std::vector<uint8_t> reply(const Query& q, uint8_t rcode, QueryLog& entry) {
    entry.rcode = rcode;
    return buildResponse(q, rcode, {}, 0);
  }

  std::vector<uint8_t> answer(const Query& q, QueryLog& entry) {
    const std::string& name = q.question.name;
    const uint16_t type = q.question.type;
    const auto ttl = static_cast<uint32_t>(options.ttl.count());
    entry.name = name;
    entry.type = type;
    if (q.has_edns && q.edns_version != 0) return reply(q, kRcodeBadVers, entry);
    if (q.question.klass != kClassIn && q.question.klass != kClassAny) {
      return reply(q, kRcodeRefused, entry);
    }
    if (isLocalhost(name)) {
      if (type != kTypeA && type != kTypeAny) return reply(q, kRcodeNoError, entry);
      entry.rcode = kRcodeNoError;
      entry.answers.push_back(formatIpv4(kLoopback));
      return buildResponse(q, kRcodeNoError, std::span(&kLoopback, 1), ttl);
    }
    if (name.empty()) return reply(q, kRcodeRefused, entry);
    if (endsWith(name, kReverseV4Suffix) || name == kReverseV4Suffix.substr(1) ||
        endsWith(name, kReverseV6Suffix) || name == kReverseV6Suffix.substr(1)) {
      std::optional<std::string> target;
      if (auto address = reverseV4(name)) {
        target = *address == kLoopback ? std::optional<std::string>("localhost")
                                       : table.nameFor(*address);
      }
      if (!target) return reply(q, kRcodeNxDomain, entry);
      if (type != kTypePtr && type != kTypeAny) return reply(q, kRcodeNoError, entry);
      entry.rcode = kRcodeNoError;
      entry.answers.push_back(*target);
      return buildPtrResponse(q, *target, ttl);
    }

    Answer decision = Answer::kRefused;
    try {
      decision = policy(name, entry.client_ip);
    } catch (const std::exception& e) {
      entry.error = fmt::format("policy threw: {}", e.what());
      return reply(q, kRcodeServFail, entry);
    } catch (...) {
      entry.error = "policy threw";
      return reply(q, kRcodeServFail, entry);
    }
    entry.decision = decision;
    switch (decision) {
      case Answer::kNxDomain:
        return reply(q, kRcodeNxDomain, entry);
      case Answer::kRefused:
        return reply(q, kRcodeRefused, entry);
      case Answer::kSynthetic:
        break;
      default:
        entry.error = "policy returned an unknown answer";
        return reply(q, kRcodeServFail, entry);
    }
    if (type != kTypeA && type != kTypeAny) return reply(q, kRcodeNoError, entry);
    auto address = table.addressFor(name);
    if (!address.ok()) {
      entry.error = address.status().message();
      log->warn("no synthetic address for {}: {}", name, entry.error);
      return reply(q, kRcodeServFail, entry);
    }
    entry.rcode = kRcodeNoError;
    entry.answers.push_back(formatIpv4(*address));
    return buildResponse(q, kRcodeNoError, std::span(&address.value(), 1), ttl);
  }

  udp::socket socket;
  NameTable& table;
  Policy policy;
  Options options;
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
