#pragma once

#include "core/result.h"

#include <chrono>
#include <cstdint>
#include <string>

namespace sockdispatch {

// `detach` and `reload` from outside the master: the master's pid comes from the attachment's
// pinned config (verified against the process's open map fds before any signal is sent), the
// request is a signal, and the answer is read back from the pins.

enum class DetachResult {
  NotAttached,       // no pins for the port: nothing to do
  Stopped,           // the master stopped gracefully and removed its pins
  StaleRemoved,      // the master was already gone; its leftover pins were removed
  ExitedLeavingPins, // the master exited on the signal without removing its pins; removed
};

struct DetachOutcome {
  DetachResult result = DetachResult::NotAttached;
  uint32_t masterPid = 0;
  std::chrono::milliseconds took{0};
  // The stale state was an `adopt`'s: the id of the steering program it left attached to the
  // service's group (the caller takes it off: releaseLeftoverSteering), else 0.
  uint32_t leftoverProgramId = 0;
  // The stale state was an attachment whose workers still served (docs/design/takeover.md):
  // how many of them were asked to leave (SIGTERM).
  size_t orphansAsked = 0;
};

// Sends SIGQUIT (graceful stop) to the port's master and waits up to `timeout` until it has
// exited and its pins are gone. Fails with ETIMEDOUT when the master is still running then.
Result<DetachOutcome> detachPort(uint16_t port, std::chrono::milliseconds timeout);

struct ReloadOutcome {
  uint32_t masterPid = 0;
  uint64_t generationBefore = 0;
  uint64_t generationAfter = 0;
};

// Sends SIGHUP to the port's master and waits up to `timeout` for config.generation to move,
// which the master does once the new generation of workers serves. Fails with ENOENT when
// the port is not attached, ESRCH when its master is gone, and ETIMEDOUT when the generation
// did not move in time (the master logs why).
Result<ReloadOutcome> reloadPort(uint16_t port, std::chrono::milliseconds timeout);

} // namespace sockdispatch
