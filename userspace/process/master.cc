#include "process/master.h"

#include "core/logging.h"
#include "core/timeval.h"
#include "line/fd_channel.h"
#include "process/privileges.h"

#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

namespace sockdispatch {

namespace {

constexpr auto kKillGrace = std::chrono::seconds(2);

std::string describeExit(int status) {
  if (WIFSIGNALED(status)) {
    return "killed by signal " + std::to_string(WTERMSIG(status)) + " (" +
           ::strsignal(WTERMSIG(status)) + ")";
  }
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

} // namespace

Master::Master(AttachOptions options, MasterParts parts, OptionsLoader reloadOptions)
    : options_(std::make_shared<const AttachOptions>(std::move(options))),
      reloadOptions_(std::move(reloadOptions)), scoreboard_(parts.scoreboard),
      kind_(std::move(parts.kind)),
      processes_(parts.processes != nullptr ? *parts.processes : systemProcesses()),
      base_(event_base_new()), mode_(std::move(parts.mode)), workers_(SD_MAX_WORKERS) {
  for (uint32_t slot = 0; slot < workers_.size(); ++slot) {
    workers_[slot].owner = this;
    workers_[slot].slot = slot;
  }
  mode_->connect(base_.get(), *this);
  const uint32_t first = mode_->firstGenerationSize(*options_);
  for (uint32_t slot = 0; slot < first; ++slot) {
    workers_[slot].generation = generation_;
    workers_[slot].options = options_;
  }
}

uint32_t Master::slotCount() const {
  return static_cast<uint32_t>(workers_.size());
}

bool Master::running(uint32_t slot) const {
  return workers_[slot].pid != 0;
}

// A worker takes new connections while it runs (or starts) and is not leaving.
bool Master::takesConnections(uint32_t slot) const {
  const WorkerProcess &worker = workers_[slot];
  return worker.pid != 0 && !worker.retiring && !stopping_;
}

int Master::controlChannel(uint32_t slot) const {
  return workers_[slot].channel.get();
}

int Master::run() {
  if (!base_) {
    spdlog::error("Failed to create the master's event loop");
    return kExitFailure;
  }
  signals_ = std::make_unique<SignalSet>(
      base_.get(), std::initializer_list<int>{SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGCHLD},
      [this](int signo) {
        switch (signo) {
        case SIGCHLD: reapChildren(); break;
        case SIGQUIT: beginGracefulStop(); break;
        case SIGHUP: beginReload(true); break;
        case SIGUSR1: beginReload(false); break;
        default: beginStop(signo); break;
        }
      });
  if (!signals_->valid()) {
    spdlog::error("Failed to watch signals: {}", std::strerror(errno));
    return kExitFailure;
  }
  std::signal(SIGPIPE, SIG_IGN);
  for (auto &service : services_) {
    if (auto started = service->start(base_.get()); !started) {
      spdlog::error("{}", started.error().message());
      return kExitFailure;
    }
  }

  for (uint32_t slot : slotsOf(generation_)) {
    if (!spawn(slot, false)) {
      exitCode_ = kExitFailure;
      beginStop(0);
      break;
    }
  }
  if (!stopping_) {
    if (auto started = mode_->start(); !started) {
      spdlog::error("{}", started.error().message());
      exitCode_ = kExitFailure;
      beginStop(0);
    }
  }
  if (!stopping_) {
    watchGeneration();
    watchPool();
  }
  event_base_dispatch(base_.get());
  return exitCode_;
}

std::vector<uint32_t> Master::slotsOf(uint64_t generation) const {
  std::vector<uint32_t> slots;
  for (const auto &worker : workers_) {
    if (worker.generation == generation && generation != 0 && !worker.retiring) {
      slots.push_back(worker.slot);
    }
  }
  return slots;
}

bool Master::spawn(uint32_t slot, bool isRespawn) {
  WorkerProcess &worker = workers_[slot];
  auto channel = makeChannelPair();
  if (!channel) {
    spdlog::error("{}", channel.error().message());
    return false;
  }
  if (auto ready = mode_->beforeFork(slot); !ready) {
    spdlog::error("{}", ready.error().message());
    return false;
  }
  scoreboard_.prepareSlot(slot, worker.generation);
  if (isRespawn) {
    // Counted before the fork: once the new process says RUNNING, readers see the count.
    scoreboard_.addRespawn(slot);
  }
  pid_t pid = processes_.fork();
  if (pid < 0) {
    scoreboard_.setState(slot, SD_SLOT_DEAD);
    spdlog::error("Failed to fork the worker for slot {}: {}", slot, std::strerror(errno));
    mode_->forkFailed(slot);
    return false;
  }
  if (pid == 0) {
    // The master's end must not live on in the worker: its end of file is how the worker
    // learns that the master is gone.
    channel->first.reset();
    runWorker(slot, std::move(channel->second));
  }
  worker.pid = pid;
  worker.started = std::chrono::steady_clock::now();
  worker.channel = std::move(channel->first);
  worker.terminated = false;
  scoreboard_.setPid(slot, pid);
  spdlog::debug("spawned worker {} (generation {}) as pid {}", slot, worker.generation, pid);
  mode_->forked(slot);
  return true;
}

void Master::runWorker(uint32_t slot, UniqueFd channel) {
  // A worker that reads its control channel sees the master go (end of file) and bounds its
  // own time as an orphan, so a restarted master can take it over (docs/design/takeover.md);
  // a program that reads none (a COMMAND) leaves with the master.
  const int deathSignal =
      kind_->readsControlChannel() ? 0 : kind_->stopSignal(*workers_[slot].options);
  if (deathSignal != 0) {
    ::prctl(PR_SET_PDEATHSIG, deathSignal);
    if (::getppid() == 1) {
      ::_exit(kExitFailure); // the master died before the line above
    }
  }
  signals_->abandonInChild();
  for (auto &service : services_) {
    service->abandonInChild();
  }
  resetSignalsAfterFork();
  std::signal(SIGPIPE, SIG_IGN);
  setupLogging("worker " + std::to_string(slot), options_->verbose);
  // Keep only this slot's sockets and this worker's end of its own channel.
  WorkerSockets sockets = mode_->takeInChild(slot);
  sockets.control = std::move(channel);
  for (auto &other : workers_) {
    other.channel.reset();
  }
  // The worker publishes its own pid before it announces RUNNING, so no reader ever sees a
  // running slot without its pid (the parent's setPid may come later).
  scoreboard_.setPid(slot, ::getpid());
  std::shared_ptr<const AttachOptions> options = workers_[slot].options;
  if (auto dropped = becomeUser(options->user, deathSignal); !dropped) {
    spdlog::critical("{}", dropped.error().message());
    ::_exit(kExitFatalConfig); // the same user would fail again: not respawned
  }
  int code = kind_->runInChild(*options, slot, std::move(sockets), scoreboard_, mode_->name());
  spdlog::default_logger()->flush();
  ::_exit(code);
}

void Master::reapChildren() {
  for (;;) {
    int status = 0;
    pid_t pid = processes_.reap(&status);
    if (pid <= 0) {
      break;
    }
    auto found = std::find_if(workers_.begin(), workers_.end(),
                              [pid](const WorkerProcess &w) { return w.pid == pid; });
    if (found != workers_.end()) {
      onWorkerExit(found->slot, status);
    }
  }
  breakWhenEmpty();
}

void Master::onWorkerExit(uint32_t slot, int status) {
  WorkerProcess &worker = workers_[slot];
  pid_t pid = worker.pid;
  worker.pid = 0;
  worker.channel.reset();
  worker.stopTimer.reset();
  // The program stops choosing the slot at once; the connections the process had accepted
  // died with it. Its listener stays open here, so its queue waits for the respawn.
  scoreboard_.setState(slot, SD_SLOT_DEAD);
  scoreboard_.resetOpen(slot);
  mode_->exited(slot);
  if (worker.retiring || stopping_) {
    spdlog::debug("worker {} (pid {}) {}", slot, pid, describeExit(status));
    if (worker.retiring) {
      freeSlot(slot);
    }
    return;
  }
  bool fatal = WIFEXITED(status) && WEXITSTATUS(status) == kExitFatalConfig;
  if (worker.generation == nextGeneration_) {
    finishReload(false, "worker " + std::to_string(slot) + " (pid " + std::to_string(pid) + ") " +
                            (fatal ? "cannot run with the new configuration"
                                   : describeExit(status) + " while starting"));
    return;
  }
  if (fatal) {
    spdlog::error("worker {} (pid {}) cannot run with this configuration; not respawning it", slot,
                  pid);
    bool anyHope = std::any_of(workers_.begin(), workers_.end(), [](const WorkerProcess &w) {
      return w.pid != 0 || w.respawnTimer != nullptr;
    });
    if (!anyHope) {
      spdlog::critical("no worker can run; stopping");
      exitCode_ = kExitFailure;
      beginStop(0);
    }
    return;
  }
  auto delay = worker.backoff.afterExit(std::chrono::steady_clock::now() - worker.started);
  if (worker.backoff.worthLogging()) {
    spdlog::warn("worker {} (pid {}) {}; respawning it", slot, pid, describeExit(status));
  }
  scheduleRespawn(slot, delay);
}

void Master::scheduleRespawn(uint32_t slot, std::chrono::milliseconds delay) {
  WorkerProcess &worker = workers_[slot];
  worker.respawnTimer.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        auto *w = static_cast<WorkerProcess *>(ctx);
        w->owner->respawn(w->slot);
      },
      &worker));
  timeval when = toTimeval(delay);
  evtimer_add(worker.respawnTimer.get(), &when);
  // A crash loop is logged when the delay grows, and then once per doubling: not per crash.
  if (worker.backoff.loopWorthLogging()) {
    spdlog::warn("worker {} is crash-looping ({} quick exits); next start in {} ms", slot,
                 worker.backoff.quickCrashes(), delay.count());
  }
}

void Master::respawn(uint32_t slot) {
  WorkerProcess &worker = workers_[slot];
  worker.respawnTimer.reset();
  if (!stopping_ && !worker.retiring && worker.generation != 0) {
    spawn(slot, true);
  }
}

void Master::freeSlot(uint32_t slot) {
  WorkerProcess &worker = workers_[slot];
  worker.generation = 0;
  worker.retiring = false;
  worker.backoff.reset();
  worker.options.reset();
  worker.respawnTimer.reset();
  worker.stopTimer.reset();
  mode_->released(slot);
  scoreboard_.releaseSlot(slot);
  publishSlotCount();
}

void Master::retire(uint32_t slot) {
  WorkerProcess &worker = workers_[slot];
  worker.retiring = true;
  worker.respawnTimer.reset();
  // Chosen by no policy from now on; the migration of its queue picks a live slot.
  scoreboard_.setDraining(slot, true);
  mode_->retiring(slot);
  if (worker.pid == 0) {
    scoreboard_.setState(slot, SD_SLOT_STOPPING);
    freeSlot(slot);
    return;
  }
  askToStop(worker);
  // Only now: whoever sees the slot stopping knows the worker has been asked (or signalled).
  scoreboard_.setState(slot, SD_SLOT_STOPPING);
  worker.stopTimer.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        auto *w = static_cast<WorkerProcess *>(ctx);
        w->owner->onStopTimer(w->slot);
      },
      &worker));
  auto grace = std::chrono::duration_cast<std::chrono::milliseconds>(
      worker.options->shutdownTimeout + std::chrono::seconds(1));
  timeval when = toTimeval(grace);
  evtimer_add(worker.stopTimer.get(), &when);
}

// Over the control channel where the worker reads one (no CAP_KILL needed for a worker of
// another user); the stop signal otherwise, or when the channel fails.
void Master::askToStop(WorkerProcess &worker) {
  const int stopSignal = kind_->stopSignal(*worker.options);
  if (!kind_->readsControlChannel()) {
    processes_.kill(worker.pid, stopSignal);
    worker.terminated = true;
  } else if (auto sent = sendFds(worker.channel.get(),
                                 LineMessage::make(LineMessageType::kStopGracefully), {});
             !sent) {
    spdlog::warn("worker {}: {}; sending SIG{}", worker.slot, sent.error().message(),
                 ::sigabbrev_np(stopSignal));
    processes_.kill(worker.pid, stopSignal);
    worker.terminated = true;
  }
}

void Master::onStopTimer(uint32_t slot) {
  WorkerProcess &worker = workers_[slot];
  if (worker.pid == 0) {
    return;
  }
  if (!worker.terminated) {
    int stopSignal = kind_->stopSignal(*worker.options);
    spdlog::warn("worker {} (pid {}) did not stop in time; sending SIG{}", slot, worker.pid,
                 ::sigabbrev_np(stopSignal));
    processes_.kill(worker.pid, stopSignal);
    worker.terminated = true;
    timeval when = toTimeval(kKillGrace);
    evtimer_add(worker.stopTimer.get(), &when);
    return;
  }
  spdlog::warn("worker {} (pid {}) did not stop after its stop signal; killing it", slot,
               worker.pid);
  processes_.kill(worker.pid, SIGKILL);
}

void Master::publishSlotCount() {
  uint32_t count = 0;
  for (const auto &worker : workers_) {
    if (worker.generation != 0) {
      count = worker.slot + 1;
    }
  }
  storeRelease<__u32>(scoreboard_.config()->nr_slots, count);
}

bool Master::anyWorkerAlive() const {
  return std::any_of(workers_.begin(), workers_.end(), [](auto &w) { return w.pid != 0; });
}

void Master::breakWhenEmpty() {
  if (stopping_ && !stopped_ && !anyWorkerAlive()) {
    stopped_ = true; // once: a stop begun while reaping would come here twice
    mode_->stopped();
    event_base_loopbreak(base_.get());
  }
}

void Master::announceStop() {
  stopping_ = true;
  mode_->stopping();
  // Before any worker is asked to stop: from the next SYN on, the program refuses new
  // connections, so none can land in a listener after that listener's last accept. (In line
  // mode the one listener is closed already; the mark is what `status` readers see.)
  storeRelease<__u32>(scoreboard_.config()->stopping, 1);
  for (auto &service : services_) {
    service->stopping();
  }
  if (stoppingCallback_) {
    stoppingCallback_();
  }
}

void Master::beginStop(int signo) {
  if (stopping_ && killTimer_) {
    if (signo != 0) {
      spdlog::info("signal {} again: killing the workers now", signo);
      for (auto &worker : workers_) {
        if (worker.pid != 0) {
          processes_.kill(worker.pid, SIGKILL);
        }
      }
    }
    return;
  }
  announceStop();
  poolTimer_.reset();
  drainTimer_.reset();
  if (signo != 0) {
    spdlog::info("{}: stopping", ::strsignal(signo));
  }
  for (auto &worker : workers_) {
    worker.respawnTimer.reset();
    worker.stopTimer.reset();
    if (worker.pid != 0) {
      scoreboard_.setState(worker.slot, SD_SLOT_STOPPING);
      askToStop(worker);
    }
  }
  // Workers finish in-flight requests within the shutdown timeout; past it (and a grace
  // period), they are killed.
  killTimer_.reset(evtimer_new(
      base_.get(),
      [](evutil_socket_t, short, void *ctx) {
        auto *self = static_cast<Master *>(ctx);
        for (auto &worker : self->workers_) {
          if (worker.pid != 0) {
            spdlog::warn("worker pid {} did not stop in time; killing it", worker.pid);
            self->processes_.kill(worker.pid, SIGKILL);
          }
        }
      },
      this));
  auto deadline =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_->shutdownTimeout + kKillGrace);
  timeval when = toTimeval(deadline);
  evtimer_add(killTimer_.get(), &when);
  breakWhenEmpty();
}

void Master::beginGracefulStop() {
  if (stopping_ || leaving_) {
    spdlog::info("graceful stop already under way");
    return;
  }
  const std::chrono::seconds grace = effectiveDrainGrace(*options_);
  if (grace.count() > 0) {
    // The balancer in front hears `drain` (agent, status --weight) and moves new connections
    // to other hosts while this one still takes whatever reaches it; then the stop proper.
    leaving_ = true;
    storeRelease<__u32>(scoreboard_.config()->leaving, 1);
    spdlog::info("graceful stop: telling the balancer to drain for {} s, then workers serve what "
                 "they have and leave",
                 grace.count());
    drainTimer_.reset(evtimer_new(
        base_.get(),
        [](evutil_socket_t, short, void *ctx) { static_cast<Master *>(ctx)->stopGracefully(); },
        this));
    timeval when = toTimeval(grace);
    evtimer_add(drainTimer_.get(), &when);
    return;
  }
  stopGracefully();
}

void Master::stopGracefully() {
  drainTimer_.reset();
  if (stopping_) {
    return; // a stop came during the drain grace
  }
  spdlog::info("graceful stop: workers serve what they have and leave");
  if (nextGeneration_ != 0) {
    finishReload(false, "the attachment is stopping");
  }
  announceStop();
  generationTimer_.reset();
  poolTimer_.reset();
  for (auto &worker : workers_) {
    if (worker.generation != 0 && !worker.retiring) {
      retire(worker.slot);
    }
  }
  breakWhenEmpty();
}

} // namespace sockdispatch
