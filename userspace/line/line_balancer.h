#pragma once

#include "bpf/scoreboard.h"

#include <cstdint>
#include <span>
#include <utility>

namespace sockdispatch {

// One worker's decision in the line fallback: keep an arriving connection or pass it to the
// next worker. The line is the workers in slot order; the live line (the one the policies
// count) is its selectable slots (running, not draining), exactly as the kernel program
// walks it on the eBPF path, so both modes make the same choices from the same counters.

enum class LineVerdict { kKeep, kPass };

// What the worker knows at one connection.
struct LineStep {
  uint32_t slot = 0;           // this worker's slot
  bool hasSuccessor = true;    // false: the physical end of the line, which never passes
  uint64_t maxConnections = 0; // the worker is full at this many open connections; 0: no limit
  uint64_t ticket = 0;         // the connection's number (policies' tickets, least_conn's ties)
  uint32_t hops = 0;           // workers that already passed this connection on
};

// `slot`'s place on the live line: its 0-based position among the `live` selectable slots.
// onLine is false when the slot itself is not selectable (position is then meaningless).
struct LinePosition {
  bool onLine = false;
  uint32_t position = 0;
  uint32_t live = 0;
};
LinePosition linePosition(std::span<const SlotSnapshot> slots, uint32_t slot);

// Decides for the worker in `step.slot` and writes the shared counters as the kernel program
// does: skip_load counts a skip on every live worker it visits, and the keeper's `selected`
// grows by one. The policy is the scoreboard config's:
//   skip_load    the kernel's skip_load step (sockdispatch/walk.h) for this worker's slot;
//   least_conn, round_robin, weighted, p2c
//                the C++ reference (balancer.h) picks a slot from the scoreboard; a worker
//                keeps when the pick is itself or a slot the connection has already passed;
//   hash         no kernel hash exists in line mode: skip_load stands in.
// Whatever the policy: a worker off the live line (draining, stopping) passes; a full worker
// passes; the last worker of the live line and the physical end of the line keep, and so
// does a connection that has made SD_MAX_WORKERS hops (a line being re-linked cannot make
// it circle forever).
LineVerdict decideOnLine(Scoreboard &board, const LineStep &step);

// p2c's two samples (live positions, taken modulo the live count) for a connection's ticket:
// the same at every hop, so every worker of the line sees the same pair.
std::pair<uint32_t, uint32_t> p2cSamples(uint64_t ticket);

} // namespace sockdispatch
