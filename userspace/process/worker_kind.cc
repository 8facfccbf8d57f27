#include "process/worker_kind.h"

#include "process/worker.h"

namespace sockdispatch {

int NativeWorkerKind::runInChild(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
                                 Scoreboard scoreboard, const char *mode) {
  Worker worker(options, slot, std::move(sockets), scoreboard, mode);
  return worker.run();
}

} // namespace sockdispatch
