#include "clrk/egress/dns/responder.h"

#include "clrk/base/log.h"
#include "clrk/egress/dns/message.h"

#include <fmt/format.h>

#include <charconv>
#include <exception>
#include <string_view>

namespace clrk::egress::dns {

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

// An answer without records; records `rcode` in the log entry.
std::vector<uint8_t> reply(const Query& q, uint8_t rcode, QueryLog& entry) {
  entry.rcode = rcode;
  return buildResponse(q, rcode, {}, 0);
}

}  // namespace

Responder::Responder(NameTable& table, Policy policy, Options options)
    : table_(table),
      policy_(std::move(policy)),
      options_(std::move(options)),
      log_(clrk::logger("dns")) {}

std::vector<uint8_t> Responder::respond(std::span<const uint8_t> packet,
                                        const std::string& client_ip, uint16_t client_port) const {
  try {
    return respondOrThrow(packet, client_ip, client_port);
  } catch (const std::exception& e) {  // allocation failure: drop the packet, keep serving
    log_->warn("dropped query from {}: {}", client_ip, e.what());
    return {};
  }
}

std::vector<uint8_t> Responder::respondOrThrow(std::span<const uint8_t> packet,
                                               const std::string& client_ip,
                                               uint16_t client_port) const {
  QueryLog entry;
  entry.client_ip = client_ip;
  entry.client_port = client_port;
  if (packet.size() < kHeaderSize || (packet[2] & 0x80) != 0) {
    log_->debug("dropped {}-byte packet from {}:{} (no header or a response)", packet.size(),
                entry.client_ip, entry.client_port);
    return {};
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
  log_->debug("{} {} from {} -> {}{}", typeName(entry.type), entry.name, entry.client_ip,
              rcodeName(entry.rcode), entry.answers.empty() ? "" : " " + entry.answers.front());
  if (options_.on_query) {
    try {
      options_.on_query(entry);
    } catch (const std::exception& e) {
      log_->warn("query log callback threw: {}", e.what());
    } catch (...) {
      log_->warn("query log callback threw");
    }
  }
  return out;
}

std::vector<uint8_t> Responder::answer(const Query& q, QueryLog& entry) const {
  const std::string& name = q.question.name;
  const uint16_t type = q.question.type;
  const auto ttl = static_cast<uint32_t>(options_.ttl.count());
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
                                     : table_.nameFor(*address);
    }
    if (!target) return reply(q, kRcodeNxDomain, entry);
    if (type != kTypePtr && type != kTypeAny) return reply(q, kRcodeNoError, entry);
    entry.rcode = kRcodeNoError;
    entry.answers.push_back(*target);
    return buildPtrResponse(q, *target, ttl);
  }

  Answer decision = Answer::kRefused;
  try {
    if (policy_) decision = policy_(name, entry.client_ip);
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
  auto address = table_.addressFor(name);
  if (!address.ok()) {
    entry.error = address.status().message();
    log_->warn("no synthetic address for {}: {}", name, entry.error);
    return reply(q, kRcodeServFail, entry);
  }
  entry.rcode = kRcodeNoError;
  entry.answers.push_back(formatIpv4(*address));
  return buildResponse(q, kRcodeNoError, std::span(&address.value(), 1), ttl);
}

}  // namespace clrk::egress::dns
