#pragma once

#include "core/result.h"
#include "core/unique_fd.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

namespace sockdispatch {

// The line's channel: fixed plain messages over a SOCK_SEQPACKET socketpair, each carrying
// 0..kMaxFdsPerMessage descriptors with SCM_RIGHTS in one sendmsg. The master's control
// channel to a worker and the worker-to-worker line speak the same messages.

inline constexpr uint32_t kLineMagic = 0x53444c31; // "SDL1": protocol version 1
// The kernel's SCM_MAX_FD: the most descriptors one SCM_RIGHTS message may carry.
inline constexpr size_t kMaxFdsPerMessage = 253;

enum class LineMessageType : uint32_t {
  // Accepted connections, 1..kMaxFdsPerMessage of them. Master to the first worker, and
  // worker to its successor. `hops` counts the workers that passed them on; `sequence` is
  // the number the master gave the first of them (the ticket of round_robin and friends).
  kConnections = 1,
  // Master to worker: the write end of the channel to its new successor (1 fd), or none
  // (0 fds): the worker is now the last of the line and keeps everything. `sequence`: the
  // successor's slot (what the worker passes on is counted queued there).
  kSuccessor = 2,
  // Master to worker: stop taking connections, pass arrivals on, finish, exit ("pipe of
  // death"). No fds.
  kStopGracefully = 3,
  // Master to worker: re-read the configuration. No fds.
  kReload = 4,
  // Worker to master: the worker's loop is armed and reads its line channel. No fds.
  kReady = 5,
  // Worker to master: connections the worker cannot keep nor pass on (it is stopping and has
  // no successor, or its successor's channel broke). The master re-inserts them at the head
  // of the line. 1..kMaxFdsPerMessage fds.
  kReturned = 6,
  // Master to worker, while the attachment stops: once stopping with no connection left, do
  // not exit yet; a predecessor may still be passing to this worker's input. No fds.
  kHoldExit = 7,
  // Master to worker: nothing more can reach this worker's input (every worker before it is
  // gone, the master holds nothing back): take what is queued there, then exit when done.
  kMayExit = 8,
};

// The most descriptors a message of `type` may carry; 0 for types that carry none and for
// unknown types.
size_t maxFdsFor(LineMessageType type);
// Whether `raw` names a LineMessageType.
bool knownMessageType(uint32_t raw);

struct LineMessage {
  uint32_t magic = kLineMagic;
  uint32_t type = 0;  // LineMessageType
  uint32_t count = 0; // descriptors attached; sendFds() sets it
  uint32_t hops = 0;  // workers the connections have passed
  uint64_t sequence = 0;

  static LineMessage make(LineMessageType type, uint64_t sequence = 0, uint32_t hops = 0) {
    LineMessage message;
    message.type = static_cast<uint32_t>(type);
    message.sequence = sequence;
    message.hops = hops;
    return message;
  }
  [[nodiscard]] LineMessageType messageType() const { return static_cast<LineMessageType>(type); }
};
static_assert(sizeof(LineMessage) == 24, "LineMessage is the wire format: no padding");
static_assert(std::is_trivially_copyable_v<LineMessage> && std::is_standard_layout_v<LineMessage>);

// The syscalls the channel makes, injectable so tests can make them fail (EAGAIN, EINTR,
// a short control buffer). systemChannelSyscalls() calls the kernel.
class ChannelSyscalls {
public:
  virtual ~ChannelSyscalls() = default;
  virtual ssize_t sendMessage(int fd, const msghdr *message, int flags) = 0;
  virtual ssize_t receiveMessage(int fd, msghdr *message, int flags) = 0;
};
ChannelSyscalls &systemChannelSyscalls();

// A connected SOCK_SEQPACKET pair, both ends non-blocking and close-on-exec.
Result<std::pair<UniqueFd, UniqueFd>> makeChannelPair();

// Sends `message` with `fds` attached in one sendmsg. magic and count are filled in here.
// The caller keeps ownership of `fds`: after success the peer holds its own copies and the
// caller closes its originals; on failure nothing was sent and the caller still has them.
// Never blocks. Error codes: EAGAIN (socket buffer full: wait for writability and retry),
// EPIPE/ECONNRESET (peer gone), ETOOMANYREFS (too many descriptors in flight for this user),
// EINVAL (too many fds for the type), EINTR (interrupted on every bounded retry).
Result<void> sendFds(int fd, LineMessage message, std::span<const int> fds,
                     ChannelSyscalls &sys = systemChannelSyscalls());

// What one receive() produced: a message and the descriptors it carried (owned here, so
// nothing leaks), or the peer's end of the channel closed.
struct Received {
  bool peerClosed = false;
  LineMessage message{};
  std::vector<UniqueFd> fds;
};

// Receives one message. Never blocks: EAGAIN means nothing is queued. A message that breaks
// the protocol (wrong length or magic, unknown type, truncated control data, a control
// message other than SCM_RIGHTS, more or fewer fds than `count`, fds on a type that carries
// none) is an Error with code EPROTO that says what was wrong; every fd that arrived with it
// is closed before receive() returns.
Result<Received> receive(int fd, ChannelSyscalls &sys = systemChannelSyscalls());

// Whether `error` only means "try again when the socket is ready".
inline bool wouldBlock(const Error &error) {
  return error.code == EAGAIN || error.code == EWOULDBLOCK;
}

} // namespace sockdispatch
