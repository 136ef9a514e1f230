#include "clrk/egress/dns/dns_test_util.h"
#include "clrk/egress/dns/message.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace clrk::egress::dns {
namespace {

using testing::decode;
using ::testing::HasSubstr;
using testing::makeQuery;
using testing::push16;
using testing::QuerySpec;
using testing::wireName;

// Header with the given counts followed by `body`.
std::vector<uint8_t> packet(uint16_t qd, uint16_t an, uint16_t ns, uint16_t ar,
                            const std::vector<uint8_t>& body, uint16_t flags = 0x0100) {
  std::vector<uint8_t> out;
  push16(out, 0xBEEF);
  push16(out, flags);
  push16(out, qd);
  push16(out, an);
  push16(out, ns);
  push16(out, ar);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> questionBody(const std::string& name, uint16_t type = kTypeA) {
  auto body = wireName(name);
  push16(body, type);
  push16(body, kClassIn);
  return body;
}

std::string parseError(const std::vector<uint8_t>& bytes) {
  auto q = parseQuery(bytes);
  EXPECT_FALSE(q.ok());
  if (q.ok()) return "";
  EXPECT_EQ(q.status().code(), Code::InvalidArgument);
  return q.status().message();
}

TEST(ParseQuery, ParsesARecordQueryAndLowerCasesTheName) {
  QuerySpec spec;
  spec.name = "Api.OpenAI.COM";
  spec.id = 0xABCD;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok()) << q.status().toString();
  EXPECT_EQ(q->id, 0xABCD);
  EXPECT_EQ(q->flags, 0x0100);
  EXPECT_EQ(q->question.name, "api.openai.com");
  EXPECT_EQ(q->name_as_sent, "Api.OpenAI.COM");
  EXPECT_EQ(q->question.type, kTypeA);
  EXPECT_EQ(q->question.klass, kClassIn);
  EXPECT_FALSE(q->has_edns);
  EXPECT_EQ(q->edns_udp_size, 512);
}

TEST(ParseQuery, ParsesEdns) {
  QuerySpec spec;
  spec.edns = true;
  spec.edns_size = 1232;
  spec.edns_do = true;
  spec.type = kTypeAaaa;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok()) << q.status().toString();
  EXPECT_TRUE(q->has_edns);
  EXPECT_EQ(q->edns_udp_size, 1232);
  EXPECT_TRUE(q->edns_do);
  EXPECT_EQ(q->edns_version, 0);
  EXPECT_EQ(q->question.type, kTypeAaaa);

  spec.edns_size = 100;  // below the floor
  spec.edns_version = 1;
  q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->edns_udp_size, 512);
  EXPECT_EQ(q->edns_version, 1);
}

TEST(ParseQuery, ParsesRootAndUnderscoreNames) {
  auto root = parseQuery(packet(1, 0, 0, 0, questionBody("", kTypeNs)));
  ASSERT_TRUE(root.ok()) << root.status().toString();
  EXPECT_EQ(root->question.name, "");
  auto srv = parseQuery(packet(1, 0, 0, 0, questionBody("_http._tcp.Example.org", kTypeSrv)));
  ASSERT_TRUE(srv.ok()) << srv.status().toString();
  EXPECT_EQ(srv->question.name, "_http._tcp.example.org");
}

TEST(ParseQuery, FollowsBackwardCompressionPointerInAdditionalRecord) {
  // An additional (non-OPT) record whose owner points back at the question name.
  auto body = questionBody("a.example");
  body.push_back(0xC0);
  body.push_back(12);
  push16(body, kTypeTxt);
  push16(body, kClassIn);
  push16(body, 0);
  push16(body, 60);
  push16(body, 2);
  body.push_back(1);
  body.push_back('x');
  auto q = parseQuery(packet(1, 0, 0, 1, body));
  ASSERT_TRUE(q.ok()) << q.status().toString();
  EXPECT_EQ(q->question.name, "a.example");
  EXPECT_FALSE(q->has_edns);
}

TEST(ParseQuery, RejectsShortHeader) {
  EXPECT_THAT(parseError({0x12, 0x34, 0x01}), HasSubstr("3 bytes is shorter than the 12-byte"));
  EXPECT_THAT(parseError({}), HasSubstr("0 bytes"));
}

TEST(ParseQuery, RejectsResponses) {
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, questionBody("a.com"), 0x8180)),
              HasSubstr("QR bit set"));
}

TEST(ParseQuery, RequiresExactlyOneQuestion) {
  EXPECT_THAT(parseError(packet(0, 0, 0, 0, {})), HasSubstr("QDCOUNT at offset 4 is 0"));
  auto two = questionBody("a.com");
  auto second = questionBody("b.com");
  two.insert(two.end(), second.begin(), second.end());
  EXPECT_THAT(parseError(packet(2, 0, 0, 0, two)), HasSubstr("QDCOUNT at offset 4 is 2"));
}

TEST(ParseQuery, RejectsTruncatedPackets) {
  auto full = makeQuery(QuerySpec{});
  // Every strict prefix longer than the header fails with a message naming an offset.
  for (size_t n = kHeaderSize; n < full.size(); ++n) {
    std::vector<uint8_t> prefix(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    std::string err = parseError(prefix);
    EXPECT_THAT(err, HasSubstr("offset")) << n;
    EXPECT_THAT(err, HasSubstr("past the end")) << n;
  }
  // A record promised by ARCOUNT but absent.
  EXPECT_THAT(parseError(packet(1, 0, 0, 1, questionBody("a.com"))), HasSubstr("past the end"));
}

TEST(ParseQuery, RejectsCompressionLoop) {
  // The question name is a pointer to itself.
  std::vector<uint8_t> body = {0xC0, 12, 0, 1, 0, 1};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, body)),
              HasSubstr("compression pointer at offset 12 points to offset 12, not strictly "
                        "before 12"));
  // Two pointers pointing at each other, in an additional record's owner name.
  auto body2 = questionBody("a.com");  // offsets 12..22
  const size_t first = kHeaderSize + body2.size();
  body2.push_back(0xC0);
  body2.push_back(static_cast<uint8_t>(first + 2));  // forward to the second pointer
  body2.push_back(0xC0);
  body2.push_back(static_cast<uint8_t>(first));  // back to the first
  push16(body2, kTypeTxt);
  push16(body2, kClassIn);
  push16(body2, 0);
  push16(body2, 0);
  push16(body2, 0);
  EXPECT_THAT(parseError(packet(1, 0, 0, 1, body2)), HasSubstr("loop or forward reference"));
  // A label followed by a pointer back to that same label (each pass adds bytes): caught by the
  // backwards-only rule before the length limit.
  auto body3 = questionBody("a.com");
  const size_t label = kHeaderSize + body3.size();
  body3.push_back(1);
  body3.push_back('x');
  body3.push_back(0xC0);
  body3.push_back(static_cast<uint8_t>(label));
  push16(body3, kTypeTxt);
  push16(body3, kClassIn);
  push16(body3, 0);
  push16(body3, 0);
  push16(body3, 0);
  EXPECT_THAT(parseError(packet(1, 0, 0, 1, body3)), HasSubstr("not strictly before"));
}

TEST(ParseQuery, RejectsPointerOutOfRangeOrIntoHeader) {
  std::vector<uint8_t> out_of_range = {0xC3, 0xFF, 0, 1, 0, 1};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, out_of_range)),
              HasSubstr("points to offset 1023, outside the packet (18 bytes)"));
  std::vector<uint8_t> header = {0xC0, 0x04, 0, 1, 0, 1};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, header)), HasSubstr("points into the header"));
  std::vector<uint8_t> truncated = {0xC0};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, truncated)),
              HasSubstr("truncated compression pointer at offset 12"));
}

TEST(ParseQuery, RejectsLongLabelsAndNames) {
  std::vector<uint8_t> body = {64};
  body.insert(body.end(), 64, 'a');
  body.push_back(0);
  push16(body, 1);
  push16(body, 1);
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, body)),
              HasSubstr("label length byte 0x40 at offset 12"));

  // 4 labels of 63 bytes = 256 wire bytes with the final zero.
  std::string label(63, 'b');
  std::string too_long = label + "." + label + "." + label + "." + label;
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, questionBody(too_long))),
              HasSubstr("name starting at offset 12 is longer than 255 bytes"));
  // 3 x 63 + one of 61 = 255 exactly: accepted.
  std::string max_len = label + "." + label + "." + label + "." + std::string(61, 'c');
  auto ok = parseQuery(packet(1, 0, 0, 0, questionBody(max_len)));
  ASSERT_TRUE(ok.ok()) << ok.status().toString();
  EXPECT_EQ(ok->question.name.size(), 253u);
}

TEST(ParseQuery, RejectsUnprintableOrDottedLabelBytes) {
  std::vector<uint8_t> body = {3, 'a', '.', 'b', 0, 0, 1, 0, 1};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, body)), HasSubstr("byte 0x2e at offset 14"));
  body = {3, 'a', 0, 'b', 0, 0, 1, 0, 1};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, body)), HasSubstr("byte 0x00 at offset 14"));
  body = {2, 'a', ' ', 0, 0, 1, 0, 1};
  EXPECT_THAT(parseError(packet(1, 0, 0, 0, body)), HasSubstr("byte 0x20"));
}

TEST(ParseQuery, ValidatesOptRecords) {
  auto opt = [](std::vector<uint8_t>& body) {
    body.push_back(0);
    push16(body, kTypeOpt);
    push16(body, 4096);
    push16(body, 0);
    push16(body, 0);
    push16(body, 0);
  };
  auto two = questionBody("a.com");
  opt(two);
  opt(two);
  EXPECT_THAT(parseError(packet(1, 0, 0, 2, two)), HasSubstr("second OPT record at offset"));

  auto answer_section = questionBody("a.com");
  opt(answer_section);
  EXPECT_THAT(parseError(packet(1, 1, 0, 0, answer_section)),
              HasSubstr("outside the additional section"));

  auto non_root = questionBody("a.com");
  non_root.push_back(0xC0);
  non_root.push_back(12);
  push16(non_root, kTypeOpt);
  push16(non_root, 4096);
  push16(non_root, 0);
  push16(non_root, 0);
  push16(non_root, 0);
  EXPECT_THAT(parseError(packet(1, 0, 0, 1, non_root)), HasSubstr("non-root owner"));

  auto overrun = questionBody("a.com");
  overrun.push_back(0);
  push16(overrun, kTypeOpt);
  push16(overrun, 4096);
  push16(overrun, 0);
  push16(overrun, 0);
  push16(overrun, 10);  // RDLENGTH 10, nothing follows
  EXPECT_THAT(parseError(packet(1, 0, 0, 1, overrun)), HasSubstr("RDATA of 10 bytes"));
}

TEST(BuildResponse, RoundTripsARecords) {
  QuerySpec spec;
  spec.name = "Api.OpenAI.com";
  spec.id = 0x4242;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok());
  std::vector<std::array<uint8_t, 4>> addrs = {{198, 18, 0, 1}, {198, 18, 0, 2}};
  auto bytes = buildResponse(*q, kRcodeNoError, addrs, 30);
  auto d = decode(bytes);
  EXPECT_EQ(d.id, 0x4242);
  EXPECT_TRUE(d.flags & kFlagQr);
  EXPECT_TRUE(d.flags & kFlagAa);
  EXPECT_TRUE(d.flags & kFlagRa);
  EXPECT_TRUE(d.flags & kFlagRd);
  EXPECT_FALSE(d.flags & kFlagTc);
  EXPECT_EQ(opcodeOf(d.flags), 0);
  EXPECT_EQ(d.rcode(), kRcodeNoError);
  EXPECT_EQ(d.qdcount, 1);
  EXPECT_EQ(d.qname, "Api.OpenAI.com");  // case preserved for 0x20-randomising clients
  EXPECT_EQ(d.qtype, kTypeA);
  EXPECT_EQ(d.qclass, kClassIn);
  ASSERT_EQ(d.answers.size(), 2u);
  EXPECT_EQ(d.answers[0].name, "Api.OpenAI.com");
  EXPECT_EQ(d.answers[0].type, kTypeA);
  EXPECT_EQ(d.answers[0].klass, kClassIn);
  EXPECT_EQ(d.answers[0].ttl, 30u);
  EXPECT_EQ(d.answers[0].rdata, (std::vector<uint8_t>{198, 18, 0, 1}));
  EXPECT_EQ(d.answers[1].rdata, (std::vector<uint8_t>{198, 18, 0, 2}));
  EXPECT_EQ(d.arcount, 0);
  // Our own response is not a query.
  EXPECT_THAT(parseQuery(bytes).status().message(), HasSubstr("QR bit set"));
}

TEST(BuildResponse, CopiesRdOnlyWhenSet) {
  QuerySpec spec;
  spec.flags = 0;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok());
  auto d = decode(buildResponse(*q, kRcodeNxDomain, {}, 0));
  EXPECT_FALSE(d.flags & kFlagRd);
  EXPECT_EQ(d.rcode(), kRcodeNxDomain);
  EXPECT_EQ(d.ancount, 0);
}

TEST(BuildResponse, EchoesEdnsAndCarriesExtendedRcodes) {
  QuerySpec spec;
  spec.edns = true;
  spec.edns_do = true;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok());
  std::array<uint8_t, 4> addr = {198, 18, 0, 9};
  auto d = decode(buildResponse(*q, kRcodeNoError, std::span(&addr, 1), 30));
  ASSERT_EQ(d.additional.size(), 1u);
  EXPECT_EQ(d.additional[0].type, kTypeOpt);
  EXPECT_EQ(d.additional[0].name, "");
  EXPECT_EQ(d.additional[0].klass, kServerUdpPayload);
  EXPECT_EQ(d.additional[0].ttl, 0x8000u);  // DO echoed, version 0, ext rcode 0

  auto bad = decode(buildResponse(*q, kRcodeBadVers, {}, 0));
  EXPECT_EQ(bad.rcode(), 0);  // 16 = 1 << 4: low bits 0, high bits in OPT
  ASSERT_EQ(bad.additional.size(), 1u);
  EXPECT_EQ(bad.additional[0].ttl >> 24, 1u);

  spec.edns = false;
  auto plain = parseQuery(makeQuery(spec));
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(decode(buildResponse(*plain, kRcodeBadVers, {}, 0)).rcode(), kRcodeServFail);
}

TEST(BuildResponse, SetsTcWhenAnswersDoNotFit) {
  std::string label(63, 'x');
  QuerySpec spec;
  spec.name = label + "." + label + "." + label;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok());
  std::vector<std::array<uint8_t, 4>> addrs(20, {198, 18, 0, 1});  // 20 x 16 bytes + ~210
  auto bytes = buildResponse(*q, kRcodeNoError, addrs, 30);
  EXPECT_LE(bytes.size(), 512u);
  auto d = decode(bytes);
  EXPECT_TRUE(d.flags & kFlagTc);
  EXPECT_EQ(d.ancount, 0);

  spec.edns = true;
  spec.edns_size = 4096;
  auto big = parseQuery(makeQuery(spec));
  ASSERT_TRUE(big.ok());
  auto d2 = decode(buildResponse(*big, kRcodeNoError, addrs, 30));
  EXPECT_FALSE(d2.flags & kFlagTc);
  EXPECT_EQ(d2.answers.size(), 20u);
}

TEST(BuildPtrResponse, RoundTrips) {
  QuerySpec spec;
  spec.name = "5.0.18.198.in-addr.arpa";
  spec.type = kTypePtr;
  auto q = parseQuery(makeQuery(spec));
  ASSERT_TRUE(q.ok());
  auto d = decode(buildPtrResponse(*q, "api.openai.com", 30));
  EXPECT_EQ(d.rcode(), kRcodeNoError);
  ASSERT_EQ(d.answers.size(), 1u);
  EXPECT_EQ(d.answers[0].type, kTypePtr);
  EXPECT_EQ(d.answers[0].name, "5.0.18.198.in-addr.arpa");
  EXPECT_EQ(d.answers[0].rdata_name, "api.openai.com");

  auto bad = decode(buildPtrResponse(*q, "a..b", 30));
  EXPECT_EQ(bad.rcode(), kRcodeServFail);
  EXPECT_EQ(bad.ancount, 0);
}

TEST(BuildError, EchoesHeaderAndRefusesToAnswerResponses) {
  EXPECT_TRUE(buildError(std::vector<uint8_t>{1, 2, 3}, kRcodeFormErr).empty());
  auto response = packet(1, 0, 0, 0, questionBody("a.com"), 0x8180);
  EXPECT_TRUE(buildError(response, kRcodeFormErr).empty());

  // Opcode 2 (STATUS), RD set, garbage after the header.
  auto garbage = packet(7, 0, 0, 0, {0xFF, 0xFF}, 0x1100);
  auto d = decode(buildError(garbage, kRcodeNotImp));
  EXPECT_EQ(d.id, 0xBEEF);
  EXPECT_TRUE(d.flags & kFlagQr);
  EXPECT_TRUE(d.flags & kFlagRd);
  EXPECT_EQ(opcodeOf(d.flags), 2);
  EXPECT_EQ(d.rcode(), kRcodeNotImp);
  EXPECT_EQ(d.qdcount + d.ancount + d.nscount + d.arcount, 0);
}

TEST(Names, TypeAndRcodeNames) {
  EXPECT_EQ(typeName(kTypeA), "A");
  EXPECT_EQ(typeName(kTypeAaaa), "AAAA");
  EXPECT_EQ(typeName(999), "TYPE999");
  EXPECT_EQ(rcodeName(kRcodeNxDomain), "NXDOMAIN");
  EXPECT_EQ(rcodeName(kRcodeBadVers), "BADVERS");
  EXPECT_EQ(rcodeName(12), "RCODE12");
}

}  // namespace
}  // namespace clrk::egress::dns
