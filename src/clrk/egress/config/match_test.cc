#include "clrk/egress/config/match.h"

#include <gtest/gtest.h>

namespace clrk::egress::config {
namespace {

TEST(GlobTest, StarQuestionAndClasses) {
  EXPECT_TRUE(globMatch("claude-*", "claude-opus-4"));
  EXPECT_TRUE(globMatch("claude-*", "claude-"));
  EXPECT_FALSE(globMatch("claude-*", "gpt-4o"));
  EXPECT_TRUE(globMatch("gpt-4?", "gpt-4o"));
  EXPECT_FALSE(globMatch("gpt-4?", "gpt-4"));
  EXPECT_TRUE(globMatch("*-mini", "gpt-4o-mini"));
  EXPECT_TRUE(globMatch("a*b*c", "aXXbYYc"));
  EXPECT_FALSE(globMatch("a*b*c", "aXXbYY"));
  EXPECT_TRUE(globMatch("gpt-[34]*", "gpt-3.5"));
  EXPECT_FALSE(globMatch("gpt-[!34]*", "gpt-3.5"));
  EXPECT_TRUE(globMatch("v[0-9]", "v7"));
  EXPECT_TRUE(globMatch("a\\*", "a*"));
  EXPECT_FALSE(globMatch("a\\*", "ab"));
  EXPECT_TRUE(globMatch("/v1beta/models/*", "/v1beta/models/gemini:generateContent"));
  EXPECT_TRUE(globMatch("*", ""));
  EXPECT_FALSE(globMatch("", "x"));
}

TEST(GlobTest, MalformedPatternsAreReportedAndNeverMatch) {
  EXPECT_FALSE(globError("claude-*").has_value());
  EXPECT_TRUE(globError("gpt-[34").has_value());
  EXPECT_TRUE(globError("abc\\").has_value());
  EXPECT_TRUE(globError("[z-a]").has_value());
  EXPECT_FALSE(globMatch("gpt-[34", "gpt-3"));
}

TEST(HostPatternTest, ExactAndSingleLabelWildcard) {
  auto exact = HostPattern::parse("API.OpenAI.com");
  ASSERT_TRUE(exact);
  EXPECT_TRUE(exact->matches("api.openai.com"));
  EXPECT_TRUE(exact->matches("api.openai.com."));
  EXPECT_FALSE(exact->matches("xapi.openai.com"));
  auto wild = HostPattern::parse("*.example.com");
  ASSERT_TRUE(wild);
  EXPECT_TRUE(wild->matches("a.example.com"));
  EXPECT_TRUE(wild->matches("A.Example.COM"));
  EXPECT_FALSE(wild->matches("example.com"));
  EXPECT_FALSE(wild->matches("a.b.example.com"));
  EXPECT_FALSE(wild->matches("aexample.com"));
  EXPECT_FALSE(HostPattern::parse("a.*.com"));
  EXPECT_FALSE(HostPattern::parse(""));
}

TEST(CidrTest, V4V6AndMapped) {
  auto net = Cidr::parse("10.1.0.0/16");
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->contains(*parseIp("10.1.200.3")));
  EXPECT_FALSE(net->contains(*parseIp("10.2.0.1")));
  EXPECT_TRUE(net->contains(*parseIp("::ffff:10.1.0.9")));
  auto odd = Cidr::parse("192.168.1.128/25");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->contains(*parseIp("192.168.1.200")));
  EXPECT_FALSE(odd->contains(*parseIp("192.168.1.100")));
  auto host = Cidr::parse("1.2.3.4");
  ASSERT_TRUE(host);
  EXPECT_TRUE(host->contains(*parseIp("1.2.3.4")));
  EXPECT_FALSE(host->contains(*parseIp("1.2.3.5")));
  auto v6 = Cidr::parse("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(*parseIp("2001:db8:1::1")));
  EXPECT_FALSE(v6->contains(*parseIp("2001:db9::1")));
  EXPECT_FALSE(v6->contains(*parseIp("10.0.0.1")));
  auto all = Cidr::parse("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->contains(*parseIp("8.8.8.8")));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/33"));
  EXPECT_FALSE(Cidr::parse("10.0.0/8"));
  EXPECT_FALSE(Cidr::parse("banana/8"));
  EXPECT_FALSE(Cidr::parse("10.0.0.0/"));
  EXPECT_FALSE(parseIp(""));
}

TEST(LabelSelectorTest, Operators) {
  LabelSelector s;
  ASSERT_TRUE(s.add("team", "In", {"a", "b"}));
  ASSERT_TRUE(s.add("tier", "NotIn", {"prod"}));
  ASSERT_TRUE(s.add("agent", "Exists", {}));
  ASSERT_TRUE(s.add("blocked", "DoesNotExist", {}));
  EXPECT_TRUE(s.matches({{"team", "a"}, {"tier", "dev"}, {"agent", "x"}}));
  EXPECT_FALSE(s.matches({{"team", "c"}, {"agent", "x"}}));
  EXPECT_FALSE(s.matches({{"team", "a"}, {"tier", "prod"}, {"agent", "x"}}));
  EXPECT_FALSE(s.matches({{"team", "a"}}));
  EXPECT_FALSE(s.matches({{"team", "a"}, {"agent", "x"}, {"blocked", "1"}}));
  EXPECT_FALSE(s.add("k", "Near", {"x"}));
  EXPECT_FALSE(s.add("k", "In", {}));
  EXPECT_FALSE(s.add("k", "Exists", {"x"}));
  EXPECT_TRUE(LabelSelector().matches({}));
}

TEST(HeaderTest, NamesAndValues) {
  EXPECT_TRUE(isHeaderName("x-api-key"));
  EXPECT_FALSE(isHeaderName("x api"));
  EXPECT_FALSE(isHeaderName("x:y"));
  EXPECT_FALSE(isHeaderName(""));
  EXPECT_TRUE(isHeaderValue("Bearer abc"));
  EXPECT_FALSE(isHeaderValue("a\r\nInjected: 1"));
}

}  // namespace
}  // namespace clrk::egress::config
