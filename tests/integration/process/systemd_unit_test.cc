// The packaged systemd unit, checked offline by `systemd-analyze verify` (PID 1 need not be
// systemd): with /usr/sbin/sockdispatch pointed at the built binary, the unit must load with
// no error and no warning (verify exits 0 on unknown keys, so its output must be empty too).
#include "support/process.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

const std::string kUnit =
    std::string(SOCKDISPATCH_SOURCE_DIR) + "/packaging/systemd/sockdispatch@.service";

std::string readFile(const std::string &path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string findTool(const char *name) {
  for (const char *dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin"}) {
    std::string path = std::string(dir) + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) {
      return path;
    }
  }
  return {};
}

// Runs `systemd-analyze ARGS... DIR/sockdispatch@test.service` on a copy of the unit whose
// /usr/sbin/sockdispatch is the built binary; its exit code and all it printed.
struct Analysis {
  std::optional<int> code;
  std::string output;
};

Analysis analyzeUnit(const std::string &analyze, std::vector<std::string> args) {
  std::string unit = readFile(kUnit);
  EXPECT_FALSE(unit.empty()) << "cannot read " << kUnit;
  char base[] = "/tmp/sockdispatch-unit-XXXXXX";
  EXPECT_NE(::mkdtemp(base), nullptr);
  std::string dir = base;
  std::ofstream(dir + "/sockdispatch@.service")
      << std::regex_replace(unit, std::regex("/usr/sbin/sockdispatch"), SOCKDISPATCH_BINARY);
  args.insert(args.begin(), analyze);
  args.push_back(dir + "/sockdispatch@test.service");
  Analysis analysis;
  auto run = Process::start(args);
  EXPECT_NE(run, nullptr);
  if (run) {
    analysis.code = run->wait(30s);
    analysis.output = run->stderrText();
    while (auto line = run->readLine(100ms)) {
      analysis.output += *line + "\n";
    }
  }
  std::filesystem::remove_all(dir);
  return analysis;
}

TEST(SystemdUnit, VerifiesWithoutErrorsOrWarnings) {
  std::string analyze = findTool("systemd-analyze");
  if (analyze.empty()) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd)";
  }
  // --man=no: the man page is checked by the package test, where it is installed.
  auto verify = analyzeUnit(analyze, {"verify", "--man=no"});
  EXPECT_EQ(verify.code, 0) << verify.output;
  EXPECT_EQ(verify.output, "");
}

/*
 * The unit's exposure as `systemd-analyze security` rates it stays at 2.5 or lower
 * (docs/design/sandbox.md; Debian's nginx and haproxy units rate 9.6): --threshold=25 makes it
 * exit non-zero above 2.5.
 */
TEST(SystemdUnit, ScoresAtMost2_5) {
  std::string analyze = findTool("systemd-analyze");
  if (analyze.empty()) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd)";
  }
  auto security = analyzeUnit(analyze, {"security", "--offline=true", "--threshold=25"});
  EXPECT_EQ(security.code, 0) << security.output;
  EXPECT_NE(security.output.find("Overall exposure level for sockdispatch@test.service: "),
            std::string::npos)
      << security.output;
}

/* The contract the rest of the package relies on. */
TEST(SystemdUnit, RunsTheInstanceConfigurationAsANotifyService) {
  std::string unit = readFile(kUnit);
  ASSERT_FALSE(unit.empty()) << "cannot read " << kUnit;
  for (const char *line : {
           "\nType=notify\n",
           "\nExecStart=/usr/sbin/sockdispatch attach --config /etc/sockdispatch/%i.toml\n",
           "\nExecStartPre=/usr/sbin/sockdispatch check-config /etc/sockdispatch/%i.toml\n",
           "\nKillSignal=SIGQUIT\n",
           "\nExecReload=/usr/sbin/sockdispatch check-config /etc/sockdispatch/%i.toml\n",
           "\nExecReload=/bin/kill -HUP $MAINPID\n",
           "\nCapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_BIND_SERVICE CAP_SETUID "
           "CAP_SETGID CAP_SETPCAP CAP_KILL\n",
           "\nSystemCallFilter=@system-service bpf pidfd_getfd seccomp\n",
           "\nSystemCallErrorNumber=EPERM\n",
           "\nUMask=0027\n",
           "\nKillMode=process\n",
           "\nNoNewPrivileges=yes\n",
           "\nProtectSystem=strict\n",
           "\nReadWritePaths=/sys/fs/bpf\n",
           "\nRuntimeDirectory=sockdispatch\n",
       }) {
    EXPECT_NE(unit.find(line), std::string::npos) << "missing:" << line;
  }
}

} // namespace
} // namespace sockdispatch::test
