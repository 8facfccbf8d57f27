#pragma once

#include "http_message.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace sockdispatch {

// Process exit codes the CLI promises to scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // a runtime failure (bind, BPF load, ...)
inline constexpr int kExitUsage = 2;        // bad flag, value or configuration
inline constexpr int kExitFatalConfig = 78; // a worker that must not be respawned (EX_CONFIG)

struct ServerHooks; // server_hooks.h

// Everything `sockdispatch attach` is told.
struct AttachOptions {
  uint16_t port = 0;
  std::string bind = "0.0.0.0";
  int workers = 1;
  // A dynamic pool when maxWorkers > 0: between minWorkers and maxWorkers workers, grown while
  // the workers hold more than poolBusyConnections open connections each on average, shrunk
  // once they have held fewer than a quarter of that for poolIdleSeconds.
  int minWorkers = 0;
  int maxWorkers = 0;
  int poolBusyConnections = 16;
  int poolIdleSeconds = 10;
  int backlog = 511;
  std::string root; // empty: the built-in page
  std::chrono::seconds shutdownTimeout{10};
  HttpLimits limits;
  bool verbose = false;
  // Set by the library's Server: makes each worker's handler instead of the built-in choice.
  std::shared_ptr<const ServerHooks> hooks;
};

// How many workers a generation starts with.
inline int initialWorkers(const AttachOptions &options) {
  return options.maxWorkers > 0 ? options.minWorkers : options.workers;
}

} // namespace sockdispatch
