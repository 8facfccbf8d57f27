#include "line/line_balancer.h"

#include "core/monotonic_clock.h"
#include "line/balancer.h"
#include "sockdispatch/walk.h"

#include <optional>
#include <vector>

namespace sockdispatch {

namespace {

// splitmix64: p2c's two samples from the connection's ticket, the same at every hop.
uint64_t mix(uint64_t value) {
  value += 0x9e3779b97f4a7c15ULL;
  value = (value ^ (value >> 30U)) * 0xbf58476d1ce4e5b9ULL;
  value = (value ^ (value >> 27U)) * 0x94d049bb133111ebULL;
  return value ^ (value >> 31U);
}

std::optional<uint32_t> referenceChoice(uint32_t policy, std::span<SlotSnapshot> slots,
                                        uint64_t ticket) {
  switch (policy) {
  case SD_POLICY_LEAST_CONN: return leastConnChoose(slots, monotonicNs(), ticket);
  case SD_POLICY_ROUND_ROBIN: return roundRobinChoose(slots, ticket);
  case SD_POLICY_WEIGHTED: return weightedChoose(slots, ticket);
  case SD_POLICY_P2C: {
    auto [first, second] = p2cSamples(ticket);
    return p2cChoose(slots, first, second, monotonicNs());
  }
  default: return std::nullopt;
  }
}

bool usesSkipLoad(uint32_t policy) {
  return policy != SD_POLICY_LEAST_CONN && policy != SD_POLICY_ROUND_ROBIN &&
         policy != SD_POLICY_WEIGHTED && policy != SD_POLICY_P2C;
}

} // namespace

std::pair<uint32_t, uint32_t> p2cSamples(uint64_t ticket) {
  uint64_t samples = mix(ticket);
  return {static_cast<uint32_t>(samples), static_cast<uint32_t>(samples >> 32U)};
}

LinePosition linePosition(std::span<const SlotSnapshot> slots, uint32_t slot) {
  LinePosition out;
  for (const auto &candidate : slots) {
    if (sd_slot_selectable(candidate.state, candidate.draining) == 0) {
      continue;
    }
    if (candidate.slot == slot) {
      out.onLine = true;
      out.position = out.live;
    }
    ++out.live;
  }
  return out;
}

LineVerdict decideOnLine(Scoreboard &board, const LineStep &step) {
  std::vector<SlotSnapshot> slots = board.snapshotAll();
  LinePosition where = linePosition(slots, step.slot);
  bool end = !step.hasSuccessor || step.hops >= SD_MAX_WORKERS;
  bool last = end || (where.onLine && where.position + 1 >= where.live);

  bool keeps = false;
  if (!where.onLine) {
    keeps = end;
  } else {
    uint32_t policy = loadRelaxed(board.config()->policy);
    if (usesSkipLoad(policy)) {
      // This worker's step of the kernel's virtual line, on the real one: the same
      // sd_walk_step at the same position, its visit counted on the shared scoreboard.
      sd_walk walk{};
      walk.nr_live = where.live;
      walk.position = where.position;
      sd_slot_view view = slotView(slots[step.slot]);
      view.skipped = board.countSkip(step.slot);
      keeps = sd_walk_step(&walk, SD_STEP_SKIP_LOAD, step.slot, &view) == SD_WALK_STOP;
    } else {
      std::optional<uint32_t> choice = referenceChoice(policy, slots, step.ticket);
      keeps = !choice || *choice <= step.slot;
    }
    keeps = keeps || last;
    bool full = step.maxConnections != 0 && slots[step.slot].open >= step.maxConnections;
    if (full && !last) {
      keeps = false;
    }
  }
  if (keeps) {
    board.countSelected(step.slot);
    return LineVerdict::kKeep;
  }
  return LineVerdict::kPass;
}

} // namespace sockdispatch
