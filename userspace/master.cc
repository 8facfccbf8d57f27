#include "master.h"

#include "logging.h"
#include "signal_set.h"
#include "worker.h"

#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

namespace sockdispatch {

namespace {

constexpr auto kQuickCrash = std::chrono::seconds(5);
constexpr auto kMaxBackoff = std::chrono::seconds(10);
constexpr auto kReadyPoll = std::chrono::milliseconds(10);

timeval toTimeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

std::string describeExit(int status) {
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

} // namespace

Master::Master(const AttachOptions &options, ListenerGroup listeners, DispatchProgram &program)
    : options_(options), listeners_(std::move(listeners)), scoreboard_(program.scoreboard()),
      base_(event_base_new()), workers_(listeners_.sockets.size()) {
  for (uint32_t slot = 0; slot < workers_.size(); ++slot) {
    workers_[slot].owner = this;
    workers_[slot].slot = slot;
  }
}

int Master::run() {
  if (!base_) {
    spdlog::error("Failed to create the master's event loop");
    return kExitFailure;
  }
  signals_ = std::make_unique<SignalSet>(
      base_.get(), std::initializer_list<int>{SIGTERM, SIGINT, SIGCHLD}, [this](int signo) {
        if (signo == SIGCHLD) {
          reapChildren();
        } else {
          beginStop(signo);
        }
      });
  if (!signals_->valid()) {
    spdlog::error("Failed to watch signals: {}", std::strerror(errno));
    return kExitFailure;
  }
  std::signal(SIGPIPE, SIG_IGN);

  for (uint32_t slot = 0; slot < workers_.size(); ++slot) {
    if (!spawn(slot, false)) {
      beginStop(0);
      exitCode_ = kExitFailure;
      break;
    }
  }
  readyTimer_.reset(event_new(
      base_.get(), -1, EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<Master *>(ctx)->checkReady(); }, this));
  timeval poll = toTimeval(kReadyPoll);
  event_add(readyTimer_.get(), &poll);

  event_base_dispatch(base_.get());
  return exitCode_;
}

bool Master::spawn(uint32_t slot, bool isRespawn) {
  pid_t parent = ::getpid();
  scoreboard_.prepareSlot(slot, generation_);
  if (isRespawn) {
    // Counted before the fork: once the new process says RUNNING, readers see the count.
    scoreboard_.addRespawn(slot);
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    scoreboard_.setState(slot, SD_SLOT_DEAD);
    spdlog::error("Failed to fork the worker for slot {}: {}", slot, std::strerror(errno));
    return false;
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (::getppid() != parent) {
      ::_exit(kExitFailure);
    }
    signals_->abandonInChild();
    resetSignalsAfterFork();
    std::signal(SIGPIPE, SIG_IGN);
    setupLogging("worker " + std::to_string(slot), options_.verbose);
    UniqueFd own;
    for (uint32_t i = 0; i < listeners_.sockets.size(); ++i) {
      if (i == slot) {
        own = std::move(listeners_.sockets[i]);
      } else {
        listeners_.sockets[i].reset();
      }
    }
    // The worker publishes its own pid before it announces RUNNING, so no reader ever sees
    // a running slot without its pid (the parent's setPid below may come later).
    scoreboard_.setPid(slot, ::getpid());
    int code = 0;
    {
      Worker worker(options_, slot, std::move(own), scoreboard_, "ebpf");
      code = worker.run();
    }
    spdlog::default_logger()->flush();
    ::_exit(code);
  }
  WorkerProcess &worker = workers_[slot];
  worker.pid = pid;
  worker.started = std::chrono::steady_clock::now();
  scoreboard_.setPid(slot, pid);
  spdlog::debug("spawned worker {} as pid {}", slot, pid);
  return true;
}

void Master::reapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      break;
    }
    auto found = std::find_if(workers_.begin(), workers_.end(),
                              [pid](const WorkerProcess &w) { return w.pid == pid; });
    if (found != workers_.end()) {
      onWorkerExit(static_cast<uint32_t>(found - workers_.begin()), status);
    }
  }
  if (stopping_ && !anyWorkerAlive()) {
    event_base_loopbreak(base_.get());
  }
}

void Master::onWorkerExit(uint32_t slot, int status) {
  WorkerProcess &worker = workers_[slot];
  pid_t pid = worker.pid;
  worker.pid = 0;
  // The program stops choosing the slot at once; the connections the process had accepted
  // died with it. Its listener stays open here, so its queue waits for the respawn.
  scoreboard_.setState(slot, SD_SLOT_DEAD);
  scoreboard_.resetOpen(slot);
  if (stopping_) {
    spdlog::debug("worker {} (pid {}) {}", slot, pid, describeExit(status));
    return;
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitFatalConfig) {
    spdlog::error("worker {} (pid {}) cannot run with this configuration; not respawning it", slot,
                  pid);
    if (!anyWorkerAlive() && std::none_of(workers_.begin(), workers_.end(),
                                          [](auto &w) { return w.respawnTimer != nullptr; })) {
      spdlog::critical("no worker can run; stopping");
      exitCode_ = kExitFailure;
      beginStop(0);
    }
    return;
  }
  auto lived = std::chrono::steady_clock::now() - worker.started;
  worker.quickCrashes = lived < kQuickCrash ? worker.quickCrashes + 1 : 0;
  spdlog::warn("worker {} (pid {}) {}; respawning it", slot, pid, describeExit(status));
  scheduleRespawn(slot);
}

void Master::scheduleRespawn(uint32_t slot) {
  WorkerProcess &worker = workers_[slot];
  std::chrono::milliseconds delay{0};
  if (worker.quickCrashes > 1) {
    int exponent = std::min(worker.quickCrashes - 2, 10);
    delay = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(100L << exponent),
                                                kMaxBackoff);
  }
  worker.respawnTimer.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        auto *w = static_cast<WorkerProcess *>(ctx);
        w->owner->respawn(w->slot);
      },
      &worker));
  timeval when = toTimeval(delay);
  evtimer_add(worker.respawnTimer.get(), &when);
  if (delay.count() > 0) {
    spdlog::warn("worker {} is crash-looping ({} quick exits); next start in {} ms", slot,
                 worker.quickCrashes, delay.count());
  }
}

void Master::respawn(uint32_t slot) {
  workers_[slot].respawnTimer.reset();
  if (!stopping_) {
    spawn(slot, true);
  }
}

bool Master::anyWorkerAlive() const {
  return std::any_of(workers_.begin(), workers_.end(), [](auto &w) { return w.pid != 0; });
}

void Master::checkReady() {
  if (ready_ || stopping_) {
    readyTimer_.reset();
    return;
  }
  for (uint32_t slot = 0; slot < workers_.size(); ++slot) {
    if (scoreboard_.state(slot) != SD_SLOT_RUNNING) {
      return;
    }
  }
  ready_ = true;
  readyTimer_.reset();
  if (readyCallback_) {
    readyCallback_();
  }
}

void Master::beginStop(int signo) {
  if (stopping_) {
    if (signo != 0) {
      spdlog::info("signal {} again: killing the workers now", signo);
      for (auto &worker : workers_) {
        if (worker.pid != 0) {
          ::kill(worker.pid, SIGKILL);
        }
      }
    }
    return;
  }
  stopping_ = true;
  if (signo != 0) {
    spdlog::info("{}: stopping {} workers", ::strsignal(signo), workers_.size());
  }
  for (uint32_t slot = 0; slot < workers_.size(); ++slot) {
    WorkerProcess &worker = workers_[slot];
    worker.respawnTimer.reset();
    if (worker.pid != 0) {
      scoreboard_.setState(slot, SD_SLOT_STOPPING);
      ::kill(worker.pid, SIGTERM);
    }
  }
  if (!anyWorkerAlive()) {
    event_base_loopbreak(base_.get());
    return;
  }
  // Workers finish in-flight requests within the shutdown timeout; past it (and a grace
  // second), they are killed.
  killTimer_.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        auto *self = static_cast<Master *>(ctx);
        for (auto &worker : self->workers_) {
          if (worker.pid != 0) {
            spdlog::warn("worker pid {} did not stop in time; killing it", worker.pid);
            ::kill(worker.pid, SIGKILL);
          }
        }
      },
      this));
  timeval deadline{static_cast<time_t>(options_.shutdownTimeout.count() + 1), 0};
  evtimer_add(killTimer_.get(), &deadline);
}

} // namespace sockdispatch
