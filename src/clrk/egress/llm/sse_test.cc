#include "clrk/egress/llm/sse.h"

#include "clrk/egress/llm/testdata.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace clrk::egress::llm {
namespace {

struct Ev {
  std::string type, data, id;
  bool operator==(const Ev&) const = default;
};

std::vector<Ev> parse(SseParser& parser, std::string_view input, size_t step) {
  std::vector<Ev> out;
  if (step == 0) step = input.size() + 1;
  for (size_t i = 0; i < input.size(); i += step) {
    parser.feed(input.substr(i, step), [&](const SseEvent& e) {
      out.push_back({std::string(e.type), std::string(e.data), std::string(e.id)});
    });
  }
  return out;
}

std::vector<Ev> parse(std::string_view input, size_t step = 0) {
  SseParser parser;
  return parse(parser, input, step);
}

TEST(SseTest, FieldsAndMultilineData) {
  auto evs = parse(
      "event: add\ndata: 73857293\n\ndata: a\ndata:b\ndata\n\n: comment\n\n"
      "id: 42\ndata: x\n\n");
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0], (Ev{"add", "73857293", ""}));
  EXPECT_EQ(evs[1], (Ev{"message", "a\nb\n", ""}));
  EXPECT_EQ(evs[2], (Ev{"message", "x", "42"}));
}

TEST(SseTest, SpecExamples) {
  // WHATWG: "data" alone then "data" → one event of "\n"; "test" without colon is a field named
  // "test" and is ignored.
  auto evs = parse("data\n\ndata\ndata\n\ndata:\n");
  ASSERT_EQ(evs.size(), 2u);
  EXPECT_EQ(evs[0].data, "");
  EXPECT_EQ(evs[1].data, "\n");
  // Only one leading space is stripped.
  auto two = parse("data:  two spaces\n\n");
  ASSERT_EQ(two.size(), 1u);
  EXPECT_EQ(two[0].data, " two spaces");
  // An event with no data is not dispatched, and its type does not leak to the next one.
  auto typed = parse("event: ghost\n\ndata: real\n\n");
  ASSERT_EQ(typed.size(), 1u);
  EXPECT_EQ(typed[0].type, "message");
  // Unknown fields are ignored; id persists across events; id with NUL is ignored.
  std::string with_nul = "id: 1\ndata: a\n\nfoo: bar\ndata: b\n\nid: x";
  with_nul.push_back('\0');
  with_nul += "y\ndata: c\n\n";
  auto ids = parse(with_nul);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1].id, "1");
  EXPECT_EQ(ids[2].id, "1");
}

TEST(SseTest, LineEndingsAndBom) {
  std::string input =
      "\xEF\xBB\xBF"
      "data: crlf\r\n\r\ndata: cr\r\rdata: lf\n\n";
  auto evs = parse(input);
  ASSERT_EQ(evs.size(), 3u);
  EXPECT_EQ(evs[0].data, "crlf");
  EXPECT_EQ(evs[1].data, "cr");
  EXPECT_EQ(evs[2].data, "lf");
  // A BOM only counts at the very start; a second one is data.
  auto second = parse(
      "\xEF\xBB\xBF\xEF\xBB\xBF"
      "data: x\n\n");
  EXPECT_TRUE(second.empty());  // the line starts with a BOM: unknown field
}

TEST(SseTest, AnySplitGivesTheSameEvents) {
  for (const char* name : {"openai_chat_stream.sse", "anthropic_stream.sse", "gemini_stream.sse",
                           "openai_responses_stream.sse"}) {
    std::string input = testing::readTestdata(name);
    ASSERT_FALSE(input.empty()) << name;
    auto whole = parse(input);
    EXPECT_GE(whole.size(), 2u) << name;
    for (size_t step = 1; step <= 13; ++step) {
      EXPECT_EQ(parse(input, step), whole) << name << " step " << step;
    }
  }
  // CRLF split exactly between CR and LF must not produce an extra blank line.
  std::string crlf = "data: a\r\ndata: b\r\n\r\n";
  EXPECT_EQ(parse(crlf, 1), parse(crlf));
  ASSERT_EQ(parse(crlf, 1).size(), 1u);
  EXPECT_EQ(parse(crlf, 1)[0].data, "a\nb");
}

TEST(SseTest, RetryField) {
  SseParser parser;
  parse(parser, "retry: 1500\n\nretry: 12x\n\n", 0);
  EXPECT_EQ(parser.retryMs(), 1500);
}

TEST(SseTest, OversizeEventIsDroppedAndParserResyncs) {
  SseParser parser(64);
  std::string big(200, 'x');
  std::string input = "data: small\n\ndata: " + big + "\ndata: tail\n\ndata: after\n\n";
  for (size_t step : {0, 1, 7}) {
    SseParser p(64);
    auto evs = parse(p, input, step);
    ASSERT_EQ(evs.size(), 2u) << step;
    EXPECT_EQ(evs[0].data, "small");
    EXPECT_EQ(evs[1].data, "after");
    EXPECT_EQ(p.droppedEvents(), 1u);
  }
  // Many data lines that add up past the bound.
  SseParser p2(64);
  std::string many;
  for (int i = 0; i < 20; ++i) many += "data: 0123456789\n";
  many += "\ndata: ok\n\n";
  auto evs = parse(p2, many, 5);
  ASSERT_EQ(evs.size(), 1u);
  EXPECT_EQ(evs[0].data, "ok");
  EXPECT_EQ(p2.droppedEvents(), 1u);
}

TEST(SseTest, EndlessLineDoesNotGrowMemory) {
  SseParser parser(1024);
  std::string chunk(4096, 'a');
  int events = 0;
  for (int i = 0; i < 1000; ++i) parser.feed(chunk, [&](const SseEvent&) { ++events; });
  parser.feed("\n\ndata: fine\n\n", [&](const SseEvent& e) {
    ++events;
    EXPECT_EQ(e.data, "fine");
  });
  EXPECT_EQ(events, 1);
  EXPECT_EQ(parser.droppedEvents(), 1u);
}

TEST(SseTest, IncompleteEventAtEndIsNotDispatched) {
  EXPECT_TRUE(parse("data: no blank line\n").empty());
}

}  // namespace
}  // namespace clrk::egress::llm
