#include "dispatch/intake.h"

#include "dispatch/listener_intake.h"
#include "line/line_intake.h"

namespace sockdispatch {

std::unique_ptr<Intake> makeIntake(WorkerSockets &sockets, uint32_t slot, Scoreboard scoreboard,
                                   uint64_t maxConnections, std::chrono::seconds deferAccept) {
  if (sockets.listener) {
    return std::make_unique<ListenerIntake>(std::move(sockets.listener), slot, maxConnections,
                                            deferAccept);
  }
  return std::make_unique<LineIntake>(std::move(sockets.lineInput),
                                      std::move(sockets.lineSuccessor), sockets.lineSuccessorSlot,
                                      slot, scoreboard, maxConnections);
}

} // namespace sockdispatch
