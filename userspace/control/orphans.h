#pragma once

#include "control/pinned_attachment.h"
#include "core/address.h"
#include "core/result.h"
#include "core/unique_fd.h"

#include <sys/types.h>

#include <cstdint>
#include <vector>

namespace sockdispatch {

// A worker whose master died, still serving from its own listener (docs/design/takeover.md).
struct OrphanedWorker {
  uint32_t slot = 0;
  pid_t pid = 0;
  UniqueFd pidfd; // signals and exit watching that a reused pid cannot misdirect
};

// The workers a dead master left serving its port.
struct Orphans {
  uint32_t masterPid = 0;
  SocketAddress address; // what their listeners are bound to (the group's address)
  std::vector<OrphanedWorker> workers;
  bool line = false;
  UniqueFd listener; // line: our copy of the line's one listener (pidfd_getfd)
};

// Finds, in the state of `port` whose master is gone, the workers that still serve it. On the
// eBPF path a slot's pid counts only while it holds that slot's listener (the socket whose
// cookie the `sockets` map keeps, found by the kernel's listener dump and /proc/PID/fd); in
// line mode, while it holds the line's listener, of which a copy is taken for the new master.
// So a process that merely reused a worker's pid is never taken for one. No workers: the
// state is only stale.
Result<Orphans> findOrphans(PinnedAttachment &pins, uint16_t port);

} // namespace sockdispatch
