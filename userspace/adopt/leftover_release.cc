#include "adopt/leftover_release.h"

#include "adopt/group_scan.h"
#include "adopt/socket_holders.h"
#include "bpf/dispatch_program.h"

#include <unistd.h>

#include <set>

namespace sockdispatch {

Result<bool> releaseLeftoverSteering(uint16_t port, uint32_t programId) {
  auto scan = GroupScan::load(port);
  if (!scan) {
    return scan.error();
  }
  auto listeners = scan.value()->scan();
  if (!listeners) {
    return listeners.error();
  }
  std::set<uint64_t> inodes;
  for (const ListenerRecord &listener : listeners.value()) {
    if (listener.programId == programId) {
      inodes.insert(listener.inode);
    }
  }
  if (inodes.empty()) {
    return false;
  }
  SocketHolders holders = findSocketHolders(inodes, ::getpid());
  Error last = logicError("release the program " + std::to_string(programId) + " on port " +
                              std::to_string(port),
                          "no process this one may inspect holds the group's listeners");
  for (uint64_t inode : inodes) {
    auto copy = copyHeldSocket(inode, holders);
    if (!copy) {
      last = copy.error();
      continue;
    }
    if (auto detached = detachReuseportProgram(copy->get()); !detached) {
      return detached.error();
    }
    return true;
  }
  return last;
}

} // namespace sockdispatch
