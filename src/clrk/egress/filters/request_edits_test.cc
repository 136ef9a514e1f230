#include "clrk/egress/filters/request_edits.h"

#include <gtest/gtest.h>

namespace clrk::egress::filters {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

TEST(RequestEditsTest, TrailersCannotCarryCredentialsOrEditedFields) {
  config::Credential credential;
  credential.name = "X-Custom-Token";
  credential.value = "secret";
  config::HeaderMutation edits;
  edits.remove = {"X-Debug"};
  edits.set = {{"X-Tenant", "a"}};
  edits.add = {{"x-note", "n"}};
  Fields trailers = {{"x-checksum", "abc"},      {"authorization", "Bearer agent"},
                     {"x-api-key", "agent"},     {"x-goog-api-key", "agent"},
                     {"x-custom-token", "mine"}, {"x-debug", "1"},
                     {"x-tenant", "b"},          {"x-note", "kept: add appends"}};
  filterRequestTrailers(trailers, &credential, edits);
  EXPECT_EQ(trailers, (Fields{{"x-checksum", "abc"}, {"x-note", "kept: add appends"}}));

  // Without a credential or edits, only the fields an agent could authenticate with go.
  Fields plain = {{"x-custom-token", "mine"}, {"api-key", "agent"}, {"x-checksum", "abc"}};
  filterRequestTrailers(plain, nullptr, config::HeaderMutation{});
  EXPECT_EQ(plain, (Fields{{"x-custom-token", "mine"}, {"x-checksum", "abc"}}));

  // A query-parameter credential names no header.
  credential.target = config::Credential::Target::kQueryParam;
  credential.name = "x-checksum";
  Fields query = {{"x-checksum", "abc"}};
  filterRequestTrailers(query, &credential, config::HeaderMutation{});
  EXPECT_EQ(query.size(), 1u);
}

TEST(RequestEditsTest, PercentEncodeKeepsUnreservedOnly) {
  EXPECT_EQ(percentEncode("a-b_c.d~e"), "a-b_c.d~e");
  EXPECT_EQ(percentEncode("k=v&x y/"), "k%3Dv%26x%20y%2F");
}

}  // namespace
}  // namespace clrk::egress::filters
