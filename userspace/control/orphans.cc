#include "control/orphans.h"

#include "adopt/socket_holders.h"
#include "core/listener_diag.h"
#include "core/pidfd.h"

#include <unistd.h>

#include <algorithm>
#include <set>

namespace sockdispatch {

namespace {

bool holds(const SocketHolders &holders, uint64_t inode, pid_t pid) {
  auto held = holders.find(inode);
  return held != holders.end() &&
         std::any_of(held->second.begin(), held->second.end(),
                     [pid](const SocketHolder &holder) { return holder.pid == pid; });
}

// Each slot's worker by pidfd, opened before the listeners are looked at: a process found
// serving afterwards is known to be the one the pidfd names, not a later one with its pid.
std::vector<OrphanedWorker> slotWorkers(PinnedAttachment &pins) {
  std::vector<OrphanedWorker> workers;
  for (const SlotSnapshot &slot : pins.scoreboard().snapshotAll()) {
    if (slot.pid == 0 || slot.state == SD_SLOT_EMPTY || slot.state == SD_SLOT_DEAD) {
      continue;
    }
    const auto pid = static_cast<pid_t>(slot.pid);
    if (auto pidfd = openPidfd(pid)) {
      workers.push_back(OrphanedWorker{slot.slot, pid, std::move(pidfd.value())});
    }
  }
  return workers;
}

// The eBPF path: a slot's listener was held by its worker and the master alone, so with the
// master gone, the listener still in the kernel's dump (by the cookie the sockets map keeps
// for the slot) means its worker lives and serves. Nothing of the worker's needs reading:
// this holds for workers that dropped to another user, whose /proc entries we may not read.
void findReuseportOrphans(PinnedAttachment &pins, const std::vector<ListenerInfo> &listeners,
                          std::vector<OrphanedWorker> candidates, Orphans &orphans) {
  for (OrphanedWorker &candidate : candidates) {
    auto cookie = pins.socketCookie(candidate.slot);
    auto listener = std::find_if(listeners.begin(), listeners.end(), [&](const ListenerInfo &l) {
      return cookie && l.cookie == *cookie;
    });
    if (listener != listeners.end()) {
      orphans.address = listener->local;
      orphans.workers.push_back(std::move(candidate));
    }
  }
}

// The line: every worker holds the one listener, so each slot's pid must be seen holding it
// (/proc/PID/fd), and a copy of it is taken for the new master (pidfd_getfd).
Result<void> findLineOrphans(const std::vector<ListenerInfo> &listeners,
                             std::vector<OrphanedWorker> candidates, Orphans &orphans) {
  std::set<uint64_t> inodes;
  for (const ListenerInfo &listener : listeners) {
    inodes.insert(listener.inode);
  }
  std::vector<pid_t> hidden;
  SocketHolders holders = findSocketHolders(inodes, ::getpid(), &hidden);
  for (OrphanedWorker &candidate : candidates) {
    auto held = std::find_if(listeners.begin(), listeners.end(), [&](const ListenerInfo &l) {
      return holds(holders, l.inode, candidate.pid);
    });
    if (held == listeners.end()) {
      if (std::find(hidden.begin(), hidden.end(), candidate.pid) != hidden.end()) {
        return logicError("take over the line of master pid " + std::to_string(orphans.masterPid),
                          "its worker pid " + std::to_string(candidate.pid) +
                              " cannot be inspected (another user's: taking its listener needs "
                              "CAP_SYS_PTRACE); it stops within its --orphan-timeout");
      }
      continue;
    }
    if (!orphans.listener) {
      auto copy = copyHeldSocket(held->inode, holders);
      if (!copy) {
        return copy.error();
      }
      orphans.listener = std::move(copy.value());
    }
    orphans.address = held->local;
    orphans.workers.push_back(std::move(candidate));
  }
  return {};
}

} // namespace

Result<Orphans> findOrphans(PinnedAttachment &pins, uint16_t port) {
  Orphans orphans;
  orphans.masterPid = pins.config().master_pid;
  orphans.line = pins.lineMode();
  std::vector<OrphanedWorker> candidates = slotWorkers(pins);
  if (candidates.empty()) {
    return orphans;
  }
  auto listeners = dumpTcpListeners(port);
  if (!listeners) {
    return listeners.error();
  }
  if (!orphans.line) {
    findReuseportOrphans(pins, *listeners, std::move(candidates), orphans);
  } else if (auto found = findLineOrphans(*listeners, std::move(candidates), orphans); !found) {
    return found.error();
  }
  return orphans;
}

} // namespace sockdispatch
