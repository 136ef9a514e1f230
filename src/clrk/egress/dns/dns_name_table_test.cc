#include "clrk/egress/dns/name_table.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

namespace clrk::egress::dns {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

// A manual clock shared by a table under test.
struct FakeClock {
  std::atomic<int64_t> ns{1'000'000'000};
  std::function<NameTable::Clock::time_point()> fn() {
    return [this] { return NameTable::Clock::time_point(std::chrono::nanoseconds(ns.load())); };
  }
  void advance(std::chrono::nanoseconds d) { ns += d.count(); }
};

std::unique_ptr<NameTable> makeTable(FakeClock& clock, std::string cidr, size_t capacity,
                                     std::chrono::nanoseconds reuse) {
  NameTable::Options options;
  options.cidr = std::move(cidr);
  options.capacity = capacity;
  options.min_reuse_age = reuse;
  options.now = clock.fn();
  auto table = NameTable::create(std::move(options));
  EXPECT_TRUE(table.ok()) << table.status().toString();
  return table.ok() ? std::move(table).value() : nullptr;
}

TEST(Ipv4Text, FormatsAndParsesStrictly) {
  EXPECT_EQ(formatIpv4({198, 18, 0, 5}), "198.18.0.5");
  EXPECT_EQ(parseIpv4("10.200.0.2"), (Ipv4{10, 200, 0, 2}));
  EXPECT_FALSE(parseIpv4(""));
  EXPECT_FALSE(parseIpv4("10.200.0"));
  EXPECT_FALSE(parseIpv4("10.200.0.256"));
  EXPECT_FALSE(parseIpv4("10.200.0.2 "));
  EXPECT_FALSE(parseIpv4("::1"));
  EXPECT_FALSE(parseIpv4("1234567890.1.2.3"));
}

TEST(NameTable, DefaultPoolHandsOutStableAddressesSkippingTheFirst) {
  NameTable table;
  EXPECT_EQ(table.cidr(), "198.18.0.0/15");
  auto a = table.addressFor("api.openai.com");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (Ipv4{198, 18, 0, 1}));
  auto b = table.addressFor("api.anthropic.com");
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(*table.addressFor("api.openai.com"), *a);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.inPool({198, 19, 255, 255}));
  EXPECT_FALSE(table.inPool({198, 20, 0, 0}));
  EXPECT_FALSE(table.inPool({10, 0, 0, 1}));
}

TEST(NameTable, ReverseLookup) {
  NameTable table;
  auto a = table.addressFor("generativelanguage.googleapis.com");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(table.nameFor(*a), "generativelanguage.googleapis.com");
  EXPECT_EQ(table.nameFor(formatIpv4(*a)), "generativelanguage.googleapis.com");
  EXPECT_FALSE(table.nameFor("198.18.0.0"));    // the pool's first address is never used
  EXPECT_FALSE(table.nameFor("198.18.0.200"));  // in the pool, not handed out
  EXPECT_FALSE(table.nameFor("8.8.8.8"));       // outside the pool
  EXPECT_FALSE(table.nameFor("not an address"));
}

TEST(NameTable, RejectsBadNames) {
  NameTable table;
  EXPECT_EQ(table.addressFor("").status().code(), Code::InvalidArgument);
  EXPECT_THAT(table.addressFor(std::string(254, 'a')).status().message(),
              HasSubstr("254 characters exceeds 253"));
}

TEST(NameTable, ValidatesOptions) {
  auto check = [](std::string cidr, size_t capacity, std::string expected) {
    NameTable::Options options;
    options.cidr = cidr;
    options.capacity = capacity;
    auto t = NameTable::create(options);
    ASSERT_FALSE(t.ok()) << cidr;
    EXPECT_EQ(t.status().code(), Code::InvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr(expected)) << cidr;
  };
  check("banana", 10, "expected ADDRESS/PREFIX");
  check("10.0.0.0/33", 10, "prefix length 33 is outside 8..30");
  check("10.0.0.0/31", 10, "outside 8..30");
  check("10.0.0.0/x", 10, "not a number");
  check("10.0.0.0/", 10, "not a number");
  check("10.0.0/24", 10, "not an IPv4 address");
  check("10.0.0.1/24", 10, "host bits are set (network is 10.0.0.0/24)");
  check("10.0.0.0/24", 0, "capacity");
}

TEST(NameTable, CapacityIsClampedToThePool) {
  NameTable::Options options;
  options.cidr = "10.9.0.0/30";  // 4 addresses, first unused -> 3
  options.capacity = 100;
  options.min_reuse_age = 0s;
  auto t = NameTable::create(options);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->capacity(), 3u);
  std::set<Ipv4> seen;
  for (int i = 0; i < 3; ++i) {
    auto a = (*t)->addressFor("n" + std::to_string(i));
    ASSERT_TRUE(a.ok());
    EXPECT_TRUE(seen.insert(*a).second);
    EXPECT_NE(*a, (Ipv4{10, 9, 0, 0}));
  }
  EXPECT_EQ(seen, (std::set<Ipv4>{{10, 9, 0, 1}, {10, 9, 0, 2}, {10, 9, 0, 3}}));
}

TEST(NameTable, RecyclesTheLeastRecentlyUsedEntryOnceOldEnough) {
  FakeClock clock;
  auto table = makeTable(clock, "10.9.0.0/24", 3, 60s);
  ASSERT_TRUE(table);
  auto a = *table->addressFor("a.example");
  clock.advance(1s);
  auto b = *table->addressFor("b.example");
  clock.advance(1s);
  auto c = *table->addressFor("c.example");
  clock.advance(1s);
  // Use "a" again through a reverse lookup (what the proxy does per connection): now "b" is LRU.
  EXPECT_EQ(table->nameFor(a), "a.example");
  clock.advance(1s);

  // Full and nothing unused for 60 s: refuse rather than recycle.
  auto refused = table->addressFor("d.example");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::Unavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("all 3 addresses of 10.9.0.0/24"));
  EXPECT_EQ(table->nameFor(b), "b.example");  // unchanged (this lookup also touched b)

  clock.advance(61s);
  EXPECT_EQ(table->addressFor("c.example").value(), c);  // touch c: a is now the LRU
  auto d = table->addressFor("d.example");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, a);  // a's address recycled (a last used before b's reverse lookup)
  EXPECT_EQ(table->nameFor(a), "d.example");
  EXPECT_EQ(table->size(), 3u);
  // "a" comes back: b (last used at the refused attempt, 61 s ago) is now the LRU and old enough.
  auto a2 = table->addressFor("a.example");
  ASSERT_TRUE(a2.ok()) << a2.status().toString();
  EXPECT_EQ(*a2, b);
  EXPECT_EQ(table->nameFor(b), "a.example");
  EXPECT_EQ(table->addressFor("d.example").value(), a);
}

TEST(NameTable, ZeroReuseAgeRecyclesImmediatelyInLruOrder) {
  FakeClock clock;
  auto table = makeTable(clock, "10.9.0.0/24", 2, 0s);
  ASSERT_TRUE(table);
  auto x = *table->addressFor("x");
  clock.advance(1ms);
  auto y = *table->addressFor("y");
  clock.advance(1ms);
  EXPECT_EQ(*table->addressFor("x"), x);  // y is LRU
  clock.advance(1ms);
  EXPECT_EQ(*table->addressFor("z"), y);
  EXPECT_FALSE(table->nameFor(y) == "y");
  clock.advance(1ms);
  EXPECT_EQ(*table->addressFor("w"), x);  // x older than z
  EXPECT_EQ(table->nameFor(x), "w");
  EXPECT_EQ(table->nameFor(y), "z");
}

TEST(NameTable, ConcurrentReadersAndWritersAgree) {
  NameTable::Options options;
  options.cidr = "10.64.0.0/16";
  options.capacity = 512;
  options.min_reuse_age = 0s;  // force recycling under contention
  auto made = NameTable::create(options);
  ASSERT_TRUE(made.ok());
  NameTable& table = **made;
  std::atomic<int> failures{0};
  std::atomic<int> lost{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3000; ++i) {
        std::string name = "host" + std::to_string((i * 7 + t * 13) % 800) + ".example";
        auto a = table.addressFor(name);
        if (!a.ok()) {
          ++failures;
          continue;
        }
        // Whatever happened meanwhile, the address is in use by some name (never left empty).
        if (!table.nameFor(*a)) ++lost;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(lost.load(), 0);
  EXPECT_EQ(table.size(), 512u);
  // Invariant: the 512 handed-out addresses map to 512 distinct names, each of which maps back.
  std::set<std::string> names;
  for (uint32_t off = 1; off <= 512; ++off) {
    Ipv4 addr = {10, 64, static_cast<uint8_t>(off >> 8), static_cast<uint8_t>(off & 0xFF)};
    auto name = table.nameFor(addr);
    ASSERT_TRUE(name) << off;
    names.insert(*name);
    EXPECT_EQ(table.addressFor(*name).value(), addr);
  }
  EXPECT_EQ(names.size(), 512u);
  EXPECT_FALSE(table.nameFor(Ipv4{10, 64, 2, 1}));  // offset 513: never handed out
}

}  // namespace
}  // namespace clrk::egress::dns
