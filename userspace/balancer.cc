#include "balancer.h"

#include "sockdispatch/policy.h"

namespace sockdispatch {

std::optional<uint32_t> skipLoadChoose(std::span<SlotSnapshot> slots) {
  uint32_t live = 0;
  for (const auto &slot : slots) {
    live += sd_slot_selectable(slot.state, slot.draining) ? 1 : 0;
  }
  uint32_t position = 0;
  for (auto &slot : slots) {
    if (!sd_slot_selectable(slot.state, slot.draining)) {
      continue;
    }
    uint64_t load = slot.open + slot.skipped;
    slot.skipped += 1;
    if (sd_skip_load_keeps(load, live, position) != 0) {
      return slot.slot;
    }
    ++position;
  }
  return std::nullopt;
}

std::optional<uint32_t> leastConnChoose(std::span<const SlotSnapshot> slots) {
  std::optional<uint32_t> best;
  uint64_t bestOpen = 0;
  for (const auto &slot : slots) {
    if (!sd_slot_selectable(slot.state, slot.draining)) {
      continue;
    }
    if (!best || slot.open < bestOpen) {
      best = slot.slot;
      bestOpen = slot.open;
    }
  }
  return best;
}

} // namespace sockdispatch
