#pragma once

#include "config/options.h"

#include <cstdint>

namespace sockdispatch {

// The dynamic pool's decision (Apache prefork's MinSpare/MaxSpare idea, read from our
// scoreboard), taken once a second from the serving generation's open connections and size.
// Busy (more than --pool-busy-conns open per worker on average): add workers, 1, 2, 4 ...
// per second (capped at kMaxGrowStep), up to --max-workers. Idle (fewer than a quarter of
// that) for --pool-idle-seconds in a row: retire one worker, down to --min-workers.
class PoolSizing {
public:
  static constexpr int kMaxGrowStep = 8;

  struct Decision {
    int add = 0;         // workers to start now
    bool retire = false; // retire one worker now
  };

  // One look. `options` must describe a dynamic pool (maxWorkers > 0).
  Decision decide(uint64_t open, int size, const AttachOptions &options);
  // Not in a state to size the pool (stopping, starting, reloading): start counting afresh.
  void reset();

private:
  int growStep_ = 1;
  int idleTicks_ = 0;
};

} // namespace sockdispatch
