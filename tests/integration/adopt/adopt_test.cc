// `sockdispatch adopt` on Debian's nginx: steering a running reuseport group live, following
// its reloads, releasing it, and every refusal (docs/design/adopt.md).
#include "adopt/group_scan.h"
#include "bpf/pin_dir.h"
#include "core/pidfd.h"
#include "support/held_connections.h"
#include "support/http_client.h"
#include "support/nginx.h"
#include "support/open_loop_load.h"
#include "support/process.h"

#include <bpf/bpf.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

namespace sockdispatch::test {
namespace {

constexpr const char *kRequest = "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

// A running `sockdispatch adopt PORT ...`, past its "adopted" line. Released with SIGTERM
// when the test ends, as an operator would, so no pins are left behind.
struct Adopter {
  std::unique_ptr<Process> process;
  std::string line;

  Adopter(std::unique_ptr<Process> started, std::string first)
      : process(std::move(started)), line(std::move(first)) {}
  Adopter(Adopter &&) = default;
  Adopter &operator=(Adopter &&) = default;
  Adopter(const Adopter &) = delete;
  Adopter &operator=(const Adopter &) = delete;
  ~Adopter() {
    if (process && !process->wait(0ms)) {
      process->signal(SIGTERM);
      EXPECT_EQ(process->wait(10s), 0) << process->stderrText();
    }
  }
};

std::optional<Adopter> startAdopt(uint16_t port, const std::vector<std::string> &extra = {}) {
  std::vector<std::string> argv{SOCKDISPATCH_BINARY, "adopt", std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto process = Process::start(argv);
  auto line = process->readLine(15s);
  if (!line || line->rfind("adopted ", 0) != 0) {
    ADD_FAILURE() << "adopt did not start: " << line.value_or("(no line)") << "\n"
                  << process->stderrText();
    return std::nullopt;
  }
  return std::optional<Adopter>(std::in_place, std::move(process), *line);
}

nlohmann::json status(uint16_t port) {
  Completed done = runSockdispatch({"status", std::to_string(port), "--json"});
  EXPECT_EQ(done.code, 0) << done.err;
  return nlohmann::json::parse(done.out, nullptr, false);
}

// How many of `count` new connections, made at `perSecond`, got no answer within `threshold`
// (and how many failed outright): each is sent on time by a pool of senders, so a stalled
// worker does not slow the schedule down.
struct Delays {
  int answered = 0;
  int delayed = 0;
  int failed = 0;
};
Delays delayedConnections(uint16_t port, int count, int perSecond,
                          std::chrono::milliseconds threshold = 1s) {
  std::atomic<int> next{0};
  std::atomic<int> answered{0};
  std::atomic<int> delayed{0};
  std::atomic<int> failed{0};
  auto start = std::chrono::steady_clock::now();
  auto interval = std::chrono::microseconds(1000000 / perSecond);
  std::vector<std::thread> senders;
  for (int t = 0; t < 48; ++t) {
    senders.emplace_back([&] {
      for (int i = next++; i < count; i = next++) {
        std::this_thread::sleep_until(start + i * interval);
        auto connection = TcpClient::connect(port);
        if (!connection || !connection->send(kRequest)) {
          ++failed;
          continue;
        }
        auto reply = connection->readReply(threshold);
        if (reply && reply->status == 200) {
          ++answered;
        } else {
          ++delayed;
        }
      }
    });
  }
  for (auto &sender : senders) {
    sender.join();
  }
  return Delays{answered.load(), delayed.load(), failed.load()};
}

// The reuseport program attached to the group on 127.0.0.1:port (0 if none).
uint32_t attachedProgram(uint16_t port) {
  auto scan = GroupScan::load(port);
  EXPECT_TRUE(scan) << scan.error().message();
  if (!scan) {
    return 0;
  }
  auto listeners = scan.value()->scan();
  EXPECT_TRUE(listeners && !listeners->empty());
  return listeners && !listeners->empty() ? listeners->front().programId : 0;
}

bool pinsExist(uint16_t port) {
  return ::access(pinDirFor(port).c_str(), F_OK) == 0;
}

// The slot whose adopted worker is `pid` in `shown` (status --json), -1 if none.
int slotOf(const nlohmann::json &shown, pid_t pid) {
  for (const auto &worker : shown["workers"]) {
    if (worker["pid"] == pid) {
      return worker["slot"];
    }
  }
  return -1;
}

class Adopt : public BpfTest {
protected:
  void SetUp() override {
    BpfTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    if (!haveNginx()) {
      GTEST_SKIP() << "needs Debian's nginx (packaging/install-deps.sh installs it)";
    }
  }
};

TEST_F(Adopt, SteersNginxAndReleasesItUnderLoadLosingNothing) {
  auto nginx = Nginx::start(4);
  ASSERT_TRUE(nginx);
  OpenLoopLoad load(nginx->port(), 200, 60s);
  ASSERT_TRUE(load.waitFor(100));

  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  EXPECT_NE(adopter->line.find("4 listeners"), std::string::npos) << adopter->line;
  ASSERT_TRUE(load.waitFor(300));

  nlohmann::json shown = status(nginx->port());
  EXPECT_EQ(shown["mode"], "adopt");
  ASSERT_EQ(shown["workers"].size(), 4U);
  std::vector<pid_t> workers = nginx->workerPids();
  uint64_t accepted = 0;
  for (const auto &worker : shown["workers"]) {
    EXPECT_EQ(worker["load_source"], "kernel");
    EXPECT_EQ(worker["state"], "running");
    EXPECT_NE(std::find(workers.begin(), workers.end(), worker["pid"].get<pid_t>()), workers.end())
        << worker;
    accepted += worker["accepted"].get<uint64_t>();
    EXPECT_GT(worker["selected"].get<uint64_t>(), 0U) << "every worker is chosen: " << worker;
  }
  EXPECT_GT(accepted, 0U);
  EXPECT_GT(shown["verdicts"]["selected"].get<uint64_t>(), 0U);
  EXPECT_EQ(attachedProgram(nginx->port()), shown["program"]["id"].get<uint32_t>());
  Completed metrics = runSockdispatch({"status", std::to_string(nginx->port()), "--prometheus"});
  EXPECT_EQ(metrics.code, 0);
  EXPECT_NE(metrics.out.find("sockdispatch_worker_accept_queue_connections"), std::string::npos)
      << metrics.out;
  EXPECT_NE(metrics.out.find("mode=\"adopt\""), std::string::npos) << metrics.out;

  Completed detached = runSockdispatch({"detach", std::to_string(nginx->port())});
  EXPECT_EQ(detached.code, 0) << detached.err;
  EXPECT_EQ(adopter->process->wait(10s), 0) << adopter->process->stderrText();
  EXPECT_FALSE(pinsExist(nginx->port()));
  EXPECT_EQ(attachedProgram(nginx->port()), 0U) << "the group is the kernel's hash's again";
  ASSERT_TRUE(load.waitFor(200));

  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_GT(tally.ok, 500U);
  EXPECT_EQ(nginx->workerPids(), workers) << "the service was never restarted";
}

TEST_F(Adopt, AStoppedNginxWorkerDelaysFewNewConnectionsWhereTheHashDelaysAQuarter) {
  auto nginx = Nginx::start(4);
  ASSERT_TRUE(nginx);
  pid_t stalled = nginx->workerPids().at(1);

  // The kernel's hash alone: about one in four waits for the stopped worker.
  ASSERT_TRUE(freeze(stalled));
  Delays hashed = delayedConnections(nginx->port(), 200, 100);
  ::kill(stalled, SIGCONT);
  EXPECT_EQ(hashed.failed, 0);
  EXPECT_GE(hashed.delayed, 20) << "the control: the hash sends the stopped worker its share";

  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  ASSERT_TRUE(freeze(stalled));
  Delays steered = delayedConnections(nginx->port(), 300, 100);
  nlohmann::json shown = status(nginx->port());
  ::kill(stalled, SIGCONT);
  EXPECT_EQ(steered.failed, 0);
  EXPECT_LE(steered.delayed, 6) << "at most 2 % wait past 1 s (hash: " << hashed.delayed
                                << " of 200)";
  int slot = slotOf(shown, stalled);
  ASSERT_GE(slot, 0) << shown;
  EXPECT_GE(shown["workers"][slot]["queued"].get<uint64_t>(),
            shown["workers"][slot]["accept_queue"].get<uint64_t>())
      << shown["workers"][slot];
  EXPECT_GE(shown["workers"][slot]["accept_queue"].get<uint64_t>(), 1U)
      << "what waits for the stopped worker is shown as queued: " << shown["workers"][slot];
  adopter->process->signal(SIGTERM);
  EXPECT_EQ(adopter->process->wait(10s), 0);
}

TEST_F(Adopt, ConnectionsOpenBeforeTheAdoptionCountOnTheirWorkersUntilTheyClose) {
  auto nginx = Nginx::start(4);
  ASSERT_TRUE(nginx);
  std::vector<HeldConnection> held = holdAnswered(nginx->port(), 12);
  ASSERT_EQ(held.size(), 12U);
  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  auto openTotal = [&] {
    nlohmann::json shown = status(nginx->port());
    uint64_t open = 0;
    for (const auto &worker : shown["workers"]) {
      open += worker["open"].get<uint64_t>();
    }
    return open;
  };
  EXPECT_EQ(openTotal(), 12U) << status(nginx->port()).dump();
  // Each is on the slot of the nginx worker that holds it.
  nlohmann::json shown = status(nginx->port());
  for (const auto &worker : shown["workers"]) {
    pid_t pid = worker["pid"];
    // Debian's nginx 1.22 leaves every listener of the group open in every worker.
    EXPECT_EQ(worker["open"].get<uint64_t>(), tcpSocketsHeldBy(pid) - shown["workers"].size())
        << "its own connections, not the listeners: " << worker;
  }
  EXPECT_NE(adopter->process->stderrText().find("12 connections were open before"),
            std::string::npos)
      << adopter->process->stderrText();
  held.erase(held.begin() + 5, held.end());
  EXPECT_TRUE(eventually([&] { return openTotal() == 5; }, 5s)) << status(nginx->port()).dump();
  held.clear();
  EXPECT_TRUE(eventually([&] { return openTotal() == 0; }, 5s)) << status(nginx->port()).dump();
}

TEST_F(Adopt, DrainingAnAdoptedWorkerByHandSendsItNothingNew) {
  auto nginx = Nginx::start(4);
  ASSERT_TRUE(nginx);
  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  Completed drained = runSockdispatch({"tune", std::to_string(nginx->port()), "--drain", "2"});
  ASSERT_EQ(drained.code, 0) << drained.err;
  uint64_t before = status(nginx->port())["workers"][2]["selected"];
  Delays delays = delayedConnections(nginx->port(), 100, 200);
  EXPECT_EQ(delays.answered, 100);
  nlohmann::json shown = status(nginx->port());
  EXPECT_EQ(shown["workers"][2]["selected"].get<uint64_t>(), before) << shown["workers"][2];
  EXPECT_TRUE(shown["workers"][2]["draining"].get<bool>());
}

TEST_F(Adopt, FollowsAnNginxReloadOntoItsNewWorkers) {
  auto nginx = Nginx::start(4);
  ASSERT_TRUE(nginx);
  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  OpenLoopLoad load(nginx->port(), 100, 60s);
  ASSERT_TRUE(load.waitFor(50));
  ASSERT_TRUE(nginx->reload()) << nginx->stderrText();
  std::vector<pid_t> workers = nginx->workerPids();
  // The slots name the new workers once the old ones are gone.
  bool followed = eventually(
      [&] {
        nlohmann::json shown = status(nginx->port());
        return std::all_of(workers.begin(), workers.end(),
                           [&](pid_t pid) { return slotOf(shown, pid) >= 0; });
      },
      10s);
  EXPECT_TRUE(followed) << status(nginx->port()).dump() << adopter->process->stderrText();
  ASSERT_TRUE(load.waitFor(100));
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();

  // Still steered: a new worker stopped is avoided as the old ones were.
  ASSERT_TRUE(freeze(workers.at(2)));
  Delays steered = delayedConnections(nginx->port(), 200, 100);
  ::kill(workers.at(2), SIGCONT);
  EXPECT_EQ(steered.failed, 0);
  EXPECT_LE(steered.delayed, 4) << "at most 2 % of 200";
}

TEST_F(Adopt, FollowsListenersTheServiceOpensAndClosesLosingNothing) {
  auto nginx = Nginx::start(2);
  ASSERT_TRUE(nginx);
  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  OpenLoopLoad load(nginx->port(), 200, 60s);
  ASSERT_TRUE(load.waitFor(50));

  auto runningSlots = [&] {
    size_t running = 0;
    nlohmann::json shown = status(nginx->port());
    for (const auto &worker : shown["workers"]) {
      running += worker["state"] == "running" ? 1 : 0;
    }
    return running;
  };
  // Four workers: nginx opens two more listeners in the group; they are steered.
  ASSERT_TRUE(nginx->reload(4)) << nginx->stderrText();
  EXPECT_TRUE(eventually([&] { return runningSlots() == 4; }, 10s))
      << status(nginx->port()).dump() << adopter->process->stderrText();
  ASSERT_TRUE(load.waitFor(200));
  nlohmann::json grown = status(nginx->port());
  for (const auto &worker : grown["workers"]) {
    EXPECT_GT(worker["selected"].get<uint64_t>(), 0U) << "new listeners are chosen too: " << worker;
  }
  // One worker: nginx closes three listeners; the kernel takes them out of the sockarray as
  // they close, and their slots are freed.
  ASSERT_TRUE(nginx->reload(1)) << nginx->stderrText();
  EXPECT_TRUE(eventually([&] { return runningSlots() == 1; }, 10s))
      << status(nginx->port()).dump() << adopter->process->stderrText();
  ASSERT_TRUE(load.waitFor(200));
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_NE(adopter->process->stderrText().find("a new listener"), std::string::npos);
  EXPECT_NE(adopter->process->stderrText().find("its listener closed"), std::string::npos);
}

TEST_F(Adopt, ExitsZeroAndLeavesNothingWhenTheServiceStops) {
  auto nginx = Nginx::start(2);
  ASSERT_TRUE(nginx);
  uint16_t port = nginx->port();
  auto adopter = startAdopt(port);
  ASSERT_TRUE(adopter);
  ASSERT_TRUE(pinsExist(port));
  EXPECT_EQ(nginx->stop(), 0);
  EXPECT_EQ(adopter->process->wait(10s), 0) << adopter->process->stderrText();
  EXPECT_NE(adopter->process->stderrText().find("is gone"), std::string::npos)
      << adopter->process->stderrText();
  EXPECT_FALSE(pinsExist(port));
}

TEST_F(Adopt, RefusesAPortNobodyListensOn) {
  uint16_t port = unusedPort();
  Completed done = runSockdispatch({"adopt", std::to_string(port)});
  EXPECT_EQ(done.code, 2);
  EXPECT_NE(done.err.find("no TCP listener on port " + std::to_string(port)), std::string::npos)
      << done.err;
  EXPECT_FALSE(pinsExist(port));
}

TEST_F(Adopt, RefusesAListenerOutsideAReuseportGroup) {
  auto nginx = Nginx::start(2, false);
  ASSERT_TRUE(nginx);
  Completed done = runSockdispatch({"adopt", std::to_string(nginx->port())});
  EXPECT_EQ(done.code, 2);
  EXPECT_NE(done.err.find("is not in a SO_REUSEPORT group"), std::string::npos) << done.err;
  EXPECT_FALSE(pinsExist(nginx->port()));
}

TEST_F(Adopt, RefusesAPortSockdispatchAlreadyServes) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_TRUE(attachment);
  Completed done = runSockdispatch({"adopt", std::to_string(attachment->port())});
  EXPECT_EQ(done.code, 2);
  EXPECT_NE(done.err.find("already attached by sockdispatch"), std::string::npos) << done.err;
  EXPECT_EQ(attachment->stop(), 0);
}

// A program of someone else's attached to nginx's group: sk_reuseport, "return SK_PASS".
UniqueFd attachForeignProgram(const Nginx &nginx) {
  const bpf_insn pass[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, SK_PASS},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  UniqueFd program(
      bpf_prog_load(BPF_PROG_TYPE_SK_REUSEPORT, "foreign_steer", "GPL", pass, 2, nullptr));
  EXPECT_TRUE(program) << std::strerror(errno);
  auto pidfd = openPidfd(nginx.masterPid());
  EXPECT_TRUE(pidfd);
  // nginx's master holds every listener; its first one is fd 3 or later: find one.
  for (int fd = 3; fd < 64 && pidfd; ++fd) {
    auto copy = copyDescriptor(pidfd->get(), nginx.masterPid(), fd);
    if (!copy) {
      continue;
    }
    int progFd = program.get();
    if (::setsockopt(copy->get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &progFd, sizeof(progFd)) ==
        0) {
      return program;
    }
  }
  ADD_FAILURE() << "could not attach a program to nginx's group";
  return program;
}

TEST_F(Adopt, RefusesAnotherProgramOnTheGroupUnlessForced) {
  auto nginx = Nginx::start(2);
  ASSERT_TRUE(nginx);
  UniqueFd foreign = attachForeignProgram(*nginx);
  uint32_t foreignId = attachedProgram(nginx->port());
  ASSERT_NE(foreignId, 0U);

  Completed refused = runSockdispatch({"adopt", std::to_string(nginx->port())});
  EXPECT_EQ(refused.code, 2);
  EXPECT_NE(refused.err.find("BPF program " + std::to_string(foreignId) +
                             " foreign_steer (type sk_reuseport) already steers"),
            std::string::npos)
      << refused.err;
  EXPECT_NE(refused.err.find("--force"), std::string::npos) << refused.err;
  EXPECT_EQ(attachedProgram(nginx->port()), foreignId) << "left as it was";
  EXPECT_FALSE(pinsExist(nginx->port()));

  auto adopter = startAdopt(nginx->port(), {"--force"});
  ASSERT_TRUE(adopter);
  uint32_t ours = status(nginx->port())["program"]["id"];
  EXPECT_EQ(attachedProgram(nginx->port()), ours);
  EXPECT_NE(adopter->process->stderrText().find("replacing BPF program"), std::string::npos);
}

TEST_F(Adopt, AnAdoptThatWasKilledIsReplacedByTheNext) {
  auto nginx = Nginx::start(2);
  ASSERT_TRUE(nginx);
  auto first = startAdopt(nginx->port());
  ASSERT_TRUE(first);
  first->process->signal(SIGKILL);
  (void)first->process->wait(5s);
  auto second = startAdopt(nginx->port());
  ASSERT_TRUE(second);
  EXPECT_NE(second->process->stderrText().find("no longer running"), std::string::npos)
      << second->process->stderrText();
  Delays delays = delayedConnections(nginx->port(), 50, 100);
  EXPECT_EQ(delays.answered, 50);
}

TEST_F(Adopt, DetachOfAKilledAdoptTakesItsProgramOffTheGroup) {
  auto nginx = Nginx::start(2);
  ASSERT_TRUE(nginx);
  auto adopter = startAdopt(nginx->port());
  ASSERT_TRUE(adopter);
  ASSERT_NE(attachedProgram(nginx->port()), 0U);
  adopter->process->signal(SIGKILL);
  (void)adopter->process->wait(5s);
  Completed detached = runSockdispatch({"detach", std::to_string(nginx->port())});
  EXPECT_EQ(detached.code, 0) << detached.err;
  EXPECT_NE(detached.out.find("took the steering program"), std::string::npos) << detached.out;
  EXPECT_EQ(attachedProgram(nginx->port()), 0U);
  EXPECT_FALSE(pinsExist(nginx->port()));
  Delays delays = delayedConnections(nginx->port(), 50, 100);
  EXPECT_EQ(delays.answered, 50);
}

TEST_F(Adopt, SaysWhichCapabilityIsMissingToCopyListeners) {
  // A reuseport service of another user (nobody): copying its listeners needs CAP_SYS_PTRACE,
  // which this adopt runs without.
  auto service = Process::start(
      {"/usr/bin/setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
       "/usr/bin/python3", "-c",
       "import socket,sys,time\n"
       "ls=[]\n"
       "for i in range(2):\n"
       "  s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)\n"
       "  s.bind(('127.0.0.1', 0 if not ls else ls[0].getsockname()[1])); s.listen(); "
       "ls.append(s)\n"
       "print(ls[0].getsockname()[1], flush=True)\n"
       "time.sleep(60)\n"});
  auto line = service->readLine(10s);
  ASSERT_TRUE(line) << service->stderrText();
  Completed done = runCommand({"/usr/bin/setpriv", "--inh-caps=-sys_ptrace",
                               "--bounding-set=-sys_ptrace", SOCKDISPATCH_BINARY, "adopt", *line},
                              20s);
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_NE(done.err.find("CAP_SYS_PTRACE"), std::string::npos) << done.err;
  EXPECT_FALSE(pinsExist(static_cast<uint16_t>(std::stoi(*line))));
}

TEST_F(Adopt, BadFlagsAreUsageErrors) {
  for (const auto &args :
       std::vector<std::vector<std::string>>{{"adopt"},
                                             {"adopt", "0"},
                                             {"adopt", "80", "--policy", "fastest"},
                                             {"adopt", "80", "--interval", "5"},
                                             {"adopt", "80", "--bind", "localhost"}}) {
    Completed done = runSockdispatch(args);
    EXPECT_EQ(done.code, 2) << args.back() << ": " << done.err;
    EXPECT_FALSE(done.err.empty());
  }
}

} // namespace
} // namespace sockdispatch::test
