#pragma once

#include "bpf/scoreboard.h"
#include "core/event_ptr.h"
#include "dispatch/dispatch.h"
#include "dispatch/listener.h"
#include "line/line_dispatcher.h"

#include <memory>
#include <optional>
#include <vector>

namespace sockdispatch {

// The line fallback as the master drives it (docs/design/line.md): the master accepts on the
// attachment's one listener and hands connections to the head of the line (LineDispatcher);
// this links each worker to the next one that takes connections (kSuccessor over its control
// channel) and re-links the line whenever a worker starts, leaves or dies. What was queued for
// a worker that died is read back and sent again. The line is the workers in slot order, the
// order the policies count positions in (linePosition()), so the decisions the workers make
// match the kernel program's.
class LineDispatch final : public Dispatch {
public:
  // `listeners`: a group of one, the socket the master accepts on.
  LineDispatch(ListenerGroup listeners, Scoreboard scoreboard);

  [[nodiscard]] const char *name() const override { return "line"; }
  [[nodiscard]] const SocketAddress &address() const override { return address_; }
  [[nodiscard]] uint32_t firstGenerationSize(const AttachOptions &options) const override;
  void connect(event_base *base, const WorkerRoster &roster) override;
  Result<void> start() override;
  Result<void> openSlot(uint32_t slot, const AttachOptions &options) override;
  Result<void> beforeFork(uint32_t slot) override;
  void forkFailed(uint32_t slot) override;
  void forked(uint32_t slot) override;
  WorkerSockets takeInChild(uint32_t slot) override;
  void exited(uint32_t slot) override;
  void retiring(uint32_t slot) override;
  void released(uint32_t /*slot*/) override {}
  void stopping() override;
  void stopped() override;

private:
  [[nodiscard]] std::optional<uint32_t> successorOf(uint32_t slot) const;
  // The first slot from `from` on that takes connections (from 0: the head); while stopping,
  // the first whose worker still runs.
  [[nodiscard]] std::optional<uint32_t> firstFrom(uint32_t from) const;
  [[nodiscard]] bool full() const;
  void relink();
  // While stopping: every running worker is held from exiting (kHoldExit) until nothing more
  // can reach its input, which is when every worker before it on the line is gone and the
  // dispatcher holds no connection back; then it is released (kMayExit). A worker that
  // exited at once could miss what its predecessor passed a moment later.
  void holdExits();
  void releaseExits();
  void tell(uint32_t slot, LineMessageType type);

  SocketAddress address_;
  UniqueFd listener_; // until connect() hands it to the dispatcher
  Scoreboard scoreboard_;
  event_base *base_ = nullptr;
  const WorkerRoster *roster_ = nullptr;
  std::unique_ptr<LineDispatcher> dispatcher_;
  EventPtr relinkTimer_; // retries a re-linking the control channels could not take at once
  std::vector<std::optional<uint32_t>> toldSuccessor_; // by slot: where it passes, as last told
  std::vector<bool> exitHeld_;                         // by slot: told kHoldExit, not kMayExit
  bool stopping_ = false;
};

} // namespace sockdispatch
