#pragma once

#include "core/result.h"
#include "core/unique_fd.h"

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

namespace sockdispatch {

// One process's descriptor of a socket.
struct SocketHolder {
  pid_t pid = 0;
  int fd = -1;
  bool polls = false; // the process watches this descriptor in one of its epoll sets
};

// Socket inode -> every descriptor that refers to it.
using SocketHolders = std::map<uint64_t, std::vector<SocketHolder>>;

// Finds the descriptors of the sockets `inodes` in every process this one may inspect
// (/proc/PID/fd, and /proc/PID/fdinfo of the process's epoll descriptors), leaving out
// `exclude` (ourselves). A process that exits during the scan is skipped; one whose
// descriptors we may not read (ptrace access: another user's, without CAP_SYS_PTRACE) is
// added to `hidden` when given.
SocketHolders findSocketHolders(const std::set<uint64_t> &inodes, pid_t exclude,
                                std::vector<pid_t> *hidden = nullptr);

// The process that serves the listener `inode` (docs/design/adopt.md): the holder that polls
// it; with no poller (a blocking accept), the holder that holds the fewest of the listeners in
// `holders` (a master holds them all), the newest process among equals. nullopt when nobody
// holds it.
std::optional<SocketHolder> workerOf(uint64_t inode, const SocketHolders &holders);

// A descriptor of the socket `inode` of our own, copied from one of its holders (pidfd_getfd)
// and checked to be that socket (a holder may have reused the number meanwhile). A refusal
// of ptrace access (EPERM) is returned at once: every holder would refuse the same.
Result<UniqueFd> copyHeldSocket(uint64_t inode, const SocketHolders &holders);

} // namespace sockdispatch
