// The configuration file loader: every key is accepted and lands in its setting; every bad
// input is refused with a message naming the file, the line and the key.
#include "config/config_file.h"
#include "config/option_ranges.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <ostream>
#include <set>

namespace sockdispatch {
namespace {

using test::TempDir;

struct GoodKey {
  const char *key;
  std::string toml; // the value as written in the file
  std::function<bool(const AttachOptions &)> landed;
};

void PrintTo(const GoodKey &c, std::ostream *os) {
  *os << c.key << " = " << c.toml;
}

std::vector<GoodKey> goodKeys() {
  return {
      {"port", "8080", [](const AttachOptions &o) { return o.port == 8080; }},
      {"workers", "3", [](const AttachOptions &o) { return o.workers == 3; }},
      {"bind", "\"::1\"", [](const AttachOptions &o) { return o.bind == "::1"; }},
      {"backlog", "1024", [](const AttachOptions &o) { return o.backlog == 1024; }},
      {"root", "\"/tmp\"", [](const AttachOptions &o) { return o.root == "/tmp"; }},
      {"mode", "\"line\"",
       [](const AttachOptions &o) { return o.mode == DispatchModeOption::kLine; }},
      {"max-conns", "500", [](const AttachOptions &o) { return o.maxConnections == 500; }},
      {"agent-port", "9100", [](const AttachOptions &o) { return o.agentPort == 9100; }},
      {"agent-bind", "\"10.0.0.11\"",
       [](const AttachOptions &o) { return o.agentBind == "10.0.0.11"; }},
      {"agent-capacity", "800", [](const AttachOptions &o) { return o.agentCapacity == 800; }},
      {"drain-grace", "6", [](const AttachOptions &o) { return o.drainGraceSeconds == 6; }},
      {"policy", "\"least_conn\"",
       [](const AttachOptions &o) { return o.policy == SD_POLICY_LEAST_CONN; }},
      {"line-batch", "16", [](const AttachOptions &o) { return o.lineBatch == 16; }},
      {"shutdown-timeout", "25",
       [](const AttachOptions &o) { return o.shutdownTimeout == std::chrono::seconds(25); }},
      {"defer-accept", "5",
       [](const AttachOptions &o) { return o.deferAccept == std::chrono::seconds(5); }},
      {"orphan-timeout", "7",
       [](const AttachOptions &o) { return o.orphanTimeout == std::chrono::seconds(7); }},
      {"verbose", "true", [](const AttachOptions &o) { return o.verbose; }},
      {"dotfiles", "true", [](const AttachOptions &o) { return o.dotfiles; }},
      {"file-cache-valid", "1.5",
       [](const AttachOptions &o) { return o.fileCacheValid == std::chrono::milliseconds(1500); }},
      {"user", "\"nobody\"", [](const AttachOptions &o) { return o.user == "nobody"; }},
      {"min-workers", "2", [](const AttachOptions &o) { return o.minWorkers == 2; }},
      {"max-workers", "6", [](const AttachOptions &o) { return o.maxWorkers == 6; }},
      {"pool-busy-conns", "40", [](const AttachOptions &o) { return o.poolBusyConnections == 40; }},
      {"pool-idle-seconds", "7", [](const AttachOptions &o) { return o.poolIdleSeconds == 7; }},
      {"max-target-bytes", "4096",
       [](const AttachOptions &o) { return o.limits.maxTargetBytes == 4096; }},
      {"max-header-bytes", "16384",
       [](const AttachOptions &o) { return o.limits.maxHeaderBytes == 16384; }},
      {"command", "[\"gunicorn\", \"app:app\"]",
       [](const AttachOptions &o) {
         return o.command == std::vector<std::string>{"gunicorn", "app:app"};
       }},
      {"stop-signal", "\"QUIT\"", [](const AttachOptions &o) { return o.stopSignal == SIGQUIT; }},
      {"fd-only", "true", [](const AttachOptions &o) { return o.fdOnly; }},
      {"max-header-fields", "250",
       [](const AttachOptions &o) { return o.limits.maxHeaderFields == 250; }},
      {"max-body-bytes", "100",
       [](const AttachOptions &o) { return o.limits.maxBodyBytes == 100; }},
      {"max-pending-output", "65536",
       [](const AttachOptions &o) { return o.limits.maxPendingOutput == 65536; }},
      {"max-keepalive-requests", "50",
       [](const AttachOptions &o) { return o.limits.maxRequestsPerConnection == 50; }},
      {"header-timeout", "2.5",
       [](const AttachOptions &o) {
         return o.limits.headerTimeout == std::chrono::milliseconds(2500);
       }},
      {"body-timeout", "20",
       [](const AttachOptions &o) { return o.limits.bodyTimeout == std::chrono::seconds(20); }},
      {"idle-timeout", "0.25",
       [](const AttachOptions &o) {
         return o.limits.idleTimeout == std::chrono::milliseconds(250);
       }},
      {"write-timeout", "9",
       [](const AttachOptions &o) { return o.limits.writeTimeout == std::chrono::seconds(9); }},
      {"status-port", "9090", [](const AttachOptions &o) { return o.statusPort == 9090; }},
      {"status-bind", "\"::1\"", [](const AttachOptions &o) { return o.statusBind == "::1"; }},
  };
}

class EveryKey : public testing::TestWithParam<GoodKey> {};

/* Each key, alone in a file, is accepted, reported as set, and lands in its setting. */
TEST_P(EveryKey, IsAcceptedAndApplied) {
  TempDir dir;
  std::string file = dir.write("one.toml", std::string(GetParam().key) + " = " + GetParam().toml);
  auto loaded = loadConfigFile(file, AttachOptions{});
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_EQ(loaded->keys.size(), 1U);
  EXPECT_EQ(loaded->keys[0].name, GetParam().key);
  EXPECT_TRUE(GetParam().landed(loaded->options));

  // copyConfigKey moves exactly that setting.
  AttachOptions copied;
  copyConfigKey(GetParam().key, loaded->options, copied);
  EXPECT_TRUE(GetParam().landed(copied));
}

INSTANTIATE_TEST_SUITE_P(Table, EveryKey, testing::ValuesIn(goodKeys()),
                         [](const testing::TestParamInfo<GoodKey> &param) {
                           std::string name = param.param.key;
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

/* The table above covers every key the loader knows: a new key needs its case. */
TEST(ConfigKeys, AreAllCoveredByTheTable) {
  std::set<std::string> tested;
  for (const auto &good : goodKeys()) {
    tested.insert(good.key);
  }
  for (const auto &key : configKeys()) {
    EXPECT_TRUE(tested.count(std::string(key.name)) == 1) << "no case for key " << key.name;
    EXPECT_FALSE(key.flag.empty()) << key.name;
  }
  EXPECT_EQ(tested.size(), configKeys().size());
}

/* A whole file: keys in any order, comments, defaults kept for what it does not set. */
TEST(ConfigFile, AppliesTheFileOverTheDefaults) {
  TempDir dir;
  std::string file = dir.write("web.toml", "# a comment\n"
                                           "workers = 2\n"
                                           "port = 8081 # trailing comment\n"
                                           "\n"
                                           "bind = \"127.0.0.1\"\n");
  AttachOptions defaults;
  defaults.backlog = 77;
  auto loaded = loadConfigFile(file, defaults);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(loaded->options.port, 8081);
  EXPECT_EQ(loaded->options.workers, 2);
  EXPECT_EQ(loaded->options.bind, "127.0.0.1");
  EXPECT_EQ(loaded->options.backlog, 77);
  ASSERT_EQ(loaded->keys.size(), 3U);
  EXPECT_EQ(loaded->keys[0].name, "workers"); // file order
  EXPECT_EQ(loaded->keys[2].name, "bind");
}

TEST(ConfigFile, EmptyFileKeepsEveryDefault) {
  TempDir dir;
  auto loaded = loadConfigFile(dir.write("empty.toml", ""), AttachOptions{});
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_TRUE(loaded->keys.empty());
  EXPECT_EQ(loaded->options.bind, AttachOptions{}.bind);
}

struct BadFile {
  const char *name;
  std::string text;
  std::vector<std::string> mentions; // each must appear in the message, beside the file name
};

void PrintTo(const BadFile &c, std::ostream *os) {
  *os << c.name;
}

class ConfigRejects : public testing::TestWithParam<BadFile> {};

/* Every bad file is refused; the message names the file, the line and the key. */
TEST_P(ConfigRejects, NamingFileLineAndKey) {
  TempDir dir;
  std::string file = dir.write("bad.toml", GetParam().text);
  auto loaded = loadConfigFile(file, AttachOptions{});
  ASSERT_FALSE(loaded) << "accepted:\n" << GetParam().text;
  std::string message = loaded.error().message();
  EXPECT_NE(message.find("Failed to load configuration " + file + ": "), std::string::npos)
      << message;
  for (const auto &mention : GetParam().mentions) {
    EXPECT_NE(message.find(mention), std::string::npos)
        << "message should name '" << mention << "': " << message;
  }
}

std::string outOfRange(const char *key, int64_t value) {
  return std::string(key) + " = " + std::to_string(value) + "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigRejects,
    testing::Values(
        BadFile{"unknown_key",
                "port = 80\nwokers = 4\n",
                {"line 2: unknown key 'wokers'", "known keys: port, workers"}},
        BadFile{"nested_table", "port = 80\n\n[http]\nmax = 1\n", {"line 3", "unknown key 'http'"}},
        BadFile{"string_for_integer",
                "workers = \"4\"\n",
                {"line 1: key 'workers': expected an integer, got a string"}},
        BadFile{"float_for_integer",
                "\nbacklog = 1.5\n",
                {"line 2: key 'backlog': expected an integer, got a floating-point number"}},
        BadFile{"integer_for_string",
                "bind = 127\n",
                {"line 1: key 'bind': expected a string, got an integer"}},
        BadFile{"string_for_boolean",
                "verbose = \"yes\"\n",
                {"line 1: key 'verbose': expected a boolean, got a string"}},
        BadFile{"array_for_seconds",
                "shutdown-timeout = [1]\n",
                {"line 1: key 'shutdown-timeout': expected an integer (seconds), got an array"}},
        BadFile{"workers_zero",
                outOfRange("workers", 0),
                {"line 1: key 'workers': 0 is not in range 1 to 128"}},
        BadFile{"workers_above_max",
                "# comment\n" + outOfRange("workers", kWorkersRange.max + 1),
                {"line 2: key 'workers': 129 is not in range 1 to 128"}},
        BadFile{
            "port_negative", "port = -1\n", {"line 1: key 'port': -1 is not in range 0 to 65535"}},
        BadFile{"port_too_big",
                "port = 65536\n",
                {"line 1: key 'port': 65536 is not in range 0 to 65535"}},
        BadFile{"backlog_zero", "backlog = 0\n", {"line 1: key 'backlog': 0 is not in range 1"}},
        BadFile{"unknown_mode",
                "mode = \"fast\"\n",
                {"line 1: key 'mode': 'fast' is not a mode (auto, ebpf or line)"}},
        BadFile{"unknown_policy",
                "policy = \"fastest\"\n",
                {"line 1: key 'policy': 'fastest' is not a policy (skip_load, least_conn, p2c, "
                 "round_robin, weighted, hash)"}},
        BadFile{"max_conns_negative",
                "max-conns = -1\n",
                {"line 1: key 'max-conns': -1 is not in range 0 to 10000000"}},
        BadFile{"shutdown_too_long",
                "shutdown-timeout = 3601\n",
                {"line 1: key 'shutdown-timeout': 3601 is not in range 0 to 3600"}},
        BadFile{"host_name_bind",
                "bind = \"localhost\"\n",
                {"line 1: key 'bind': 'localhost' is not a numeric IPv4 or IPv6 address"}},
        BadFile{"missing_root",
                "root = \"/nonexistent/www\"\n",
                {"line 1: key 'root': directory '/nonexistent/www': No such file or directory"}},
        BadFile{"file_as_root",
                "root = \"/etc/hostname\"\n",
                {"line 1: key 'root': '/etc/hostname' is not a directory"}},
        BadFile{"unknown_user",
                "user = \"no-such-user-x\"\n",
                {"line 1: key 'user': user 'no-such-user-x': no such user"}},
        BadFile{
            "root_user", "user = \"root\"\n", {"line 1: key 'user': user 'root': uid 0 is root"}},
        BadFile{"syntax_error", "port = 80\nworkers = = 2\n", {"line 2: syntax error"}},
        BadFile{"duplicate_key", "port = 80\nport = 81\n", {"line 2: syntax error"}},
        BadFile{"first_problem_in_file_order",
                "workers = 0\nbacklog = 0\n",
                {"line 1: key 'workers'"}}),
    [](const testing::TestParamInfo<BadFile> &param) { return std::string(param.param.name); });

/* A file that cannot be read: the message names it and says why. */
TEST(ConfigFile, UnreadableFileNamesFileAndReason) {
  TempDir dir;
  std::string missing = dir.path() + "/missing.toml";
  auto loaded = loadConfigFile(missing, AttachOptions{});
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error().message(),
            "Failed to read configuration " + missing + ": No such file or directory");

  auto directory = loadConfigFile(dir.path(), AttachOptions{});
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.error().message(),
            "Failed to read configuration " + dir.path() + ": Is a directory");
}

} // namespace
} // namespace sockdispatch
