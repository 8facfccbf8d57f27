// The packaged unit's sandbox, run: `unit_sandbox` applies the [Service] section's settings as
// systemd does (its mount namespace, umask, capability bounding set, no_new_privs and seccomp
// filters: tests/support/unit_sandbox.cc) and runs `attach` in it. The attachment must do
// everything it does under the unit: serve, reload, be taken over by a new master after
// SIGKILL, and stop, with no request lost and nothing refused by the sandbox. The
// protections the tool leaves to systemd are run by the VM test (packaging/test-kernel.sh).
#include "bpf/pin_dir.h"
#include "control/pinned_attachment.h"
#include "line/shared_scoreboard.h"
#include "support/http_client.h"
#include "support/load.h"
#include "support/open_loop_load.h"
#include "support/process.h"
#include "support/worker_state.h"

#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

const std::string kUnit =
    std::string(SOCKDISPATCH_SOURCE_DIR) + "/packaging/systemd/sockdispatch@.service";
// Under AddressSanitizer (the suite's sanitizer run) the leak check at exit stops the process
// with ptrace, which the unit's filter refuses: it is off for the sandboxed process (the other
// runs of the same code check leaks). The variable means nothing to other builds.
const std::vector<std::string> kInTheUnitsSandbox = {
    "/usr/bin/env", "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1", UNIT_SANDBOX, kUnit, "--"};

struct SandboxCase {
  const char *mode;
  const char *user; // "" for none
};

class UnitSandbox : public BpfTest, public testing::WithParamInterface<SandboxCase> {
protected:
  void SetUp() override {
    BpfTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    if (::access("/usr/bin/systemd-analyze", X_OK) != 0) {
      GTEST_SKIP() << "systemd-analyze (Debian package systemd) lists the unit's system-call "
                      "groups; it is not installed";
    }
    // The unit asserts that /sys/fs/bpf is mounted (systemd mounts it at boot); the sandbox
    // refuses the mount system calls.
    ASSERT_TRUE(ensureBpffs()) << "mount bpffs on /sys/fs/bpf";
  }
};

// What the sandbox makes of a master (root, the unit's bounding set) and of a built-in worker
// (its own filter on top of the unit's; with a user, no capability).
void expectConfined(uint32_t master, const std::set<uint32_t> &workers, bool dropped) {
  constexpr uint64_t kBounding = (1ULL << CAP_BPF) | (1ULL << CAP_PERFMON) |
                                 (1ULL << CAP_NET_BIND_SERVICE) | (1ULL << CAP_SETUID) |
                                 (1ULL << CAP_SETGID) | (1ULL << CAP_SETPCAP) | (1ULL << CAP_KILL);
  auto status = procStatus(static_cast<pid_t>(master));
  EXPECT_EQ(std::stoull(status["CapBnd"], nullptr, 16), kBounding) << status["CapBnd"];
  EXPECT_EQ(status["NoNewPrivs"], "1");
  EXPECT_EQ(status["Seccomp"], "2");
  EXPECT_EQ(status["Seccomp_filters"], "2") << "the unit's two filters";
  for (uint32_t pid : workers) {
    auto worker = procStatus(static_cast<pid_t>(pid));
    if (dropped) {
      EXPECT_EQ(worker["CapBnd"], "0000000000000000") << "worker " << pid;
    }
    EXPECT_EQ(worker["Seccomp_filters"], "3") << "worker " << pid << ": its own filter too";
  }
}

// Nothing the attachment made is for others (UMask=0027 and the modes it gives).
void expectNothingForOthers(const std::string &dir) {
  std::error_code error;
  for (const auto &entry : std::filesystem::recursive_directory_iterator(dir, error)) {
    struct stat st {};
    ASSERT_EQ(::lstat(entry.path().c_str(), &st), 0) << entry.path();
    if (!S_ISLNK(st.st_mode)) {
      EXPECT_EQ(st.st_mode & 0007, 0U) << entry.path() << " mode " << std::oct << st.st_mode;
    }
  }
}

// Whether this kernel refuses a socket filter on a TCP socket to a process without
// capabilities (6.18 does, wanting CAP_NET_ADMIN, which the unit does not grant): a child
// that dropped to nobody tries, and says through a pipe (the suite's process helpers may reap
// any child).
bool kernelRefusesTcpSocketFiltersWithoutCapabilities() {
  std::array<int, 2> answer{};
  if (::pipe(answer.data()) != 0) {
    return false;
  }
  pid_t child = ::fork();
  if (child == 0) {
    char refused = 'n';
    if (::setresgid(65534, 65534, 65534) == 0 && ::setresuid(65534, 65534, 65534) == 0) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sock_filter acceptAll = BPF_STMT(BPF_RET | BPF_K, 0xffffffffU);
      sock_fprog program{1, &acceptAll};
      if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof program) != 0 &&
          errno == EPERM) {
        refused = 'y';
      }
    }
    (void)!::write(answer[1], &refused, 1);
    ::_exit(0);
  }
  ::close(answer[1]);
  char refused = 'n';
  (void)!::read(answer[0], &refused, 1);
  ::close(answer[0]);
  if (child > 0) {
    ::waitpid(child, nullptr, 0);
  }
  return refused == 'y';
}

// The log's warnings and errors, but the one an orphan logs when its master was killed, and
// the line's stop saying it cannot refuse new handshakes where the kernel wants CAP_NET_ADMIN
// for that (docs/design/line.md).
std::string unexpectedComplaints(const std::string &log) {
  static const bool filterRefused = kernelRefusesTcpSocketFiltersWithoutCapabilities();
  std::istringstream lines(log);
  std::string complaints;
  for (std::string line; std::getline(lines, line);) {
    bool complaint =
        line.find(" warning ") != std::string::npos || line.find(" error ") != std::string::npos;
    bool expected =
        line.find("the master is gone") != std::string::npos ||
        (filterRefused && line.find("new handshakes are not refused") != std::string::npos);
    if (complaint && !expected) {
      complaints += line + "\n";
    }
  }
  return complaints;
}

/*
 * In the unit's sandbox (eBPF: with --user nobody, as the example configuration suggests; the
 * line without a user, see below): the attachment serves an open-loop load of new connections and
 * keep-alive clients, reloads on SIGHUP into a new generation, survives SIGKILL of its master (the
 * workers serve on) and is taken over by a new master started in the same sandbox 2 s later
 * (sock_diag and pidfd_getfd under the filter, no CAP_SYS_PTRACE), then stops with exit 0. Zero
 * failed requests; the master and workers carry the sandbox; the logs hold no warning (nothing the
 * filter refused).
 *
 * A line's workers of another user cannot be taken over without CAP_SYS_PTRACE, which the unit
 * does not grant (the new master copies their listener with pidfd_getfd): such a master says
 * so and the orphans leave by their --orphan-timeout (docs/design/takeover.md).
 */
TEST_P(UnitSandbox, ServesReloadsIsTakenOverAndStopsWithoutLoss) {
  const SandboxCase &param = GetParam();
  const bool dropped = *param.user != '\0';
  std::vector<std::string> args{"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", param.mode};
  if (dropped) {
    args.insert(args.end(), {"--user", param.user});
  }
  auto first = Attachment::start(args, 20s, kInTheUnitsSandbox);
  ASSERT_NE(first, nullptr);
  const uint16_t port = first->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  expectConfined(static_cast<uint32_t>(first->process().pid()), runningPidsOf(port), dropped);

  OpenLoopLoad arrivals(port, 100, std::chrono::seconds(60));
  Load keepAlive(port, 2, 0, 1000000, std::chrono::seconds(60));
  ASSERT_TRUE(arrivals.waitFor(50)) << "the load did not start";

  uint64_t generation = pinned->config().generation;
  first->process().signal(SIGHUP);
  ASSERT_TRUE(eventually([&] { return pinned->config().generation == generation + 1; }, 10s))
      << first->process().stderrText();
  ASSERT_TRUE(eventually([&] { return runningPidsOf(port).size() == 2; }, 10s));
  ASSERT_TRUE(arrivals.waitFor(50));
  const std::set<uint32_t> orphans = runningPidsOf(port);

  first->process().signal(SIGKILL);
  ASSERT_TRUE(first->process().wait(5s).has_value()) << "the master outlived SIGKILL";
  ASSERT_TRUE(arrivals.waitFor(50)) << "nothing was served while the master was gone";
  ::sleep(2); // the unit's RestartSec
  args[0] = std::to_string(port);
  auto second = Attachment::start(args, 20s, kInTheUnitsSandbox);
  ASSERT_NE(second, nullptr);
  EXPECT_TRUE(eventually([&] { return allGone(orphans); }, 20s))
      << "the old workers did not leave\n"
      << second->process().stderrText();
  ASSERT_TRUE(arrivals.waitFor(50));
  ASSERT_TRUE(keepAlive.waitFor(100));
  expectConfined(static_cast<uint32_t>(second->process().pid()), runningPidsOf(port), dropped);
  expectNothingForOthers(pinDirFor(port));
  if (std::string(param.mode) == "line") {
    expectNothingForOthers(runDirFor(port));
  }

  LoadTally fresh = arrivals.stop();
  LoadTally held = keepAlive.stop();
  EXPECT_EQ(fresh.failures(), 0U) << fresh.describe();
  EXPECT_EQ(held.failures(), 0U) << held.describe();
  EXPECT_GT(fresh.ok, 200U) << fresh.describe();
  EXPECT_EQ(second->stop(), 0);
  for (Attachment *attachment : {first.get(), second.get()}) {
    EXPECT_EQ(unexpectedComplaints(attachment->process().stderrText()), "");
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, UnitSandbox,
                         testing::Values(SandboxCase{"ebpf", "nobody"}, SandboxCase{"line", ""}),
                         [](const auto &testInfo) { return std::string(testInfo.param.mode); });

using UnitSandboxProbe = BpfTest;

/*
 * The sandbox is real: a call the unit's filter refuses fails with the unit's error number,
 * and a socket of a family it does not list fails with EAFNOSUPPORT. (python3 is in the test
 * dependencies; the calls are made as a program in the sandbox would.)
 */
TEST_F(UnitSandboxProbe, RefusesWhatTheUnitForbids) {
  if (::access("/usr/bin/systemd-analyze", X_OK) != 0 || ::access("/usr/bin/python3", X_OK) != 0) {
    GTEST_SKIP() << "needs systemd-analyze and python3 (Debian packages systemd, python3)";
  }
  std::vector<std::string> command = kInTheUnitsSandbox;
  for (const char *arg : {"/usr/bin/python3", "-c",
                          "import ctypes, errno, os, socket\n"
                          "libc = ctypes.CDLL(None, use_errno=True)\n"
                          "out = []\n"
                          "out.append('swapoff=%d' % (libc.swapoff(b'/nothing') == -1 and "
                          "ctypes.get_errno()))\n"
                          "try:\n"
                          "  socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
                          "  out.append('packet=open')\n"
                          "except OSError as e:\n"
                          "  out.append('packet=%d' % e.errno)\n"
                          "try:\n"
                          "  open('/usr/sockdispatch-sandbox-probe', 'w')\n"
                          "  out.append('usr=written')\n"
                          "except OSError as e:\n"
                          "  out.append('usr=%d' % e.errno)\n"
                          "open('/run/sockdispatch/.sandbox-probe', 'w').close()\n"
                          "os.unlink('/run/sockdispatch/.sandbox-probe')\n"
                          "out.append('run=written')\n"
                          "print(' '.join(out))\n"}) {
    command.emplace_back(arg);
  }
  auto probe = Process::start(command);
  ASSERT_NE(probe, nullptr);
  auto line = probe->readLine(20s);
  auto code = probe->wait(10s);
  ASSERT_TRUE(line.has_value()) << probe->stderrText();
  EXPECT_EQ(code, 0) << probe->stderrText();
  EXPECT_EQ(*line, "swapoff=" + std::to_string(EPERM) + " packet=" + std::to_string(EAFNOSUPPORT) +
                       " usr=" + std::to_string(EROFS) + " run=written");
}

} // namespace
} // namespace sockdispatch::test
