// TaskAgent spec.identity: the JSONPath subset, compiling extractors (and their errors), and
// extraction from headers, JSON bodies and JWT claims, with malformed inputs, bounds and order.
#include "clrk/controller/caller_identity.h"

#include "clrk/api/registry.h"
#include "clrk/api/validation.h"
#include "clrk/base/base64.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace clrk::controller {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

std::string base64Url(std::string_view data) {
  std::string text = base64Encode(data);
  std::replace(text.begin(), text.end(), '+', '-');
  std::replace(text.begin(), text.end(), '/', '_');
  while (!text.empty() && text.back() == '=') text.pop_back();
  return text;
}

std::string jwt(const Json& payload) {
  return base64Url(R"({"alg":"RS256","typ":"JWT"})") + "." + base64Url(payload.dump()) +
         ".c2lnbmF0dXJl";
}

// A vector, not a Json: nlohmann reads a one-element brace list as a copy, not an array.
std::vector<IdentityExtractor> compile(const std::vector<Json>& extractors) {
  auto compiled = compileIdentityExtractors(Json{{"extractors", Json(extractors)}});
  EXPECT_TRUE(compiled.ok()) << compiled.status().toString();
  return compiled.ok() ? compiled.value() : std::vector<IdentityExtractor>{};
}

std::string compileError(const std::vector<Json>& extractors) {
  auto compiled = compileIdentityExtractors(Json{{"extractors", Json(extractors)}});
  return compiled.ok() ? "" : compiled.status().message();
}

Json header(const std::string& name, const std::string& field) {
  return {{"type", "Header"}, {"header", {{"name", name}, {"field", field}}}};
}
Json body(const std::string& path, const std::string& field) {
  return {{"type", "Body"}, {"body", {{"jsonPath", path}, {"field", field}}}};
}
Json claim(const std::string& name, const std::string& field) {
  return {{"type", "JWT"}, {"jwt", {{"claim", name}, {"field", field}}}};
}

TEST(JsonPathTest, ParsesTheSubsetAndSelects) {
  auto path = JsonPath::parse("$.auth.users[1]['display name'][\"x\"]");
  ASSERT_TRUE(path.ok()) << path.status().toString();
  ASSERT_EQ(path->segments().size(), 5u);
  EXPECT_EQ(path->segments()[0].name, "auth");
  EXPECT_EQ(path->segments()[2].index, 1u);
  EXPECT_EQ(path->segments()[3].name, "display name");
  Json document = Json::parse(R"({"auth":{"users":[{}, {"display name":{"x":"found"}}]}})");
  const Json* selected = path->select(document);
  ASSERT_NE(selected, nullptr);
  EXPECT_EQ(*selected, "found");

  auto root = JsonPath::parse("$");
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->select(document), &document);
  // Missing members, indexes out of range and type mismatches select nothing.
  for (const char* text : {"$.nope", "$.auth.users[2]", "$.auth[0]", "$.auth.users.x"}) {
    auto miss = JsonPath::parse(text);
    ASSERT_TRUE(miss.ok()) << text;
    EXPECT_EQ(miss->select(document), nullptr) << text;
  }
}

TEST(JsonPathTest, RefusesWhatIsOutsideTheSubsetNamingWhatAndWhere) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {"", "jsonPath is empty"},
           {"user", "want \"$\" (the document root) first at offset 0"},
           {"$.", "want a member name ([A-Za-z0-9_-]) after \".\" at offset 2"},
           {"$..user", "recursive descent (..) is not supported at offset 2"},
           {"$.*", "wildcards are not supported at offset 2"},
           {"$[*]", "wildcards are not supported at offset 2"},
           {"$[-1]", "negative indexes are not supported at offset 2"},
           {"$[0:2]", "slices are not supported at offset 3"},
           {"$[?(@.a)]", "filters are not supported at offset 2"},
           {"$[1234567]", "index over 6 digits at offset 2"},
           {"$['a", "unterminated quoted name at offset 2"},
           {"$['a\\'b']", "escapes in quoted names are not supported at offset 4"},
           {"$[0", "want \"]\" at offset 3"},
           {"$user", "want \".name\" or \"[...]\" at offset 1"},
       }) {
    auto parsed = JsonPath::parse(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), Code::InvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.message)) << c.text;
  }
  // Bounds: length and segment count; control bytes are escaped in the message.
  EXPECT_THAT(JsonPath::parse("$" + std::string(300, 'a')).status().message(),
              HasSubstr("longer than 256 characters"));
  std::string deep = "$";
  for (int i = 0; i < 33; ++i) deep += ".a";
  EXPECT_THAT(JsonPath::parse(deep).status().message(), HasSubstr("more than 32 segments"));
  EXPECT_THAT(JsonPath::parse(std::string("$['\x01']")).status().message(),
              HasSubstr("jsonPath \"$['\\x01']\": control character"));
}

// The TaskAgent schema refuses the same paths when the object is applied: its pattern is the
// parser's grammar.
TEST(JsonPathTest, SchemaPatternMatchesTheParser) {
  const api::Schema* schema = api::Registry::builtin()
                                  .byKind("clrk.apoxy.dev/v1alpha1", "TaskAgent")
                                  ->schema->property("spec")
                                  ->property("identity")
                                  ->property("extractors")
                                  ->items->property("body")
                                  ->property("jsonPath");
  ASSERT_NE(schema, nullptr);
  EXPECT_EQ(schema->pattern, kJsonPathPattern);

  auto agent = [](const std::string& path) {
    return Json{{"apiVersion", "clrk.apoxy.dev/v1alpha1"},
                {"kind", "TaskAgent"},
                {"metadata", {{"name", "a"}, {"namespace", "default"}}},
                {"spec",
                 {{"workerPoolRef", "p"},
                  {"template", {{"spec", {{"image", "host"}}}}},
                  {"identity", {{"extractors", {body(path, "user")}}}}}}};
  };
  const auto& type = *api::Registry::builtin().byKind("clrk.apoxy.dev/v1alpha1", "TaskAgent");
  for (const char* good : {"$", "$.user.id", "$.a[0]['b c'][\"d\"]"}) {
    Json object = agent(good);
    EXPECT_TRUE(api::validateObject(type, object).empty()) << good;
    EXPECT_TRUE(JsonPath::parse(good).ok()) << good;
  }
  for (const char* bad : {"user", "$..a", "$[*]", "$[-1]", "$.a[0:1]"}) {
    Json object = agent(bad);
    auto errors = api::validateObject(type, object);
    ASSERT_EQ(errors.size(), 1u) << bad;
    EXPECT_EQ(errors[0].path, "spec.identity.extractors[0].body.jsonPath");
    EXPECT_FALSE(JsonPath::parse(bad).ok()) << bad;
  }
  // A long input is refused, not a crash of the regex engine.
  Json object = agent("$" + std::string(4000, 'a'));
  EXPECT_FALSE(api::validateObject(type, object).empty());
  // Field names: lower snake case.
  Json upper = agent("$.u");
  upper["spec"]["identity"]["extractors"][0]["body"]["field"] = "User";
  auto errors = api::validateObject(type, upper);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "spec.identity.extractors[0].body.field");
}

TEST(CompileIdentityTest, CompilesInOrderWithLabels) {
  auto extractors =
      compile({claim("sub", "user"), header("X-User", "user"), body("$.tenant.id", "tenant")});
  ASSERT_EQ(extractors.size(), 3u);
  EXPECT_EQ(extractors[0].type, IdentityExtractor::Type::Jwt);
  EXPECT_EQ(extractors[0].label, "extractors[0] (JWT claim sub)");
  EXPECT_EQ(extractors[1].label, "extractors[1] (Header X-User)");
  EXPECT_EQ(extractors[2].label, "extractors[2] (Body $.tenant.id)");
  EXPECT_EQ(extractors[2].field, "tenant");
  EXPECT_TRUE(compileIdentityExtractors(Json()).ok());
  EXPECT_TRUE(compileIdentityExtractors(Json::object())->empty());
}

TEST(CompileIdentityTest, ErrorsNameTheField) {
  EXPECT_EQ(compileError({Json::object({{"type", "Header"}})}),
            "spec.identity.extractors[0]: type Header needs header {name, field}");
  EXPECT_EQ(compileError({header("X-A", "a"), {{"type", "Body"}, {"jwt", {{"claim", "sub"}}}}}),
            "spec.identity.extractors[1]: type Body reads body, remove jwt");
  EXPECT_EQ(compileError({Json::object({{"type", "Cookie"}})}),
            "spec.identity.extractors[0].type \"Cookie\": want Header, Body or JWT");
  EXPECT_THAT(compileError({header("X-User", "User")}),
              HasSubstr("spec.identity.extractors[0].header.field \"User\": want "
                        "[a-z][a-z0-9_]{0,62}"));
  EXPECT_EQ(compileError({header("X User", "user")}),
            "spec.identity.extractors[0].header.name \"X User\": not an HTTP header name");
  EXPECT_THAT(compileError({header("authorization", "user")}),
              HasSubstr("spec.identity.extractors[0].header.name authorization: carries "
                        "credentials"));
  EXPECT_THAT(compileError({header("Cookie", "user")}), HasSubstr("carries credentials"));
  EXPECT_EQ(compileError({body("$..a", "user")}),
            "spec.identity.extractors[0].body.jsonPath: jsonPath \"$..a\": recursive descent "
            "(..) is not supported at offset 2");
  EXPECT_EQ(compileError({Json::object({{"type", "JWT"}, {"jwt", {{"field", "user"}}}})}),
            "spec.identity.extractors[0].jwt.claim: Required value");
  std::vector<Json> many;
  for (int i = 0; i < 17; ++i) many.push_back(header("X-A", "a"));
  EXPECT_EQ(compileError(many), "spec.identity.extractors: 17 extractors, at most 16");
}

TEST(ExtractIdentityTest, HeaderBodyAndJwtClaim) {
  auto extractors =
      compile({header("x-user", "user"), body("$.org.tenants[0]", "tenant"),
               claim("sub", "subject"), claim("admin", "admin"), claim("level", "level")});
  RequestHeaders headers = {
      {"X-User", "alice"},
      {"X-User", "mallory"},  // the first one counts
      {"Authorization", "Bearer " + jwt({{"sub", "u-42"}, {"admin", true}, {"level", 3}})}};
  CallerIdentity identity =
      extractCallerIdentity(extractors, headers, R"({"org":{"tenants":["acme","other"]}})");
  EXPECT_EQ(identity.fields, (std::map<std::string, std::string>{{"user", "alice"},
                                                                 {"tenant", "acme"},
                                                                 {"subject", "u-42"},
                                                                 {"admin", "true"},
                                                                 {"level", "3"}}));
  EXPECT_EQ(identity.sources["tenant"], "extractors[1] (Body $.org.tenants[0])");
  EXPECT_EQ(identity.sources["subject"], "extractors[2] (JWT claim sub)");
  EXPECT_TRUE(identity.notes.empty());
  EXPECT_FALSE(identity.verified);

  Json recorded = toJson(identity);
  EXPECT_EQ(recorded["fields"]["user"], "alice");
  EXPECT_EQ(recorded["verified"], false);
  EXPECT_FALSE(recorded.contains("notes"));
  EXPECT_EQ(callerFieldsJson(identity),
            R"({"admin":"true","level":"3","subject":"u-42","tenant":"acme","user":"alice"})");
  EXPECT_EQ(callerFieldEnvName("tenant_id"), "CLRK_IDENTITY_TENANT_ID");
}

TEST(ExtractIdentityTest, FirstExtractorThatYieldsWinsAndFailuresLeaveNotes) {
  auto extractors = compile({claim("sub", "user"), header("X-User", "user"), body("$.user", "user"),
                             header("X-Tenant", "tenant")});
  // No Authorization: the JWT extractor notes why, the header fills user, the body extractor
  // for user is not tried.
  CallerIdentity identity =
      extractCallerIdentity(extractors, {{"x-user", "bob"}}, R"({"user":"carol"})");
  EXPECT_EQ(identity.fields, (std::map<std::string, std::string>{{"user", "bob"}}));
  EXPECT_EQ(identity.sources["user"], "extractors[1] (Header X-User)");
  EXPECT_THAT(identity.notes, ElementsAre("extractors[0] (JWT claim sub): no Authorization header",
                                          "extractors[3] (Header X-Tenant): no X-Tenant header"));

  // With a usable JWT the later extractors for user are skipped.
  identity = extractCallerIdentity(
      extractors, {{"Authorization", "bearer  " + jwt({{"sub", "dave"}})}, {"X-User", "bob"}}, "");
  EXPECT_EQ(identity.fields["user"], "dave");
  EXPECT_EQ(identity.sources["user"], "extractors[0] (JWT claim sub)");
}

TEST(ExtractIdentityTest, MalformedJwtsFallThroughWithNotes) {
  auto extractors = compile({claim("sub", "user"), header("X-User", "user")});
  struct Case {
    std::string authorization;
    std::string note;
  };
  std::string header_b64 = base64Url(R"({"alg":"none"})");
  for (const Case& c : std::vector<Case>{
           {"Basic dXNlcjpwYXNz", "Authorization is not a Bearer token"},
           {"Bearer", "Authorization is not a Bearer token"},
           {"Bearer    ", "the Bearer token is empty"},
           {"Bearer opaque-token", "the bearer token is not a JWT"},
           {"Bearer a.b.c.d.e", "the bearer token is an encrypted JWT (JWE)"},
           {"Bearer a.b.c.d", "the bearer token is not a JWT"},
           {"Bearer " + header_b64 + ".!!!.sig", "the JWT payload is not base64url"},
           {"Bearer " + header_b64 + "..sig", "the JWT payload is not base64url"},
           {"Bearer " + header_b64 + "." + base64Url("[1,2]") + ".sig",
            "the JWT payload is not a JSON object"},
           {"Bearer " + header_b64 + "." + base64Url("{\"sub\":") + ".sig",
            "the JWT payload is not a JSON object"},
           {"Bearer " + base64Url("not json") + "." + base64Url("{}") + ".sig",
            "the JWT header is not a JSON object"},
           {"Bearer " + header_b64 + "." + base64Url("{}") + ".sig", "the JWT has no claim sub"},
           {"Bearer " + jwt({{"sub", {{"id", 1}}}}), "claim sub is an object"},
           {"Bearer " + jwt({{"sub", {1, 2}}}), "claim sub is an array"},
           {"Bearer " + jwt({{"sub", nullptr}}), "claim sub is null"},
           {"Bearer " + jwt({{"sub", ""}}), "unusable value (empty)"},
           {"Bearer " + jwt({{"sub", std::string(257, 'x')}}),
            "unusable value (longer than 256 bytes)"},
           {"Bearer " + jwt({{"sub", "a\nb"}}), "unusable value (contains a control character)"},
           {"Bearer " + jwt({{"sub", "x"}, {"pad", std::string(9000, 'p')}}),
            "the bearer token is longer than 8192 bytes"},
       }) {
    CallerIdentity identity = extractCallerIdentity(
        extractors, {{"Authorization", c.authorization}, {"X-User", "fallback"}}, "");
    EXPECT_EQ(identity.fields["user"], "fallback") << c.authorization;
    ASSERT_EQ(identity.notes.size(), 1u) << c.authorization;
    EXPECT_THAT(identity.notes[0], HasSubstr("extractors[0] (JWT claim sub): " + c.note))
        << c.authorization;
  }
  // JWTs never carry base64 padding: a padded part is refused.
  CallerIdentity padded = extractCallerIdentity(
      extractors, {{"Authorization", "Bearer " + header_b64 + ".e30=.sig"}}, "");
  EXPECT_TRUE(padded.fields.empty());
  EXPECT_THAT(padded.notes[0], HasSubstr("the JWT payload is not base64url"));
}

TEST(ExtractIdentityTest, MalformedBodiesAndBadValues) {
  auto extractors = compile({body("$.user", "user"), body("$.tenant", "tenant")});
  auto notes = [&](std::string_view text) {
    return extractCallerIdentity(extractors, {}, text).notes;
  };
  EXPECT_THAT(notes(""), ElementsAre(HasSubstr("the request body is empty"),
                                     HasSubstr("the request body is empty")));
  EXPECT_THAT(notes("{\"user\": "), ElementsAre("extractors[0] (Body $.user): the request body "
                                                "is not JSON",
                                                HasSubstr("not JSON")));
  EXPECT_THAT(notes(R"({"user": {"id": 1}, "tenant": [1]})"),
              ElementsAre(HasSubstr("the selected value is an object"),
                          HasSubstr("the selected value is an array")));
  EXPECT_THAT(notes(R"({"tenant": "t"})"),
              ElementsAre("extractors[0] (Body $.user): the path selects nothing in the body"));
  // Invalid UTF-8 cannot reach a JSON string, but a header can carry it.
  auto by_header = compile({header("X-User", "user")});
  for (const std::string& bad :
       {std::string("a\xff"), std::string("\xed\xa0\x80"), std::string("\xc0\xaf"),
        std::string("tab\there"), std::string(257, 'u'), std::string()}) {
    CallerIdentity identity = extractCallerIdentity(by_header, {{"X-User", bad}}, "");
    EXPECT_TRUE(identity.fields.empty()) << bad;
    ASSERT_EQ(identity.notes.size(), 1u);
    EXPECT_THAT(identity.notes[0], HasSubstr("unusable value (")) << bad;
  }
  // Exactly 256 bytes of multi-byte UTF-8 is fine.
  std::string accents;
  while (accents.size() < 256) accents += "\xc3\xa9";
  EXPECT_EQ(extractCallerIdentity(by_header, {{"X-User", accents}}, "").fields["user"], accents);
}

TEST(ExtractIdentityTest, NotesAreBounded) {
  std::string long_header = "X-" + std::string(250, 'h');
  auto extractors = compile({header(long_header, "user")});
  CallerIdentity identity = extractCallerIdentity(extractors, {}, "");
  ASSERT_EQ(identity.notes.size(), 1u);
  EXPECT_LE(identity.notes[0].size(), kMaxIdentityNoteBytes);
  EXPECT_TRUE(identity.notes[0].ends_with("..."));
}

TEST(ExtractIdentityTest, FromAnInvocationsSpecKeepsOnlyValidFields) {
  Json spec = {
      {"fields",
       {{"user", "alice"}, {"Bad Name", "x"}, {"tenant", 7}, {"long", std::string(300, 'l')}}},
      {"verified", true}};
  CallerIdentity identity = callerIdentityFromJson(spec);
  EXPECT_EQ(identity.fields, (std::map<std::string, std::string>{{"user", "alice"}}));
  EXPECT_EQ(identity.sources["user"], "spec.identity.fields");
  EXPECT_FALSE(identity.verified);  // never taken from the object
  EXPECT_EQ(identity.notes.size(), 3u);
  EXPECT_TRUE(callerIdentityFromJson(Json()).empty());
}

}  // namespace
}  // namespace clrk::controller
