// Generations and stops under load: reload, restart and graceful stop lose nothing the kernel
// accepted; a killed worker loses exactly the connections it held; a crash loop backs off.
#include "control/pinned_attachment.h"
#include "core/listener_diag.h"
#include "support/held_connections.h"
#include "support/http_client.h"
#include "support/load.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace sockdispatch::test {
namespace {

using Lifecycle = BpfTest;

bool processGone(uint32_t pid) {
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

std::set<uint32_t> runningPids(PinnedAttachment &pinned) {
  std::set<uint32_t> pids;
  for (const auto &slot : pinned.scoreboard().snapshotAll()) {
    if (slot.state == SD_SLOT_RUNNING && slot.pid != 0) {
      pids.insert(slot.pid);
    }
  }
  return pids;
}

struct GenerationSignal {
  const char *name;
  int signo;
};
void PrintTo(const GenerationSignal &signal, std::ostream *out) {
  *out << signal.name;
}

// Every lifecycle guarantee holds in both modes: eBPF (the kernel migrates what was queued on
// a closing listener) and line (the master holds every input channel of the line and sends
// again whatever was queued for a worker that left).
constexpr const char *kModes[] = {"ebpf", "line"};

class NewGeneration : public testing::TestWithParam<std::tuple<GenerationSignal, const char *>> {
protected:
  void SetUp() override {
    if (!haveBpfPrivileges()) {
      GTEST_SKIP() << "needs root (CAP_BPF + CAP_NET_ADMIN; CAP_SYS_ADMIN to mount bpffs)";
    }
  }
};

/*
 * Four workers serve a steady load from four client threads (two keep-alive, two opening a
 * new connection per request). Three times, the signal starts a new generation: new
 * listeners join the group, new workers start in free slots, the old workers are marked
 * draining, their listeners close (the kernel migrates what was queued on them) and they
 * leave once their requests are answered. Not one request may fail, each generation must
 * take over (new pids answer), and every retired process must be gone.
 */
TEST_P(NewGeneration, UnderLoadLosesNothing) {
  const auto &[signal, mode] = GetParam();
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "4", "--mode", mode});
  ASSERT_NE(attachment, nullptr);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();

  Load load(attachment->port(), 2, 2);
  ASSERT_TRUE(load.waitFor(200)) << "the load did not start";
  std::set<uint32_t> retired;
  for (int round = 0; round < 3; ++round) {
    auto before = runningPids(*pinned);
    ASSERT_EQ(before.size(), 4U) << "round " << round;
    uint64_t generation = pinned->config().generation;
    attachment->process().signal(signal.signo);
    ASSERT_TRUE(eventually([&] { return pinned->config().generation == generation + 1; }, 10s))
        << "round " << round << ": the new generation never took over";
    retired.insert(before.begin(), before.end());
    ASSERT_TRUE(load.waitFor(200)) << "round " << round << ": the load stalled";
  }
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_GT(tally.ok, 600U) << tally.describe();
  RecordProperty("tally", tally.describe());

  auto serving = runningPids(*pinned);
  EXPECT_EQ(serving.size(), 4U);
  for (uint32_t pid : serving) {
    EXPECT_EQ(retired.count(pid), 0U) << "pid " << pid << " was retired yet still runs";
  }
  EXPECT_TRUE(eventually(
      [&] {
        for (uint32_t pid : retired) {
          if (!processGone(pid)) {
            return false;
          }
        }
        return true;
      },
      10s))
      << "a retired worker did not leave";
  auto verdicts = pinned->verdicts();
  ASSERT_TRUE(verdicts);
  EXPECT_EQ((*verdicts)[SD_VERDICT_SELECT_FAILED], 0U) << "the sockarray held a closed socket";
  EXPECT_EQ(attachment->stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Signals, NewGeneration,
    testing::Combine(testing::Values(GenerationSignal{"reload_SIGHUP", SIGHUP},
                                     GenerationSignal{"restart_SIGUSR1", SIGUSR1}),
                     testing::ValuesIn(kModes)),
    [](const auto &param) {
      return std::string(std::get<0>(param.param).name) + "_" + std::get<1>(param.param);
    });

class InMode : public BpfTest, public testing::WithParamInterface<const char *> {};

/*
 * SIGQUIT while a request is half sent, a keep-alive connection is idle, and six
 * connections wait in the accept queues of frozen workers. The half-sent request is
 * completed after the signal and answered with Connection: close; every queued connection is
 * accepted and answered; the idle connection is closed; the master exits 0 and removes its
 * pins.
 */
TEST_P(InMode, GracefulStopServesQueuedAndInFlightRequests) {
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", GetParam()});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();

  auto idle = TcpClient::connect(port);
  ASSERT_TRUE(idle);
  ASSERT_TRUE(idle->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto first = idle->readReply();
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200);

  auto halfSent = TcpClient::connect(port);
  ASSERT_TRUE(halfSent);
  ASSERT_TRUE(halfSent->send("GET /?half HTTP/1.1\r\nHost: x\r\n"));
  ASSERT_TRUE(eventually([&] {
    uint64_t open = 0;
    for (const auto &slot : pinned->scoreboard().snapshotAll()) {
      open += slot.open;
    }
    return open == 2;
  })) << "both connections accepted";

  auto workers = pinned->scoreboard().snapshotAll();
  for (const auto &slot : workers) {
    ASSERT_TRUE(freeze(static_cast<pid_t>(slot.pid))) << "SIGSTOP slot " << slot.slot;
  }
  std::vector<TcpClient> queued;
  for (int i = 0; i < 6; ++i) {
    auto client = TcpClient::connect(port);
    ASSERT_TRUE(client) << "connect " << i << " (queued in the kernel)";
    ASSERT_TRUE(client->send("GET /?queued HTTP/1.1\r\nHost: x\r\n\r\n"));
    queued.push_back(std::move(*client));
  }

  attachment->process().signal(SIGQUIT);
  // The master marks a slot stopping once it has asked that worker to stop; the frozen
  // workers cannot, so this sees the master's word reach both of them.
  ASSERT_TRUE(eventually([&] {
    for (const auto &slot : pinned->scoreboard().snapshotAll()) {
      if (slot.state != SD_SLOT_STOPPING) {
        return false;
      }
    }
    return true;
  })) << "the master did not ask the workers to stop";
  for (const auto &slot : workers) {
    ASSERT_EQ(::kill(static_cast<pid_t>(slot.pid), SIGCONT), 0) << "SIGCONT slot " << slot.slot;
  }
  // A worker frozen between its wake-up for the half-sent head and reading it resumes that
  // turn before it reads the stop; the rest of the request must come after the stop was taken.
  // Each worker closes its listener when it takes the stop (the master closed its copies
  // before asking): once nothing listens on the port, both have.
  ASSERT_TRUE(eventually([&] {
    auto listeners = dumpTcpListeners(port);
    return listeners && listeners->empty();
  })) << "the workers did not take the stop";
  ASSERT_TRUE(halfSent->send("\r\n"));
  auto completed = halfSent->readReply();
  ASSERT_TRUE(completed) << "the request in flight was not answered";
  EXPECT_EQ(completed->status, 200);
  EXPECT_EQ(completed->header("connection"), "close");
  for (size_t i = 0; i < queued.size(); ++i) {
    auto reply = queued[i].readReply();
    ASSERT_TRUE(reply) << "queued connection " << i << " was lost";
    EXPECT_EQ(reply->status, 200);
  }
  EXPECT_TRUE(idle->waitForClose()) << "the idle keep-alive connection stayed open";
  EXPECT_EQ(attachment->process().wait(10s), 0);
  EXPECT_FALSE(PinnedAttachment::open(port, false)) << "the pins outlived the attachment";
}

/*
 * Once a stop has begun, a new connection is refused at once (RST to its SYN), never
 * accepted into a listener that may close before anyone takes it from the queue. The workers
 * are frozen, so their listeners are still open when the client connects: in eBPF mode the
 * program refuses (and counts a "stopping" verdict); in line mode the master has closed the
 * one listener. A connection made before the signal is still answered.
 */
TEST_P(InMode, NewConnectionsAreRefusedOnceTheStopBegan) {
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--mode", GetParam()});
  ASSERT_NE(attachment, nullptr);
  const uint16_t port = attachment->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  const bool ebpf = std::string(GetParam()) == "ebpf";
  std::array<uint64_t, SD_NR_VERDICTS> verdictsBefore{};
  if (ebpf) {
    auto read = pinned->verdicts();
    ASSERT_TRUE(read) << read.error().message();
    verdictsBefore = *read;
  }

  auto workers = pinned->scoreboard().snapshotAll();
  for (const auto &slot : workers) {
    ASSERT_TRUE(freeze(static_cast<pid_t>(slot.pid))) << "SIGSTOP slot " << slot.slot;
  }
  auto before = TcpClient::connect(port);
  ASSERT_TRUE(before);
  ASSERT_TRUE(before->send("GET /?before HTTP/1.1\r\nHost: x\r\n\r\n"));

  attachment->process().signal(SIGQUIT);
  // Marked once the line master has closed its listener, and before the eBPF master asks
  // any worker to stop.
  ASSERT_TRUE(eventually([&] { return loadRelaxed(pinned->scoreboard().config()->stopping) != 0; }))
      << "the master did not mark the attachment stopping";
  constexpr int kAttempts = 3;
  for (int i = 0; i < kAttempts; ++i) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(fd);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = ::connect(fd.get(), reinterpret_cast<sockaddr *>(&to), sizeof(to));
    int error = errno;
    EXPECT_EQ(rc, -1) << "attempt " << i << " was accepted while the attachment stops";
    EXPECT_EQ(error, ECONNREFUSED) << "attempt " << i << ": " << std::strerror(error);
  }
  if (ebpf) {
    auto verdictsAfter = pinned->verdicts();
    ASSERT_TRUE(verdictsAfter) << verdictsAfter.error().message();
    EXPECT_EQ((*verdictsAfter)[SD_VERDICT_STOPPING] - verdictsBefore[SD_VERDICT_STOPPING],
              static_cast<uint64_t>(kAttempts));
  }

  for (const auto &slot : workers) {
    ASSERT_EQ(::kill(static_cast<pid_t>(slot.pid), SIGCONT), 0) << "SIGCONT slot " << slot.slot;
  }
  auto reply = before->readReply(10s);
  ASSERT_TRUE(reply) << "the connection made before the stop was lost";
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(attachment->process().wait(10s), 0);
}

/*
 * SIGQUIT while four workers serve a steady load (two keep-alive client threads, two opening
 * a new connection per request). The load keeps running through the stop: every request the
 * server took is answered (no reset, no empty reply, no non-2xx), in-flight keep-alive
 * requests get their answer before their connection closes, the workers leave, the master
 * exits 0 and removes its pins. Only connection attempts made once the listeners were gone
 * may fail (refused: the kernel accepted nothing), and they are the only failures allowed.
 */
TEST_F(Lifecycle, GracefulStopUnderLoadAnswersEveryAcceptedRequest) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "4"});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  auto workers = runningPids(*pinned);
  ASSERT_EQ(workers.size(), 4U);

  Load load(port, 2, 2);
  ASSERT_TRUE(load.waitFor(400)) << "the load did not start";
  attachment->process().signal(SIGQUIT);
  auto exitCode = attachment->process().wait(15s);
  // A little more load against the stopped port: refused, never half-served.
  load.waitFor(20, 1s);
  LoadTally tally = load.stop();
  RecordProperty("tally", tally.describe());
  EXPECT_EQ(exitCode, 0) << attachment->process().stderrText();
  EXPECT_EQ(tally.noAnswer, 0U) << "accepted requests without an answer: " << tally.describe();
  EXPECT_EQ(tally.non2xx, 0U) << tally.describe();
  EXPECT_GT(tally.ok, 400U) << tally.describe();
  for (uint32_t pid : workers) {
    EXPECT_TRUE(eventually([&] { return processGone(pid); }, 5s)) << "worker " << pid;
  }
  EXPECT_FALSE(PinnedAttachment::open(port, false)) << "the pins outlived the attachment";
}

/*
 * A worker holds three answered keep-alive connections and has more connections queued
 * (all workers frozen while they connect). SIGKILL: exactly the connections it held die
 * with it; the queued ones are answered by its respawn; the other workers' connections
 * keep working.
 */
TEST_P(InMode, KilledWorkerLosesExactlyTheConnectionsItHeld) {
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "4", "--mode", GetParam()});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();

  std::vector<HeldConnection> held = holdAnswered(port, 12);
  ASSERT_EQ(held.size(), 12U);
  int victim = 0;
  for (int slot = 1; slot < 4; ++slot) {
    victim = heldBy(held, slot) > heldBy(held, victim) ? slot : victim;
  }
  auto before = pinned->scoreboard().snapshotAll();
  for (const auto &slot : before) {
    ASSERT_TRUE(freeze(static_cast<pid_t>(slot.pid)));
  }
  std::vector<TcpClient> queued = sendQueued(port, 16);
  ASSERT_EQ(queued.size(), 16U);
  ASSERT_EQ(::kill(static_cast<pid_t>(before[static_cast<size_t>(victim)].pid), SIGKILL), 0);
  for (const auto &slot : before) {
    if (static_cast<int>(slot.slot) != victim) {
      ASSERT_EQ(::kill(static_cast<pid_t>(slot.pid), SIGCONT), 0);
    }
  }

  for (size_t i = 0; i < queued.size(); ++i) {
    auto reply = queued[i].readReply(10s);
    ASSERT_TRUE(reply) << "queued connection " << i << " was lost";
    EXPECT_EQ(reply->status, 200);
  }
  EXPECT_EQ(countLostWith(held, victim), heldBy(held, victim));
}

/*
 * A worker killed again and again, each time soon after it started, is respawned with a
 * growing delay, logged as a crash loop once per doubling; the master stays up and the other
 * worker serves throughout.
 */
TEST_F(Lifecycle, CrashLoopIsRespawnedWithBackoff) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_NE(attachment, nullptr);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  uint32_t killed = 0;
  auto respawned = [&] {
    auto slot = pinned->scoreboard().snapshot(1);
    return slot.state == SD_SLOT_RUNNING && slot.pid != 0 && slot.pid != killed;
  };
  for (int round = 0; round < 5; ++round) {
    ASSERT_TRUE(eventually(respawned, 10s)) << "round " << round;
    killed = pinned->scoreboard().snapshot(1).pid;
    ASSERT_EQ(::kill(static_cast<pid_t>(killed), SIGKILL), 0);
    auto reply = fetch(attachment->port());
    ASSERT_TRUE(reply) << "round " << round;
    EXPECT_EQ(reply->status, 200);
  }
  ASSERT_TRUE(eventually(respawned, 10s));
  EXPECT_EQ(pinned->scoreboard().snapshot(1).respawns, 5U);
  std::string log = attachment->process().stderrText();
  EXPECT_NE(log.find("(2 quick exits); next start in 100 ms"), std::string::npos) << log;
  EXPECT_NE(log.find("(4 quick exits); next start in 400 ms"), std::string::npos) << log;
  EXPECT_EQ(log.find("(3 quick exits)"), std::string::npos) << "logged per crash: " << log;
  EXPECT_FALSE(attachment->process().wait(0ms).has_value()) << "the master must stay up";
}

/*
 * A pool of one to four workers under a steady light load. Thirty keep-alive connections
 * are opened and held: the one worker is busy (more than four open connections), so the
 * master adds workers, 1 then 2, up to four. The held connections close: after a second of
 * idleness it retires one worker a second, down to one. The light load runs throughout and
 * not one of its requests may fail.
 */
TEST_P(InMode, PoolGrowsWhenBusyAndShrinksWhenIdleLosingNothing) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--min-workers", "1",
                                       "--max-workers", "4", "--pool-busy-conns", "4",
                                       "--pool-idle-seconds", "1", "--mode", GetParam()});
  ASSERT_NE(attachment, nullptr);
  uint16_t port = attachment->port();
  auto pinned = PinnedAttachment::open(port, false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  ASSERT_EQ(runningPids(*pinned).size(), 1U);

  Load load(port, 1, 1);
  ASSERT_TRUE(load.waitFor(100));
  std::vector<TcpClient> held;
  for (int i = 0; i < 30; ++i) {
    auto client = TcpClient::connect(port);
    ASSERT_TRUE(client);
    ASSERT_TRUE(client->send("GET /?held HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply);
    ASSERT_EQ(reply->status, 200);
    held.push_back(std::move(*client));
  }
  EXPECT_TRUE(eventually([&] { return runningPids(*pinned).size() == 4; }, 15s))
      << "the pool did not grow to 4: " << runningPids(*pinned).size();
  ASSERT_TRUE(load.waitFor(100));
  held.clear();
  EXPECT_TRUE(eventually([&] { return runningPids(*pinned).size() == 1; }, 20s))
      << "the pool did not shrink to 1: " << runningPids(*pinned).size();
  ASSERT_TRUE(load.waitFor(100));
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  std::string log = attachment->process().stderrText();
  EXPECT_NE(log.find("adding 1"), std::string::npos) << log;
  EXPECT_NE(log.find("adding 2"), std::string::npos) << log;
  EXPECT_NE(log.find("retiring worker"), std::string::npos) << log;
  EXPECT_EQ(attachment->stop(), 0);
}

/*
 * An attachment started from a configuration file, under a steady load. The file is changed
 * to four workers and SIGHUP starts a generation of four; then to one worker, and SIGHUP
 * starts a generation of one; then to an invalid value, and SIGHUP changes nothing (the
 * reason is logged, the one worker keeps serving). Not one request of the load may fail.
 */
TEST_P(InMode, ReloadAppliesTheConfigurationFileAndRefusesABadOne) {
  TempDir dir;
  auto writeConfig = [&](const std::string &workers) {
    return dir.write("web.toml", "bind = \"127.0.0.1\"\nmode = \"" + std::string(GetParam()) +
                                     "\"\nworkers = " + workers + "\n");
  };
  std::string path = writeConfig("2");
  auto attachment = Attachment::start({"0", "--config", path});
  ASSERT_NE(attachment, nullptr);
  auto pinned = PinnedAttachment::open(attachment->port(), false);
  ASSERT_TRUE(pinned) << pinned.error().message();
  ASSERT_EQ(runningPids(*pinned).size(), 2U);

  Load load(attachment->port(), 2, 2);
  ASSERT_TRUE(load.waitFor(200));
  for (const char *workers : {"4", "1"}) {
    (void)writeConfig(workers);
    uint64_t generation = pinned->config().generation;
    attachment->process().signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return pinned->config().generation == generation + 1; }, 10s))
        << "reload to " << workers << " workers";
    EXPECT_TRUE(eventually(
        [&] { return runningPids(*pinned).size() == std::strtoul(workers, nullptr, 10); }, 10s))
        << "reload to " << workers << " workers: " << runningPids(*pinned).size() << " run";
    ASSERT_TRUE(load.waitFor(200));
  }
  (void)writeConfig("0");
  uint64_t generation = pinned->config().generation;
  attachment->process().signal(SIGHUP);
  EXPECT_TRUE(eventually(
      [&] {
        return attachment->process().stderrText().find("keeping the running configuration") !=
               std::string::npos;
      },
      10s));
  ASSERT_TRUE(load.waitFor(200));
  EXPECT_EQ(pinned->config().generation, generation) << "a bad file started a generation";
  EXPECT_EQ(runningPids(*pinned).size(), 1U);
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_NE(attachment->process().stderrText().find("key 'workers': 0 is not in range"),
            std::string::npos)
      << attachment->process().stderrText();
  EXPECT_EQ(attachment->stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Modes, InMode, testing::ValuesIn(kModes),
                         [](const auto &param) { return std::string(param.param); });

} // namespace
} // namespace sockdispatch::test
