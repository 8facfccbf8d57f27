#pragma once

#include "bpf/scoreboard.h"
#include "dispatch/dispatch.h"
#include "line/fd_channel.h"

#include <event2/event.h>

#include <chrono>
#include <cstdint>
#include <memory>

namespace sockdispatch {

// What an intake delivers to: the worker's one connection start.
class IntakeSink {
public:
  virtual ~IntakeSink() = default;
  // A new connection: the worker owns `fd` from now on.
  virtual void takeConnection(int fd) = 0;
  // Taking connections paused (out of descriptors) or resumed: the worker counts itself full
  // meanwhile, so no policy chooses it.
  virtual void setPaused(bool paused) = 0;
};

// Where a worker's new connections come from, the worker side of its dispatch mode: its own
// listener in the reuseport group (ListenerIntake), or its input on the line (LineIntake).
// The worker serves what either delivers the same way.
class Intake {
public:
  virtual ~Intake() = default;
  // Starts delivering to `sink` from `base`'s loop; false when it cannot (logged).
  virtual bool start(event_base *base, IntakeSink &sink) = 0;
  // The most connections the worker may hold (0: no limit): --max-conns, lowered where the
  // intake needs descriptors in reserve.
  [[nodiscard]] virtual uint64_t connectionLimit() const = 0;
  // The worker is full (or no longer): it takes no more for now.
  virtual void setFull(bool full) = 0;
  // A stop begins: what is already queued for this worker is taken; nothing new is chosen
  // for it from now on.
  virtual void drain() = 0;
  // The master named this worker's successor on the line (kSuccessor).
  virtual void changeSuccessor(Received &received) = 0;
  // Whether the connections delivered already have TCP_NODELAY, set once on the listener
  // they come from (accepted sockets inherit it), so the worker need not set it on each.
  [[nodiscard]] virtual bool deliversNoDelay() const = 0;
};

// The intake for what the dispatch mode handed the worker (its listener, or its line ends).
// `deferAccept`: TCP_DEFER_ACCEPT for a listener the worker accepts on (AttachOptions).
std::unique_ptr<Intake> makeIntake(WorkerSockets &sockets, uint32_t slot, Scoreboard scoreboard,
                                   uint64_t maxConnections, std::chrono::seconds deferAccept);

} // namespace sockdispatch
