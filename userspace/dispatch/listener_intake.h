#pragma once

#include "core/event_ptr.h"
#include "core/log_limiter.h"
#include "core/system_calls.h"
#include "core/unique_fd.h"
#include "dispatch/intake.h"

#include <chrono>

namespace sockdispatch {

// The reuseport path's intake: the worker accepts on its own listener in the group (the
// kernel program already chose this worker for each connection queued there). A full worker
// stops accepting (its slot is marked full, so the program chooses others). Out of
// descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), it pauses for 100 ms instead of
// spinning on a listener it cannot accept from, counting itself full meanwhile; the fault is
// logged once per kFaultLogInterval (docs/design/faults.md).
class ListenerIntake final : public Intake {
public:
  // `deferAccept`: TCP_DEFER_ACCEPT set on the listener at start (0: turned off).
  ListenerIntake(UniqueFd listener, uint32_t slot, uint64_t maxConnections,
                 std::chrono::seconds deferAccept, SystemCalls &calls = systemCalls());

  bool start(event_base *base, IntakeSink &sink) override;
  [[nodiscard]] uint64_t connectionLimit() const override { return maxConnections_; }
  void setFull(bool full) override;
  [[nodiscard]] bool deliversNoDelay() const override { return noDelay_; }
  void drain() override;
  void changeSuccessor(Received &received) override;

  // Accepting is paused after a fault, until the resume timer fires.
  [[nodiscard]] bool paused() const { return paused_; }

private:
  void onAcceptable();
  void pause(int code);
  void resume();
  // Watches the listener while neither full nor paused.
  void updateWatch();

  UniqueFd fd_;
  uint32_t slot_;
  uint64_t maxConnections_;
  std::chrono::seconds deferAccept_;
  SystemCalls &calls_;
  IntakeSink *sink_ = nullptr;
  EventPtr acceptEvent_;
  EventPtr resumeTimer_;
  LogLimiter faultLog_;
  bool noDelay_ = false;
  bool watching_ = false;
  bool full_ = false;
  bool paused_ = false;
};

} // namespace sockdispatch
