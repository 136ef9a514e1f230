// The real kubectl against `clrk dev`: discovery, OpenAPI-validated apply, Table output with
// printer columns, describe, edit (merge patch), server-side apply, label selectors, watch,
// delete --wait, Secrets, and authentication.
#include "harness.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sys/stat.h>

namespace clrk::testing {
namespace {

using nlohmann::json;

class KubectlTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (runCommand("command -v kubectl").exit_code != 0) {
      skip_reason_ = "kubectl is not installed";
      return;
    }
    stack_ = new DevStack();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(stack_->up()) << stack_->startError();
  }

  std::string writeManifest(const std::string& name, const std::string& text) {
    std::string path = stack_->home() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  static json getJson(const std::string& args) {
    CommandResult result = stack_->kubectl("get " + args + " -o json --show-managed-fields");
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return json::parse(result.output, nullptr, false);
  }

  static DevStack* stack_;
  static std::string skip_reason_;
};

DevStack* KubectlTest::stack_ = nullptr;
std::string KubectlTest::skip_reason_;

constexpr const char* kAgent = R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: kube-echo
  labels:
    team: blue
spec:
  workerPoolRef: default-workers
  timeout: 30s
  template:
    spec:
      image: busybox
)";

TEST_F(KubectlTest, DiscoveryListsTheGroupAndNamespaces) {
  CommandResult resources = stack_->kubectl("api-resources --api-group=clrk.apoxy.dev");
  ASSERT_EQ(resources.exit_code, 0) << resources.output;
  EXPECT_NE(resources.output.find("taskagents"), std::string::npos) << resources.output;
  EXPECT_NE(resources.output.find("TaskAgent"), std::string::npos);
  CommandResult namespaces = stack_->kubectl("get namespaces");
  ASSERT_EQ(namespaces.exit_code, 0) << namespaces.output;
  EXPECT_NE(namespaces.output.find("default"), std::string::npos);
}

TEST_F(KubectlTest, ApplyWithDefaultValidationGetDescribeEditDelete) {
  std::string path = writeManifest("agent.yaml", kAgent);
  CommandResult created = stack_->kubectl("apply -f " + path);
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_NE(created.output.find("taskagent.clrk.apoxy.dev/kube-echo created"), std::string::npos)
      << created.output;

  CommandResult unchanged = stack_->kubectl("apply -f " + path);
  ASSERT_EQ(unchanged.exit_code, 0) << unchanged.output;
  EXPECT_NE(unchanged.output.find("unchanged"), std::string::npos) << unchanged.output;

  // Table output carries the printer columns (the image column shows the template's image).
  CommandResult table = stack_->kubectl("get ta");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("kube-echo"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("busybox"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find("IMAGE"), std::string::npos) << table.output;

  json object = getJson("ta kube-echo");
  ASSERT_TRUE(object.is_object());
  EXPECT_EQ(object["metadata"]["generation"], 1);
  EXPECT_FALSE(object["metadata"]["uid"].get<std::string>().empty());
  EXPECT_FALSE(object["metadata"]["resourceVersion"].get<std::string>().empty());
  EXPECT_EQ(object["spec"]["timeout"], "30s");

  CommandResult described = stack_->kubectl("describe ta kube-echo");
  ASSERT_EQ(described.exit_code, 0) << described.output;
  EXPECT_NE(described.output.find("kube-echo"), std::string::npos) << described.output;
  EXPECT_NE(described.output.find("busybox"), std::string::npos) << described.output;

  // edit: kubectl sends a merge patch built from the edited file.
  CommandResult edited =
      runCommand("KUBE_EDITOR=\"sed -i -e 's/timeout: 30s/timeout: 45s/'\" kubectl --kubeconfig='" +
                 stack_->kubeconfig() + "' --cache-dir='" + stack_->home() +
                 "/kubectl-cache' edit ta kube-echo");
  ASSERT_EQ(edited.exit_code, 0) << edited.output;
  object = getJson("ta kube-echo");
  EXPECT_EQ(object["spec"]["timeout"], "45s");
  EXPECT_EQ(object["metadata"]["generation"], 2);

  CommandResult patched =
      stack_->kubectl("patch ta kube-echo --type merge -p '{\"spec\":{\"maxConcurrent\":3}}'");
  ASSERT_EQ(patched.exit_code, 0) << patched.output;
  EXPECT_EQ(getJson("ta kube-echo")["spec"]["maxConcurrent"], 3);

  CommandResult by_label = stack_->kubectl("get ta -l team=blue -o name");
  EXPECT_NE(by_label.output.find("kube-echo"), std::string::npos) << by_label.output;
  CommandResult other_label = stack_->kubectl("get ta -l team=red -o name");
  EXPECT_EQ(other_label.output.find("kube-echo"), std::string::npos) << other_label.output;
  CommandResult all_namespaces = stack_->kubectl("get ta -A");
  EXPECT_NE(all_namespaces.output.find("default"), std::string::npos) << all_namespaces.output;

  CommandResult deleted = stack_->kubectl("delete ta kube-echo");
  ASSERT_EQ(deleted.exit_code, 0) << deleted.output;
  EXPECT_NE(deleted.output.find("deleted"), std::string::npos);
  CommandResult gone = stack_->kubectl("get ta kube-echo");
  EXPECT_NE(gone.exit_code, 0);
  EXPECT_NE(gone.output.find("NotFound"), std::string::npos) << gone.output;
}

TEST_F(KubectlTest, StrictValidationRejectsUnknownAndInvalidFields) {
  std::string unknown = writeManifest("unknown.yaml", std::string(kAgent) + "  bogus: 1\n");
  CommandResult rejected = stack_->kubectl("apply -f " + unknown);
  EXPECT_NE(rejected.exit_code, 0);
  EXPECT_NE(rejected.output.find("bogus"), std::string::npos) << rejected.output;

  std::string missing = writeManifest("missing.yaml", R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: no-pool
spec:
  template:
    spec:
      image: busybox
)");
  CommandResult invalid = stack_->kubectl("apply -f " + missing);
  EXPECT_NE(invalid.exit_code, 0);
  EXPECT_NE(invalid.output.find("workerPoolRef"), std::string::npos) << invalid.output;
  EXPECT_NE(stack_->kubectl("get ta no-pool").exit_code, 0);
}

TEST_F(KubectlTest, ServerSideApplyCreatesAndUpdates) {
  std::string path = writeManifest("ssa.yaml", R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: ssa-echo
spec:
  workerPoolRef: default-workers
  template:
    spec:
      image: busybox
)");
  CommandResult applied = stack_->kubectl("apply --server-side -f " + path);
  ASSERT_EQ(applied.exit_code, 0) << applied.output;
  EXPECT_NE(applied.output.find("serverside-applied"), std::string::npos) << applied.output;
  json object = getJson("ta ssa-echo");
  EXPECT_EQ(object["spec"]["timeout"], "100s");  // defaulted by the server
  ASSERT_TRUE(object["metadata"].contains("managedFields"));
  std::string updated = std::string(kAgent);
  updated.replace(updated.find("kube-echo"), 9, "ssa-echo");
  std::ofstream(path) << updated;
  applied = stack_->kubectl("apply --server-side -f " + path);
  ASSERT_EQ(applied.exit_code, 0) << applied.output;
  EXPECT_EQ(getJson("ta ssa-echo")["spec"]["timeout"], "30s");
  EXPECT_EQ(stack_->kubectl("delete ta ssa-echo").exit_code, 0);
}

TEST_F(KubectlTest, WatchSeesCreation) {
  std::string path = writeManifest("watched.yaml", R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: watched
spec:
  workerPoolRef: default-workers
  template:
    spec:
      image: busybox
)");
  std::string kubectl = "kubectl --kubeconfig='" + stack_->kubeconfig() + "' --cache-dir='" +
                        stack_->home() + "/kubectl-cache' ";
  std::string out = stack_->home() + "/watch.out";
  CommandResult watched =
      runCommand(kubectl + "get ta -w --output-watch-events > '" + out +
                 "' 2>&1 & pid=$!; sleep 2; " + kubectl + "apply -f " + path +
                 " >/dev/null; sleep 2; kill $pid; wait $pid; cat '" + out + "'");
  EXPECT_NE(watched.output.find("ADDED"), std::string::npos) << watched.output;
  EXPECT_NE(watched.output.find("watched"), std::string::npos) << watched.output;
  EXPECT_EQ(stack_->kubectl("delete ta watched").exit_code, 0);
}

TEST_F(KubectlTest, SecretsAreStoredAndTheDatabaseIsPrivate) {
  CommandResult created =
      stack_->kubectl("create secret generic provider-key --from-literal=api-key=sk-test-123");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  json secret = getJson("secret provider-key");
  EXPECT_EQ(secret["data"]["api-key"], "c2stdGVzdC0xMjM=");  // base64("sk-test-123")
  for (const auto& entry : std::filesystem::recursive_directory_iterator(stack_->home())) {
    if (!entry.is_regular_file()) continue;
    std::string name = entry.path().filename().string();
    if (name.rfind("state.db", 0) == 0 || name.find(".key") != std::string::npos ||
        name == "token") {
      struct stat info {};
      ASSERT_EQ(::stat(entry.path().c_str(), &info), 0);
      EXPECT_EQ(info.st_mode & 0077, 0u) << entry.path() << " is readable by others";
    }
  }
}

TEST_F(KubectlTest, ImperativeCommandsOnConfigMapsAndNamespaces) {
  // kubectl sends these typed creates in protobuf.
  CommandResult ns = stack_->kubectl("create namespace imperative");
  ASSERT_EQ(ns.exit_code, 0) << ns.output;
  CommandResult cm =
      stack_->kubectl("create configmap settings -n imperative --from-literal=mode=fast");
  ASSERT_EQ(cm.exit_code, 0) << cm.output;
  json config = getJson("configmap settings -n imperative");
  EXPECT_EQ(config["data"]["mode"], "fast");
  EXPECT_EQ(getJson("namespace imperative")["status"]["phase"], "Active");

  CommandResult labeled = stack_->kubectl("label configmap settings -n imperative tier=gold");
  ASSERT_EQ(labeled.exit_code, 0) << labeled.output;
  CommandResult annotated = stack_->kubectl("annotate namespace imperative owner=me");
  ASSERT_EQ(annotated.exit_code, 0) << annotated.output;
  EXPECT_EQ(getJson("configmap settings -n imperative")["metadata"]["labels"]["tier"], "gold");
  EXPECT_EQ(getJson("namespace imperative")["metadata"]["annotations"]["owner"], "me");

  CommandResult deleted = stack_->kubectl("delete configmap settings -n imperative");
  ASSERT_EQ(deleted.exit_code, 0) << deleted.output;
  EXPECT_NE(stack_->kubectl("get configmap settings -n imperative").exit_code, 0);
  CommandResult ns_deleted = stack_->kubectl("delete namespace imperative --wait=false");
  EXPECT_EQ(ns_deleted.exit_code, 0) << ns_deleted.output;
}

TEST_F(KubectlTest, RequestsWithoutTheTokenAreRejected) {
  CommandResult url = runCommand("kubectl config view --raw --kubeconfig='" + stack_->kubeconfig() +
                                 "' -o jsonpath='{.clusters[0].cluster.server}'");
  ASSERT_EQ(url.exit_code, 0) << url.output;
  CommandResult anonymous =
      runCommand("curl -sk -o /dev/null -w '%{http_code}' " + url.output + "/api/v1/namespaces");
  EXPECT_EQ(anonymous.output, "401");
  CommandResult wrong =
      runCommand("curl -sk -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' " +
                 url.output + "/api/v1/secrets");
  EXPECT_EQ(wrong.output, "401");
}

}  // namespace
}  // namespace clrk::testing
