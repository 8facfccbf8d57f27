// The master's decisions, driven through its seams without forking: a fake Dispatch records
// every slot event, a fake ProcessOps hands out pids, records signals and reports exits (the
// master learns of them from a real SIGCHLD raised to this process, as it would from a child).
// A forked "child" announces RUNNING at once. Each scenario runs the master's real loop to
// its end: respawn after a crash, no respawn for the fatal-configuration exit, a reload that
// opens the new generation's slots before the old ones retire (or is abandoned when one cannot
// open), the pool retrying a slot that cannot open, a graceful stop.
#include "process/master.h"
#include "support/log_capture.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

using Log = std::vector<std::string>;

class FakeDispatch final : public Dispatch {
public:
  FakeDispatch(Log &log, uint32_t first) : log_(log), first_(first) {
    address_ = *parseAddress("127.0.0.1", 8080);
  }
  // Called after each event is logged: the scenario's next step.
  std::function<void(const std::string &)> after;

  [[nodiscard]] const char *name() const override { return "fake"; }
  [[nodiscard]] const SocketAddress &address() const override { return address_; }
  [[nodiscard]] uint32_t firstGenerationSize(const AttachOptions & /*options*/) const override {
    return first_;
  }
  void connect(event_base * /*base*/, const WorkerRoster & /*roster*/) override {}
  Result<void> start() override {
    note("start");
    return {};
  }
  Result<void> openSlot(uint32_t slot, const AttachOptions & /*options*/) override {
    note("open " + std::to_string(slot));
    if (auto fault = openFaults.find(slot); fault != openFaults.end()) {
      return fault->second;
    }
    return {};
  }
  // Slots whose opening fails, e.g. a sockarray update refused.
  std::map<uint32_t, Error> openFaults;
  Result<void> beforeFork(uint32_t /*slot*/) override { return {}; }
  void forkFailed(uint32_t slot) override { note("forkFailed " + std::to_string(slot)); }
  void forked(uint32_t slot) override { note("forked " + std::to_string(slot)); }
  WorkerSockets takeInChild(uint32_t /*slot*/) override {
    ADD_FAILURE() << "no child runs here";
    return {};
  }
  void exited(uint32_t slot) override { note("exited " + std::to_string(slot)); }
  void retiring(uint32_t slot) override { note("retiring " + std::to_string(slot)); }
  void released(uint32_t slot) override { note("released " + std::to_string(slot)); }
  void stopping() override { note("stopping"); }
  void stopped() override { note("stopped"); }

private:
  void note(const std::string &event) {
    log_.push_back(event);
    if (after) {
      after(event);
    }
  }

  Log &log_;
  uint32_t first_;
  SocketAddress address_;
};

class NoWorkerKind final : public WorkerKind {
public:
  int runInChild(const AttachOptions & /*options*/, uint32_t /*slot*/, WorkerSockets /*sockets*/,
                 Scoreboard /*scoreboard*/, const char * /*mode*/) override {
    ADD_FAILURE() << "no child runs here";
    return 1;
  }
  [[nodiscard]] bool readsControlChannel() const override { return true; }
  [[nodiscard]] int stopSignal(const AttachOptions & /*options*/) const override { return SIGTERM; }
};

// Pids from 100000 on; an exit is queued and announced with SIGCHLD. SIGTERM and SIGKILL end
// a fake worker at once (as killed by that signal).
class FakeProcesses final : public ProcessOps {
public:
  explicit FakeProcesses(Scoreboard board) : board_(board) {}

  pid_t fork() override {
    pid_t pid = next_++;
    ++forks;
    // The slot being forked is the one the master just prepared (STARTING, no pid yet): the
    // child announces RUNNING.
    for (uint32_t slot = 0; slot < SD_MAX_WORKERS; ++slot) {
      if (board_.state(slot) == SD_SLOT_STARTING && board_.snapshot(slot).pid == 0) {
        board_.setState(slot, SD_SLOT_RUNNING);
        break;
      }
    }
    alive_.insert({pid, true});
    return pid;
  }
  int kill(pid_t pid, int signo) override {
    signals.push_back(signo);
    if (signo == SIGTERM || signo == SIGKILL) {
      exit(pid, signo); // killed by the signal: the low bits of the status
    }
    return 0;
  }
  pid_t reap(int *status) override {
    if (exits_.empty()) {
      return 0;
    }
    auto [pid, code] = exits_.front();
    exits_.pop_front();
    *status = code;
    return pid;
  }

  // The process ends with this wait status; the master hears of it by SIGCHLD.
  void exit(pid_t pid, int status) {
    if (!alive_[pid]) {
      return;
    }
    alive_[pid] = false;
    exits_.emplace_back(pid, status);
    ::kill(::getpid(), SIGCHLD);
  }

  int forks = 0;
  std::vector<int> signals;

private:
  Scoreboard board_;
  pid_t next_ = 100000;
  std::map<pid_t, bool> alive_;
  std::deque<std::pair<pid_t, int>> exits_;
};

class MasterTest : public testing::Test {
protected:
  void SetUp() override {
    sigprocmask(SIG_SETMASK, nullptr, &savedMask_);
    options_.workers = 2;
    options_.shutdownTimeout = std::chrono::seconds(5);
  }
  void TearDown() override { sigprocmask(SIG_SETMASK, &savedMask_, nullptr); }

  Scoreboard board() { return {slots_.data(), &config_}; }

  // Runs a master over the fakes until it stops; returns its exit code.
  int run(const std::function<void(Master &, FakeDispatch &, FakeProcesses &)> &script,
          Master::OptionsLoader loader = {}) {
    auto dispatch = std::make_unique<FakeDispatch>(log_, static_cast<uint32_t>(options_.workers));
    FakeDispatch &fake = *dispatch;
    processes_ = std::make_unique<FakeProcesses>(board());
    MasterParts parts;
    parts.mode = std::move(dispatch);
    parts.kind = std::make_unique<NoWorkerKind>();
    parts.scoreboard = board();
    parts.processes = processes_.get();
    if (!loader) {
      AttachOptions same = options_;
      loader = [same]() -> Result<AttachOptions> { return same; };
    }
    Master master(options_, std::move(parts), loader);
    script(master, fake, *processes_);
    return master.run();
  }

  static void raise(int signo) { ::kill(::getpid(), signo); }
  uint32_t pidOf(uint32_t slot) { return board().snapshot(slot).pid; }

  AttachOptions options_;
  std::vector<sd_slot> slots_ = std::vector<sd_slot>(SD_MAX_WORKERS);
  sd_config config_{};
  std::unique_ptr<FakeProcesses> processes_;
  Log log_;
  sigset_t savedMask_{};
};

TEST_F(MasterTest, ACrashedWorkerIsRespawnedIntoItsSlot) {
  int code = run([this](Master &master, FakeDispatch &dispatch, FakeProcesses &processes) {
    master.onReady([this, &processes] { processes.exit(static_cast<pid_t>(pidOf(0)), SIGKILL); });
    dispatch.after = [&processes](const std::string &event) {
      if (event == "forked 0" && processes.forks == 3) {
        raise(SIGTERM); // the respawn is in: stop
      }
    };
  });
  EXPECT_EQ(code, kExitOk);
  EXPECT_EQ(log_, (Log{"forked 0", "forked 1", "start", "exited 0", "forked 0", "stopping",
                       "exited 0", "exited 1", "stopped"}));
  EXPECT_EQ(board().snapshot(0).respawns, 1U);
  EXPECT_EQ(board().snapshot(1).respawns, 0U);
  EXPECT_EQ(processes_->signals, (std::vector<int>{SIGTERM, SIGTERM}));
}

TEST_F(MasterTest, AWorkerThatCannotRunIsNotRespawnedAndNoneLeftStops) {
  int code = run([this](Master &master, FakeDispatch & /*dispatch*/, FakeProcesses &processes) {
    master.onReady([this, &processes] {
      processes.exit(static_cast<pid_t>(pidOf(1)), kExitFatalConfig << 8);
      processes.exit(static_cast<pid_t>(pidOf(0)), kExitFatalConfig << 8);
    });
  });
  EXPECT_EQ(code, kExitFailure);
  EXPECT_EQ(processes_->forks, 2);
  EXPECT_EQ(log_,
            (Log{"forked 0", "forked 1", "start", "exited 1", "exited 0", "stopping", "stopped"}));
}

TEST_F(MasterTest, AReloadOpensTheNewSlotsBeforeTheOldOnesRetire) {
  AttachOptions three = options_;
  three.workers = 3;
  int released = 0;
  int code = run(
      [&released](Master &master, FakeDispatch &dispatch, FakeProcesses & /*processes*/) {
        master.onReady([] { raise(SIGHUP); });
        dispatch.after = [&released](const std::string &event) {
          if (event.rfind("released", 0) == 0 && ++released == 2) {
            raise(SIGTERM);
          }
        };
      },
      [three]() -> Result<AttachOptions> { return three; });
  EXPECT_EQ(code, kExitOk);
  // The old workers are asked over their channel; here nobody reads it, so they get SIGTERM.
  EXPECT_EQ(log_, (Log{"forked 0",   "forked 1", "start",      "open 2",   "open 3",
                       "open 4",     "forked 2", "forked 3",   "forked 4", "retiring 0",
                       "retiring 1", "exited 0", "released 0", "exited 1", "released 1",
                       "stopping",   "exited 2", "exited 3",   "exited 4", "stopped"}));
  EXPECT_EQ(board().state(0), SD_SLOT_EMPTY);
  EXPECT_EQ(board().snapshot(2).generation, 2U);
}

TEST_F(MasterTest, AReloadWhoseSlotCannotOpenIsAbandonedAndTheRunningGenerationServes) {
  AttachOptions three = options_;
  three.workers = 3;
  bool reloaded = true;
  int code = run(
      [&reloaded](Master &master, FakeDispatch &dispatch, FakeProcesses & /*processes*/) {
        dispatch.openFaults[3] = osError(ENOMEM, "put the listener of slot 3 into the sockarray");
        master.onReady([] { raise(SIGHUP); });
        master.onReloaded([&reloaded](bool committed) {
          reloaded = committed;
          raise(SIGTERM);
        });
      },
      [three]() -> Result<AttachOptions> { return three; });
  EXPECT_EQ(code, kExitOk);
  EXPECT_FALSE(reloaded);
  EXPECT_EQ(processes_->forks, 2) << "no worker of the abandoned generation was forked";
  EXPECT_EQ(log_, (Log{"forked 0", "forked 1", "start", "open 2", "open 3", "retiring 2",
                       "released 2", "stopping", "exited 0", "exited 1", "stopped"}))
      << "slot 2, opened before the failure, is given back; slots 0 and 1 serve to the stop";
  EXPECT_EQ(board().snapshot(0).generation, 1U);
  EXPECT_EQ(board().state(2), SD_SLOT_EMPTY);
}

/*
 * The dynamic pool wants a third worker, but its slot cannot be opened (the sockarray refuses
 * the listener): the two workers serve on, the pool asks again at each look (once a second),
 * and the fault is one error line, not one per look; nor is "adding" repeated meanwhile.
 */
TEST_F(MasterTest, APoolSlotThatCannotOpenIsRetriedAndLoggedOnce) {
  test::LogCapture log;
  options_.minWorkers = 2;
  options_.maxWorkers = 3;
  options_.poolBusyConnections = 1;
  constexpr int kLooks = 3;
  int opens = 0;
  int code =
      run([this, &opens](Master &master, FakeDispatch &dispatch, FakeProcesses & /*processes*/) {
        dispatch.openFaults[2] = osError(ENOMEM, "put the listener of slot 2 into the sockarray");
        master.onReady([this] {
          slots_[0].open = 10; // busy: more than one open connection per worker
          slots_[1].open = 10;
        });
        dispatch.after = [&opens](const std::string &event) {
          if (event == "open 2" && ++opens == kLooks) {
            raise(SIGTERM);
          }
        };
      });
  EXPECT_EQ(code, kExitOk);
  EXPECT_EQ(opens, kLooks) << "asked again at each look";
  EXPECT_EQ(processes_->forks, 2) << "no worker forked into the slot that could not open";
  const auto errors = log.linesWith("pool: Failed to put the listener of slot 2");
  ASSERT_EQ(errors.size(), 1U) << kLooks << " faults, one line";
  EXPECT_EQ(errors[0], "error pool: Failed to put the listener of slot 2 into the sockarray: "
                       "Cannot allocate memory; the running workers serve");
  EXPECT_EQ(log.linesWith("adding").size(), 1U) << "said once, when the pool first tried";
}

TEST_F(MasterTest, AGracefulStopRetiresEveryWorker) {
  int code = run([](Master &master, FakeDispatch & /*dispatch*/, FakeProcesses & /*processes*/) {
    master.onReady([] { raise(SIGQUIT); });
  });
  EXPECT_EQ(code, kExitOk);
  EXPECT_EQ(log_, (Log{"forked 0", "forked 1", "start", "stopping", "retiring 0", "retiring 1",
                       "exited 0", "released 0", "exited 1", "released 1", "stopped"}));
  EXPECT_EQ(config_.stopping, 1U);
}

} // namespace
} // namespace sockdispatch
