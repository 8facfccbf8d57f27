#include "control/orphans.h"

#include "adopt/socket_holders.h"
#include "core/listener_diag.h"
#include "core/pidfd.h"

#include <unistd.h>

#include <map>
#include <set>

namespace sockdispatch {

Result<Orphans> findOrphans(PinnedAttachment &pins, uint16_t port) {
  Orphans orphans;
  orphans.masterPid = pins.config().master_pid;
  if (pins.lineMode()) {
    return orphans;
  }
  auto listeners = dumpTcpListeners(port);
  if (!listeners) {
    return listeners.error();
  }
  std::map<uint64_t, const ListenerInfo *> byCookie;
  std::set<uint64_t> inodes;
  for (const ListenerInfo &listener : *listeners) {
    byCookie.emplace(listener.cookie, &listener);
    inodes.insert(listener.inode);
  }
  if (inodes.empty()) {
    return orphans;
  }
  // Each candidate's pidfd is opened before its descriptors are read: once the process is
  // found holding its slot's listener, the pidfd is known to name that process.
  struct Candidate {
    OrphanedWorker worker;
    const ListenerInfo *listener;
  };
  std::vector<Candidate> candidates;
  for (const SlotSnapshot &slot : pins.scoreboard().snapshotAll()) {
    if (slot.pid == 0 || slot.state == SD_SLOT_EMPTY || slot.state == SD_SLOT_DEAD) {
      continue;
    }
    auto cookie = pins.socketCookie(slot.slot);
    auto listener = cookie ? byCookie.find(*cookie) : byCookie.end();
    if (listener == byCookie.end()) {
      continue; // no listener in the slot: nothing serves from it
    }
    const auto pid = static_cast<pid_t>(slot.pid);
    auto pidfd = openPidfd(pid);
    if (!pidfd) {
      continue; // it exited
    }
    candidates.push_back(
        Candidate{OrphanedWorker{slot.slot, pid, std::move(pidfd.value())}, listener->second});
  }
  SocketHolders holders = findSocketHolders(inodes, ::getpid());
  for (Candidate &candidate : candidates) {
    auto held = holders.find(candidate.listener->inode);
    if (held == holders.end()) {
      continue;
    }
    for (const SocketHolder &holder : held->second) {
      if (holder.pid == candidate.worker.pid) {
        orphans.address = candidate.listener->local;
        orphans.workers.push_back(std::move(candidate.worker));
        break;
      }
    }
  }
  return orphans;
}

} // namespace sockdispatch
