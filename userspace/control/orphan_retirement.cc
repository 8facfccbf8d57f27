#include "control/orphan_retirement.h"

#include "core/pidfd.h"
#include "core/timeval.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>

namespace sockdispatch {

OrphanRetirement::OrphanRetirement(Orphans orphans, std::chrono::seconds killAfter)
    : masterPid_(orphans.masterPid), orphans_(orphans.workers.size()), killAfter_(killAfter) {
  for (size_t i = 0; i < orphans.workers.size(); ++i) {
    orphans_[i].owner = this;
    orphans_[i].worker = std::move(orphans.workers[i]);
  }
}

Result<void> OrphanRetirement::start(event_base *base) {
  base_ = base;
  for (Watched &watched : orphans_) {
    // A pidfd reads as ready once its process has exited.
    watched.exited.reset(event_new(
        base, watched.worker.pidfd.get(), EV_READ,
        [](evutil_socket_t, short, void *ctx) {
          auto *w = static_cast<Watched *>(ctx);
          w->owner->onExit(*w);
        },
        &watched));
    if (!watched.exited || event_add(watched.exited.get(), nullptr) != 0) {
      return osError("watch the exit of worker pid " + std::to_string(watched.worker.pid));
    }
  }
  return {};
}

void OrphanRetirement::abandonInChild() {
  for (Watched &watched : orphans_) {
    (void)watched.exited.release(); // the parent's loop's: no libevent call here
    watched.worker.pidfd.reset();
  }
  (void)killTimer_.release();
}

void OrphanRetirement::retire() {
  if (retiring_) {
    return;
  }
  retiring_ = true;
  size_t asked = 0;
  for (Watched &watched : orphans_) {
    if (watched.gone) {
      continue;
    }
    if (auto sent = signalPidfd(watched.worker.pidfd.get(), watched.worker.pid, SIGTERM); !sent) {
      if (sent.error().code != ESRCH) {
        spdlog::warn("{}", sent.error().message());
      }
      continue;
    }
    ++asked;
  }
  spdlog::info("took over from master pid {}: the new workers serve; {} of its workers asked to "
               "finish what they hold and leave",
               masterPid_, asked);
  killTimer_.reset(evtimer_new(
      base_,
      [](evutil_socket_t, short, void *ctx) {
        static_cast<OrphanRetirement *>(ctx)->killRemaining();
      },
      this));
  timeval when = toTimeval(killAfter_);
  evtimer_add(killTimer_.get(), &when);
}

void OrphanRetirement::onExit(Watched &watched) {
  watched.gone = true;
  spdlog::info("worker pid {} of master pid {} (slot {}) has left", watched.worker.pid, masterPid_,
               watched.worker.slot);
  if (std::all_of(orphans_.begin(), orphans_.end(), [](const Watched &w) { return w.gone; })) {
    killTimer_.reset();
  }
}

void OrphanRetirement::killRemaining() {
  for (Watched &watched : orphans_) {
    if (!watched.gone) {
      spdlog::warn("worker pid {} of master pid {} did not leave in time; killing it",
                   watched.worker.pid, masterPid_);
      (void)signalPidfd(watched.worker.pidfd.get(), watched.worker.pid, SIGKILL);
    }
  }
}

} // namespace sockdispatch
