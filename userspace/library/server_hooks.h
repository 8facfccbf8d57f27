#pragma once

#include "bpf/scoreboard.h"
#include "library/handler.h"

#include <event2/event.h>

#include <functional>
#include <memory>

namespace sockdispatch {

// What a worker offers the code that makes its handler: who it is, its event loop (for
// objects that must live on it, such as an offload pool's completion event) and its
// scoreboard slot (for load it wants the balancer to see).
struct WorkerContext {
  const WorkerIdentity &identity;
  event_base *base;
  Scoreboard &scoreboard;
};

// How an embedding program (the library's Server) replaces the built-in handler choice.
// Carried in AttachOptions, so it reaches every worker of every generation unchanged.
struct ServerHooks {
  // Called in the worker after fork, before it serves. The handler lives until the worker's
  // loop ends and is freed before the loop is (so it may own loop objects); its destructor
  // is the worker's exit hook. nullptr: the worker cannot serve and exits with
  // kExitFatalConfig (not respawned).
  std::function<std::unique_ptr<Handler>(WorkerContext &context)> makeHandler;
};

} // namespace sockdispatch
