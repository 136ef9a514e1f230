// deploy/ as `clrk install` sees it: every manifest parses and validates, the CRDs are the
// generated ones, the RBAC is self-consistent, and the objects come in dependency order with the
// requested image.
#include "clrk/cli/installer.h"

#include "clrk/api/codec.h"
#include "clrk/api/generate.h"
#include "clrk/base/files.h"
#include "clrk/cli/deploy_manifests.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <set>

namespace clrk::cli {
namespace {

using Json = api::Json;

std::filesystem::path deployDir() {
  const char* source = std::getenv("CLRK_SOURCE_DIR");
  if (source == nullptr) source = CLRK_DEFAULT_SOURCE_DIR;
  return std::filesystem::path(source) / "deploy";
}

TEST(DeployManifestsTest, EveryFileParsesAndValidates) {
  ASSERT_FALSE(deployManifests().empty());
  for (const auto& file : deployManifests()) {
    auto documents = api::decodeManifests(file.text, std::string(file.path));
    ASSERT_TRUE(documents.ok()) << documents.status().message();
    EXPECT_FALSE(documents->empty()) << file.path;
    for (auto& document : *documents) {
      Status status = api::checkDocument(api::Registry::builtin(), document);
      EXPECT_TRUE(status.ok()) << status.message();
    }
  }
}

TEST(DeployManifestsTest, EmbeddedFilesAreTheSourceTree) {
  std::set<std::string> on_disk;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(deployDir())) {
    if (entry.path().extension() != ".yaml") continue;
    on_disk.insert(std::filesystem::relative(entry.path(), deployDir()).string());
  }
  std::set<std::string> embedded;
  for (const auto& file : deployManifests()) {
    embedded.insert(std::string(file.path));
    auto text = readFile(deployDir() / file.path);
    ASSERT_TRUE(text.ok()) << file.path;
    EXPECT_EQ(*text, file.text) << file.path << " changed since the build embedded it";
  }
  EXPECT_EQ(on_disk, embedded);
}

TEST(DeployManifestsTest, CrdsAreTheGeneratedOnes) {
  std::map<std::string, std::string_view> embedded;
  for (const auto& file : deployManifests()) embedded[std::string(file.path)] = file.text;
  for (const auto& type : api::Registry::builtin().types()) {
    if (type.group != api::kGroup) continue;
    std::string path = "crds/" + type.qualifiedName() + ".yaml";
    ASSERT_TRUE(embedded.count(path)) << path << " is missing";
    EXPECT_EQ(embedded[path], api::crdYaml(type))
        << path << " is stale; regenerate with: cmake --build <build-dir> --target crds";
  }
}

TEST(DeployManifestsTest, RbacReferencesResolve) {
  auto objects = installObjects({});
  ASSERT_TRUE(objects.ok()) << objects.status().message();
  std::set<std::string> defined;  // "Kind ns/name"
  for (const auto& object : *objects) defined.insert(describeObject(object));
  int bindings = 0;
  for (const auto& object : *objects) {
    std::string kind = object.value("kind", "");
    if (kind != "ClusterRoleBinding" && kind != "RoleBinding") continue;
    ++bindings;
    std::string role_kind = object["roleRef"].value("kind", "");
    std::string ns = role_kind == "Role" ? object["metadata"].value("namespace", "") + "/" : "";
    EXPECT_TRUE(defined.count(role_kind + " " + ns + object["roleRef"].value("name", "")))
        << describeObject(object) << " grants a role deploy/ does not define";
    for (const auto& subject : object["subjects"]) {
      EXPECT_TRUE(defined.count("ServiceAccount " + subject.value("namespace", "") + "/" +
                                subject.value("name", "")))
          << describeObject(object) << " binds a service account deploy/ does not define";
    }
  }
  EXPECT_EQ(bindings, 4);
  // The controller-manager runs as an account deploy/ defines.
  for (const auto& object : *objects) {
    if (object.value("kind", "") != "Deployment") continue;
    const Json& pod = object["spec"]["template"]["spec"];
    EXPECT_TRUE(defined.count("ServiceAccount " + object["metadata"].value("namespace", "") + "/" +
                              pod.value("serviceAccountName", "")));
  }
}

TEST(InstallerTest, OrdersObjectsAndSetsImages) {
  InstallOptions options;
  options.image = "registry.example/clrk:test";
  options.version = "v9.9.9";
  options.workers = 3;
  auto objects = installObjects(options);
  ASSERT_TRUE(objects.ok()) << objects.status().message();
  std::vector<std::string> kinds;
  for (const auto& object : *objects) {
    std::string kind = object.value("kind", "");
    if (kinds.empty() || kinds.back() != kind) kinds.push_back(kind);
  }
  std::vector<std::string> expected = {"CustomResourceDefinition",
                                       "Namespace",
                                       "ServiceAccount",
                                       "ClusterRole",
                                       "Role",
                                       "ClusterRole",
                                       "Role",
                                       "ClusterRoleBinding",
                                       "RoleBinding",
                                       "ClusterRoleBinding",
                                       "RoleBinding",
                                       "Deployment",
                                       "Service",
                                       "WorkerPool"};
  EXPECT_EQ(kinds, expected);
  int images = 0;
  for (const auto& object : *objects) {
    if (object.value("kind", "") == "Deployment") {
      EXPECT_EQ(object["metadata"]["annotations"][std::string(kVersionAnnotation)], "9.9.9");
      for (const auto& container : object["spec"]["template"]["spec"]["containers"]) {
        EXPECT_EQ(container["image"], "registry.example/clrk:test");
        ++images;
      }
    }
    if (object.value("kind", "") == "WorkerPool") {
      EXPECT_EQ(object["spec"]["template"]["image"], "registry.example/clrk:test");
      EXPECT_EQ(object["spec"]["replicas"], 3);
      ++images;
    }
  }
  EXPECT_EQ(images, 2);
}

TEST(InstallerTest, DefaultImageFollowsTheVersion) {
  EXPECT_EQ(imageForVersion("0.2.0"), "ghcr.io/apoxy-dev/clrk:v0.2.0");
  EXPECT_EQ(imageForVersion("v0.2.0"), "ghcr.io/apoxy-dev/clrk:v0.2.0");
  InstallOptions options;
  options.version = "0.3.1";
  auto objects = installObjects(options);
  ASSERT_TRUE(objects.ok());
  EXPECT_EQ(objects->back()["spec"]["template"]["image"], "ghcr.io/apoxy-dev/clrk:v0.3.1");
  EXPECT_NE(renderYaml(*objects).find("image: ghcr.io/apoxy-dev/clrk:v0.3.1"), std::string::npos);
}

TEST(InstallerTest, ErrorsNameTheObject) {
  kube::RestConfig config;
  config.server = "https://127.0.0.1:1";  // nothing listens there
  auto client = kube::Client::create(config);
  ASSERT_TRUE(client.ok()) << client.status().message();
  (*client)->setTimeout(std::chrono::seconds(2));
  std::vector<Json> bogus = {
      {{"apiVersion", "v1"}, {"kind", "Bogus"}, {"metadata", {{"name", "x"}}}}};
  Status unknown = applyObjects(**client, bogus, {}, std::cout);
  EXPECT_NE(unknown.message().find("Bogus x"), std::string::npos) << unknown.message();
  std::vector<Json> ns = {
      {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", "clrk-system"}}}}};
  Status unreachable = applyObjects(**client, ns, {}, std::cout);
  ASSERT_FALSE(unreachable.ok());
  EXPECT_NE(unreachable.message().find("Namespace clrk-system"), std::string::npos)
      << unreachable.message();
}

}  // namespace
}  // namespace clrk::cli
