#pragma once

#include "bpf/scoreboard.h"
#include "config/options.h"
#include "core/event_ptr.h"
#include "core/log_limiter.h"
#include "core/result.h"
#include "core/signal_set.h"
#include "core/unique_fd.h"
#include "dispatch/dispatch.h"
#include "process/master_service.h"
#include "process/pool_sizing.h"
#include "process/process_ops.h"
#include "process/respawn_backoff.h"
#include "process/worker_kind.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace sockdispatch {

// What a master is made of: how connections reach its workers, what runs in a worker
// process, and the scoreboard both read and write.
struct MasterParts {
  std::unique_ptr<Dispatch> mode;
  std::unique_ptr<WorkerKind> kind;
  Scoreboard scoreboard{nullptr, nullptr};
  ProcessOps *processes = nullptr; // null: the system's (systemProcesses())
};

// The master process. It forks one worker per slot of the current generation, keeps every
// listener of that generation open (so a dead worker's accept queue survives it), respawns
// crashed workers into their slot with backoff, and changes generations without loss:
//
//   SIGTERM, SIGINT  stop: workers finish in-flight requests within --shutdown-timeout
//   SIGQUIT          graceful stop: after the drain grace (--drain-grace, with an agent port:
//                    the balancer in front is told to drain while this host still serves),
//                    workers stop accepting, serve what the kernel already queued for them
//                    and what is in flight, then exit
//   SIGHUP           reload: re-read the options, start a new generation, retire the old
//   SIGUSR1          restart: a new generation with the same options, the old one retired
//
// A new generation takes free slots, with new listeners in the same reuseport group, and is
// put into the sockarray before the old one leaves. A leaving worker is marked draining (the
// program stops choosing it), its listener is closed here and then, asked over its control
// channel, by the worker itself, so the kernel migrates whatever is still queued on it to a
// live worker. Signal handlers only wake the libevent loop (signalfd).
//
// What is done with the slot's sockets at each of these steps is the dispatch mode's
// (Dispatch: reuseport or line); what runs in the forked process is the worker kind's
// (WorkerKind). The master implements the WorkerRoster they read.
class Master final : private WorkerRoster {
public:
  // Reads the options again for a reload (a configuration file); the current ones when the
  // attachment was started from flags alone.
  using OptionsLoader = std::function<Result<AttachOptions>()>;

  Master(AttachOptions options, MasterParts parts, OptionsLoader reloadOptions);
  ~Master() override = default;
  Master(const Master &) = delete;
  Master &operator=(const Master &) = delete;

  // Called once, when every worker of the first generation serves.
  void onReady(std::function<void()> callback) { readyCallback_ = std::move(callback); }
  // Called when a reload or restart begins, and when it ends (committed or abandoned).
  void onReloading(std::function<void()> callback) { reloadingCallback_ = std::move(callback); }
  void onReloaded(std::function<void(bool committed)> callback) {
    reloadedCallback_ = std::move(callback);
  }

  // Called once, when a stop (of any kind) begins.
  void onStopping(std::function<void()> callback) { stoppingCallback_ = std::move(callback); }

  // Serves `service` on the master's loop from run() on (before the first worker is forked)
  // until the master exits.
  void addService(std::unique_ptr<MasterService> service) {
    services_.push_back(std::move(service));
  }

  // Runs until stopped. Returns the process exit code.
  int run();

private:
  struct WorkerProcess {
    Master *owner = nullptr;
    uint32_t slot = 0;
    pid_t pid = 0;
    uint64_t generation = 0; // 0: the slot is free
    bool retiring = false;
    std::shared_ptr<const AttachOptions> options;
    std::chrono::steady_clock::time_point started;
    RespawnBackoff backoff; // paces the respawns of a worker that keeps crashing
    UniqueFd channel;       // the master's end of the control channel
    EventPtr respawnTimer;
    EventPtr stopTimer; // SIGTERM, then SIGKILL, for a worker that does not leave in time
    bool terminated = false;
  };

  // WorkerRoster, for the dispatch mode.
  [[nodiscard]] uint32_t slotCount() const override;
  [[nodiscard]] bool running(uint32_t slot) const override;
  [[nodiscard]] bool takesConnections(uint32_t slot) const override;
  [[nodiscard]] int controlChannel(uint32_t slot) const override;
  [[nodiscard]] const AttachOptions &options() const override { return *options_; }

  bool spawn(uint32_t slot, bool isRespawn);
  [[noreturn]] void runWorker(uint32_t slot, UniqueFd channel);
  void reapChildren();
  void onWorkerExit(uint32_t slot, int status);
  void scheduleRespawn(uint32_t slot, std::chrono::milliseconds delay);
  void respawn(uint32_t slot);
  void freeSlot(uint32_t slot);
  void retire(uint32_t slot);
  void askToStop(WorkerProcess &worker);
  void onStopTimer(uint32_t slot);
  void beginStop(int signo);
  // A graceful stop begins with the drain grace (effectiveDrainGrace), when there is one.
  void beginGracefulStop();
  void stopGracefully();
  void beginReload(bool rereadOptions);
  void checkGeneration();
  void finishReload(bool committed, const std::string &why);
  // Gives a free slot to `generation`: a new listener in the group, put into the sockarray.
  Result<void> takeSlot(uint32_t slot, uint64_t generation,
                        std::shared_ptr<const AttachOptions> options);
  void watchPool();
  void checkPool();
  void watchGeneration();
  void publishSlotCount();
  [[nodiscard]] std::vector<uint32_t> slotsOf(uint64_t generation) const;
  [[nodiscard]] bool anyWorkerAlive() const;
  void breakWhenEmpty();
  void announceStop();

  std::shared_ptr<const AttachOptions> options_; // the current generation's
  OptionsLoader reloadOptions_;
  Scoreboard scoreboard_;
  std::unique_ptr<WorkerKind> kind_;
  ProcessOps &processes_;
  // Declared before every libevent object below (the dispatch mode's included), so it is
  // freed after all of them.
  EventBasePtr base_;
  std::unique_ptr<Dispatch> mode_;
  std::vector<std::unique_ptr<MasterService>> services_;
  std::unique_ptr<SignalSet> signals_;
  EventPtr generationTimer_; // watches a starting generation until it serves
  EventPtr killTimer_;
  EventPtr poolTimer_;  // the dynamic pool's once-a-second look at the scoreboard
  EventPtr drainTimer_; // ends a graceful stop's drain grace
  PoolSizing pool_;
  LogLimiter poolFaults_;    // a slot the pool cannot open, retried every second: logged less
  bool poolFailing_ = false; // the last slot the pool tried to open could not be
  std::vector<WorkerProcess> workers_; // by slot, SD_MAX_WORKERS of them
  std::function<void()> readyCallback_;
  std::function<void()> reloadingCallback_;
  std::function<void(bool)> reloadedCallback_;
  std::function<void()> stoppingCallback_;
  std::shared_ptr<const AttachOptions> pendingOptions_; // the starting generation's
  uint64_t generation_ = 1;                             // the serving generation
  uint64_t nextGeneration_ = 0;                         // the starting one during a reload, else 0
  uint64_t lastGeneration_ = 1;
  std::chrono::steady_clock::time_point generationDeadline_;
  bool ready_ = false;
  bool stopping_ = false;
  bool leaving_ = false; // a graceful stop's drain grace runs (config.leaving)
  bool stopped_ = false; // every worker gone after a stop; the loop is ending
  int exitCode_ = kExitOk;
};

} // namespace sockdispatch
