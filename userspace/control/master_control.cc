#include "control/master_control.h"

#include "bpf/pin_dir.h"
#include "control/orphans.h"
#include "control/pinned_attachment.h"
#include "core/pidfd.h"
#include "line/shared_scoreboard.h"

#include <bpf/bpf.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <thread>

namespace sockdispatch {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kPoll = std::chrono::milliseconds(20);

struct Owner {
  uint32_t pid = 0;
  uint32_t configMapId = 0;   // eBPF mode: the maps the master holds
  std::string scoreboardPath; // line mode: the file whose lock the master holds
};

Owner ownerOf(PinnedAttachment &pins, uint16_t port) {
  Owner owner{loadRelaxed(pins.config().master_pid), pins.configMapId(), {}};
  if (pins.lineMode()) {
    owner.scoreboardPath = runDirFor(port) + "/" + kScoreboardFile;
  }
  return owner;
}

// The master runs and still holds this state (not some process that reused its pid).
bool masterRuns(const Owner &owner) {
  if (!processAlive(owner.pid)) {
    return false;
  }
  if (owner.scoreboardPath.empty()) {
    return processHoldsMap(owner.pid, owner.configMapId).value_or(true);
  }
  auto inUse = scoreboardInUse(owner.scoreboardPath);
  return inUse ? inUse.value() : inUse.error().code != ENOENT;
}

// The id of the program pinned in `dir`, 0 when it cannot be read.
uint32_t pinnedProgramId(const std::string &dir) {
  UniqueFd program(bpf_obj_get((dir + "/" + kPinProgram).c_str()));
  bpf_prog_info info{};
  uint32_t length = sizeof(info);
  if (!program || bpf_obj_get_info_by_fd(program.get(), &info, &length) != 0) {
    return 0;
  }
  return info.id;
}

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// Removes the pins of `port` if they still belong to `owner` and it is gone. A new attachment
// of the port (another master) is left alone. Returns whether pins were removed.
Result<bool> removeIfLeftBy(uint16_t port, const Owner &owner) {
  auto locked = openLocked(port, true, false);
  if (!locked) {
    return locked.error().code == ENOENT ? Result<bool>(false) : Result<bool>(locked.error());
  }
  Owner current = ownerOf(locked->pins, port);
  if (current.pid != owner.pid || current.configMapId != owner.configMapId || masterRuns(current)) {
    return false;
  }
  if (auto removed = removePinDir(stateDirFor(port)); !removed) {
    return removed.error();
  }
  return true;
}

} // namespace

Result<DetachOutcome> detachPort(uint16_t port, std::chrono::milliseconds timeout) {
  auto start = Clock::now();
  std::string dir = stateDirFor(port);
  DetachOutcome outcome;
  Owner owner;
  std::optional<PinnedAttachment> pins; // its config says whether the drain grace still runs
  {
    // Exclusive: no tune writes while we decide, and a stale directory is removed by one
    // command only.
    auto locked = openLocked(port, true, false);
    if (!locked) {
      if (locked.error().code == ENOENT) {
        return outcome;
      }
      return locked.error();
    }
    owner = ownerOf(locked->pins, port);
    outcome.masterPid = owner.pid;
    bool signalled = masterRuns(owner) && ::kill(static_cast<pid_t>(owner.pid), SIGQUIT) == 0;
    if (!signalled) {
      if (masterRuns(owner)) {
        return osError("send SIGQUIT to master pid " + std::to_string(owner.pid));
      }
      if (loadRelaxed(locked->pins.config().mode) == SD_MODE_ADOPT) {
        outcome.leftoverProgramId = pinnedProgramId(dir);
      } else if (auto orphans = findOrphans(locked->pins, port); orphans) {
        // Its workers serve on until their bound: they are asked to leave now.
        for (const OrphanedWorker &worker : orphans->workers) {
          outcome.orphansAsked += signalPidfd(worker.pidfd.get(), worker.pid, SIGTERM) ? 1 : 0;
        }
      }
      if (auto removed = removePinDir(dir); !removed) {
        return removed.error();
      }
      outcome.result = DetachResult::StaleRemoved;
      outcome.took = since(start);
      return outcome;
    }
    pins.emplace(std::move(locked->pins));
  } // the lock is released: the stopping master removes its own pins
  auto deadline = start + timeout;
  for (;;) {
    // While the drain grace runs (the balancer is told to drain, the host still serves), the
    // wait has not begun: `timeout` counts from the stop proper.
    const sd_config &config = pins->config();
    if (loadRelaxed(config.leaving) != 0 && loadRelaxed(config.stopping) == 0) {
      deadline = std::max(deadline, Clock::now() + timeout);
    }
    if (Clock::now() >= deadline) {
      break;
    }
    if (!masterRuns(owner)) {
      // It let go of the maps; let its process end too (it cannot be reused while it runs).
      while (processAlive(owner.pid) && Clock::now() < deadline) {
        std::this_thread::sleep_for(kPoll);
      }
      auto removed = removeIfLeftBy(port, owner);
      if (!removed) {
        return removed.error();
      }
      outcome.result = removed.value() ? DetachResult::ExitedLeavingPins : DetachResult::Stopped;
      outcome.took = since(start);
      return outcome;
    }
    std::this_thread::sleep_for(kPoll);
  }
  return Error{ETIMEDOUT,
               "stop master pid " + std::to_string(owner.pid) + " of port " + std::to_string(port),
               "still running after " + std::to_string(timeout.count() / 1000) +
                   " s (it may still be finishing requests; detach again to wait longer)"};
}

Result<ReloadOutcome> reloadPort(uint16_t port, std::chrono::milliseconds timeout) {
  ReloadOutcome outcome;
  std::optional<PinnedAttachment> pins;
  Owner owner;
  {
    auto locked = openLocked(port, false, false);
    if (!locked) {
      return locked.error();
    }
    owner = ownerOf(locked->pins, port);
    outcome.masterPid = owner.pid;
    outcome.generationBefore = loadRelaxed(locked->pins.config().generation);
    if (!masterRuns(owner)) {
      return Error{ESRCH, "reload port " + std::to_string(port),
                   "its master pid " + std::to_string(owner.pid) +
                       " is not running (stale state; detach removes it)"};
    }
    if (::kill(static_cast<pid_t>(owner.pid), SIGHUP) != 0) {
      return osError("send SIGHUP to master pid " + std::to_string(owner.pid));
    }
    pins.emplace(std::move(locked->pins));
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    outcome.generationAfter = loadRelaxed(pins->scoreboard().config()->generation);
    if (outcome.generationAfter != outcome.generationBefore) {
      return outcome;
    }
    if (!masterRuns(owner)) {
      return Error{ESRCH, "reload port " + std::to_string(port),
                   "master pid " + std::to_string(owner.pid) + " exited during the reload"};
    }
    if (Clock::now() >= deadline) {
      return Error{ETIMEDOUT, "reload port " + std::to_string(port),
                   "generation " + std::to_string(outcome.generationBefore) +
                       " still serves after " + std::to_string(timeout.count() / 1000) +
                       " s (the master's log says why)"};
    }
    std::this_thread::sleep_for(kPoll);
  }
}

} // namespace sockdispatch
