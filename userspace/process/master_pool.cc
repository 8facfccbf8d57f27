// The dynamic pool: once a second the master asks PoolSizing (pool_sizing.h) whether to grow
// or shrink the serving generation, and adds or retires workers exactly as a reload does
// it, so neither loses a connection.
#include "process/master.h"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace sockdispatch {

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
    pool_.reset();
    return;
  }
  auto live = slotsOf(generation_);
  uint64_t open = 0;
  for (uint32_t slot : live) {
    open += scoreboard_.snapshot(slot).open;
  }
  const auto size = static_cast<int>(live.size());
  PoolSizing::Decision decision = pool_.decide(open, size, options);
  if (decision.add > 0) {
    // While a slot cannot be opened, this is asked again every second: the fault's own line,
    // once per interval, says so.
    if (!poolFailing_) {
      spdlog::info("pool: {} open connections on {} workers; adding {}", open, size, decision.add);
    }
    int add = decision.add;
    for (auto &worker : workers_) {
      if (add == 0) {
        break;
      }
      if (worker.generation != 0 || worker.pid != 0) {
        continue;
      }
      if (auto taken = takeSlot(worker.slot, generation_, options_); !taken) {
        poolFailing_ = true;
        if (auto heldBack = poolFaults_.admit(std::chrono::steady_clock::now())) {
          spdlog::error("pool: {}; the running workers serve{}", taken.error().message(),
                        heldBackSuffix(*heldBack));
        }
        return;
      }
      poolFailing_ = false;
      if (!spawn(worker.slot, false)) {
        retire(worker.slot);
        return;
      }
      --add;
    }
    return;
  }
  if (decision.retire) {
    uint32_t last = *std::max_element(live.begin(), live.end());
    spdlog::info("pool: {} open connections on {} workers; retiring worker {}", open, size, last);
    retire(last);
  }
}

} // namespace sockdispatch
