#include "process/pool_sizing.h"

#include <algorithm>

namespace sockdispatch {

PoolSizing::Decision PoolSizing::decide(uint64_t open, int size, const AttachOptions &options) {
  const auto busy = static_cast<uint64_t>(options.poolBusyConnections);
  const auto workers = static_cast<uint64_t>(size);
  if (open > busy * workers && size < options.maxWorkers) {
    idleTicks_ = 0;
    Decision grow;
    grow.add = std::min(growStep_, options.maxWorkers - size);
    growStep_ = std::min(growStep_ * 2, kMaxGrowStep);
    return grow;
  }
  growStep_ = 1;
  if (open * 4 >= busy * workers || size <= options.minWorkers) {
    idleTicks_ = 0;
    return {};
  }
  if (++idleTicks_ < options.poolIdleSeconds) {
    return {};
  }
  Decision shrink;
  shrink.retire = true;
  return shrink;
}

void PoolSizing::reset() {
  growStep_ = 1;
  idleTicks_ = 0;
}

} // namespace sockdispatch
