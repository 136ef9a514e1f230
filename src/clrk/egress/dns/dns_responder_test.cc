#include "clrk/egress/dns/dns_test_util.h"
#include "clrk/egress/dns/message.h"
#include "clrk/egress/dns/responder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>

namespace clrk::egress::dns {
namespace {

using testing::decode;
using ::testing::HasSubstr;
using testing::makeQuery;
using testing::QuerySpec;

QuerySpec spec(std::string name, uint16_t type = kTypeA) {
  QuerySpec s;
  s.name = std::move(name);
  s.type = type;
  return s;
}

// No sockets: the decisions alone, with the client address passed through to the policy.
TEST(Responder, AsksThePolicyWithTheClientAddress) {
  NameTable table;
  std::vector<std::string> calls;
  std::vector<QueryLog> logs;
  Responder responder(
      table,
      [&](const std::string& name, const std::string& client) {
        calls.push_back(name + "@" + client);
        return client == "10.200.0.2" ? Answer::kSynthetic : Answer::kNxDomain;
      },
      Responder::Options{std::chrono::seconds(7), [&](const QueryLog& l) { logs.push_back(l); }});

  auto allowed = decode(responder.respond(makeQuery(spec("api.openai.com")), "10.200.0.2", 5353));
  ASSERT_EQ(allowed.answers.size(), 1u);
  EXPECT_EQ(allowed.answers[0].ttl, 7u);
  auto other = decode(responder.respond(makeQuery(spec("api.openai.com")), "10.200.0.6", 5353));
  EXPECT_EQ(other.rcode(), kRcodeNxDomain);
  EXPECT_EQ(calls,
            (std::vector<std::string>{"api.openai.com@10.200.0.2", "api.openai.com@10.200.0.6"}));
  ASSERT_EQ(logs.size(), 2u);
  EXPECT_EQ(logs[0].client_port, 5353);
  EXPECT_EQ(logs[1].decision, Answer::kNxDomain);
}

TEST(Responder, NullPolicyRefusesAndThrowingLogCallbackIsContained) {
  NameTable table;
  Responder responder(table, nullptr,
                      Responder::Options{std::chrono::seconds(30), [](const QueryLog&) {
                                           throw std::runtime_error("log sink down");
                                         }});
  auto d = decode(responder.respond(makeQuery(spec("api.openai.com")), "10.200.0.2", 1));
  EXPECT_EQ(d.rcode(), kRcodeRefused);
  // Nothing to send for garbage without a header or for responses.
  EXPECT_TRUE(responder.respond(std::vector<uint8_t>{1, 2}, "10.200.0.2", 1).empty());
  auto response = makeQuery(spec("a.com"));
  response[2] |= 0x80;
  EXPECT_TRUE(responder.respond(response, "10.200.0.2", 1).empty());
}

TEST(Responder, FormErrCarriesTheParseErrorInTheLog) {
  NameTable table;
  std::vector<QueryLog> logs;
  Responder responder(
      table, [](const std::string&, const std::string&) { return Answer::kSynthetic; },
      Responder::Options{std::chrono::seconds(30), [&](const QueryLog& l) { logs.push_back(l); }});
  std::vector<uint8_t> label64 = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64};
  label64.insert(label64.end(), 64, 'a');
  label64.insert(label64.end(), {0, 0, 1, 0, 1});
  auto d = decode(responder.respond(label64, "10.200.0.2", 1));
  EXPECT_EQ(d.rcode(), kRcodeFormErr);
  EXPECT_EQ(d.id, 1);
  ASSERT_EQ(logs.size(), 1u);
  EXPECT_EQ(logs[0].rcode, kRcodeFormErr);
  EXPECT_THAT(logs[0].error, HasSubstr("label length byte 0x40 at offset 12"));
  EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace clrk::egress::dns
