// The real `clrk` binary against `clrk dev`: dev up, apply (created/unchanged/configured), get
// (table, yaml, json, name), validation errors, secret create, delete --wait, dev status/down.
#include "harness.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <signal.h>
#include <string>
#include <thread>

namespace clrk::testing {
namespace {

using nlohmann::json;

constexpr const char* kManifests = R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: WorkerPool
metadata:
  name: cli-workers
spec:
  template:
    image: worker:latest
---
apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: echo
  labels:
    app: echo
spec:
  workerPoolRef: cli-workers
  timeout: 30s
  template:
    spec:
      image: busybox
)";

constexpr const char* kInvalid = R"(apiVersion: clrk.apoxy.dev/v1alpha1
kind: TaskAgent
metadata:
  name: broken
spec:
  workerPoolRef: cli-workers
  timeout: 30s
  bogusField: 1
  template:
    spec:
      image: busybox
)";

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::string write(const std::string& dir, const std::string& name, const std::string& text) {
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(ClrkCli, EndToEnd) {
  DevStack stack;
  ASSERT_TRUE(stack.up()) << stack.startError();
  const std::string clrk = stack.envPrefix() + binaryPath("clrk");

  // dev up again is idempotent; status reports the running process.
  CommandResult again = runCommand(clrk + " dev up");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_TRUE(contains(again.output, "already running")) << again.output;
  CommandResult status = runCommand(clrk + " dev status");
  EXPECT_EQ(status.exit_code, 0) << status.output;
  EXPECT_TRUE(contains(status.output, "readyz: ok")) << status.output;
  EXPECT_EQ(std::filesystem::status(stack.kubeconfig()).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  // apply: created, then unchanged.
  std::string manifests = write(stack.home(), "manifests.yaml", kManifests);
  CommandResult applied = stack.clrk("apply -f " + manifests);
  ASSERT_EQ(applied.exit_code, 0) << applied.output;
  EXPECT_TRUE(contains(applied.output, "workerpool.clrk.apoxy.dev/cli-workers created"))
      << applied.output;
  EXPECT_TRUE(contains(applied.output, "taskagent.clrk.apoxy.dev/echo created")) << applied.output;

  // get: table with the registry's printer columns.
  CommandResult table = stack.clrk("get ta");
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_TRUE(contains(table.output, "NAME")) << table.output;
  EXPECT_TRUE(contains(table.output, "IMAGE")) << table.output;
  EXPECT_TRUE(contains(table.output, "POOL")) << table.output;
  EXPECT_TRUE(contains(table.output, "AGE")) << table.output;
  EXPECT_TRUE(contains(table.output, "echo")) << table.output;
  EXPECT_TRUE(contains(table.output, "busybox")) << table.output;
  EXPECT_TRUE(contains(table.output, "cli-workers")) << table.output;
  CommandResult all = stack.clrk("get taskagents -A -l app=echo");
  ASSERT_EQ(all.exit_code, 0) << all.output;
  EXPECT_TRUE(contains(all.output, "NAMESPACE")) << all.output;
  EXPECT_TRUE(contains(all.output, "default")) << all.output;
  CommandResult none = stack.clrk("get taskagents -l app=nothing");
  EXPECT_EQ(none.exit_code, 0) << none.output;
  EXPECT_TRUE(contains(none.output, "No resources found in default namespace.")) << none.output;

  CommandResult yaml = stack.clrk("get ta echo -o yaml");
  ASSERT_EQ(yaml.exit_code, 0) << yaml.output;
  EXPECT_TRUE(contains(yaml.output, "kind: TaskAgent")) << yaml.output;
  EXPECT_TRUE(contains(yaml.output, "name: echo")) << yaml.output;
  EXPECT_TRUE(contains(yaml.output, "image: busybox")) << yaml.output;
  CommandResult as_json = stack.clrk("get ta echo -o json");
  ASSERT_EQ(as_json.exit_code, 0) << as_json.output;
  json object = json::parse(as_json.output, nullptr, false);
  ASSERT_FALSE(object.is_discarded()) << as_json.output;
  EXPECT_EQ(object["spec"]["workerPoolRef"], "cli-workers");
  CommandResult names = stack.clrk("get workerpools -o name");
  EXPECT_EQ(names.output, "workerpool.clrk.apoxy.dev/cli-workers\n");
  CommandResult missing = stack.clrk("get ta nope");
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.output, "taskagents.clrk.apoxy.dev \"nope\" not found"))
      << missing.output;
  CommandResult unknown_kind = stack.clrk("get frobs");
  EXPECT_EQ(unknown_kind.exit_code, 1);
  EXPECT_TRUE(contains(unknown_kind.output, "error: ")) << unknown_kind.output;

  // Re-applying the same manifests changes nothing.
  CommandResult unchanged = stack.clrk("apply -f " + manifests);
  ASSERT_EQ(unchanged.exit_code, 0) << unchanged.output;
  EXPECT_TRUE(contains(unchanged.output, "taskagent.clrk.apoxy.dev/echo unchanged"))
      << unchanged.output;
  // A change is "configured"; a directory applies its manifests in name order.
  std::string dir = stack.home() + "/manifests";
  std::filesystem::create_directories(dir);
  std::string changed = kManifests;
  changed.replace(changed.find("timeout: 30s"), 12, "timeout: 45s");
  write(dir, "10-agents.yaml", changed);
  write(dir, "ignored.txt", "not a manifest");
  CommandResult configured = stack.clrk("apply -f " + dir);
  ASSERT_EQ(configured.exit_code, 0) << configured.output;
  EXPECT_TRUE(contains(configured.output, "taskagent.clrk.apoxy.dev/echo configured"))
      << configured.output;

  // An invalid document: clear error naming file and field, exit 1, nothing applied.
  std::string invalid = write(stack.home(), "invalid.yaml", kInvalid);
  CommandResult rejected = stack.clrk("apply -f " + manifests + " -f " + invalid);
  EXPECT_EQ(rejected.exit_code, 1) << rejected.output;
  EXPECT_TRUE(contains(rejected.output, "error: ")) << rejected.output;
  EXPECT_TRUE(contains(rejected.output, "invalid.yaml")) << rejected.output;
  EXPECT_TRUE(contains(rejected.output, "bogusField")) << rejected.output;
  EXPECT_FALSE(contains(rejected.output, "unchanged")) << rejected.output;
  EXPECT_EQ(stack.clrk("get ta broken").exit_code, 1);

  // Usage errors exit 2.
  EXPECT_EQ(stack.clrk("get").exit_code, 2);
  EXPECT_EQ(stack.clrk("frobnicate").exit_code, 2);

  // secret create from the environment; the value is never printed.
  CommandResult secret =
      runCommand("CLI_TEST_API_KEY=s3cr3t-value " + clrk + " --local secret create provider " +
                 "--from-env CLI_TEST_API_KEY=apiKey --from-env CLI_TEST_API_KEY");
  ASSERT_EQ(secret.exit_code, 0) << secret.output;
  EXPECT_TRUE(contains(secret.output, "secret/provider created")) << secret.output;
  EXPECT_FALSE(contains(secret.output, "s3cr3t")) << secret.output;
  CommandResult secret_json = stack.clrk("get secret provider -o json");
  ASSERT_EQ(secret_json.exit_code, 0) << secret_json.output;
  json secret_object = json::parse(secret_json.output, nullptr, false);
  EXPECT_EQ(secret_object["type"], "Opaque");
  EXPECT_EQ(secret_object["data"]["apiKey"], "czNjcjN0LXZhbHVl");
  EXPECT_EQ(secret_object["data"]["CLI_TEST_API_KEY"], "czNjcjN0LXZhbHVl");
  CommandResult replaced = runCommand("CLI_TEST_API_KEY=other " + clrk +
                                      " --local secret create provider --from-env "
                                      "CLI_TEST_API_KEY=apiKey");
  EXPECT_EQ(replaced.exit_code, 0) << replaced.output;
  EXPECT_TRUE(contains(replaced.output, "secret/provider replaced")) << replaced.output;
  CommandResult unset = runCommand("unset CLI_TEST_UNSET_VAR; " + clrk +
                                   " --local secret create other --from-env CLI_TEST_UNSET_VAR");
  EXPECT_EQ(unset.exit_code, 1);
  EXPECT_TRUE(contains(unset.output, "CLI_TEST_UNSET_VAR is not set")) << unset.output;

  // delete waits until the object is gone.
  CommandResult deleted = stack.clrk("delete ta echo");
  ASSERT_EQ(deleted.exit_code, 0) << deleted.output;
  EXPECT_TRUE(contains(deleted.output, "taskagent.clrk.apoxy.dev \"echo\" deleted"))
      << deleted.output;
  EXPECT_EQ(stack.clrk("get ta echo").exit_code, 1);
  CommandResult deleted_again = stack.clrk("delete ta echo");
  EXPECT_EQ(deleted_again.exit_code, 1);
  EXPECT_TRUE(contains(deleted_again.output, "not found")) << deleted_again.output;
  CommandResult by_file = stack.clrk("delete -f " + manifests + " --ignore-not-found");
  EXPECT_EQ(by_file.exit_code, 0) << by_file.output;
  EXPECT_TRUE(contains(by_file.output, "workerpool.clrk.apoxy.dev \"cli-workers\" deleted"))
      << by_file.output;

  // The client verifies the server: a wrong expected name or a missing CA fails the handshake.
  std::ifstream kubeconfig_in(stack.kubeconfig());
  std::string kubeconfig((std::istreambuf_iterator<char>(kubeconfig_in)),
                         std::istreambuf_iterator<char>());
  std::string wrong_name = kubeconfig;
  wrong_name.replace(wrong_name.find("    certificate-authority-data"), 0,
                     "    tls-server-name: wrong.example\n");
  std::string wrong_name_path = write(stack.home(), "wrong-name.yaml", wrong_name);
  CommandResult mismatch =
      runCommand(binaryPath("clrk") + " --kubeconfig " + wrong_name_path + " get ta");
  EXPECT_EQ(mismatch.exit_code, 1) << mismatch.output;
  EXPECT_TRUE(contains(mismatch.output, "TLS handshake")) << mismatch.output;
  std::string no_ca = kubeconfig;
  size_t ca_line = no_ca.find("    certificate-authority-data");
  no_ca.erase(ca_line, no_ca.find('\n', ca_line) - ca_line + 1);
  std::string no_ca_path = write(stack.home(), "no-ca.yaml", no_ca);
  CommandResult untrusted =
      runCommand(binaryPath("clrk") + " --kubeconfig " + no_ca_path + " get ta");
  EXPECT_EQ(untrusted.exit_code, 1) << untrusted.output;
  EXPECT_TRUE(contains(untrusted.output, "TLS handshake")) << untrusted.output;
  // The right kubeconfig, given explicitly, works and honours --namespace.
  CommandResult explicit_config = runCommand(binaryPath("clrk") + " --kubeconfig " +
                                             stack.kubeconfig() + " -n kube-system get ta");
  EXPECT_EQ(explicit_config.exit_code, 0) << explicit_config.output;
  EXPECT_TRUE(contains(explicit_config.output, "No resources found in kube-system namespace"))
      << explicit_config.output;

  // dev down stops the process.
  std::ifstream pid_file(stack.home() + "/controller-manager.pid");
  pid_t pid = 0;
  pid_file >> pid;
  ASSERT_GT(pid, 0);
  CommandResult down = runCommand(clrk + " dev down");
  EXPECT_EQ(down.exit_code, 0) << down.output;
  EXPECT_TRUE(contains(down.output, "stopped")) << down.output;
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    // A zombie (not yet reaped by its new parent) has no /proc/PID/exe any more.
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
    (void)exe;
    gone = static_cast<bool>(ec);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(gone);
  CommandResult after = runCommand(clrk + " dev status");
  EXPECT_NE(after.exit_code, 0);
  EXPECT_TRUE(contains(after.output, "not running")) << after.output;
}

}  // namespace
}  // namespace clrk::testing
