// Unmodified programs as the workers (`attach PORT -- COMMAND`): Debian's gunicorn (one sync
// worker per copy) and uvicorn, given their slot's listener as fd 3. Each answer names the
// slot and process that served it, so the tests prove which listener a child holds; kills,
// reloads and crash loops run under the real master, real BPF program and real TCP.
#include "control/pinned_attachment.h"
#include "support/held_connections.h"
#include "support/http_client.h"
#include "support/load.h"
#include "support/notify_socket.h"
#include "support/open_loop_load.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
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
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
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

// The answer's line, wherever it stands in the body.
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
 * Under a steady open-loop load (200 new connections a second on a fixed schedule, so
 * arrivals go on while a copy is gone), SIGKILL the program in slot 0 (gunicorn's master; its
 * sync worker notices and leaves after its request), then reload (SIGHUP: a new generation,
 * the old copies sent SIGTERM, gunicorn's graceful stop): not one request fails. The master
 * held every listener, so what was queued for a dead or leaving copy is served by its respawn
 * or migrated to a live one.
 */
TEST_F(ExecWorkers, AKilledChildAndAReloadUnderLoadLoseNothing) {
  auto attachment = Attachment::start(gunicorn({"0", "--bind", "127.0.0.1", "--workers", "2"}));
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto before = slots(port);
  ASSERT_EQ(before.size(), 2U);

  OpenLoopLoad load(port, /*perSecond=*/200, std::chrono::seconds(40));
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
  EXPECT_EQ(tally.failures(), 0U) << tally.describe() << ", late " << load.late();
  EXPECT_GT(tally.ok, 800U) << tally.describe();
  EXPECT_EQ(attachment->stop(), 0);
}

/*
 * The dynamic pool with uvicorn copies, whose load the kernel measures: 1 to 3 copies, busy
 * above 4 open connections each. Twenty answered keep-alive connections are held: the pool
 * grows to 3. They close: after a second of idleness it retires copies (SIGTERM, uvicorn's
 * graceful stop) down to 1. An open-loop load runs throughout, and not one request fails.
 */
TEST_F(ExecWorkers, ThePoolGrowsAndShrinksOnTheKernelMeasuredLoadLosingNothing) {
  auto attachment = Attachment::start({"0",
                                       "--bind",
                                       "127.0.0.1",
                                       "--min-workers",
                                       "1",
                                       "--max-workers",
                                       "3",
                                       "--pool-busy-conns",
                                       "4",
                                       "--pool-idle-seconds",
                                       "1",
                                       "--",
                                       "/usr/bin/python3",
                                       "-m",
                                       "uvicorn",
                                       "--fd",
                                       "3",
                                       "--timeout-keep-alive",
                                       "60",
                                       "--app-dir",
                                       dir_.path(),
                                       "asgi_app:app"});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto running = [&] {
    size_t count = 0;
    for (const SlotSnapshot &slot : slots(port)) {
      count += slot.state == SD_SLOT_RUNNING ? 1 : 0;
    }
    return count;
  };
  ASSERT_EQ(running(), 1U);

  OpenLoopLoad load(port, /*perSecond=*/50, std::chrono::seconds(60));
  ASSERT_TRUE(load.waitFor(50)) << "the load did not start";
  std::vector<TcpClient> held;
  for (int i = 0; i < 20; ++i) {
    auto client = TcpClient::connect(port);
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply) << "held connection " << i << "\n" << attachment->process().stderrText();
    ASSERT_EQ(reply->status, 200);
    held.push_back(std::move(*client));
  }
  EXPECT_TRUE(eventually([&] { return running() == 3; }, 20s))
      << "the pool did not grow to 3: " << running() << "\n"
      << attachment->process().stderrText();
  ASSERT_TRUE(load.waitFor(50)) << "no progress once grown";
  held.clear();
  EXPECT_TRUE(eventually([&] { return running() == 1; }, 30s))
      << "the pool did not shrink to 1: " << running();
  ASSERT_TRUE(load.waitFor(50)) << "no progress once shrunk";
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe() << ", late " << load.late();
  std::string log = attachment->process().stderrText();
  EXPECT_NE(log.find("adding 1"), std::string::npos) << log;
  EXPECT_NE(log.find("retiring worker"), std::string::npos) << log;
  EXPECT_EQ(attachment->stop(), 0);
}

/*
 * As under the unit (Type=notify, NotifyAccess=main): with $NOTIFY_SOCKET set, READY=1 comes
 * from the master once both gunicorn copies serve, and nothing from the copies, whose arbiter
 * would send its own READY=1 if it saw the variable. Their stderr is the master's (the
 * journal under the unit): gunicorn's boot lines are there.
 */
TEST_F(ExecWorkers, UnderSystemdOnlyTheMasterNotifiesAndTheProgramLogsToItsStderr) {
  NotifySocket socket;
  std::unique_ptr<Attachment> attachment;
  {
    ScopedEnv env("NOTIFY_SOCKET", socket.path());
    attachment = Attachment::start(gunicorn({"0", "--bind", "127.0.0.1", "--workers", "2"}));
  }
  ASSERT_NE(attachment, nullptr);
  auto ready = socket.receive(20s);
  ASSERT_TRUE(ready.has_value()) << "no READY=1:\n" << attachment->process().stderrText();
  EXPECT_EQ(ready->sender, attachment->process().pid());
  EXPECT_EQ(ready->text.rfind("READY=1\n", 0), 0U) << ready->text;
  // Both copies have booted and answer (their arbiters would have sent READY=1 by now).
  std::set<uint32_t> seen;
  for (int i = 0; i < 20 && seen.size() < 2; ++i) {
    auto reply = fetch(attachment->port(), "/");
    ASSERT_TRUE(reply && reply->status == 200);
    seen.insert(parse(reply->body).slot);
  }
  EXPECT_EQ(seen.size(), 2U);
  while (auto more = socket.receive(0ms)) {
    ADD_FAILURE() << "from pid " << more->sender << " (master " << attachment->process().pid()
                  << "): " << more->text;
  }
  EXPECT_TRUE(eventually([&] {
    return attachment->process().stderrText().find("Booting worker with pid") != std::string::npos;
  })) << attachment->process().stderrText();
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

// Slot `slot` of `sockdispatch status PORT --json`, as the CLI prints it; null (and a failure
// of the current test) when status fails or says something on stderr.
nlohmann::json statusOfSlot(uint16_t port, uint32_t slot) {
  auto done = runSockdispatch({"status", std::to_string(port), "--json"});
  if (done.code != 0 || !done.err.empty()) {
    ADD_FAILURE() << "status: exit " << done.code << ": " << done.err;
    return nullptr;
  }
  auto workers = nlohmann::json::parse(done.out)["workers"];
  return slot < workers.size() ? workers[slot] : nlohmann::json(nullptr);
}

/*
 * status splits a kernel-measured slot's count with its listener's accept queue (one
 * sock_diag dump). One uvicorn copy answers 3 keep-alive connections and keeps them; frozen
 * (SIGSTOP), it accepts nothing while 6 more connect and send a request. The kernel counts all
 * 9 in the slot's `open`; status shows open 3 (exact: the held ones) and queued 6, 6 of them
 * in the accept queue. Resumed, it answers the 6; once every client has closed, status shows
 * 0 open, 0 queued.
 */
TEST_F(ExecWorkers, StatusSplitsAFrozenCopysAcceptQueueFromItsOpenConnections) {
  auto attachment = Attachment::start(
      {"0", "--bind", "127.0.0.1", "--workers", "1", "--", "/usr/bin/python3", "-m", "uvicorn",
       "--fd", "3", "--timeout-keep-alive", "60", "--app-dir", dir_.path(), "asgi_app:app"});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  std::vector<TcpClient> held;
  for (int i = 0; i < 3; ++i) {
    auto client = TcpClient::connect(port);
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->send("GET /held HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply && reply->status == 200) << "held connection " << i;
    held.push_back(std::move(*client));
  }
  nlohmann::json shown;
  ASSERT_TRUE(eventually([&] {
    shown = statusOfSlot(port, 0);
    return shown.is_object() && shown["open"] == 3 && shown["queued"] == 0;
  })) << shown.dump();
  EXPECT_EQ(shown["load_source"], "kernel");
  EXPECT_EQ(shown["accept_queue"], 0);

  auto program = static_cast<pid_t>(slots(port)[0].pid);
  std::vector<pid_t> stopped{program};
  for (pid_t child : childrenOf(program)) {
    stopped.push_back(child);
  }
  for (pid_t pid : stopped) {
    ASSERT_TRUE(freeze(pid)) << "SIGSTOP " << pid;
  }
  std::vector<TcpClient> queued = sendQueued(port, 6);
  ASSERT_EQ(queued.size(), 6U);
  EXPECT_TRUE(eventually([&] {
    shown = statusOfSlot(port, 0);
    return shown.is_object() && shown["accept_queue"] == 6 && shown["queued"] == 6;
  })) << shown.dump();
  EXPECT_EQ(shown["open"], 3) << "exactly the held connections: " << shown.dump();
  EXPECT_EQ(slots(port)[0].open, 9U) << "the kernel's count holds both";

  for (pid_t pid : stopped) {
    ::kill(pid, SIGCONT);
  }
  for (size_t i = 0; i < queued.size(); ++i) {
    auto reply = queued[i].readReply(10s);
    EXPECT_TRUE(reply && reply->status == 200) << "queued connection " << i;
  }
  queued.clear();
  held.clear();
  EXPECT_TRUE(eventually([&] {
    shown = statusOfSlot(port, 0);
    return shown.is_object() && shown["open"] == 0 && shown["queued"] == 0 &&
           shown["accept_queue"] == 0;
  })) << shown.dump();
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
