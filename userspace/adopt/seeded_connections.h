#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>

namespace sockdispatch {

// The connections a service held open when it was adopted. They were born before their
// listener was tagged, so the kernel-side count never sees them (foreign-load.md, "Drift"):
// adopt adds them to their worker's slot itself, and takes each away once a dump no longer
// lists it as open. Nothing else writes these: no race with the tracing program's counts.
class SeededConnections {
public:
  void add(uint32_t slot, uint64_t inode) { slotOf_[inode] = slot; }
  // Those of `slot` no longer count (the slot's listener left).
  void dropSlot(uint32_t slot);
  // Forgets every seeded connection missing from `open` (the live connections now) and
  // returns how many of them each slot had.
  std::map<uint32_t, uint64_t> closedSince(const std::set<uint64_t> &open);
  // Per slot, how many are seeded.
  [[nodiscard]] std::map<uint32_t, uint64_t> perSlot() const;
  [[nodiscard]] bool empty() const { return slotOf_.empty(); }
  [[nodiscard]] size_t size() const { return slotOf_.size(); }

private:
  std::map<uint64_t, uint32_t> slotOf_; // inode -> slot
};

} // namespace sockdispatch
