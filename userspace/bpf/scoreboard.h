#pragma once

#include "sockdispatch/abi.h"

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <vector>

namespace sockdispatch {

// A plain copy of one slot, for decisions, display and tests.
struct SlotSnapshot {
  uint32_t slot = 0;
  uint32_t state = SD_SLOT_EMPTY;
  uint32_t pid = 0;
  uint32_t weight = 1;
  uint32_t draining = 0;
  uint64_t generation = 0;
  uint64_t respawns = 0;
  uint64_t open = 0;
  uint64_t accepted = 0;
  uint64_t requests = 0;
  uint64_t skipped = 0;
  uint64_t selected = 0;
  uint64_t queued = 0;
  uint64_t busySince = 0;
  uint32_t loadSource = SD_LOAD_WORKER;
};

// The per-worker scoreboard: the `slots` array (mmapped from the BPF map, or from a shared
// memory file in line mode) and the `config` record. Every access is atomic, because the
// kernel program and other processes write the same memory concurrently.
class Scoreboard {
public:
  Scoreboard(sd_slot *slots, sd_config *config) : slots_(slots), config_(config) {}

  [[nodiscard]] uint32_t slotCount() const;

  // Worker side: its own slot's counters.
  void connectionOpened(uint32_t slot);
  void connectionClosed(uint32_t slot);
  void requestAnswered(uint32_t slot);
  // Around each handler call: when it began (CLOCK_MONOTONIC ns), and 0 once it returned.
  void setBusySince(uint32_t slot, uint64_t monotonicNs);

  // From `from` to `to` only if nobody changed the state meanwhile (a worker marking itself
  // full or running again never overwrites the master's STOPPING or DEAD).
  bool changeState(uint32_t slot, sd_slot_state from, sd_slot_state to);

  // Line mode: the policy's counters, written as the kernel program writes them.
  // countSkip returns `skipped` before its increment (skip_load's my_skipped).
  uint64_t countSkip(uint32_t slot);
  void countSelected(uint32_t slot);
  // Line mode: connections handed to the slot's input and not yet received there. The sender
  // adds before its sendmsg (and takes back what failed), the receiver takes off what it
  // read; never below 0.
  void addQueued(uint32_t slot, uint64_t count);
  void takeQueued(uint32_t slot, uint64_t count);

  // Master side.
  // Before fork: STARTING (the worker itself announces RUNNING). Counters are kept.
  void prepareSlot(uint32_t slot, uint64_t generation);
  void setPid(uint32_t slot, pid_t pid);
  void setState(uint32_t slot, sd_slot_state state);
  void resetOpen(uint32_t slot);   // its connections (and any handler call) died with its process
  void resetQueued(uint32_t slot); // nothing chosen for it is on its way any more
  // Connections the kernel does not count (they predate the slot's tag): added, or taken
  // away, never below 0.
  void adjustOpen(uint32_t slot, int64_t delta);
  void addRespawn(uint32_t slot);
  // A slot taken by a new generation starts from zero: every counter, weight 1, not draining.
  void resetCounters(uint32_t slot);
  // A slot whose worker left for good: EMPTY, no pid, not draining, its load kept by a worker
  // again (its totals are kept).
  void releaseSlot(uint32_t slot);
  // Who keeps the slot's load: a worker of ours, or the kernel (foreign processes).
  void setLoadSource(uint32_t slot, sd_load_source source);

  // Tuning: the weighted policy's weight, and draining (chosen by no policy).
  void setWeight(uint32_t slot, uint32_t weight);
  void setDraining(uint32_t slot, bool draining);

  [[nodiscard]] sd_slot_state state(uint32_t slot) const;
  [[nodiscard]] SlotSnapshot snapshot(uint32_t slot) const;
  [[nodiscard]] std::vector<SlotSnapshot> snapshotAll() const;

  [[nodiscard]] sd_config *config() { return config_; }
  [[nodiscard]] const sd_config *config() const { return config_; }

private:
  sd_slot *slots_;
  sd_config *config_;
};

template <typename T> T loadRelaxed(const T &field) {
  return std::atomic_ref<T>(const_cast<T &>(field)).load(std::memory_order_relaxed);
}
template <typename T> void storeRelease(T &field, T value) {
  std::atomic_ref<T>(field).store(value, std::memory_order_release);
}

} // namespace sockdispatch
