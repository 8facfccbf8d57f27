#pragma once

#include "bpf/scoreboard.h"
#include "sockdispatch/walk.h"

#include <optional>
#include <span>

namespace sockdispatch {

// The C++ side of the balancing policies: the walks of sockdispatch/walk.h, the same steps the
// BPF program runs as bpf_loop callbacks, here in a plain loop over a scoreboard snapshot. It
// is the line fallback's decision and the tests' reference.

// skip_load over the line of selectable slots, in slot order. Mutates `slots` exactly as
// the kernel program mutates its map (each visited worker's `skipped` grows by one) and
// returns the chosen slot index, or nullopt when no slot is selectable.
// What a step of sockdispatch/walk.h reads of a slot, from its snapshot (the program fills the
// same view from its map).
sd_slot_view slotView(const SlotSnapshot &slot);

std::optional<uint32_t> skipLoadChoose(std::span<SlotSnapshot> slots);

// least_conn: the selectable slot with the least load (open plus queued connections, busy
// workers last), scanning from slot ticket % slots.size() and wrapping, the first seen on
// ties (the kernel's ticket is its config.rr_cursor, incremented per connection).
// `now`: CLOCK_MONOTONIC ns, for sd_busy_load (0: business ignored).
std::optional<uint32_t> leastConnChoose(std::span<const SlotSnapshot> slots, uint64_t now = 0,
                                        uint64_t ticket = 0);

// round_robin: the live slot at position ticket % live (the kernel's ticket is its
// config.rr_cursor, incremented per connection).
std::optional<uint32_t> roundRobinChoose(std::span<const SlotSnapshot> slots, uint64_t ticket);

// weighted: the live slot whose share of the total weight holds ticket % total; with a total
// weight of 0, round_robin.
std::optional<uint32_t> weightedChoose(std::span<const SlotSnapshot> slots, uint64_t ticket);

// p2c over two distinct live slots, at position a % live and at the position that
// sd_p2c_second_position draws from b among the others: the lower load wins, the first on ties.
std::optional<uint32_t> p2cChoose(std::span<const SlotSnapshot> slots, uint32_t a, uint32_t b,
                                  uint64_t now = 0);

} // namespace sockdispatch
