// The packaged systemd unit, checked offline by `systemd-analyze verify` (PID 1 need not be
// systemd): with /usr/sbin/sockdispatch pointed at the built binary, the unit must load with
// no error and no warning (verify exits 0 on unknown keys, so its output must be empty too).
#include "support/process.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

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

TEST(SystemdUnit, VerifiesWithoutErrorsOrWarnings) {
  std::string analyze = findTool("systemd-analyze");
  if (analyze.empty()) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package systemd)";
  }
  std::string unit = readFile(kUnit);
  ASSERT_FALSE(unit.empty()) << "cannot read " << kUnit;

  char base[] = "/tmp/sockdispatch-unit-XXXXXX";
  ASSERT_NE(::mkdtemp(base), nullptr);
  std::string dir = base;
  std::ofstream(dir + "/sockdispatch@.service")
      << std::regex_replace(unit, std::regex("/usr/sbin/sockdispatch"), SOCKDISPATCH_BINARY);

  // --man=no: the man page is checked by the package test, where it is installed.
  auto verify = Process::start({analyze, "verify", "--man=no", dir + "/sockdispatch@test.service"});
  ASSERT_NE(verify, nullptr);
  auto code = verify->wait(30s);
  std::string output = verify->stderrText();
  while (auto line = verify->readLine(100ms)) {
    output += *line + "\n";
  }
  std::filesystem::remove_all(dir);
  EXPECT_EQ(code, 0) << output;
  EXPECT_EQ(output, "");
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
           "\nCapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_NET_BIND_SERVICE CAP_CHOWN CAP_SETUID "
           "CAP_SETGID CAP_SETPCAP CAP_KILL\n",
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
