// Unmodified programs as the workers (`attach PORT -- COMMAND`): Debian's gunicorn (one sync
// worker per copy) and uvicorn, given their slot's listener as fd 3. Each answer names the
// slot and process that served it, so the tests prove which listener a child holds; kills,
// reloads and crash loops run under the real master, real BPF program and real TCP.
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/load.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

constexpr const char *kWsgiApp = R"(import os
def app(environ, start_response):
    body = ("slot %s pid %d ppid %d listen_pid %s listen_fds %s port %s\n" % (
        os.environ.get("SOCKDISPATCH_SLOT"), os.getpid(), os.getppid(),
        os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS"),
        os.environ.get("SOCKDISPATCH_PORT"))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
)";

constexpr const char *kAsgiApp = R"(import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = ("slot %s pid %d ppid %d listen_pid %s listen_fds %s port %s\n" % (
        os.environ.get("SOCKDISPATCH_SLOT"), os.getpid(), os.getppid(),
        os.environ.get("LISTEN_PID"), os.environ.get("LISTEN_FDS"),
        os.environ.get("SOCKDISPATCH_PORT"))).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
)";

// What an answer says about who served it.
struct Served {
  uint32_t slot = 0;
  long pid = 0;
  long ppid = 0;
  std::string listenPid;
  std::string listenFds;
  std::string port;
};

// The answer's line, wherever it stands in the body (uvicorn answers chunked, and the test
// client keeps the chunk framing).
Served parse(const std::string &body) {
  Served served;
  size_t start = body.find("slot ");
  std::istringstream in(start == std::string::npos ? std::string() : body.substr(start));
  std::string word;
  in >> word >> served.slot >> word >> served.pid >> word >> served.ppid >> word >>
      served.listenPid >> word >> served.listenFds >> word >> served.port;
  return served;
}

bool haveProgram(const char *path) {
  return ::access(path, X_OK) == 0;
}

class ExecWorkers : public BpfTest {
protected:
  void SetUp() override {
    BpfTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    if (!haveProgram("/usr/bin/gunicorn") || !haveProgram("/usr/bin/python3")) {
      GTEST_SKIP() << "needs Debian's gunicorn and python3-uvicorn (packaging/install-deps.sh)";
    }
    (void)dir_.write("wsgi_app.py", kWsgiApp);
    (void)dir_.write("asgi_app.py", kAsgiApp);
  }

  // gunicorn with one sync worker per copy; it finds fd 3 through LISTEN_FDS.
  std::vector<std::string> gunicorn(std::vector<std::string> flags) const {
    for (const std::string &word :
         {std::string("--"), std::string("/usr/bin/gunicorn"), std::string("--workers"),
          std::string("1"), std::string("--graceful-timeout"), std::string("5"),
          std::string("--chdir"), dir_.path(), std::string("wsgi_app:app")}) {
      flags.push_back(word);
    }
    return flags;
  }

  static std::vector<SlotSnapshot> slots(uint16_t port) {
    auto pinned = PinnedAttachment::open(port, false);
    if (!pinned) {
      ADD_FAILURE() << pinned.error().message();
      return {};
    }
    return pinned->scoreboard().snapshotAll();
  }

  TempDir dir_;
};

/*
 * Two gunicorn copies, round_robin: both slots answer, and each answer comes from a process
 * whose parent is the pid the scoreboard names for that slot (the gunicorn master we exec'd
 * in the slot's child): the listener a child holds is its slot's.
 */
TEST_F(ExecWorkers, GunicornServesEachSlotFromItsOwnListener) {
  auto attachment = Attachment::start(
      gunicorn({"0", "--bind", "127.0.0.1", "--workers", "2", "--policy", "round_robin"}));
  ASSERT_NE(attachment, nullptr);
  std::map<uint32_t, long> parentOf;
  for (int i = 0; i < 8; ++i) {
    auto reply = fetch(attachment->port(), "/");
    ASSERT_TRUE(reply) << "request " << i;
    ASSERT_EQ(reply->status, 200) << reply->body;
    Served served = parse(reply->body);
    parentOf[served.slot] = served.ppid;
    // gunicorn takes fd 3 from LISTEN_FDS and then unsets LISTEN_* (as the protocol asks),
    // so its app sees only ours.
    EXPECT_EQ(served.listenFds, "None");
    EXPECT_EQ(served.port, std::to_string(attachment->port()));
  }
  ASSERT_EQ(parentOf.size(), 2U) << "both slots answer";
  for (const SlotSnapshot &slot : slots(attachment->port())) {
    EXPECT_EQ(slot.state, SD_SLOT_RUNNING);
    EXPECT_EQ(parentOf.at(slot.slot), static_cast<long>(slot.pid)) << "slot " << slot.slot;
  }
  EXPECT_EQ(attachment->stop(), 0);
}

/* uvicorn takes the descriptor by argument (--fd 3): one process per copy, its own pid. */
TEST_F(ExecWorkers, UvicornServesWithTheDescriptorAsAnArgument) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--policy",
                                       "round_robin", "--", "/usr/bin/python3", "-m", "uvicorn",
                                       "--fd", "3", "--app-dir", dir_.path(), "asgi_app:app"});
  ASSERT_NE(attachment, nullptr);
  std::set<uint32_t> seen;
  for (int i = 0; i < 6; ++i) {
    auto reply = fetch(attachment->port(), "/");
    ASSERT_TRUE(reply) << "request " << i;
    ASSERT_EQ(reply->status, 200) << reply->body;
    Served served = parse(reply->body);
    seen.insert(served.slot);
    // uvicorn leaves the environment alone: LISTEN_PID is its own pid, set between fork and
    // exec.
    EXPECT_EQ(served.listenPid, std::to_string(served.pid)) << reply->body;
    EXPECT_EQ(served.listenFds, "1");
    EXPECT_EQ(served.port, std::to_string(attachment->port()));
  }
  EXPECT_EQ(seen.size(), 2U);
  for (const SlotSnapshot &slot : slots(attachment->port())) {
    EXPECT_EQ(slot.state, SD_SLOT_RUNNING) << "slot " << slot.slot;
  }
  EXPECT_EQ(attachment->stop(), 0);
}

/*
 * Under a steady load, SIGKILL the program in slot 0 (gunicorn's master; its sync worker
 * notices and leaves after its request), then reload (SIGHUP: a new generation, the old copies
 * sent SIGTERM, gunicorn's graceful stop): not one request fails. The master held every
 * listener, so what was queued for a dead or leaving copy is served by its respawn or
 * migrated to a live one.
 */
TEST_F(ExecWorkers, AKilledChildAndAReloadUnderLoadLoseNothing) {
  auto attachment = Attachment::start(gunicorn({"0", "--bind", "127.0.0.1", "--workers", "2"}));
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto before = slots(port);
  ASSERT_EQ(before.size(), 2U);

  Load load(port, /*keepAlive=*/0, /*fresh=*/4, /*maxRequests=*/100000, std::chrono::seconds(40));
  ASSERT_TRUE(load.waitFor(200)) << "the load did not start";
  ASSERT_EQ(::kill(static_cast<pid_t>(before[0].pid), SIGKILL), 0);
  ASSERT_TRUE(eventually(
      [&] {
        auto now = slots(port);
        return now.size() == 2 && now[0].respawns == before[0].respawns + 1 &&
               now[0].state == SD_SLOT_RUNNING;
      },
      10s))
      << "slot 0 was not respawned";
  ASSERT_TRUE(load.waitFor(300)) << "no progress after the kill";

  attachment->process().signal(SIGHUP);
  ASSERT_TRUE(eventually(
      [&] {
        return attachment->process().stderrText().find("generation 2 serves") != std::string::npos;
      },
      20s))
      << "the reload did not finish:\n"
      << attachment->process().stderrText();
  ASSERT_TRUE(load.waitFor(300)) << "no progress after the reload";
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_GT(tally.ok, 800U) << tally.describe();
  EXPECT_EQ(attachment->stop(), 0);
}

// The pids of `pid`'s children (its first thread's), from /proc.
std::vector<pid_t> childrenOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> children;
  pid_t child = 0;
  while (in >> child) {
    children.push_back(child);
  }
  return children;
}

/*
 * The kernel measures a COMMAND worker's load (foreign_load.bpf.c): every child of its
 * listener counts in its slot's `open` from the handshake to the application's close. With
 * slot 0's gunicorn frozen (SIGSTOP on its master and its worker), the first connection
 * chosen for it stays queued there, its `open` shows it, and least_conn sends the next ones
 * to slot 1: of 10 new connections at most 2 wait (the kernel's hash would leave about 5).
 * Once it resumes and every client has closed, both slots are back to 0 open: the count is
 * exact.
 */
TEST_F(ExecWorkers, AFrozenCopyIsAvoidedByItsKernelMeasuredLoad) {
  auto attachment = Attachment::start(gunicorn({"0", "--bind", "127.0.0.1", "--workers", "2"}));
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  for (int i = 0; i < 4; ++i) {
    auto reply = fetch(port, "/");
    ASSERT_TRUE(reply && reply->status == 200) << "warm-up " << i;
  }
  ASSERT_TRUE(eventually([&] {
    auto now = slots(port);
    return now.size() == 2 && now[0].open == 0 && now[1].open == 0 && now[0].accepted >= 1;
  })) << "the kernel does not count the COMMAND workers' connections";

  auto frozen = static_cast<pid_t>(slots(port)[0].pid);
  std::vector<pid_t> stopped{frozen};
  for (pid_t child : childrenOf(frozen)) {
    stopped.push_back(child);
  }
  for (pid_t pid : stopped) {
    ASSERT_TRUE(freeze(pid)) << "SIGSTOP " << pid;
  }
  std::vector<TcpClient> waiting;
  int unanswered = 0;
  for (int i = 0; i < 10; ++i) {
    auto client = TcpClient::connect(port);
    ASSERT_TRUE(client) << "connect " << i;
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    auto reply = client->readReply(std::chrono::milliseconds(1000));
    if (!reply) {
      ++unanswered;
      waiting.push_back(std::move(*client));
    }
  }
  auto during = slots(port);
  EXPECT_LE(unanswered, 2) << "slot 0 open " << during[0].open << ", slot 1 open "
                           << during[1].open;
  EXPECT_GE(during[0].open, 1U) << "the frozen copy's queue is not counted";
  for (pid_t pid : stopped) {
    ::kill(pid, SIGCONT);
  }
  for (auto &client : waiting) {
    auto late = client.readReply(5s);
    EXPECT_TRUE(late) << "a connection queued for the frozen copy was lost";
  }
  waiting.clear();
  EXPECT_TRUE(eventually([&] {
    auto now = slots(port);
    return now.size() == 2 && now[0].open == 0 && now[1].open == 0;
  })) << "open stays at "
      << slots(port)[0].open << " and " << slots(port)[1].open;
  EXPECT_EQ(attachment->stop(), 0);
}

/* --user applies to a COMMAND as to our workers: the exec'd program runs as that user. */
TEST_F(ExecWorkers, TheProgramRunsAsTheUserGiven) {
  ASSERT_EQ(::chmod(dir_.path().c_str(), 0755), 0) << "the app must be readable by nobody";
  auto attachment = Attachment::start(
      gunicorn({"0", "--bind", "127.0.0.1", "--workers", "1", "--user", "nobody"}));
  ASSERT_NE(attachment, nullptr);
  auto reply = fetch(attachment->port(), "/");
  ASSERT_TRUE(reply && reply->status == 200);
  auto program = static_cast<pid_t>(slots(attachment->port())[0].pid);
  std::ifstream status("/proc/" + std::to_string(program) + "/status");
  std::string line;
  std::string uids;
  while (std::getline(status, line)) {
    if (line.rfind("Uid:", 0) == 0) {
      uids = line;
    }
  }
  struct passwd *nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  std::string uid = std::to_string(nobody->pw_uid);
  EXPECT_EQ(uids, "Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid) << uids;
  EXPECT_EQ(attachment->stop(), 0);
}

/* A COMMAND that exits at once is respawned, slower and slower, and said so once per doubling. */
TEST_F(ExecWorkers, AProgramThatExitsAtOnceIsRespawnedWithBackoff) {
  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "1", "--", "/bin/sh", "-c", "sleep 0.3; exit 3"});
  ASSERT_NE(attachment, nullptr);
  ASSERT_TRUE(eventually(
      [&] {
        return !slots(attachment->port()).empty() && slots(attachment->port())[0].respawns >= 3;
      },
      10s))
      << attachment->process().stderrText();
  EXPECT_TRUE(eventually([&] {
    return attachment->process().stderrText().find("crash-looping") != std::string::npos;
  }));
  EXPECT_NE(attachment->process().stderrText().find("exited with status 3"), std::string::npos);
  EXPECT_EQ(attachment->stop(), 0);
}

/* A COMMAND that cannot be executed is a usage error before anything starts or is pinned. */
TEST_F(ExecWorkers, AMissingProgramIsAUsageErrorAndNothingIsPinned) {
  constexpr const char *kPort = "18413";
  auto done = runSockdispatch(
      {"attach", kPort, "--bind", "127.0.0.1", "--", "/nonexistent/sockdispatch-app", "--serve"});
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_NE(done.err.find("COMMAND '/nonexistent/sockdispatch-app': no such executable"),
            std::string::npos)
      << done.err;
  EXPECT_NE(::access((std::string("/sys/fs/bpf/sockdispatch/") + kPort).c_str(), F_OK), 0)
      << "pinned state left behind";
  auto unknown = runSockdispatch({"attach", kPort, "--", "no-such-program-on-path"});
  EXPECT_EQ(unknown.code, 2) << unknown.err;
  EXPECT_NE(unknown.err.find("looked up in PATH"), std::string::npos) << unknown.err;
}

} // namespace
} // namespace sockdispatch::test
