#pragma once

#include "control/orphans.h"
#include "core/event_ptr.h"
#include "process/master_service.h"

#include <chrono>
#include <vector>

namespace sockdispatch {

// The master that took over a port retires the workers its dead predecessor left
// (docs/design/takeover.md), on its own loop: once its first generation serves, each orphan
// is asked to leave with SIGTERM through its pidfd. An orphan then stops accepting, takes
// what the kernel completed for it, closes its listener (the program hands whatever is still
// queued there to the new workers), answers what it holds and exits. One still there after
// `killAfter` is killed. Each exit is watched through its pidfd, and logged.
class OrphanRetirement final : public MasterService {
public:
  OrphanRetirement(Orphans orphans, std::chrono::seconds killAfter);

  Result<void> start(event_base *base) override;
  void abandonInChild() override;

  // The new generation serves: ask every orphan to leave.
  void retire();

private:
  struct Watched {
    OrphanRetirement *owner = nullptr;
    OrphanedWorker worker;
    EventPtr exited;
    bool gone = false;
  };
  void onExit(Watched &watched);
  void killRemaining();

  uint32_t masterPid_;
  std::vector<Watched> orphans_;
  std::chrono::seconds killAfter_;
  event_base *base_ = nullptr;
  EventPtr killTimer_;
  bool retiring_ = false;
};

} // namespace sockdispatch
