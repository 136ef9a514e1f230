#include "clrk/cli/printer.h"

#include "clrk/cli/common.h"

#include <gtest/gtest.h>

namespace clrk::cli {
namespace {

using api::Json;

api::ResourceType agentType() {
  api::ResourceType type;
  type.group = "clrk.apoxy.dev";
  type.version = "v1alpha1";
  type.kind = "TaskAgent";
  type.plural = "taskagents";
  type.singular = "taskagent";
  type.printer_columns = {
      {"Image", "string", ".spec.image", "", "", 0},
      {"Replicas", "integer", ".spec.replicas", "", "", 0},
      {"Pool", "string", ".spec.workerPoolRef", "", "", 1},
  };
  return type;
}

Json agent(const std::string& ns, const std::string& name, const std::string& image,
           const std::string& created) {
  return {{"metadata", {{"name", name}, {"namespace", ns}, {"creationTimestamp", created}}},
          {"spec", {{"image", image}, {"replicas", 2}}}};
}

TEST(Printer, TableWithColumnsAndAge) {
  TableOptions options;
  options.now = *parseRfc3339("2026-11-25T04:00:00Z");
  std::vector<Json> objects = {
      agent("default", "echo", "busybox", "2026-11-25T03:59:15Z"),
      agent("team", "summarizer-long-name", "python:3.11", "2026-11-25T01:00:00Z")};
  objects[1]["spec"].erase("replicas");
  std::string table = formatTable(tableRows(agentType(), objects, options));
  EXPECT_EQ(table,
            "NAME                   IMAGE         REPLICAS   AGE\n"
            "echo                   busybox       2          45s\n"
            "summarizer-long-name   python:3.11   <none>     3h\n");

  options.wide = true;
  options.all_namespaces = true;
  auto rows = tableRows(agentType(), objects, options);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0],
            (std::vector<std::string>{"NAMESPACE", "NAME", "IMAGE", "REPLICAS", "POOL", "AGE"}));
  EXPECT_EQ(rows[2][0], "team");
  EXPECT_EQ(rows[2][4], "<none>");

  options.header = false;
  EXPECT_EQ(tableRows(agentType(), objects, options).size(), 2u);
}

TEST(Printer, CellText) {
  auto now = *parseRfc3339("2026-11-25T04:00:00Z");
  api::PrinterColumn date{"Last", "date", ".x", "", "", 0};
  EXPECT_EQ(cellText(date, "2026-11-25T03:00:00Z", now), "60m");
  api::PrinterColumn any{"X", "string", ".x", "", "", 0};
  EXPECT_EQ(cellText(any, Json(), now), "<none>");
  EXPECT_EQ(cellText(any, true, now), "true");
  EXPECT_EQ(cellText(any, 1.5, now), "1.5");
  EXPECT_EQ(cellText(any, Json::array({"a", "b"}), now), "[\"a\",\"b\"]");
}

TEST(Printer, ApplyOutcome) {
  Json after = {{"metadata", {{"resourceVersion", "12"}}}};
  EXPECT_EQ(decideApplyOutcome(std::nullopt, after), ApplyOutcome::Created);
  EXPECT_EQ(decideApplyOutcome(Json{{"metadata", {{"resourceVersion", "12"}}}}, after),
            ApplyOutcome::Unchanged);
  EXPECT_EQ(decideApplyOutcome(Json{{"metadata", {{"resourceVersion", "11"}}}}, after),
            ApplyOutcome::Configured);
  EXPECT_EQ(decideApplyOutcome(Json{{"metadata", Json::object()}}, after),
            ApplyOutcome::Configured);
  EXPECT_EQ(applyOutcomeName(ApplyOutcome::Unchanged), "unchanged");
}

TEST(Common, Base64AndDisplayNames) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_EQ(typeDisplayName(agentType()), "taskagent.clrk.apoxy.dev");
  api::ResourceType secret;
  secret.kind = "Secret";
  secret.version = "v1";
  EXPECT_EQ(typeDisplayName(secret), "secret");
}

TEST(Common, ResolvesRegistryTypes) {
  auto ta = resolveType("ta");
  ASSERT_TRUE(ta.ok()) << ta.status().toString();
  EXPECT_EQ((*ta)->kind, "TaskAgent");
  auto unknown = resolveType("frobnicators");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("\"frobnicators\""), std::string::npos);
}

}  // namespace
}  // namespace clrk::cli
