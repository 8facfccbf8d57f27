#pragma once

#include "sockdispatch/abi.h"

#include <array>
#include <cstdint>
#include <optional>
#include <set>
#include <vector>

namespace sockdispatch {

// Which slot holds which adopted listener (by socket inode): a listener keeps its slot for as
// long as it exists; a new one takes the lowest free slot.
class AdoptedSlots {
public:
  // The slot for a new listener, nullopt when all SD_MAX_WORKERS are taken.
  std::optional<uint32_t> assign(uint64_t inode);
  void release(uint32_t slot);

  [[nodiscard]] std::optional<uint32_t> slotOf(uint64_t inode) const;
  [[nodiscard]] std::optional<uint64_t> inodeOf(uint32_t slot) const;
  // Slots 0 .. slotsInUse()-1 cover every adopted listener (sd_config.nr_slots).
  [[nodiscard]] uint32_t slotsInUse() const;
  [[nodiscard]] bool empty() const { return slotsInUse() == 0; }

  // Against the listeners a scan found: those new to us, and the slots whose listener is gone.
  struct Changes {
    std::vector<uint64_t> joined;
    std::vector<uint32_t> left;
    [[nodiscard]] bool any() const { return !joined.empty() || !left.empty(); }
  };
  [[nodiscard]] Changes compare(const std::set<uint64_t> &listenersNow) const;

private:
  std::array<uint64_t, SD_MAX_WORKERS> inodes_{}; // 0: free (no socket has inode 0)
};

} // namespace sockdispatch
