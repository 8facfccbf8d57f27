#pragma once

#include "result.h"
#include "unique_fd.h"

#include <cstdint>
#include <utility>

namespace sockdispatch {

// The master's channel to one worker (Apache's "pipe of death"): a SOCK_SEQPACKET socketpair
// carrying fixed plain messages. The master asks a worker to stop gracefully here first, and
// only then signals it; a worker that reads EOF knows its master is gone.
enum class ControlType : uint32_t {
  kStopGracefully = 1, // stop accepting, serve what is queued and in flight, then exit
};

struct ControlMessage {
  uint32_t magic;
  uint32_t type; // ControlType
};

inline constexpr uint32_t kControlMagic = 0x53444331; // "SDC1"

// Both ends, non-blocking and close-on-exec: first for the master, second for the worker.
Result<std::pair<UniqueFd, UniqueFd>> makeControlPair();

Result<void> sendControl(int fd, ControlType type);

enum class ControlRead {
  kMessage,  // `type` holds the request
  kEof,      // the other end is closed
  kNone,     // nothing to read now
  kMalformed // wrong size or magic: ignored
};
ControlRead receiveControl(int fd, ControlType &type);

} // namespace sockdispatch
