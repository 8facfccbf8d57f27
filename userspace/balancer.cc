#include "balancer.h"

#include "sockdispatch/policy.h"

#include <vector>

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

namespace {

std::vector<const SlotSnapshot *> liveLine(std::span<const SlotSnapshot> slots) {
  std::vector<const SlotSnapshot *> live;
  for (const auto &slot : slots) {
    if (sd_slot_selectable(slot.state, slot.draining) != 0) {
      live.push_back(&slot);
    }
  }
  return live;
}

} // namespace

std::optional<uint32_t> roundRobinChoose(std::span<const SlotSnapshot> slots, uint64_t ticket) {
  auto live = liveLine(slots);
  if (live.empty()) {
    return std::nullopt;
  }
  return live[ticket % live.size()]->slot;
}

std::optional<uint32_t> weightedChoose(std::span<const SlotSnapshot> slots, uint64_t ticket) {
  auto live = liveLine(slots);
  uint64_t total = 0;
  for (const auto *slot : live) {
    total += slot->weight;
  }
  if (total == 0) {
    return roundRobinChoose(slots, ticket);
  }
  __u64 remaining = ticket % total;
  for (const auto *slot : live) {
    if (sd_weighted_takes(&remaining, slot->weight) != 0) {
      return slot->slot;
    }
  }
  return std::nullopt;
}

std::optional<uint32_t> p2cChoose(std::span<const SlotSnapshot> slots, uint32_t a, uint32_t b,
                                  uint64_t now) {
  auto live = liveLine(slots);
  if (live.empty()) {
    return std::nullopt;
  }
  auto count = static_cast<uint32_t>(live.size());
  uint32_t firstPosition = a % count;
  const SlotSnapshot *first = live[firstPosition];
  const SlotSnapshot *second = live[sd_p2c_second_position(firstPosition, b, count)];
  return sd_p2c_second_wins(
             sd_busy_load(sd_slot_load(first->open, first->queued), first->busySince, now),
             sd_busy_load(sd_slot_load(second->open, second->queued), second->busySince, now)) != 0
             ? second->slot
             : first->slot;
}

std::optional<uint32_t> leastConnChoose(std::span<const SlotSnapshot> slots, uint64_t now,
                                        uint64_t ticket) {
  std::optional<uint32_t> best;
  uint64_t bestOpen = 0;
  auto count = static_cast<uint32_t>(slots.size());
  if (count == 0) {
    return best;
  }
  auto start = static_cast<uint32_t>(ticket % count);
  for (uint32_t step = 0; step < count; ++step) {
    const SlotSnapshot &slot = slots[sd_scan_slot(start, step, count)];
    if (!sd_slot_selectable(slot.state, slot.draining)) {
      continue;
    }
    uint64_t load = sd_busy_load(sd_slot_load(slot.open, slot.queued), slot.busySince, now);
    if (!best || load < bestOpen) {
      best = slot.slot;
      bestOpen = load;
    }
  }
  return best;
}

} // namespace sockdispatch
