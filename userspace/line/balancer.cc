#include "line/balancer.h"

#include "sockdispatch/walk.h"

#include <algorithm>
#include <type_traits>

namespace sockdispatch {

namespace {

// One walk of kind `kind` over `slots`, what bpf_loop(nr_slots, callback) does in the
// program: every iteration opens with sd_walk_visits and runs the shared step. A skip_load
// visit counts its skip on the snapshot (the program: an atomic add on the map), so only
// skip_load walks writable slots.
template <typename Slot> void walkOnce(sd_walk &walk, sd_step kind, std::span<Slot> slots) {
  for (uint32_t step = 0; step < SD_MAX_WORKERS; ++step) {
    uint32_t index = 0;
    if (sd_walk_visits(&walk, kind, step, &index) == 0) {
      return;
    }
    sd_slot_view view = slotView(slots[index]);
    long next = sd_walk_step(&walk, kind, index, &view);
    if constexpr (!std::is_const_v<Slot>) {
      if (sd_walk_counts_skip(kind, &view) != 0) {
        slots[index].skipped += 1;
      }
    }
    if (next == SD_WALK_STOP) {
      return;
    }
  }
}

sd_walk begin(std::span<const SlotSnapshot> slots, uint64_t now) {
  sd_walk walk{};
  sd_walk_begin(&walk, static_cast<uint32_t>(std::min<size_t>(slots.size(), SD_MAX_WORKERS)), now);
  return walk;
}

// p2c's sample: the live slot at position walk.ticket of the list, read into its view.
void sample(sd_walk &walk, std::span<const SlotSnapshot> slots) {
  uint32_t index = sd_live_slot(&walk, walk.ticket);
  sd_slot_view view = slotView(slots[index]);
  sd_p2c_sample(&walk, index, &view);
}

std::optional<uint32_t> chosen(const sd_walk &walk, std::span<const SlotSnapshot> slots) {
  if (walk.found == 0) {
    return std::nullopt;
  }
  return slots[walk.chosen].slot;
}

} // namespace

sd_slot_view slotView(const SlotSnapshot &slot) {
  sd_slot_view view{};
  view.state = slot.state;
  view.draining = slot.draining;
  view.weight = slot.weight;
  view.open = slot.open;
  view.queued = slot.queued;
  view.skipped = slot.skipped;
  view.busy_since = slot.busySince;
  return view;
}

std::optional<uint32_t> skipLoadChoose(std::span<SlotSnapshot> slots) {
  sd_walk walk = begin(slots, 0);
  walkOnce(walk, SD_STEP_COUNT_LIVE, std::span<const SlotSnapshot>(slots));
  walkOnce(walk, SD_STEP_SKIP_LOAD, slots);
  return chosen(walk, slots);
}

std::optional<uint32_t> roundRobinChoose(std::span<const SlotSnapshot> slots, uint64_t ticket) {
  sd_walk walk = begin(slots, 0);
  walkOnce(walk, SD_STEP_COUNT_LIVE, slots);
  if (walk.nr_live == 0) {
    return std::nullopt;
  }
  sd_ticket_begin(&walk, ticket, 0);
  sd_take_nth_live(&walk);
  return chosen(walk, slots);
}

std::optional<uint32_t> weightedChoose(std::span<const SlotSnapshot> slots, uint64_t ticket) {
  sd_walk walk = begin(slots, 0);
  walkOnce(walk, SD_STEP_COUNT_LIVE, slots);
  if (walk.nr_live == 0) {
    return std::nullopt;
  }
  if (sd_ticket_begin(&walk, ticket, 1) != 0) {
    walkOnce(walk, SD_STEP_WEIGHTED, slots);
  } else {
    sd_take_nth_live(&walk);
  }
  return chosen(walk, slots);
}

std::optional<uint32_t> p2cChoose(std::span<const SlotSnapshot> slots, uint32_t a, uint32_t b,
                                  uint64_t now) {
  sd_walk walk = begin(slots, now);
  walkOnce(walk, SD_STEP_COUNT_LIVE, slots);
  if (walk.nr_live == 0) {
    return std::nullopt;
  }
  sd_p2c_first(&walk, a);
  sample(walk, slots);
  sd_p2c_second(&walk, b);
  sample(walk, slots);
  sd_p2c_decide(&walk);
  return chosen(walk, slots);
}

std::optional<uint32_t> leastConnChoose(std::span<const SlotSnapshot> slots, uint64_t now,
                                        uint64_t ticket) {
  sd_walk walk = begin(slots, now);
  if (walk.nr_slots > 0) {
    sd_least_conn_begin(&walk, ticket);
  }
  walkOnce(walk, SD_STEP_LEAST_CONN, slots);
  return chosen(walk, slots);
}

} // namespace sockdispatch
