#include "clrk/egress/llm/aws_eventstream.h"

#include "clrk/egress/llm/testdata.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace clrk::egress::llm {
namespace {

TEST(AwsEventStreamTest, Crc32MatchesZlib) {
  EXPECT_EQ(crc32("123456789"), 0xCBF43926u);
  EXPECT_EQ(crc32(""), 0u);
  EXPECT_EQ(crc32("6789", crc32("12345")), 0xCBF43926u);
}

TEST(AwsEventStreamTest, Base64) {
  std::string out;
  ASSERT_TRUE(base64Decode("eyJhIjoxfQ==", &out));
  EXPECT_EQ(out, R"({"a":1})");
  ASSERT_TRUE(base64Decode("eyJhIjoxfQ", &out));
  EXPECT_EQ(out, R"({"a":1})");
  EXPECT_FALSE(base64Decode("ey$hIjoxfQ==", &out));
  EXPECT_FALSE(base64Decode("e", &out));
}

TEST(AwsEventStreamTest, DecodesConverseStreamInAnySplit) {
  std::string body = testing::readTestdata("bedrock_converse_stream.bin");
  ASSERT_FALSE(body.empty());
  for (size_t step : {size_t{1}, size_t{7}, body.size()}) {
    AwsEventStreamDecoder decoder;
    std::vector<std::string> types;
    std::string last_payload;
    for (size_t i = 0; i < body.size(); i += step) {
      decoder.feed(std::string_view(body).substr(i, step), [&](const AwsEventMessage& m) {
        types.emplace_back(m.event_type);
        EXPECT_EQ(m.message_type, "event");
        last_payload = std::string(m.payload);
      });
    }
    EXPECT_FALSE(decoder.failed());
    EXPECT_EQ(types, (std::vector<std::string>{"messageStart", "contentBlockDelta",
                                               "contentBlockDelta", "contentBlockDelta",
                                               "contentBlockStop", "messageStop", "metadata"}));
    EXPECT_NE(last_payload.find(R"("inputTokens":21)"), std::string::npos);
  }
}

TEST(AwsEventStreamTest, RejectsGarbageAndOversize) {
  AwsEventStreamDecoder decoder;
  int n = 0;
  decoder.feed(std::string(64, '\x7f'), [&](const AwsEventMessage&) { ++n; });
  EXPECT_TRUE(decoder.failed());
  EXPECT_EQ(n, 0);
  std::string body = testing::readTestdata("bedrock_converse_stream.bin");
  AwsEventStreamDecoder small(32);
  small.feed(body, [&](const AwsEventMessage&) { ++n; });
  EXPECT_TRUE(small.failed());
  EXPECT_EQ(n, 0);
}

}  // namespace
}  // namespace clrk::egress::llm
