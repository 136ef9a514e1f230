// The committed deploy/crds/ must match what the registry generates.
#include "clrk/api/generate.h"
#include "clrk/base/files.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <set>

namespace clrk::api {
namespace {

constexpr const char* kHowToFix =
    "; regenerate with: cmake --build <build-dir> --target crds (runs clrk-gen-crds "
    "<source>/deploy/crds)";

TEST(CrdsTest, CommittedCrdsMatchTheRegistry) {
  const char* source = std::getenv("CLRK_SOURCE_DIR");
  if (source == nullptr) source = CLRK_DEFAULT_SOURCE_DIR;
  std::filesystem::path dir = std::filesystem::path(source) / "deploy" / "crds";
  std::set<std::string> expected;
  for (const auto& type : Registry::builtin().types()) {
    if (type.group != kGroup) continue;
    std::string name = type.qualifiedName() + ".yaml";
    expected.insert(name);
    auto committed = readFile(dir / name);
    ASSERT_TRUE(committed.ok()) << "deploy/crds/" << name << " is missing" << kHowToFix;
    EXPECT_EQ(*committed, crdYaml(type)) << "deploy/crds/" << name << " is stale" << kHowToFix;
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".yaml") {
      EXPECT_TRUE(expected.count(name))
          << "deploy/crds/" << name << " matches no registered type; delete it" << kHowToFix;
    }
  }
}

}  // namespace
}  // namespace clrk::api
