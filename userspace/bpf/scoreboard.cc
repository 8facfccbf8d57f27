#include "bpf/scoreboard.h"

namespace sockdispatch {

uint32_t Scoreboard::slotCount() const {
  uint32_t count = loadRelaxed(config_->nr_slots);
  return count > SD_MAX_WORKERS ? SD_MAX_WORKERS : count;
}

void Scoreboard::connectionOpened(uint32_t slot) {
  std::atomic_ref<__u64>(slots_[slot].open).fetch_add(1, std::memory_order_relaxed);
  std::atomic_ref<__u64>(slots_[slot].accepted).fetch_add(1, std::memory_order_relaxed);
  // One fewer waiting in the listen queue, if the program counted it there (not for the
  // kernel hash's choices, nor ever in line mode): never below zero.
  std::atomic_ref<__u64> queued(slots_[slot].queued);
  __u64 waiting = queued.load(std::memory_order_relaxed);
  while (waiting > 0 &&
         !queued.compare_exchange_weak(waiting, waiting - 1, std::memory_order_relaxed)) {
  }
}

void Scoreboard::connectionClosed(uint32_t slot) {
  std::atomic_ref<__u64>(slots_[slot].open).fetch_sub(1, std::memory_order_relaxed);
}

void Scoreboard::setBusySince(uint32_t slot, uint64_t monotonicNs) {
  std::atomic_ref<__u64>(slots_[slot].busy_since).store(monotonicNs, std::memory_order_relaxed);
}

void Scoreboard::requestAnswered(uint32_t slot) {
  std::atomic_ref<__u64>(slots_[slot].requests).fetch_add(1, std::memory_order_relaxed);
}

uint64_t Scoreboard::countSkip(uint32_t slot) {
  return std::atomic_ref<__u64>(slots_[slot].skipped).fetch_add(1, std::memory_order_relaxed);
}

void Scoreboard::countSelected(uint32_t slot) {
  std::atomic_ref<__u64>(slots_[slot].selected).fetch_add(1, std::memory_order_relaxed);
}

void Scoreboard::addQueued(uint32_t slot, uint64_t count) {
  std::atomic_ref<__u64>(slots_[slot].queued).fetch_add(count, std::memory_order_relaxed);
}

void Scoreboard::takeQueued(uint32_t slot, uint64_t count) {
  std::atomic_ref<__u64> queued(slots_[slot].queued);
  __u64 waiting = queued.load(std::memory_order_relaxed);
  while (!queued.compare_exchange_weak(waiting, waiting > count ? waiting - count : 0,
                                       std::memory_order_relaxed)) {
  }
}

void Scoreboard::prepareSlot(uint32_t slot, uint64_t generation) {
  sd_slot &s = slots_[slot];
  if (loadRelaxed(s.weight) == 0) {
    storeRelease<__u32>(s.weight, 1);
  }
  storeRelease<__u64>(s.generation, generation);
  storeRelease<__u64>(s.busy_since, 0); // in no handler call until it makes one
  storeRelease<__u32>(s.pid, 0);
  storeRelease<__u32>(s.state, SD_SLOT_STARTING);
}

void Scoreboard::setPid(uint32_t slot, pid_t pid) {
  storeRelease<__u32>(slots_[slot].pid, static_cast<__u32>(pid));
}

void Scoreboard::setState(uint32_t slot, sd_slot_state state) {
  storeRelease<__u32>(slots_[slot].state, state);
}

bool Scoreboard::changeState(uint32_t slot, sd_slot_state from, sd_slot_state to) {
  __u32 expected = from;
  return std::atomic_ref<__u32>(slots_[slot].state)
      .compare_exchange_strong(expected, to, std::memory_order_acq_rel);
}

void Scoreboard::resetOpen(uint32_t slot) {
  storeRelease<__u64>(slots_[slot].open, 0);
  // Counted afresh: what waits in its listen queue is taken by its respawn (an accept of an
  // uncounted connection leaves the count at zero) or migrates, counted where it lands.
  storeRelease<__u64>(slots_[slot].queued, 0);
  // A worker killed inside a handler call never cleared its mark: left set, the load-aware
  // policies would count its respawn busy until that one's first request, which they would
  // never send it.
  storeRelease<__u64>(slots_[slot].busy_since, 0);
}

void Scoreboard::resetQueued(uint32_t slot) {
  storeRelease<__u64>(slots_[slot].queued, 0);
}

void Scoreboard::adjustOpen(uint32_t slot, int64_t delta) {
  std::atomic_ref<__u64> open(slots_[slot].open);
  __u64 now = open.load(std::memory_order_relaxed);
  __u64 next = 0;
  do {
    auto change = static_cast<__u64>(delta < 0 ? -delta : delta);
    next = delta >= 0 ? now + change : (now > change ? now - change : 0);
  } while (!open.compare_exchange_weak(now, next, std::memory_order_relaxed));
}

void Scoreboard::addRespawn(uint32_t slot) {
  std::atomic_ref<__u64>(slots_[slot].respawns).fetch_add(1, std::memory_order_relaxed);
}

void Scoreboard::resetCounters(uint32_t slot) {
  sd_slot &s = slots_[slot];
  for (__u64 *counter : {&s.respawns, &s.open, &s.accepted, &s.requests, &s.skipped, &s.selected,
                         &s.queued, &s.busy_since}) {
    storeRelease<__u64>(*counter, 0);
  }
  storeRelease<__u32>(s.weight, 1);
  storeRelease<__u32>(s.draining, 0);
}

void Scoreboard::releaseSlot(uint32_t slot) {
  sd_slot &s = slots_[slot];
  storeRelease<__u32>(s.state, SD_SLOT_EMPTY);
  storeRelease<__u32>(s.pid, 0);
  storeRelease<__u32>(s.draining, 0);
  storeRelease<__u64>(s.open, 0);
  storeRelease<__u64>(s.busy_since, 0);
  storeRelease<__u32>(s.load_source, SD_LOAD_WORKER);
}

void Scoreboard::setLoadSource(uint32_t slot, sd_load_source source) {
  storeRelease<__u32>(slots_[slot].load_source, source);
}

void Scoreboard::setWeight(uint32_t slot, uint32_t weight) {
  storeRelease<__u32>(slots_[slot].weight, weight);
}

void Scoreboard::setDraining(uint32_t slot, bool draining) {
  storeRelease<__u32>(slots_[slot].draining, draining ? 1 : 0);
}

sd_slot_state Scoreboard::state(uint32_t slot) const {
  return static_cast<sd_slot_state>(loadRelaxed(slots_[slot].state));
}

SlotSnapshot Scoreboard::snapshot(uint32_t slot) const {
  const sd_slot &s = slots_[slot];
  SlotSnapshot out;
  out.slot = slot;
  out.state = loadRelaxed(s.state);
  out.pid = loadRelaxed(s.pid);
  out.weight = loadRelaxed(s.weight);
  out.draining = loadRelaxed(s.draining);
  out.generation = loadRelaxed(s.generation);
  out.respawns = loadRelaxed(s.respawns);
  out.open = loadRelaxed(s.open);
  out.accepted = loadRelaxed(s.accepted);
  out.requests = loadRelaxed(s.requests);
  out.skipped = loadRelaxed(s.skipped);
  out.selected = loadRelaxed(s.selected);
  out.queued = loadRelaxed(s.queued);
  out.busySince = loadRelaxed(s.busy_since);
  out.loadSource = loadRelaxed(s.load_source);
  return out;
}

std::vector<SlotSnapshot> Scoreboard::snapshotAll() const {
  std::vector<SlotSnapshot> all;
  uint32_t count = slotCount();
  all.reserve(count);
  for (uint32_t i = 0; i < count; ++i) {
    all.push_back(snapshot(i));
  }
  return all;
}

} // namespace sockdispatch
