#pragma once

#include "core/event_ptr.h"
#include "core/log_limiter.h"
#include "core/unique_fd.h"
#include "dispatch/intake.h"

#include <vector>

namespace sockdispatch {

// A worker's part of the line fallback (docs/design/line.md): connections arrive on its input
// channel, in batches; for each one the worker decides with the attachment's policy
// (decideOnLine, the function the kernel program runs) whether it keeps the connection or
// passes it to its successor. Connections it passes on travel in one message per run of
// consecutive tickets, so every worker down the line sees each connection's number. What it
// passes on is counted queued for its successor until the successor reads it (line_handoff.h).
class LineIntake final : public Intake {
public:
  // `input`: the read end of its own input; `successor`: the write end of the next worker's
  // (none when it is last), and its slot. `maxConnections` is lowered to what the descriptor limit
  // allows. `sys`: the channel's syscalls (the kernel's; a test's to make them fail).
  LineIntake(UniqueFd input, UniqueFd successor, uint32_t successorSlot, uint32_t slot,
             Scoreboard scoreboard, uint64_t maxConnections,
             ChannelSyscalls &sys = systemChannelSyscalls());

  bool start(event_base *base, IntakeSink &sink) override;
  [[nodiscard]] uint64_t connectionLimit() const override { return maxConnections_; }
  void setFull(bool /*full*/) override {} // a full worker passes on: decideOnLine reads it
  void drain() override;
  void changeSuccessor(Received &received) override;
  // The line's master sets TCP_NODELAY on its listener before it accepts (LineDispatcher).
  [[nodiscard]] bool deliversNoDelay() const override { return true; }

private:
  // Takes up to `messages` messages from the input (fewer when it is empty).
  void onInput(int messages);
  void take(Received &received);
  void passOn(LineMessage message, std::vector<UniqueFd> fds);
  void keep(UniqueFd fd);

  UniqueFd input_;
  UniqueFd successor_;
  uint32_t successorSlot_;
  uint32_t slot_;
  Scoreboard scoreboard_;
  uint64_t maxConnections_;
  ChannelSyscalls *sys_;
  IntakeSink *sink_ = nullptr;
  EventPtr inputEvent_;
  LogLimiter unpassed_; // a successor's input that takes nothing: logged once per interval
};

} // namespace sockdispatch
