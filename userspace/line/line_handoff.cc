#include "line/line_handoff.h"

#include <vector>

namespace sockdispatch {

bool inputFull(const Error &error) {
  return wouldBlock(error) || error.code == ENOBUFS || error.code == ETOOMANYREFS;
}

Result<void> handToInput(Scoreboard &board, uint32_t slot, int input, LineMessage message,
                         std::span<const UniqueFd> fds, ChannelSyscalls &sys) {
  std::vector<int> raw;
  raw.reserve(fds.size());
  for (const UniqueFd &fd : fds) {
    raw.push_back(fd.get());
  }
  board.addQueued(slot, raw.size());
  auto sent = sendFds(input, message, raw, sys);
  if (!sent) {
    board.takeQueued(slot, raw.size());
  }
  return sent;
}

} // namespace sockdispatch
