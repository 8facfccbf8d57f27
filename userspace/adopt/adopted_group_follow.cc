#include "adopt/adopted_group.h"
#include "config/options.h"
#include "control/pinned_attachment.h"
#include "core/listener_diag.h"
#include "core/signal_set.h"
#include "core/timeval.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstring>

namespace sockdispatch {

// Each connection open at the adoption counts on the slot of the worker that holds it.
void AdoptedGroup::seedExisting(const std::set<uint64_t> &connections) {
  if (connections.empty()) {
    return;
  }
  std::map<pid_t, uint32_t> slotOfWorker;
  for (uint32_t slot = slots_.slotsInUse(); slot > 0; --slot) {
    if (uint32_t pid = board_->snapshot(slot - 1).pid; pid != 0) {
      slotOfWorker[static_cast<pid_t>(pid)] = slot - 1; // the lowest slot of a process
    }
  }
  SocketHolders holders = findSocketHolders(connections, ::getpid());
  for (const auto &[inode, list] : holders) {
    for (const SocketHolder &holder : list) {
      if (auto found = slotOfWorker.find(holder.pid); found != slotOfWorker.end()) {
        seeded_.add(found->second, inode);
        break;
      }
    }
  }
  for (const auto &[slot, count] : seeded_.perSlot()) {
    board_->adjustOpen(slot, static_cast<int64_t>(count));
  }
  seedsCheckedAt_ = Clock::now();
  spdlog::info("{} connections were open before the adoption: counted on their workers' slots "
               "until they close",
               seeded_.size());
}

// Once a second while any is left (the dump walks the established hash: milliseconds).
void AdoptedGroup::forgetClosedSeeds() {
  if (seeded_.empty() || Clock::now() - seedsCheckedAt_ < std::chrono::seconds(1)) {
    return;
  }
  seedsCheckedAt_ = Clock::now();
  auto open = liveConnectionInodes(options_.port, address_.family());
  if (!open) {
    spdlog::warn("{}", open.error().message());
    return;
  }
  for (const auto &[slot, count] : seeded_.closedSince(open.value())) {
    board_->adjustOpen(slot, -static_cast<int64_t>(count));
  }
}

void AdoptedGroup::refreshWorkers(const std::set<uint64_t> &inodes) {
  holders_ = findSocketHolders(inodes, ::getpid());
  holdersAt_ = Clock::now();
  for (uint32_t slot = 0; slot < slots_.slotsInUse(); ++slot) {
    if (auto inode = slots_.inodeOf(slot)) {
      uint32_t before = board_->snapshot(slot).pid;
      setWorker(slot, *inode, holders_);
      uint32_t after = board_->snapshot(slot).pid;
      if (before != after) {
        spdlog::info("slot {}: its listener is now served by pid {} (was {})", slot, after, before);
      }
    }
  }
}

// A SYN the program chose whose handshake never completed left one in `queued` (the tracing
// program takes it away at the child's birth): a slot nobody has chosen for a second has
// nothing on its way.
void AdoptedGroup::clearStaleQueues() {
  auto now = Clock::now();
  for (uint32_t slot = 0; slot < slots_.slotsInUse(); ++slot) {
    SlotSnapshot snap = board_->snapshot(slot);
    auto &[selected, since] = lastSelected_[slot];
    if (snap.selected != selected) {
      selected = snap.selected;
      since = now;
    } else if (snap.queued > 0 && now - since >= std::chrono::seconds(1)) {
      board_->resetQueued(slot);
    }
  }
}

void AdoptedGroup::rescan() {
  auto listeners = groupListeners();
  if (!listeners) {
    spdlog::warn("{}", listeners.error().message());
    return;
  }
  const std::set<uint64_t> &inodes = listeners.value();
  if (inodes.empty()) {
    spdlog::info("every listener of {} is gone: the service stopped; nothing left to steer", key_);
    groupGone_ = true;
    event_base_loopbreak(base_.get());
    return;
  }
  AdoptedSlots::Changes changes = slots_.compare(inodes);
  for (uint32_t slot : changes.left) {
    // The kernel took the closed listener out of the sockarray when it closed.
    spdlog::info("slot {}: its listener closed (pid {}); the slot is free", slot,
                 board_->snapshot(slot).pid);
    board_->releaseSlot(slot);
    slots_.release(slot);
    lastSelected_.erase(slot);
    seeded_.dropSlot(slot);
  }
  bool workersMoved = false;
  for (uint32_t slot = 0; slot < slots_.slotsInUse() && !workersMoved; ++slot) {
    uint32_t pid = board_->snapshot(slot).pid;
    workersMoved = pid != 0 && !processAlive(pid); // a slot with no worker found: the 5 s scan
  }
  if (changes.any() || workersMoved || Clock::now() - holdersAt_ >= std::chrono::seconds(5)) {
    refreshWorkers(inodes);
  }
  for (uint64_t inode : changes.joined) {
    auto taken = takeListener(inode, holders_, nullptr);
    if (!taken) {
      if (unsteered_.insert(inode).second) { // said once, tried again at every scan
        spdlog::warn("a new listener of {} is not steered: {}", key_, taken.error().message());
      }
      continue;
    }
    unsteered_.erase(inode);
    spdlog::info("slot {}: a new listener of {} (pid {})", taken.value(), key_,
                 board_->snapshot(taken.value()).pid);
  }
  if (!changes.left.empty()) {
    storeRelease<__u32>(board_->config()->nr_slots, slots_.slotsInUse());
  }
  clearStaleQueues();
  forgetClosedSeeds();
}

// Gives the group back to the kernel's hash: through a fresh copy of any of its listeners.
void AdoptedGroup::release() {
  auto listeners = groupListeners();
  std::set<uint64_t> inodes = listeners ? listeners.value() : std::set<uint64_t>{};
  if (inodes.empty()) {
    spdlog::info("{} has no listener left: nothing to release", key_);
    return;
  }
  SocketHolders holders = findSocketHolders(inodes, ::getpid());
  for (uint64_t inode : inodes) {
    auto copy = copyHeldSocket(inode, holders);
    if (!copy) {
      continue;
    }
    if (auto detached = detachReuseportProgram(copy->get()); !detached) {
      spdlog::error("{}", detached.error().message());
      return;
    }
    spdlog::info("released {}: the kernel's hash chooses again", key_);
    return;
  }
  spdlog::error("could not copy a listener of {} to release it: the program stays attached "
                "until the service closes its listeners",
                key_);
}

int AdoptedGroup::run() {
  base_.reset(event_base_new());
  if (!base_) {
    spdlog::error("cannot create the event loop");
    release();
    return kExitFailure;
  }
  SignalSet signals(base_.get(), {SIGTERM, SIGINT, SIGQUIT, SIGHUP}, [this](int signo) {
    if (signo == SIGHUP) {
      rescan();
      return;
    }
    spdlog::info("{}: releasing {}", strsignal(signo), key_);
    event_base_loopbreak(base_.get());
  });
  auto onTick = [](evutil_socket_t, short, void *self) {
    static_cast<AdoptedGroup *>(self)->rescan();
  };
  EventPtr tick(event_new(base_.get(), -1, EV_PERSIST, onTick, this));
  timeval period = toTimeval(options_.interval);
  event_add(tick.get(), &period);
  event_base_dispatch(base_.get());
  if (!groupGone_) {
    release();
  }
  return kExitOk;
}

} // namespace sockdispatch
