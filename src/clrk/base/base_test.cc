#include "clrk/base/ascii.h"
#include "clrk/base/base64.h"
#include "clrk/base/files.h"
#include "clrk/base/ids.h"
#include "clrk/base/status.h"
#include "clrk/base/striped_counter.h"
#include "clrk/base/time.h"
#include "clrk/base/utf8.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace clrk {
namespace {

Result<int> half(int x) {
  if (x % 2 != 0) return invalidArgument("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> quarter(int x) {
  CLRK_ASSIGN_OR_RETURN(int h, half(x));
  return half(h);
}

TEST(AsciiTest, LowersAndComparesOnlyAsciiLetters) {
  EXPECT_EQ(asciiLowerCopy("Content-Type: API.OpenAI.com"), "content-type: api.openai.com");
  EXPECT_EQ(asciiLowerCopy("\xC3\x89T\xC3\x89"), "\xC3\x89t\xC3\x89");  // UTF-8 bytes kept
  EXPECT_EQ(asciiLowerCopy("@[`{"), "@[`{");  // the neighbours of A-Z and a-z
  EXPECT_TRUE(asciiEqualsIgnoreCase("X-Api-Key", "x-api-KEY"));
  EXPECT_FALSE(asciiEqualsIgnoreCase("x-api-key", "x-api-keys"));
  EXPECT_FALSE(asciiEqualsIgnoreCase("[", "{"));  // '[' + 32 is '{': not a letter
  static_assert(asciiLower('Q') == 'q' && asciiLower('q') == 'q' && asciiLower('1') == '1');
}

TEST(AsciiTest, OptionalWhitespaceIsSpacesAndTabs) {
  EXPECT_EQ(trimOptionalWhitespace(" \t trailers\t "), "trailers");
  EXPECT_EQ(trimOptionalWhitespace("a b"), "a b");  // inner whitespace stays
  EXPECT_EQ(trimOptionalWhitespace(" \t "), "");
  EXPECT_EQ(trimOptionalWhitespace("\nx\r"), "\nx\r");  // only SP and HTAB
}

TEST(AsciiTest, ListElementsAreTrimmedAndEmptyOnesSkipped) {
  std::vector<std::string> seen;
  auto collect = [&](std::string_view element) {
    seen.emplace_back(element);
    return false;
  };
  EXPECT_FALSE(anyListElement(" keep-alive,\tTE ,, x-hop,", collect));
  EXPECT_EQ(seen, (std::vector<std::string>{"keep-alive", "TE", "x-hop"}));
  seen.clear();
  EXPECT_TRUE(anyListElement("a, b, c", [&](std::string_view element) {
    seen.emplace_back(element);
    return element == "b";
  }));
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b"}));  // stops at the first true
  EXPECT_FALSE(anyListElement("", collect));
}

TEST(Utf8Test, SequencesAreStrict) {
  EXPECT_EQ(utf8SequenceLength("\xC3\xA9", 0), 2u);          // é
  EXPECT_EQ(utf8SequenceLength("\xE2\x82\xAC", 0), 3u);      // €
  EXPECT_EQ(utf8SequenceLength("\xF0\x9F\x98\x80", 0), 4u);  // U+1F600
  EXPECT_EQ(utf8SequenceLength("\xF4\x8F\xBF\xBF", 0), 4u);  // U+10FFFF
  EXPECT_EQ(utf8SequenceLength("\xC0\x80", 0), 0u);          // overlong NUL
  EXPECT_EQ(utf8SequenceLength("\xE0\x80\x80", 0), 0u);      // overlong
  EXPECT_EQ(utf8SequenceLength("\xED\xA0\x80", 0), 0u);      // surrogate U+D800
  EXPECT_EQ(utf8SequenceLength("\xF4\x90\x80\x80", 0), 0u);  // past U+10FFFF
  EXPECT_EQ(utf8SequenceLength("\xE2\x82", 0), 0u);          // cut short
  EXPECT_EQ(utf8SequenceLength("\xE2\x28\xA1", 0), 0u);      // bad continuation
  EXPECT_EQ(utf8SequenceLength("\x80", 0), 0u);              // lone continuation
  EXPECT_EQ(utf8SequenceLength("a\xC3\xA9", 1), 2u);         // from an offset
}

TEST(StatusTest, PropagatesErrorsWithCodeAndMessage) {
  EXPECT_EQ(*quarter(8), 2);
  auto bad = quarter(6);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::InvalidArgument);
  EXPECT_EQ(bad.status().toString(), "InvalidArgument: odd: 3");
  EXPECT_EQ(bad.status().withContext("file x").message(), "file x: odd: 3");
}

TEST(IdsTest, UuidsAreVersion4AndUnique) {
  std::set<std::string> seen;
  for (int round = 0; round < 1000; ++round) {
    std::string id = newUuid();
    ASSERT_EQ(id.size(), 36u);
    EXPECT_EQ(id[14], '4');
    EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b');
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(randomHex(16).size(), 32u);
}

TEST(TimeTest, Rfc3339RoundTripsAndRejectsGarbage) {
  auto parsed = parseRfc3339("2026-11-25T03:56:34Z");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(formatRfc3339(*parsed), "2026-11-25T03:56:34Z");
  auto offset = parseRfc3339("2026-11-25T05:56:34.5+02:00");
  ASSERT_TRUE(offset.has_value());
  EXPECT_EQ(formatRfc3339Micro(*offset), "2026-11-25T03:56:34.500000Z");
  EXPECT_FALSE(parseRfc3339("2026-13-25T03:56:34Z").has_value());
  EXPECT_FALSE(parseRfc3339("2026-11-25 03:56").has_value());
  EXPECT_FALSE(parseRfc3339("").has_value());
}

TEST(TimeTest, GoDurations) {
  using std::chrono::milliseconds;
  EXPECT_EQ(parseDuration("100s"), milliseconds(100000));
  EXPECT_EQ(parseDuration("1h30m"), milliseconds(5400000));
  EXPECT_EQ(parseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(parseDuration("1.5s"), milliseconds(1500));
  EXPECT_FALSE(parseDuration("5").has_value());
  EXPECT_FALSE(parseDuration("-5s").has_value());
  EXPECT_FALSE(parseDuration("5 minutes").has_value());
  EXPECT_EQ(formatAge(std::chrono::seconds(30)), "30s");
  EXPECT_EQ(formatAge(std::chrono::seconds(3600)), "60m");
  EXPECT_EQ(formatAge(std::chrono::seconds(5 * 86400)), "5d");
}

TEST(FilesTest, AtomicWriteSetsModeAndReadsBack) {
  auto dir = std::filesystem::temp_directory_path() / ("clrk-files-" + randomHex(4));
  std::filesystem::create_directories(dir);
  auto path = dir / "secret";
  ASSERT_TRUE(writeFileAtomic(path, "hello", 0600).ok());
  EXPECT_EQ(*readFile(path), "hello");
  auto perms = std::filesystem::status(path).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(readFile(dir / "absent").status().code(), Code::NotFound);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace clrk

namespace clrk {
namespace {

TEST(Base64Test, StandardAlphabetWithPadding) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(base64Encode(std::string("\xfb\xff\x00", 3)), "+/8A");
}

TEST(Base64Test, DecodesLineWrappedAndRejectsMalformed) {
  EXPECT_EQ(*base64Decode("c2stdGVzdA=="), "sk-test");
  EXPECT_EQ(*base64Decode("c2stdGVzdA"), "sk-test");
  EXPECT_EQ(*base64Decode("c2st\ndGVzdA=="), "sk-test");
  EXPECT_EQ(*base64Decode(""), "");
  EXPECT_FALSE(base64Decode("c2st*GVzdA=="));
  EXPECT_FALSE(base64Decode("c2stdGVzdA==x"));
  EXPECT_FALSE(base64Decode("c"));
}

TEST(StripedCounterTest, SumsWhatEveryThreadAddedAndSubtracted) {
  StripedCounter counter;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&counter, t] {
      for (int n = 0; n < 10000; ++n) counter.fetch_add(2);
      // Some threads take back what others added: the sum wraps back correctly.
      if (t % 2 == 0) counter.fetch_sub(5000);
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.load(), 6u * 20000u - 3u * 5000u);
  // Threads get distinct stripes in order of first use.
  size_t here = threadStripe();
  size_t there = 0;
  std::thread([&there] { there = threadStripe(); }).join();
  EXPECT_NE(here, there);
  EXPECT_EQ(threadStripe(), here);
}

}  // namespace
}  // namespace clrk
