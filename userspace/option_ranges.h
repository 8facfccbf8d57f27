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

} // namespace sockdispatch
