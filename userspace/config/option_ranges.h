#pragma once

#include "sockdispatch/abi.h"

#include <cstdint>

namespace sockdispatch {

// The accepted values of each numeric `attach` setting. The command-line flags and the
// configuration file check against these same ranges, so the two never disagree.
struct IntRange {
  int64_t min;
  int64_t max;

  [[nodiscard]] constexpr bool contains(int64_t value) const {
    return value >= min && value <= max;
  }
};

inline constexpr IntRange kPortRange{0, 65535};
inline constexpr IntRange kWorkersRange{1, SD_MAX_WORKERS};
inline constexpr IntRange kBacklogRange{1, 65535};
inline constexpr IntRange kShutdownTimeoutRange{0, 3600}; // seconds
inline constexpr IntRange kDeferAcceptRange{0, 600};      // seconds; 0: off
inline constexpr IntRange kOrphanTimeoutRange{0, 3600};   // seconds; 0: leave with the master
inline constexpr IntRange kPoolBusyConnsRange{1, 1000000};
inline constexpr IntRange kPoolIdleSecondsRange{1, 3600};
inline constexpr IntRange kMaxConnsRange{0, 10000000}; // 0: no limit
inline constexpr IntRange kLineBatchRange{1, 253};     // SCM_MAX_FD
inline constexpr IntRange kMaxTargetBytesRange{64, int64_t{1} << 20};
inline constexpr IntRange kMaxHeaderBytesRange{256, int64_t{1} << 24};
inline constexpr IntRange kMaxHeaderFieldsRange{1, 100000};
inline constexpr IntRange kMaxBodyBytesRange{0, int64_t{1} << 32};
inline constexpr IntRange kMaxPendingOutputRange{4096, int64_t{1} << 30};
inline constexpr IntRange kMaxKeepaliveRequestsRange{0, int64_t{1} << 30};
inline constexpr IntRange kAgentPortRange{0, 65535};        // 0: no agent
inline constexpr IntRange kAgentCapacityRange{0, 10000000}; // 0: --max-conns
inline constexpr IntRange kDrainGraceRange{0, 3600};        // seconds; 0: drain at once

// The HTTP timeouts, in seconds (fractions allowed).
struct SecondsRange {
  double min;
  double max;

  [[nodiscard]] constexpr bool contains(double value) const { return value >= min && value <= max; }
};
inline constexpr SecondsRange kTimeoutSecondsRange{0.001, 86400.0};
// How long a cached small file is answered without a stat (0: a stat on every request).
inline constexpr SecondsRange kFileCacheValidRange{0.0, 3600.0};

} // namespace sockdispatch
