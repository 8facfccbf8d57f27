#include "dispatch/listener_intake.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sockdispatch {

namespace {

constexpr timeval kAcceptPause{0, 100'000};

} // namespace

ListenerIntake::ListenerIntake(UniqueFd listener, uint32_t slot, uint64_t maxConnections)
    : fd_(std::move(listener)), slot_(slot), maxConnections_(maxConnections) {}

bool ListenerIntake::start(event_base *base, IntakeSink &sink) {
  sink_ = &sink;
  listener_.reset(evconnlistener_new(
      base,
      [](evconnlistener *, evutil_socket_t fd, sockaddr *, int, void *ctx) {
        static_cast<ListenerIntake *>(ctx)->sink_->takeConnection(fd);
      },
      this, LEV_OPT_CLOSE_ON_EXEC, 0, fd_.get()));
  if (!listener_) {
    spdlog::error("Failed to listen on the slot {} socket", slot_);
    return false;
  }
  evconnlistener_set_error_cb(listener_.get(), [](evconnlistener *, void *ctx) {
    auto *self = static_cast<ListenerIntake *>(ctx);
    int code = errno;
    if (code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM) {
      spdlog::warn("Failed to accept: {}; pausing accepts for 100 ms", std::strerror(code));
      self->pause();
    } else {
      spdlog::debug("accept failed: {}", std::strerror(code));
    }
  });
  resumeTimer_.reset(evtimer_new(
      base,
      [](evutil_socket_t, short, void *ctx) {
        auto *self = static_cast<ListenerIntake *>(ctx);
        self->paused_ = false;
        self->sink_->setPaused(false);
      },
      this));
  return true;
}

void ListenerIntake::setFull(bool full) {
  if (!listener_) {
    return;
  }
  if (full) {
    evconnlistener_disable(listener_.get());
  } else {
    evconnlistener_enable(listener_.get());
  }
}

// Out of descriptors: the worker counts itself full (and so disables accepting) until the
// timer resumes it.
void ListenerIntake::pause() {
  if (paused_) {
    return;
  }
  paused_ = true;
  sink_->setPaused(true);
  evtimer_add(resumeTimer_.get(), &kAcceptPause);
}

// Takes every connection the kernel already completed for this listener, then closes it. A
// connection that arrives after the last accept finds the listener closed, and the kernel
// migrates it (with the rest of the queue) to a live worker through the program.
void ListenerIntake::drain() {
  if (!fd_) {
    return;
  }
  if (listener_) {
    evconnlistener_disable(listener_.get());
  }
  for (;;) {
    int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      break; // EAGAIN: the queue is empty (EMFILE and the like: the kernel migrates the rest)
    }
    sink_->takeConnection(fd);
  }
  listener_.reset();
  fd_.reset();
}

void ListenerIntake::changeSuccessor(Received & /*received*/) {
  spdlog::warn("ignored a line successor: this worker accepts on its own listener");
}

} // namespace sockdispatch
