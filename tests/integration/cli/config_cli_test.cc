// Configuration files from the command line: `check-config FILE` validates without starting,
// `attach --config FILE` serves with the file's settings, flags given beside it win. Every bad
// file exits 2 from both verbs with the same message naming the file, the line and the key.
#include "config/config_file.h"
#include "config/option_table.h"
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <ostream>

namespace sockdispatch::test {
namespace {

/* A valid file: exit 0 and one line naming the file and the settings that matter. */
TEST(CheckConfig, ValidFilePrintsOneOkLine) {
  TempDir dir;
  std::string file =
      dir.write("web.toml", "port = 8080\nbind = \"127.0.0.1\"\nworkers = 2\nverbose = false\n");
  auto done = runSockdispatch({"check-config", file});
  EXPECT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(done.out, file + ": OK (port 8080, bind 127.0.0.1, 2 workers, built-in page)\n");
  EXPECT_EQ(done.err, "");
}

TEST(CheckConfig, WithoutAFileIsAUsageError) {
  auto done = runSockdispatch({"check-config"});
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_NE(done.err.find("check-config: file is required"), std::string::npos) << done.err;
}

struct BadConfig {
  const char *name;
  std::string text;     // the file's content; empty: the file does not exist
  std::string expected; // the message after "<verb>: Failed to <...> configuration FILE"
};

void PrintTo(const BadConfig &c, std::ostream *os) {
  *os << c.name;
}

class ConfigCliRejects : public testing::TestWithParam<BadConfig> {
protected:
  std::string file() {
    std::string path = dir_.path() + "/sockdispatch.toml";
    if (!GetParam().text.empty()) {
      (void)dir_.write("sockdispatch.toml", GetParam().text);
    }
    return path;
  }
  [[nodiscard]] std::string message(const std::string &verb, const std::string &path) const {
    const char *action = GetParam().text.empty() ? "read" : "load";
    return verb + ": Failed to " + action + " configuration " + path + ": " + GetParam().expected +
           "\n";
  }
  TempDir dir_;
};

/* check-config: exit 2, exactly one message naming file, line and key. */
TEST_P(ConfigCliRejects, CheckConfigExits2) {
  std::string path = file();
  auto done = runSockdispatch({"check-config", path});
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_EQ(done.err, message("check-config", path));
  EXPECT_EQ(done.out, "");
}

/* attach --config: the same message, exit 2, before anything is bound or loaded. */
TEST_P(ConfigCliRejects, AttachExits2) {
  std::string path = file();
  auto done = runSockdispatch({"attach", "--config", path, "0", "--bind", "127.0.0.1"});
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_EQ(done.err, message("attach", path));
}

INSTANTIATE_TEST_SUITE_P(
    Table, ConfigCliRejects,
    testing::Values(
        BadConfig{"unknown_key", "port = 80\nwokers = 2\n",
                  "line 2: unknown key 'wokers' (known keys: port, workers, min-workers, "
                  "max-workers, pool-busy-conns, pool-idle-seconds, bind, backlog, mode, policy, "
                  "max-conns, line-batch, root, defer-accept, "
                  "shutdown-timeout, orphan-timeout, max-target-bytes, max-header-bytes, "
                  "max-header-fields, "
                  "max-body-bytes, "
                  "max-pending-output, max-keepalive-requests, header-timeout, body-timeout, "
                  "idle-timeout, write-timeout, user, dotfiles, file-cache-valid, verbose, "
                  "status-port, status-bind, agent-port, agent-bind, agent-capacity, drain-grace, "
                  "command, stop-signal, fd-only)"},
        BadConfig{"wrong_type", "port = 80\n\nworkers = \"two\"\n",
                  "line 3: key 'workers': expected an integer, got a string"},
        BadConfig{"out_of_range", "port = 80\nbacklog = 70000\n",
                  "line 2: key 'backlog': 70000 is not in range 1 to 65535"},
        BadConfig{"bad_address", "bind = \"example.com\"\n",
                  "line 1: key 'bind': 'example.com' is not a numeric IPv4 or IPv6 address"},
        BadConfig{"syntax_error", "port = 80\nworkers 2\n",
                  "line 2: syntax error: Error while parsing key-value pair: expected '=', saw "
                  "'2'"},
        BadConfig{"command_not_a_list", "port = 80\ncommand = \"gunicorn app:app\"\n",
                  "line 2: key 'command': expected an array of strings, got a string"},
        BadConfig{"command_empty", "port = 80\ncommand = []\n",
                  "line 2: key 'command': expected the program and its arguments, got an empty "
                  "list"},
        BadConfig{"command_with_a_number", "port = 80\ncommand = [\"sleep\", 5]\n",
                  "line 2: key 'command': expected an array of strings, got an integer in it"},
        BadConfig{"bad_stop_signal", "port = 80\nstop-signal = \"KILL\"\n",
                  "line 2: key 'stop-signal': 'KILL' is not a stop signal (TERM, QUIT, INT, "
                  "HUP, USR1, USR2 or WINCH)"},
        BadConfig{"unreadable", "", "No such file or directory"}),
    [](const testing::TestParamInfo<BadConfig> &param) { return std::string(param.param.name); });

/* A file for `attach --config FILE` alone must set the port: check-config says so. */
TEST(CheckConfig, FileWithoutPortIsRefused) {
  TempDir dir;
  std::string file = dir.write("noport.toml", "workers = 2\n");
  auto done = runSockdispatch({"check-config", file});
  EXPECT_EQ(done.code, 2);
  EXPECT_EQ(done.err, "check-config: Failed to load configuration " + file +
                          ": no 'port' key (a file for 'attach --config FILE' without PORT "
                          "must set it)\n");

  auto attach = runSockdispatch({"attach", "--config", file});
  EXPECT_EQ(attach.code, 2);
  EXPECT_NE(attach.err.find("attach: no port: give PORT, or set 'port' in the --config file"),
            std::string::npos)
      << attach.err;
}

/* Every key of the file mirrors a flag attach really has (the file-over-defaults merge looks
 * each one up by that name). */
TEST(AttachConfig, EveryKeyNamesAnAttachFlag) {
  auto help = runSockdispatch({"attach", "--help"});
  ASSERT_EQ(help.code, 0) << help.err;
  for (const ConfigKey &key : configKeys()) {
    std::string flag(key.flag);
    if (flag == "port" || flag == "command") { // the positionals: PORT, and the words after --
      EXPECT_NE(help.out.find("Positionals:\n"), std::string::npos) << help.out;
      EXPECT_NE(help.out.find("\n  " + flag + " "), std::string::npos) << help.out;
      continue;
    }
    EXPECT_EQ(flag, "--" + std::string(key.name)) << "key and flag named alike";
    EXPECT_NE(help.out.find(flag + " "), std::string::npos) << flag << " not in:\n" << help.out;
  }
}

TEST(AttachConfig, NoPortAndNoConfigIsAUsageError) {
  auto done = runSockdispatch({"attach", "--workers", "1"});
  EXPECT_EQ(done.code, 2);
  EXPECT_NE(done.err.find("attach: no port"), std::string::npos) << done.err;
}

using AttachWithConfig = BpfTest;

/*
 * attach --config serves with the file's settings (port 0, loopback, one worker); the same
 * file with --workers 2 and PORT on the command line gets two workers and the command line's
 * port, keeping the file's bind address.
 */
TEST_F(AttachWithConfig, FileAppliesAndFlagsOverrideIt) {
  TempDir dir;
  std::string file = dir.write("web.toml", "port = 0\nbind = \"127.0.0.1\"\nworkers = 1\n");
  {
    auto attachment = Attachment::start({"--config", file});
    ASSERT_NE(attachment, nullptr);
    auto pinned = PinnedAttachment::open(attachment->port(), false);
    ASSERT_TRUE(pinned) << pinned.error().message();
    EXPECT_EQ(pinned->scoreboard().slotCount(), 1U);
    auto reply = fetch(attachment->port());
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(attachment->stop(), 0) << attachment->process().stderrText();
  }

  // The file names port 1; PORT 0 on the command line wins (an ephemeral port, not 1).
  std::string other = dir.write("other.toml", "port = 1\nbind = \"127.0.0.1\"\nworkers = 1\n");
  auto attachment = Attachment::start({"--config", other, "--workers", "2", "0"});
  ASSERT_NE(attachment, nullptr);
  EXPECT_NE(attachment->port(), 1);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  EXPECT_EQ(pinned->scoreboard().slotCount(), 2U);
  // Bound to the file's loopback address only.
  auto reply = fetch(attachment->port());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(attachment->stop(), 0) << attachment->process().stderrText();
}

} // namespace
} // namespace sockdispatch::test

namespace sockdispatch::test {
namespace {

/*
 * One table drives the flags and the keys (option_table.h): for every numeric setting, one
 * past either end of its range is refused with exit 2 by the flag (naming it) and by the key
 * (naming its line) alike, and the far end itself is accepted by the file.
 */
TEST(OptionTable, EveryRangeIsTheSameForTheFlagAndTheKey) {
  TempDir dir;
  int checked = 0;
  for (const OptionSpec &spec : optionTable()) {
    bool fractional = spec.type == OptionType::timeout;
    if (spec.type != OptionType::integer && spec.type != OptionType::seconds && !fractional) {
      continue;
    }
    SCOPED_TRACE(std::string(spec.key));
    std::string above = fractional ? fmt::format("{}", spec.fractional.max + 1)
                                   : std::to_string(spec.integers.max + 1);
    // A fractional range from 0 is passed below by a negative value; from above 0 by half its
    // lower end.
    std::string below = !fractional               ? std::to_string(spec.integers.min - 1)
                        : spec.fractional.min > 0 ? fmt::format("{}", spec.fractional.min / 2)
                                                  : fmt::format("{}", spec.fractional.min - 1);
    std::string top =
        fractional ? fmt::format("{}", spec.fractional.max) : std::to_string(spec.integers.max);
    for (const std::string &bad : {above, below}) {
      std::vector<std::string> args{"attach"};
      if (spec.key != "port") {
        args.insert(args.end(), {"0", std::string(spec.flag())});
      }
      args.push_back(bad);
      auto flag = runSockdispatch(args);
      EXPECT_EQ(flag.code, 2) << bad << ": " << flag.err;
      EXPECT_NE(flag.err.find(bad), std::string::npos) << flag.err;

      std::string file =
          dir.write("bad.toml", "port = 80\n" + std::string(spec.key) + " = " + bad + "\n");
      if (spec.key == "port") {
        file = dir.write("bad.toml", "port = " + bad + "\n");
      }
      auto key = runSockdispatch({"check-config", file});
      EXPECT_EQ(key.code, 2) << bad << ": " << key.err;
      EXPECT_NE(key.err.find("key '" + std::string(spec.key) + "'"), std::string::npos) << key.err;
    }
    std::string good =
        spec.key == "port"
            ? "port = " + top + "\n"
            : "port = 80\n" + std::string(spec.key) + " = " + top +
                  (spec.key == "min-workers" ? "\nmax-workers = " + top + "\n" : "\n");
    auto accepted = runSockdispatch({"check-config", dir.write("good.toml", good)});
    EXPECT_EQ(accepted.code, 0) << good << accepted.err;
    ++checked;
  }
  EXPECT_GE(checked, 20);
}

} // namespace
} // namespace sockdispatch::test
