#pragma once

#include "config/options.h"
#include "core/address.h"
#include "core/result.h"
#include "core/unique_fd.h"

#include <event2/event.h>

#include <cstddef>
#include <cstdint>

namespace sockdispatch {

// What a worker process is handed at fork: its end of the control channel, and what its
// dispatch mode gives it to take connections from.
struct WorkerSockets {
  UniqueFd listener;              // reuseport: its slot's socket in the group
  UniqueFd control;               // its end of the control channel to the master
  UniqueFd lineInput;             // line: where connections arrive (read end)
  UniqueFd lineSuccessor;         // line: where it passes them (write end); none when last
  uint32_t lineSuccessorSlot = 0; // line: the successor's slot (its `queued` counts them)
  // line: a copy of the master's listener, never accepted on while the master lives; it keeps
  // the listener open if the master dies, for a new master to take over
  // (docs/design/takeover.md), and the orphaned worker accepts on it meanwhile
  UniqueFd lineListener;
};

// The master's worker table, as a dispatch mode may read it.
class WorkerRoster {
public:
  virtual ~WorkerRoster() = default;
  // How many slots there are (SD_MAX_WORKERS).
  [[nodiscard]] virtual uint32_t slotCount() const = 0;
  // A process runs in the slot.
  [[nodiscard]] virtual bool running(uint32_t slot) const = 0;
  // It runs and takes new connections: it is not retiring and the attachment is not stopping.
  [[nodiscard]] virtual bool takesConnections(uint32_t slot) const = 0;
  // The master's end of the slot's control channel; -1 when it has none.
  [[nodiscard]] virtual int controlChannel(uint32_t slot) const = 0;
  // The serving generation's options.
  [[nodiscard]] virtual const AttachOptions &options() const = 0;
};

// How connections reach the workers, as the master drives it (docs/architecture.md): the
// master keeps the worker table (generations, respawns, retirement, stops) and tells its
// dispatch mode each event that concerns a slot's sockets. Two modes exist: reuseport (one
// listener per slot in a SO_REUSEPORT group, the kernel program chooses; reuseport_dispatch.h)
// and the line (the master accepts on one listener, the workers pass connections on;
// line_dispatch.h). The master never asks which one it has.
class Dispatch {
public:
  virtual ~Dispatch() = default;

  // "ebpf" or "line": what the listening line, `status` and the built-in page call it.
  [[nodiscard]] virtual const char *name() const = 0;
  [[nodiscard]] virtual const SocketAddress &address() const = 0;
  // How many slots (0, 1, ...) the first generation fills.
  [[nodiscard]] virtual uint32_t firstGenerationSize(const AttachOptions &options) const = 0;

  // Once, in the master's constructor: its loop and its worker table.
  virtual void connect(event_base *base, const WorkerRoster &roster) = 0;
  // Once the first generation has been forked: connections start to flow.
  virtual Result<void> start() = 0;

  // A free slot joins a generation (a reload's, or the pool's).
  virtual Result<void> openSlot(uint32_t slot, const AttachOptions &options) = 0;
  // Just before a worker is forked into the slot, and after the fork failed or succeeded.
  virtual Result<void> beforeFork(uint32_t slot) = 0;
  virtual void forkFailed(uint32_t slot) = 0;
  virtual void forked(uint32_t slot) = 0;
  // In the forked child: its sockets. Every other descriptor the mode holds is closed.
  virtual WorkerSockets takeInChild(uint32_t slot) = 0;

  // The slot's worker died (it will be respawned, or its slot freed).
  virtual void exited(uint32_t slot) = 0;
  // The slot's worker is asked to leave (reload, pool shrink, graceful stop): nothing new
  // reaches it from now on, and what is queued for it goes to others.
  virtual void retiring(uint32_t slot) = 0;
  // The slot is free again.
  virtual void released(uint32_t slot) = 0;

  // A stop of any kind begins: no new connections; what was already queued is served.
  virtual void stopping() = 0;
  // Every worker has gone: the last call.
  virtual void stopped() = 0;
};

} // namespace sockdispatch
