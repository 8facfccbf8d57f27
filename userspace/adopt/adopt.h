#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sockdispatch {

struct AdoptOptions {
  uint16_t port = 0;
  std::optional<pid_t> pid;                // only the listeners this process holds
  std::string bind;                        // only the listeners on this address ("" any)
  uint32_t policy = 1;                     // enum sd_policy; least_conn
  bool force = false;                      // replace another program attached to the group
  std::chrono::milliseconds interval{100}; // how often the group is scanned again
  bool verbose = false;
};

// `sockdispatch adopt`: steers the running service's reuseport group on `options.port` with
// the dispatch program (docs/design/adopt.md) until the group goes away (exit 0) or a
// SIGTERM, SIGINT or SIGQUIT releases it (exit 0). Prints "adopted ..." on stdout once the
// program steers the group. Refusals exit 2, runtime failures 1.
int runAdopt(const AdoptOptions &options);

} // namespace sockdispatch
