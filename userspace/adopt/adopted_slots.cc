#include "adopt/adopted_slots.h"

namespace sockdispatch {

std::optional<uint32_t> AdoptedSlots::assign(uint64_t inode) {
  if (auto existing = slotOf(inode)) {
    return existing;
  }
  for (uint32_t slot = 0; slot < inodes_.size(); ++slot) {
    if (inodes_[slot] == 0) {
      inodes_[slot] = inode;
      return slot;
    }
  }
  return std::nullopt;
}

void AdoptedSlots::release(uint32_t slot) {
  if (slot < inodes_.size()) {
    inodes_[slot] = 0;
  }
}

std::optional<uint32_t> AdoptedSlots::slotOf(uint64_t inode) const {
  for (uint32_t slot = 0; slot < inodes_.size(); ++slot) {
    if (inodes_[slot] == inode && inode != 0) {
      return slot;
    }
  }
  return std::nullopt;
}

std::optional<uint64_t> AdoptedSlots::inodeOf(uint32_t slot) const {
  if (slot >= inodes_.size() || inodes_[slot] == 0) {
    return std::nullopt;
  }
  return inodes_[slot];
}

uint32_t AdoptedSlots::slotsInUse() const {
  for (auto slot = static_cast<uint32_t>(inodes_.size()); slot > 0; --slot) {
    if (inodes_[slot - 1] != 0) {
      return slot;
    }
  }
  return 0;
}

AdoptedSlots::Changes AdoptedSlots::compare(const std::set<uint64_t> &listenersNow) const {
  Changes changes;
  for (uint64_t inode : listenersNow) {
    if (!slotOf(inode)) {
      changes.joined.push_back(inode);
    }
  }
  for (uint32_t slot = 0; slot < inodes_.size(); ++slot) {
    if (inodes_[slot] != 0 && listenersNow.count(inodes_[slot]) == 0) {
      changes.left.push_back(slot);
    }
  }
  return changes;
}

} // namespace sockdispatch
