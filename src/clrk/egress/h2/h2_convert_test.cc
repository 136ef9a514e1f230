#include "clrk/egress/h2/convert.h"

#include <gtest/gtest.h>

namespace clrk::egress::h2 {
namespace {

namespace http = boost::beast::http;

std::vector<HeaderField> base() {
  return {{":method", "POST"},
          {":scheme", "https"},
          {":authority", "API.openai.com"},
          {":path", "/v1/chat/completions?x=1"}};
}

TEST(H2ConvertTest, RequestHeadCarriesHostFieldsAndChunkedWithoutLength) {
  auto fields = base();
  fields.push_back({"content-type", "application/json"});
  fields.push_back({"cookie", "a=1"});
  fields.push_back({"te", "trailers"});
  fields.push_back({"cookie", "b=2"});
  Http1Request out;
  std::string error;
  ASSERT_TRUE(toHttp1Request(fields, true, out, error)) << error;
  EXPECT_EQ(out.method, "POST");
  EXPECT_TRUE(out.chunked);
  EXPECT_EQ(out.head,
            "POST /v1/chat/completions?x=1 HTTP/1.1\r\nhost: api.openai.com\r\n"
            "content-type: application/json\r\nte: trailers\r\ncookie: a=1; b=2\r\n"
            "transfer-encoding: chunked\r\n\r\n");
}

TEST(H2ConvertTest, TeTrailersIsTheOnlyTeThatPasses) {
  EXPECT_TRUE(teListsTrailers("trailers"));
  EXPECT_TRUE(teListsTrailers(" Trailers "));
  EXPECT_TRUE(teListsTrailers("gzip;q=0.5, trailers"));
  EXPECT_FALSE(teListsTrailers("gzip"));
  EXPECT_FALSE(teListsTrailers("trailersx, deflate"));
  EXPECT_FALSE(teListsTrailers(""));
  auto fields = base();
  fields.push_back({"te", "gzip"});
  Http1Request out;
  std::string error;
  ASSERT_TRUE(toHttp1Request(fields, false, out, error)) << error;
  EXPECT_EQ(out.head.find("te:"), std::string::npos) << out.head;
}

TEST(H2ConvertTest, TrailersAreTheFieldsAfterTheHeadMinusForbiddenOnes) {
  boost::beast::http::fields fields;
  fields.insert("Content-Type", "application/grpc");
  fields.insert("Trailer", "grpc-status");
  size_t head_fields = fieldCount(fields);
  EXPECT_EQ(head_fields, 2u);
  fields.insert("Grpc-Status", "0");
  fields.insert("Content-Length", "5");  // framing: never a trailer
  fields.insert("Authorization", "Bearer secret");
  fields.insert("x-checksum", "abc");
  auto trailers = trailersOf(fields, head_fields);
  ASSERT_EQ(trailers.size(), 2u);
  EXPECT_EQ(trailers[0], std::make_pair(std::string("grpc-status"), std::string("0")));
  EXPECT_EQ(trailers[1], std::make_pair(std::string("x-checksum"), std::string("abc")));
  EXPECT_TRUE(trailersOf(fields, fieldCount(fields)).empty());
  EXPECT_EQ(fieldCount(fields), 6u);
  EXPECT_FALSE(allowedInTrailers(":status"));
  EXPECT_FALSE(allowedInTrailers("transfer-encoding"));
  EXPECT_TRUE(allowedInTrailers("grpc-message"));
}

TEST(H2ConvertTest, TakeTrailersLeavesTheHeadAsItWas) {
  boost::beast::http::fields fields;
  fields.insert("Content-Type", "application/json");
  fields.insert("x-twice", "head");
  size_t head_fields = fieldCount(fields);
  fields.insert("x-twice", "trailer");     // same name as a head field: only this one goes
  fields.insert("Content-Length", "999");  // not allowed in trailers: dropped, not merged
  fields.insert("X-Digest", "sha-256=abc");
  auto trailers = takeTrailers(fields, head_fields);
  ASSERT_EQ(trailers.size(), 2u);
  EXPECT_EQ(trailers[0], std::make_pair(std::string("x-twice"), std::string("trailer")));
  EXPECT_EQ(trailers[1], std::make_pair(std::string("x-digest"), std::string("sha-256=abc")));
  EXPECT_EQ(fieldCount(fields), 2u);
  EXPECT_EQ(fields["x-twice"], "head");
  EXPECT_EQ(fields.count("x-twice"), 1u);
  EXPECT_EQ(fields.count("content-length"), 0u);
  EXPECT_TRUE(takeTrailers(fields, head_fields).empty());
  EXPECT_EQ(fieldCount(fields), 2u);
}

TEST(H2ConvertTest, ContentLengthOrNoBodyMeansNotChunked) {
  auto fields = base();
  fields.push_back({"content-length", "5"});
  Http1Request out;
  std::string error;
  ASSERT_TRUE(toHttp1Request(fields, true, out, error));
  EXPECT_FALSE(out.chunked);
  EXPECT_NE(out.head.find("content-length: 5\r\n"), std::string::npos);
  ASSERT_TRUE(toHttp1Request(base(), false, out, error));
  EXPECT_FALSE(out.chunked);
  EXPECT_EQ(out.head.find("transfer-encoding"), std::string::npos);
}

TEST(H2ConvertTest, ContentLengthMustBeOneNumber) {
  // Found by h2_convert_fuzz: a content-length the HTTP/1.1 parser cannot read.
  for (const char* bad : {":p=4", "", "-1", "5 ", "0x10", "1234567890123456789"}) {
    auto fields = base();
    fields.push_back({"content-length", bad});
    Http1Request out;
    std::string error;
    EXPECT_FALSE(toHttp1Request(fields, true, out, error)) << bad;
    EXPECT_EQ(error, "invalid content-length") << bad;
  }
  auto fields = base();
  fields.push_back({"content-length", "5"});
  fields.push_back({"content-length", "5"});
  Http1Request out;
  std::string error;
  EXPECT_FALSE(toHttp1Request(fields, true, out, error));
  EXPECT_EQ(error, "repeated content-length");
}

TEST(H2ConvertTest, UpperCaseFieldNamesAreRefused) {
  // Found by h2_convert_fuzz: "content-lEngth: :p=4" passed the (lower-case) content-length check
  // and produced a head the HTTP/1.1 parser refused. RFC 9113 §8.2.1 makes such requests malformed.
  for (const char* name : {"content-lEngth", "Host", "X-Api-Key", "CONNECTION"}) {
    auto fields = base();
    fields.push_back({name, "1"});
    Http1Request out;
    std::string error;
    EXPECT_FALSE(toHttp1Request(fields, true, out, error)) << name;
    EXPECT_EQ(error, std::string("header field name ") + name + " has upper case letters");
  }
}

TEST(H2ConvertTest, HostFieldStandsInForAMissingAuthority) {
  std::vector<HeaderField> fields{
      {":method", "GET"}, {":scheme", "https"}, {":path", "/"}, {"host", "example.com"}};
  Http1Request out;
  std::string error;
  ASSERT_TRUE(toHttp1Request(fields, false, out, error)) << error;
  EXPECT_EQ(out.head, "GET / HTTP/1.1\r\nhost: example.com\r\n\r\n");
}

TEST(H2ConvertTest, RequestsHttp1CannotCarryAreRefusedWithAReason) {
  struct Case {
    std::vector<HeaderField> fields;
    std::string error;
  };
  std::vector<Case> cases{
      {{{":scheme", "https"}, {":authority", "a"}, {":path", "/"}}, "missing :method"},
      {{{":method", "CONNECT"}, {":authority", "a:443"}}, "CONNECT"},
      {{{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}}, "missing :path"},
      {{{":method", "GET"}, {":authority", "a"}, {":path", "/"}}, "missing :scheme"},
      {{{":method", "GET"}, {":scheme", "https"}, {":path", "/"}}, "missing :authority"},
      {{{":method", "GET"}, {":method", "GET"}, {":scheme", "https"}, {":path", "/"}},
       "repeated pseudo-header :method"},
      {{{":method", "GET"}, {":protocol", "websocket"}}, "unknown pseudo-header :protocol"},
      {{{":method", "G T"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/"}},
       "invalid :method"},
      {{{":method", "GET"}, {":scheme", "https"}, {":authority", "a"}, {":path", "/ HTTP/1.1"}},
       "invalid :path"},
      {{{":method", "GET"}, {":scheme", "https"}, {":authority", "a/b"}, {":path", "/"}},
       "invalid :authority"},
      {{{":method", "GET"},
        {":scheme", "https"},
        {":authority", "a"},
        {":path", "/"},
        {"x-a", "1\r\nx-injected: 2"}},
       "control byte"},
      {{{":method", "GET"},
        {":scheme", "https"},
        {":authority", "a"},
        {":path", "/"},
        {"bad name", "1"}},
       "invalid header field name"},
  };
  for (const auto& c : cases) {
    Http1Request out;
    std::string error;
    EXPECT_FALSE(toHttp1Request(c.fields, false, out, error)) << c.error;
    EXPECT_NE(error.find(c.error), std::string::npos) << error << " vs " << c.error;
  }
}

TEST(H2ConvertTest, ResponseDropsHopByHopFieldsAndLowersNames) {
  http::response_header<> head;
  head.result(http::status::ok);
  head.set(http::field::content_type, "text/event-stream");
  head.set(http::field::connection, "keep-alive, X-Private");
  head.set("X-Private", "secret hop");
  head.set(http::field::transfer_encoding, "chunked");
  head.set("Keep-Alive", "timeout=5");
  head.set("X-Request-Id", "abc");
  auto out = toHttp2Response(head);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], (std::pair<std::string, std::string>{":status", "200"}));
  EXPECT_EQ(out[1], (std::pair<std::string, std::string>{"content-type", "text/event-stream"}));
  EXPECT_EQ(out[2], (std::pair<std::string, std::string>{"x-request-id", "abc"}));
}

}  // namespace
}  // namespace clrk::egress::h2
