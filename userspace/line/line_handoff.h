#pragma once

#include "bpf/scoreboard.h"
#include "core/result.h"
#include "core/unique_fd.h"
#include "line/fd_channel.h"

#include <cstdint>
#include <span>

namespace sockdispatch {

// Handing connections to a worker's input on the line, counted in its slot's `queued`: the
// connections sent to the worker and not yet received by it, as the kernel program counts
// those it chose for a worker and that wait in its listen queue. The least_conn and p2c
// policies count them in a worker's load, so a worker that stopped reading its input (frozen,
// stuck) stops being chosen as its input fills.
//
// Who counts: the sender adds before its sendmsg (so the receiver never reads a message that
// is not counted yet) and takes back what it could not send; the receiver takes off what it
// read (receivedFromInput). The master resets the count of a worker that died, and takes off
// what it reads back from that worker's input itself.

// Whether a send failed only because the input cannot take more now: its worker does not
// read it (frozen or stuck, the socket's queue is full: EAGAIN), the kernel is short of
// buffers (ENOBUFS), or too many descriptors are in flight for this user (ETOOMANYREFS).
// The connections are still the sender's, to keep or to hand elsewhere.
bool inputFull(const Error &error);

// Sends `fds` in one message to `slot`'s input (`input`: its write end), counted queued for
// the slot. On failure nothing was sent, the count is back as it was and the caller still
// owns `fds`; on success the receiver holds its own copies and the caller closes its own.
Result<void> handToInput(Scoreboard &board, uint32_t slot, int input, LineMessage message,
                         std::span<const UniqueFd> fds,
                         ChannelSyscalls &sys = systemChannelSyscalls());

// `count` connections were read from `slot`'s input (by its worker, or by the master
// recovering it): no longer queued there.
inline void receivedFromInput(Scoreboard &board, uint32_t slot, uint64_t count) {
  board.takeQueued(slot, count);
}

} // namespace sockdispatch
