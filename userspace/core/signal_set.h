#pragma once

#include "core/event_ptr.h"
#include "core/unique_fd.h"

#include <functional>
#include <initializer_list>

namespace sockdispatch {

// Signals delivered through a signalfd watched by a libevent loop: the signals are blocked
// and read as data, so nothing runs in signal context and no process-wide libevent signal
// state is shared between the master and the workers it forks.
class SignalSet {
public:
  using Callback = std::function<void(int signo)>;

  // Blocks `signals` for this process and watches them on `base`.
  SignalSet(event_base *base, std::initializer_list<int> signals, Callback callback);
  ~SignalSet();
  SignalSet(const SignalSet &) = delete;
  SignalSet &operator=(const SignalSet &) = delete;

  [[nodiscard]] bool valid() const { return event_ != nullptr; }
  // In a freshly forked child: close the inherited fd without touching the parent's loop.
  void abandonInChild() { (void)fd_.release(); }
  [[nodiscard]] int fd() const { return fd_.get(); }

private:
  void drain();

  UniqueFd fd_;
  EventPtr event_;
  Callback callback_;
};

// Unblocks every signal and restores default dispositions (a new worker starts clean).
void resetSignalsAfterFork();

} // namespace sockdispatch
