#include "control/orphans.h"

#include "adopt/socket_holders.h"
#include "core/listener_diag.h"
#include "core/pidfd.h"

#include <unistd.h>

#include <map>
#include <set>

namespace sockdispatch {

namespace {

bool holds(const SocketHolders &holders, uint64_t inode, pid_t pid) {
  auto held = holders.find(inode);
  if (held == holders.end()) {
    return false;
  }
  for (const SocketHolder &holder : held->second) {
    if (holder.pid == pid) {
      return true;
    }
  }
  return false;
}

} // namespace

Result<Orphans> findOrphans(PinnedAttachment &pins, uint16_t port) {
  Orphans orphans;
  orphans.masterPid = pins.config().master_pid;
  orphans.line = pins.lineMode();
  auto listeners = dumpTcpListeners(port);
  if (!listeners) {
    return listeners.error();
  }
  if (listeners->empty()) {
    return orphans;
  }
  std::set<uint64_t> inodes;
  for (const ListenerInfo &listener : *listeners) {
    inodes.insert(listener.inode);
  }
  // Each candidate's pidfd is opened before its descriptors are read: once the process is
  // found holding its listener, the pidfd is known to name that process.
  struct Candidate {
    OrphanedWorker worker;
    const ListenerInfo *listener; // its slot's (reuseport); null: any of the port's (line)
  };
  std::vector<Candidate> candidates;
  for (const SlotSnapshot &slot : pins.scoreboard().snapshotAll()) {
    if (slot.pid == 0 || slot.state == SD_SLOT_EMPTY || slot.state == SD_SLOT_DEAD) {
      continue;
    }
    const ListenerInfo *listener = nullptr;
    if (!orphans.line) {
      auto cookie = pins.socketCookie(slot.slot);
      for (const ListenerInfo &info : *listeners) {
        listener = cookie && info.cookie == *cookie ? &info : listener;
      }
      if (listener == nullptr) {
        continue; // no listener in the slot: nothing serves from it
      }
    }
    const auto pid = static_cast<pid_t>(slot.pid);
    auto pidfd = openPidfd(pid);
    if (!pidfd) {
      continue; // it exited
    }
    candidates.push_back(
        Candidate{OrphanedWorker{slot.slot, pid, std::move(pidfd.value())}, listener});
  }
  SocketHolders holders = findSocketHolders(inodes, ::getpid());
  for (Candidate &candidate : candidates) {
    const ListenerInfo *held = nullptr;
    if (candidate.listener != nullptr) {
      held = holds(holders, candidate.listener->inode, candidate.worker.pid) ? candidate.listener
                                                                             : nullptr;
    } else {
      for (const ListenerInfo &info : *listeners) {
        held = held == nullptr && holds(holders, info.inode, candidate.worker.pid) ? &info : held;
      }
    }
    if (held == nullptr) {
      continue;
    }
    orphans.address = held->local;
    orphans.workers.push_back(std::move(candidate.worker));
    if (orphans.line && !orphans.listener) {
      auto copy = copyHeldSocket(held->inode, holders);
      if (!copy) {
        return copy.error();
      }
      orphans.listener = std::move(copy.value());
    }
  }
  return orphans;
}

} // namespace sockdispatch
