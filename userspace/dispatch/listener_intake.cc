#include "dispatch/listener_intake.h"

#include "core/socket_options.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sockdispatch {

namespace {

constexpr timeval kAcceptPause{0, 100'000};
// Accepts per readiness before the loop serves the open connections again (the listener
// stays readable: the next turn takes the rest). One, as nginx's default (multi_accept off):
// accepting until EAGAIN cost an accept4(2) that found nothing on most readiness (0.8 per
// connection under wrk -c64 Connection: close), more than the loop turns it saved
// (docs/design/request-cost.md).
constexpr int kAcceptsPerTurn = 1;

// Faults that pass once descriptors or memory are freed: worth a pause, not a spin.
bool outOfResources(int code) {
  return code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM;
}

} // namespace

ListenerIntake::ListenerIntake(UniqueFd listener, uint32_t slot, uint64_t maxConnections,
                               std::chrono::seconds deferAccept, SystemCalls &calls)
    : fd_(std::move(listener)), slot_(slot), maxConnections_(maxConnections),
      deferAccept_(deferAccept), calls_(calls) {}

bool ListenerIntake::start(event_base *base, IntakeSink &sink) {
  sink_ = &sink;
  int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    spdlog::error("Failed to make the slot {} socket non-blocking: {}", slot_,
                  std::strerror(errno));
    return false;
  }
  noDelay_ = setNoDelay(fd_.get());
  if (!setDeferAccept(fd_.get(), deferAccept_)) {
    // Only a cost: connections are then accepted at the handshake.
    spdlog::warn("Failed to set TCP_DEFER_ACCEPT on the slot {} socket: {}", slot_,
                 std::strerror(errno));
  }
  acceptEvent_.reset(event_new(
      base, fd_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<ListenerIntake *>(ctx)->onAcceptable(); },
      this));
  resumeTimer_.reset(evtimer_new(
      base, [](evutil_socket_t, short, void *ctx) { static_cast<ListenerIntake *>(ctx)->resume(); },
      this));
  if (!acceptEvent_ || !resumeTimer_) {
    spdlog::error("Failed to listen on the slot {} socket", slot_);
    return false;
  }
  updateWatch();
  return true;
}

void ListenerIntake::onAcceptable() {
  for (int accepted = 0; accepted < kAcceptsPerTurn && watching_;) {
    int fd = calls_.accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      ++accepted;
      sink_->takeConnection(fd); // may make the worker full: then the loop ends here
      continue;
    }
    int code = errno;
    if (code == EINTR || code == ECONNABORTED) {
      continue;
    }
    if (outOfResources(code)) {
      pause(code);
    } else if (code != EAGAIN && code != EWOULDBLOCK) {
      spdlog::debug("accept failed: {}", std::strerror(code));
    }
    return;
  }
}

void ListenerIntake::setFull(bool full) {
  full_ = full;
  updateWatch();
}

void ListenerIntake::updateWatch() {
  bool watch = acceptEvent_ && fd_ && !full_ && !paused_;
  if (watch == watching_) {
    return;
  }
  watching_ = watch;
  if (watch) {
    event_add(acceptEvent_.get(), nullptr);
  } else {
    event_del(acceptEvent_.get());
  }
}

// The worker counts itself full (its slot is marked so: the program sends new connections
// to others) until the timer resumes it.
void ListenerIntake::pause(int code) {
  if (auto heldBack = faultLog_.admit(calls_.now())) {
    spdlog::warn("Failed to accept on the slot {} socket: {}; pausing accepts for {} ms{}", slot_,
                 std::strerror(code), kAcceptPause.tv_usec / 1000, heldBackSuffix(*heldBack));
  }
  if (paused_) {
    return;
  }
  paused_ = true;
  updateWatch();
  sink_->setPaused(true);
  evtimer_add(resumeTimer_.get(), &kAcceptPause);
}

void ListenerIntake::resume() {
  paused_ = false;
  updateWatch();
  sink_->setPaused(false);
}

// Takes every connection the kernel already completed for this listener, then closes it. A
// connection that arrives after the last accept finds the listener closed, and the kernel
// migrates it (with the rest of the queue) to a live worker through the program.
void ListenerIntake::drain() {
  if (!fd_) {
    return;
  }
  if (watching_) {
    event_del(acceptEvent_.get());
    watching_ = false;
  }
  for (;;) {
    int fd = calls_.accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      break; // EAGAIN: the queue is empty (EMFILE and the like: the kernel migrates the rest)
    }
    sink_->takeConnection(fd);
  }
  resumeTimer_.reset();
  acceptEvent_.reset();
  fd_.reset();
}

void ListenerIntake::changeSuccessor(Received & /*received*/) {
  spdlog::warn("ignored a line successor: this worker accepts on its own listener");
}

} // namespace sockdispatch
