#include "clrk/egress/llm/json_scan.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace clrk::egress::llm::json {
namespace {

TEST(JsonScanTest, WalksMembersAndKeepsWhatPrecedesTruncation) {
  std::string_view doc = R"( {"a": 1, "b": "x\"y", "c": {"d": [1, {"e": "]}"}]}, "f": tr)";
  std::vector<std::string> keys;
  bool ok = forEachMember(doc, 0, [&](std::string_view key, const Value&) {
    keys.emplace_back(key);
    return true;
  });
  EXPECT_FALSE(ok);
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(JsonScanTest, ParseAndAccessors) {
  auto v = parse(R"({"n": 12, "f": 3.0, "big": 1e3, "neg": -4, "s": "a\u00e9\ud83d\ude00\n",
                    "t": true, "x": 1.5})");
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(asInt(*member(*v, "n")), 12);
  EXPECT_EQ(asInt(*member(*v, "f")), 3);
  EXPECT_EQ(asInt(*member(*v, "big")), 1000);
  EXPECT_EQ(asInt(*member(*v, "neg")), -4);
  EXPECT_FALSE(asInt(*member(*v, "x")).has_value());
  EXPECT_EQ(asBool(*member(*v, "t")), true);
  std::string s;
  ASSERT_TRUE(decodeString(*member(*v, "s"), &s));
  EXPECT_EQ(s, "a\xC3\xA9\xF0\x9F\x98\x80\n");
  ASSERT_TRUE(decodeString(*member(*v, "s"), &s, 2));
  EXPECT_EQ(s.size(), 2u);
  EXPECT_FALSE(member(*v, "missing").has_value());
}

TEST(JsonScanTest, RejectsMalformed) {
  for (std::string_view bad :
       {"", "{", "\"abc", "12x", "tru", "{\"a\":1}}", "{\"a\":\"\x01\"}", "-", "1.", "1e"}) {
    EXPECT_FALSE(parse(bad).has_value()) << bad;
  }
  // parse() checks balance only; contents are checked by whoever walks them.
  auto noop_member = [](std::string_view, const Value&) { return true; };
  auto noop_element = [](const Value&) { return true; };
  EXPECT_FALSE(forEachMember(*parse("{\"a\"}"), noop_member));
  EXPECT_FALSE(forEachMember(*parse("{\"a\":}"), noop_member));
  EXPECT_FALSE(forEachMember(*parse("{\"a\":1,}"), noop_member));
  EXPECT_FALSE(forEachElement(*parse("[1,]"), noop_element));
  EXPECT_FALSE(forEachElement(*parse("[1 2]"), noop_element));
  EXPECT_TRUE(parse(" [1, -2.5e-3, null, false, {}, []] ").has_value());
}

TEST(JsonScanTest, DeepNestingIsIterative) {
  std::string deep(200000, '[');
  deep.append(200000, ']');
  auto v = parse(deep);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->kind, Kind::kArray);
}

TEST(JsonScanTest, EscapedKeysCompareDecoded) {
  EXPECT_TRUE(keyIs("mo\\u0064el", "model"));
  EXPECT_FALSE(keyIs("mo\\u0064elx", "model"));
  EXPECT_TRUE(keyIs("model", "model"));
}

}  // namespace
}  // namespace clrk::egress::llm::json
