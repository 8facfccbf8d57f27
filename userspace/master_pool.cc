// The dynamic pool (Apache prefork's MinSpare/MaxSpare idea, read from our scoreboard): once
// a second the master compares the serving generation's open connections with its size.
// Busy: it adds workers, 1, 2, 4 ... per second (capped), up to --max-workers. Idle for
// --pool-idle-seconds: it retires one worker per second, down to --min-workers. Workers are
// added and retired exactly as a reload does it, so neither loses a connection.
#include "master.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace sockdispatch {

namespace {

constexpr int kMaxGrowStep = 8;

} // namespace

void Master::watchPool() {
  poolTimer_.reset(event_new(
      base_.get(), -1, EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<Master *>(ctx)->checkPool(); }, this));
  timeval second{1, 0};
  event_add(poolTimer_.get(), &second);
}

void Master::checkPool() {
  const AttachOptions &options = *options_;
  if (options.maxWorkers == 0 || stopping_ || !ready_ || nextGeneration_ != 0) {
    poolGrowStep_ = 1;
    poolIdleTicks_ = 0;
    return;
  }
  auto live = slotsOf(generation_);
  uint64_t open = 0;
  for (uint32_t slot : live) {
    open += scoreboard_.snapshot(slot).open;
  }
  const auto size = static_cast<int>(live.size());
  const auto busy = static_cast<uint64_t>(options.poolBusyConnections);
  if (open > busy * static_cast<uint64_t>(size) && size < options.maxWorkers) {
    poolIdleTicks_ = 0;
    int add = std::min(poolGrowStep_, options.maxWorkers - size);
    poolGrowStep_ = std::min(poolGrowStep_ * 2, kMaxGrowStep);
    spdlog::info("pool: {} open connections on {} workers; adding {}", open, size, add);
    for (auto &worker : workers_) {
      if (add == 0) {
        break;
      }
      if (worker.generation != 0 || worker.pid != 0) {
        continue;
      }
      if (auto taken = takeSlot(worker.slot, generation_, options_); !taken) {
        spdlog::error("pool: {}", taken.error().message());
        return;
      }
      if (!spawn(worker.slot, false)) {
        retire(worker.slot);
        return;
      }
      --add;
    }
    return;
  }
  poolGrowStep_ = 1;
  if (open * 4 >= busy * static_cast<uint64_t>(size) || size <= options.minWorkers) {
    poolIdleTicks_ = 0;
    return;
  }
  if (++poolIdleTicks_ < options.poolIdleSeconds) {
    return;
  }
  uint32_t last = *std::max_element(live.begin(), live.end());
  spdlog::info("pool: {} open connections on {} workers; retiring worker {}", open, size, last);
  retire(last);
}

} // namespace sockdispatch
