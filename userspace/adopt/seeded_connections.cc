#include "adopt/seeded_connections.h"

namespace sockdispatch {

void SeededConnections::dropSlot(uint32_t slot) {
  for (auto it = slotOf_.begin(); it != slotOf_.end();) {
    it = it->second == slot ? slotOf_.erase(it) : std::next(it);
  }
}

std::map<uint32_t, uint64_t> SeededConnections::closedSince(const std::set<uint64_t> &open) {
  std::map<uint32_t, uint64_t> closed;
  for (auto it = slotOf_.begin(); it != slotOf_.end();) {
    if (open.count(it->first) == 0) {
      ++closed[it->second];
      it = slotOf_.erase(it);
    } else {
      ++it;
    }
  }
  return closed;
}

std::map<uint32_t, uint64_t> SeededConnections::perSlot() const {
  std::map<uint32_t, uint64_t> counts;
  for (const auto &[inode, slot] : slotOf_) {
    ++counts[slot];
  }
  return counts;
}

} // namespace sockdispatch
