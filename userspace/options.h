#pragma once

#include "http_message.h"

#include <chrono>
#include <cstdint>
#include <string>

namespace sockdispatch {

// Process exit codes the CLI promises to scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;      // a runtime failure (bind, BPF load, ...)
inline constexpr int kExitUsage = 2;        // bad flag, value or configuration
inline constexpr int kExitFatalConfig = 78; // a worker that must not be respawned (EX_CONFIG)

// Everything `sockdispatch attach` is told.
struct AttachOptions {
  uint16_t port = 0;
  std::string bind = "0.0.0.0";
  int workers = 1;
  int backlog = 511;
  std::string root; // empty: the built-in page
  std::chrono::seconds shutdownTimeout{10};
  HttpLimits limits;
  bool verbose = false;
};

} // namespace sockdispatch
