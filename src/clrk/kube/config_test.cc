#include "clrk/kube/config.h"

#include "clrk/base/files.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

namespace clrk::kube {
namespace {

namespace fs = std::filesystem;

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("clrk_config_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    EXPECT_TRUE(writeFileAtomic(dir_ / name, text).ok());
    return dir_ / name;
  }
  fs::path dir_;
};

constexpr char kBasic[] = R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: c1
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: aGVsbG8tY2E=
    tls-server-name: apiserver.local
- name: c2
  cluster:
    server: https://10.0.0.1
    insecure-skip-tls-verify: true
users:
- name: u1
  user:
    token: abc123
- name: u2
  user:
    tokenFile: token.txt
    client-certificate: client.crt
    client-key-data: a2V5
contexts:
- name: dev
  context: {cluster: c1, user: u1, namespace: agents}
- name: other
  context: {cluster: c2, user: u2}
)";

TEST_F(ConfigTest, ParsesCurrentContext) {
  auto config = parseKubeconfig(kBasic, "kc.yaml", dir_);
  ASSERT_TRUE(config.ok()) << config.status().toString();
  EXPECT_EQ(config->server, "https://127.0.0.1:6443");
  EXPECT_EQ(config->ca_pem, "hello-ca");
  EXPECT_EQ(config->tls_server_name, "apiserver.local");
  EXPECT_EQ(config->token, "abc123");
  EXPECT_EQ(config->namespace_name, "agents");
  EXPECT_EQ(config->context_name, "dev");
  EXPECT_FALSE(config->insecure_skip_tls_verify);
}

TEST_F(ConfigTest, SelectsContextAndReadsRelativeFiles) {
  write("token.txt", "file-token\n");
  write("client.crt", "CERT");
  auto config = parseKubeconfig(kBasic, "kc.yaml", dir_, "other");
  ASSERT_TRUE(config.ok()) << config.status().toString();
  EXPECT_EQ(config->server, "https://10.0.0.1");
  EXPECT_TRUE(config->insecure_skip_tls_verify);
  EXPECT_EQ(config->token, "file-token");
  EXPECT_EQ(config->client_certificate_pem, "CERT");
  EXPECT_EQ(config->client_key_pem, "key");
  EXPECT_EQ(config->namespace_name, "");
}

TEST_F(ConfigTest, ErrorsNameFileAndEntry) {
  auto missing_ctx = parseKubeconfig(kBasic, "kc.yaml", dir_, "nope");
  ASSERT_FALSE(missing_ctx.ok());
  EXPECT_NE(missing_ctx.status().message().find("kc.yaml"), std::string::npos);
  EXPECT_NE(missing_ctx.status().message().find("context \"nope\" not found"), std::string::npos);

  auto missing_file = parseKubeconfig(kBasic, "kc.yaml", dir_, "other");  // token.txt absent
  ASSERT_FALSE(missing_file.ok());
  EXPECT_NE(missing_file.status().message().find("user \"u2\": tokenFile"), std::string::npos)
      << missing_file.status().message();

  auto no_cluster = parseKubeconfig(
      "current-context: x\ncontexts:\n- name: x\n  context: {cluster: gone, user: u}\n", "a.yaml",
      dir_);
  ASSERT_FALSE(no_cluster.ok());
  EXPECT_NE(no_cluster.status().message().find("cluster \"gone\" not found"), std::string::npos);

  auto no_server = parseKubeconfig(
      "current-context: x\nclusters:\n- name: c\n  cluster: {}\ncontexts:\n- name: x\n  "
      "context: {cluster: c}\n",
      "a.yaml", dir_);
  ASSERT_FALSE(no_server.ok());
  EXPECT_NE(no_server.status().message().find("a.yaml: cluster \"c\": server is required"),
            std::string::npos)
      << no_server.status().message();

  auto bad_yaml = parseKubeconfig("clusters: [unclosed", "bad.yaml", dir_);
  ASSERT_FALSE(bad_yaml.ok());
  EXPECT_NE(bad_yaml.status().message().find("bad.yaml: invalid YAML"), std::string::npos);

  auto no_current = parseKubeconfig("clusters: []\n", "e.yaml", dir_);
  ASSERT_FALSE(no_current.ok());
  EXPECT_NE(no_current.status().message().find("no current-context"), std::string::npos);

  auto bad_b64 = parseKubeconfig(
      "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h', "
      "certificate-authority-data: '***'}\ncontexts:\n- name: x\n  context: {cluster: c}\n",
      "b.yaml", dir_);
  ASSERT_FALSE(bad_b64.ok());
  EXPECT_NE(bad_b64.status().message().find("certificate-authority-data is not valid base64"),
            std::string::npos);
}

TEST_F(ConfigTest, ExecAndAuthProviderAreNotSupported) {
  std::string base =
      "current-context: x\nclusters:\n- name: c\n  cluster: {server: 'https://h'}\n"
      "contexts:\n- name: x\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user:\n";
  auto exec = parseKubeconfig(base + "    exec: {command: aws}\n", "k.yaml", dir_);
  ASSERT_FALSE(exec.ok());
  EXPECT_NE(exec.status().message().find("k.yaml: user \"u\": exec credential plugins are not "
                                         "supported"),
            std::string::npos)
      << exec.status().message();
  auto provider = parseKubeconfig(base + "    auth-provider: {name: gcp}\n", "k.yaml", dir_);
  ASSERT_FALSE(provider.ok());
  EXPECT_NE(provider.status().message().find("auth-provider is not supported"), std::string::npos);
}

TEST_F(ConfigTest, MergesFilesFirstWins) {
  auto first = write("a.yaml",
                     "current-context: one\nclusters:\n- name: c\n  cluster: {server: "
                     "'https://first'}\ncontexts:\n- name: one\n  context: {cluster: c}\n");
  auto second = write("b.yaml",
                      "current-context: two\nclusters:\n- name: c\n  cluster: {server: "
                      "'https://second'}\n- name: d\n  cluster: {server: 'https://d'}\n"
                      "contexts:\n- name: two\n  context: {cluster: d, namespace: n2}\n");
  auto merged = loadKubeconfigFiles({dir_ / "missing.yaml", first, second});
  ASSERT_TRUE(merged.ok()) << merged.status().toString();
  EXPECT_EQ(merged->server, "https://first");
  auto two = loadKubeconfigFiles({first, second}, "two");
  ASSERT_TRUE(two.ok()) << two.status().toString();
  EXPECT_EQ(two->server, "https://d");
  EXPECT_EQ(two->namespace_name, "n2");

  ::setenv("KUBECONFIG", (first.string() + ":" + second.string()).c_str(), 1);
  auto paths = kubeconfigPaths({});
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_EQ(paths[1], second);
  auto loaded = loadConfig({"", "two"});
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->server, "https://d");
  auto explicit_file = loadConfig({second.string(), ""});
  ASSERT_TRUE(explicit_file.ok());
  EXPECT_EQ(explicit_file->server, "https://d");
  ::unsetenv("KUBECONFIG");

  auto none = loadKubeconfigFiles({dir_ / "nothing.yaml"});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), Code::NotFound);
}

TEST_F(ConfigTest, InCluster) {
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_FALSE(inClusterConfig(dir_).ok());
  ::setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
  ::setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto missing = inClusterConfig(dir_);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("serviceaccount/token"), std::string::npos);
  fs::path sa = dir_ / "var/run/secrets/kubernetes.io/serviceaccount";
  fs::create_directories(sa);
  write("var/run/secrets/kubernetes.io/serviceaccount/token", "sa-token\n");
  write("var/run/secrets/kubernetes.io/serviceaccount/ca.crt", "CA");
  write("var/run/secrets/kubernetes.io/serviceaccount/namespace", "team-a");
  auto config = inClusterConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status().toString();
  EXPECT_EQ(config->server, "https://10.96.0.1:443");
  EXPECT_EQ(config->token, "sa-token");
  EXPECT_EQ(config->ca_pem, "CA");
  EXPECT_EQ(config->namespace_name, "team-a");
  ::unsetenv("KUBERNETES_SERVICE_HOST");
  ::unsetenv("KUBERNETES_SERVICE_PORT");
}

}  // namespace
}  // namespace clrk::kube
