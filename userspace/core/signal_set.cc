#include "core/signal_set.h"

#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>

namespace sockdispatch {

SignalSet::SignalSet(event_base *base, std::initializer_list<int> signals, Callback callback)
    : callback_(std::move(callback)) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int signo : signals) {
    sigaddset(&mask, signo);
  }
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    return;
  }
  fd_.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  if (!fd_) {
    return;
  }
  event_.reset(event_new(
      base, fd_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<SignalSet *>(ctx)->drain(); }, this));
  if (event_) {
    event_add(event_.get(), nullptr);
  }
}

SignalSet::~SignalSet() {
  event_.reset();
}

void SignalSet::drain() {
  signalfd_siginfo info{};
  while (::read(fd_.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
    callback_(static_cast<int>(info.ssi_signo));
  }
}

void resetSignalsAfterFork() {
  for (int signo : {SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE}) {
    std::signal(signo, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
}

} // namespace sockdispatch
