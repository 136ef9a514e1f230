#include "clrk/egress/dns/name_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <arpa/inet.h>
#include <charconv>
#include <cstring>
#include <mutex>

namespace clrk::egress::dns {
namespace {

constexpr size_t kMaxNameLength = 253;  // dotted text form of a 255-byte wire name

uint32_t toHost(const Ipv4& a) {
  return (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) | (uint32_t{a[2]} << 8) | uint32_t{a[3]};
}
Ipv4 fromHost(uint32_t v) {
  return {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
}

}  // namespace

std::string formatIpv4(const Ipv4& address) {
  return fmt::format("{}.{}.{}.{}", address[0], address[1], address[2], address[3]);
}

std::optional<Ipv4> parseIpv4(std::string_view text) {
  if (text.empty() || text.size() > 15) return std::nullopt;
  char buffer[16];
  std::memcpy(buffer, text.data(), text.size());
  buffer[text.size()] = '\0';
  Ipv4 out{};
  if (inet_pton(AF_INET, buffer, out.data()) != 1) return std::nullopt;
  return out;
}

NameTable::NameTable()
    : NameTable(toHost({198, 18, 0, 0}), 15, "198.18.0.0/15", 65536, std::chrono::minutes(5),
                nullptr) {}

NameTable::NameTable(uint32_t base, int prefix, std::string cidr, size_t capacity,
                     std::chrono::nanoseconds min_reuse_age, std::function<Clock::time_point()> now)
    : base_(base),
      size_(uint32_t{1} << (32 - prefix)),
      cidr_(std::move(cidr)),
      capacity_(std::min<size_t>(capacity, (size_t{1} << (32 - prefix)) - 1)),
      min_reuse_ticks_(std::chrono::duration_cast<Clock::duration>(min_reuse_age).count()),
      now_(now ? std::move(now) : std::function<Clock::time_point()>(&Clock::now)) {}

Result<std::unique_ptr<NameTable>> NameTable::create(Options options) {
  const std::string& cidr = options.cidr;
  const size_t slash = cidr.find('/');
  if (slash == std::string::npos) {
    return invalidArgument(fmt::format("DNS pool \"{}\": expected ADDRESS/PREFIX", cidr));
  }
  auto address = parseIpv4(std::string_view(cidr).substr(0, slash));
  if (!address) {
    return invalidArgument(
        fmt::format("DNS pool \"{}\": \"{}\" is not an IPv4 address", cidr, cidr.substr(0, slash)));
  }
  int prefix = -1;
  const char* first = cidr.data() + slash + 1;
  const char* last = cidr.data() + cidr.size();
  auto [ptr, ec] = std::from_chars(first, last, prefix);
  if (ec != std::errc() || ptr != last || first == last) {
    return invalidArgument(fmt::format("DNS pool \"{}\": prefix length is not a number", cidr));
  }
  if (prefix < 8 || prefix > 30) {
    return invalidArgument(
        fmt::format("DNS pool \"{}\": prefix length {} is outside 8..30", cidr, prefix));
  }
  const uint32_t base = toHost(*address);
  const uint32_t host_mask = (uint32_t{1} << (32 - prefix)) - 1;
  if ((base & host_mask) != 0) {
    return invalidArgument(fmt::format("DNS pool \"{}\": host bits are set (network is {}/{})",
                                       cidr, formatIpv4(fromHost(base & ~host_mask)), prefix));
  }
  if (options.capacity == 0) {
    return invalidArgument("DNS pool: capacity must be at least 1");
  }
  if (options.min_reuse_age.count() < 0) {
    return invalidArgument("DNS pool: min_reuse_age must not be negative");
  }
  return std::unique_ptr<NameTable>(new NameTable(base, prefix, cidr, options.capacity,
                                                  options.min_reuse_age, std::move(options.now)));
}

int64_t NameTable::nowTicks() const { return now_().time_since_epoch().count(); }

void NameTable::touch(const Slot& slot) const {
  const int64_t now = nowTicks();
  int64_t seen = slot.last_used.load(std::memory_order_relaxed);
  while (seen < now &&
         !slot.last_used.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
  }
}

Ipv4 NameTable::addressOf(uint32_t offset) const { return fromHost(base_ + offset); }

std::optional<uint32_t> NameTable::offsetOf(const Ipv4& address) const {
  const uint32_t value = toHost(address);
  if (value < base_ || value - base_ >= size_) return std::nullopt;
  return value - base_;
}

bool NameTable::inPool(const Ipv4& address) const { return offsetOf(address).has_value(); }

size_t NameTable::size() const {
  std::shared_lock lock(mutex_);
  return by_name_.size();
}

Result<Ipv4> NameTable::addressFor(std::string_view name) {
  if (name.empty()) return invalidArgument("DNS name table: empty name");
  if (name.size() > kMaxNameLength) {
    return invalidArgument(fmt::format("DNS name table: name of {} characters exceeds {}",
                                       name.size(), kMaxNameLength));
  }
  {
    std::shared_lock lock(mutex_);
    auto it = by_name_.find(name);
    if (it != by_name_.end()) {
      touch(slots_[it->second - 1]);
      return addressOf(it->second);
    }
  }
  std::unique_lock lock(mutex_);
  if (auto it = by_name_.find(name); it != by_name_.end()) {
    touch(slots_[it->second - 1]);
    return addressOf(it->second);
  }
  const int64_t now = nowTicks();
  if (slots_.size() < capacity_) {
    Slot& slot = slots_.emplace_back();
    const auto offset = static_cast<uint32_t>(slots_.size());
    slot.name.assign(name);
    slot.last_used.store(now, std::memory_order_relaxed);
    slot.stamp = now;
    lru_.emplace(now, offset);
    by_name_.emplace(slot.name, offset);
    return addressOf(offset);
  }
  // Full: find the least recently used entry. Entries used since they were queued carry a newer
  // last_used than their stamp; requeue them at their real time. No touch can run concurrently
  // (we hold the exclusive lock), so each entry is requeued at most once and the first entry
  // whose stamp is current has the oldest last_used of all.
  while (true) {
    auto oldest = lru_.begin();
    const uint32_t offset = oldest->second;
    Slot& slot = slots_[offset - 1];
    const int64_t last_used = slot.last_used.load(std::memory_order_relaxed);
    if (last_used > slot.stamp) {
      lru_.erase(oldest);
      slot.stamp = last_used;
      lru_.emplace(last_used, offset);
      continue;
    }
    if (now - last_used < min_reuse_ticks_) {
      return Status(Code::Unavailable,
                    fmt::format("DNS name table full: all {} addresses of {} were used within "
                                "the last {} s",
                                capacity_, cidr_,
                                std::chrono::duration_cast<std::chrono::seconds>(
                                    Clock::duration(min_reuse_ticks_))
                                    .count()));
    }
    lru_.erase(oldest);
    by_name_.erase(slot.name);
    slot.name.assign(name);
    slot.last_used.store(now, std::memory_order_relaxed);
    slot.stamp = now;
    lru_.emplace(now, offset);
    by_name_.emplace(slot.name, offset);
    return addressOf(offset);
  }
}

std::optional<std::string> NameTable::nameFor(std::string_view ipv4_text) const {
  auto address = parseIpv4(ipv4_text);
  if (!address) return std::nullopt;
  return nameFor(*address);
}

std::optional<std::string> NameTable::nameFor(const Ipv4& address) const {
  auto offset = offsetOf(address);
  if (!offset || *offset == 0) return std::nullopt;
  std::shared_lock lock(mutex_);
  if (*offset > slots_.size()) return std::nullopt;
  const Slot& slot = slots_[*offset - 1];
  if (slot.name.empty()) return std::nullopt;
  touch(slot);
  return slot.name;
}

}  // namespace clrk::egress::dns
