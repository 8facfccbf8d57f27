#pragma once

#include "core/event_ptr.h"
#include "core/unique_fd.h"
#include "dispatch/intake.h"

namespace sockdispatch {

// The reuseport path's intake: the worker accepts on its own listener in the group (the
// kernel program already chose this worker for each connection queued there). A full worker
// stops accepting (its slot is marked full, so the program chooses others); out of
// descriptors, it pauses for 100 ms instead of spinning on a listener it cannot accept from.
class ListenerIntake final : public Intake {
public:
  ListenerIntake(UniqueFd listener, uint32_t slot, uint64_t maxConnections);

  bool start(event_base *base, IntakeSink &sink) override;
  [[nodiscard]] uint64_t connectionLimit() const override { return maxConnections_; }
  void setFull(bool full) override;
  void drain() override;
  void changeSuccessor(Received &received) override;

private:
  void pause();

  UniqueFd fd_;
  uint32_t slot_;
  uint64_t maxConnections_;
  IntakeSink *sink_ = nullptr;
  ListenerPtr listener_;
  EventPtr resumeTimer_;
  bool paused_ = false;
};

} // namespace sockdispatch
