#pragma once

#include "core/result.h"

#include <event2/event.h>

namespace sockdispatch {

// Something the master serves on its own loop beside its workers (the status page, the
// agent responder for a balancer in front). A service opens its sockets before the master is
// built, so that a failure refuses the start before any worker runs; the master starts it on
// its loop before it forks the first worker, tells it when a stop begins, and makes every
// forked worker drop its descriptors. A service must never block the loop: the master's
// loop also reaps, respawns and, in line mode, accepts.
class MasterService {
public:
  virtual ~MasterService() = default;
  MasterService() = default;
  MasterService(const MasterService &) = delete;
  MasterService &operator=(const MasterService &) = delete;

  // Registers the service's events on the master's loop.
  virtual Result<void> start(event_base *base) = 0;
  // A stop (of any kind) has begun; the loop keeps running until every worker is gone.
  virtual void stopping() {}
  // In a freshly forked worker: close the inherited descriptors without touching the
  // master's loop (no libevent calls: that loop belongs to the parent).
  virtual void abandonInChild() = 0;
};

} // namespace sockdispatch
