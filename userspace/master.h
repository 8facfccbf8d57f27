#pragma once

#include "dispatch_program.h"
#include "event_ptr.h"
#include "listener.h"
#include "options.h"
#include "signal_set.h"

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <vector>

namespace sockdispatch {

// The master process: forks one worker per slot, keeps every listener open (so a dead
// worker's accept queue survives it), respawns crashed workers into their slot with
// backoff, and stops them on SIGTERM/SIGINT. Signal handlers only wake the libevent loop.
class Master {
public:
  Master(const AttachOptions &options, ListenerGroup listeners, DispatchProgram &program);
  ~Master() = default;
  Master(const Master &) = delete;
  Master &operator=(const Master &) = delete;

  // Called once, when every worker serves.
  void onReady(std::function<void()> callback) { readyCallback_ = std::move(callback); }

  // Runs until stopped. Returns the process exit code.
  int run();

private:
  struct WorkerProcess {
    Master *owner = nullptr;
    uint32_t slot = 0;
    pid_t pid = 0;
    std::chrono::steady_clock::time_point started;
    int quickCrashes = 0; // consecutive crashes soon after start, for the backoff
    EventPtr respawnTimer;
  };

  bool spawn(uint32_t slot, bool isRespawn);
  void reapChildren();
  void onWorkerExit(uint32_t slot, int status);
  void scheduleRespawn(uint32_t slot);
  void respawn(uint32_t slot);
  void beginStop(int signo);
  void checkReady();
  [[nodiscard]] bool anyWorkerAlive() const;

  const AttachOptions &options_;
  ListenerGroup listeners_;
  Scoreboard scoreboard_;
  // Declared before every libevent object below, so it is freed after all of them.
  EventBasePtr base_;
  std::unique_ptr<SignalSet> signals_;
  EventPtr readyTimer_;
  EventPtr killTimer_;
  std::vector<WorkerProcess> workers_;
  std::function<void()> readyCallback_;
  uint64_t generation_ = 1;
  bool ready_ = false;
  bool stopping_ = false;
  int exitCode_ = kExitOk;
};

} // namespace sockdispatch
