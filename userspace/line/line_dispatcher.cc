#include "line/line_dispatcher.h"

#include "core/socket_options.h"
#include "core/timeval.h"
#include "line/handshake_drain.h"
#include "line/line_handoff.h"
#include "sockdispatch/abi.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <string_view>

namespace sockdispatch {

namespace {

// How soon a batch the line could not take is offered again, and how soon a full line (every
// worker at --max-conns) or a descriptor shortage is looked at again. The listen backlog holds
// the new connections meanwhile.
constexpr auto kChannelRetry = std::chrono::milliseconds(2);
constexpr auto kFullLineRetry = std::chrono::milliseconds(10);
constexpr auto kDescriptorRetry = std::chrono::milliseconds(100);
// Batches accepted per readiness before the loop serves the line again.
constexpr int kAcceptRounds = 4;
// An input's send buffer, the smallest the kernel allows (it doubles this to 4,608 bytes): 6
// messages unread fill it, where the default 212,992 bytes held 278. A worker that stops reading
// its input (frozen, stuck) is then passed over after a handful of batches instead of hundreds
// of connections (docs/design/line.md, "Queued connections and a worker that stops reading").
constexpr int kInputSendBuffer = 1;

constexpr std::string_view kUnavailable = "HTTP/1.1 503 Service Unavailable\r\n"
                                          "Content-Length: 0\r\n"
                                          "Retry-After: 1\r\n"
                                          "Connection: close\r\n\r\n";

bool outOfDescriptors(int code) {
  return code == EMFILE || code == ENFILE || code == ENOBUFS || code == ENOMEM;
}

} // namespace

LineDispatcher::LineDispatcher(event_base *base, UniqueFd listener, size_t maxBatch,
                               Scoreboard scoreboard, Hooks hooks, ChannelSyscalls &sys,
                               SystemCalls &calls)
    : base_(base), listener_(std::move(listener)),
      maxBatch_(std::clamp<size_t>(maxBatch, 1, kMaxFdsPerMessage)), scoreboard_(scoreboard),
      hooks_(std::move(hooks)), sys_(&sys), calls_(calls), inputs_(SD_MAX_WORKERS) {}

Result<void> LineDispatcher::start() {
  if (!setNoDelay(listener_.get())) {
    // Workers count on it (LineIntake::deliversNoDelay): a fault here is a real one.
    return osError("set TCP_NODELAY on the line's listener");
  }
  acceptEvent_.reset(event_new(
      base_, listener_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<LineDispatcher *>(ctx)->onAcceptable(); },
      this));
  retryTimer_.reset(evtimer_new(
      base_,
      [](evutil_socket_t, short, void *ctx) { static_cast<LineDispatcher *>(ctx)->resume(); },
      this));
  if (!acceptEvent_ || !retryTimer_) {
    return logicError("watch the line's listener", "libevent could not create its events");
  }
  enableAccepting();
  return {};
}

Result<void> LineDispatcher::ensureChannel(uint32_t slot) {
  Input &input = inputs_.at(slot);
  if (input.read) {
    return {};
  }
  auto pair = makeChannelPair();
  if (!pair) {
    return pair.error();
  }
  // The master's and the predecessor's copies of the write end are one socket: one bound.
  if (::setsockopt(pair->first.get(), SOL_SOCKET, SO_SNDBUF, &kInputSendBuffer,
                   sizeof(kInputSendBuffer)) != 0) {
    return osError("bound a line input's send buffer");
  }
  input.write = std::move(pair->first);
  input.read = std::move(pair->second);
  return {};
}

int LineDispatcher::inputWriteEnd(uint32_t slot) const {
  return slot < inputs_.size() ? inputs_[slot].write.get() : -1;
}

void LineDispatcher::handOver(uint32_t slot) {
  inputs_.at(slot).recovery.reset();
}

void LineDispatcher::recoverFrom(uint32_t slot) {
  Input &input = inputs_.at(slot);
  if (!input.read) {
    return;
  }
  if (!input.recovery) {
    struct Target {
      LineDispatcher *self;
      uint32_t slot;
    };
    input.recovery.reset(event_new(
        base_, input.read.get(), EV_READ | EV_PERSIST,
        [](evutil_socket_t fd, short, void *ctx) {
          auto *self = static_cast<LineDispatcher *>(ctx);
          for (uint32_t s = 0; s < self->inputs_.size(); ++s) {
            if (self->inputs_[s].read.get() == fd) {
              self->onRecoverable(s);
              return;
            }
          }
        },
        this));
    event_add(input.recovery.get(), nullptr);
  }
  onRecoverable(slot);
}

void LineDispatcher::onRecoverable(uint32_t slot) {
  size_t recovered = 0;
  for (;;) {
    auto received = receive(inputs_[slot].read.get(), *sys_);
    if (!received) {
      if (!wouldBlock(received.error())) {
        spdlog::error("slot {}'s line input: {}", slot, received.error().message());
        continue; // the refused message's descriptors are closed; read on
      }
      break;
    }
    if (received->peerClosed) {
      break; // not while the dispatcher holds the write end
    }
    if (received->message.messageType() != LineMessageType::kConnections) {
      continue;
    }
    receivedFromInput(scoreboard_, slot, received->fds.size());
    recovered += received->fds.size();
    pending_.push_back(Batch{std::move(received->fds)});
  }
  if (recovered == 0) {
    return;
  }
  spdlog::info("recovered {} connection{} queued for worker {}; handing them to the line again",
               recovered, recovered == 1 ? "" : "s", slot);
  flush();
  if (!pending_.empty()) {
    pauseAccepting(kChannelRetry);
  }
}

LineDispatcher::WorkerEnds LineDispatcher::takeInChild(uint32_t slot,
                                                       std::optional<uint32_t> successor) {
  WorkerEnds ends;
  ends.input = std::move(inputs_.at(slot).read);
  if (successor) {
    ends.successor = std::move(inputs_.at(*successor).write);
  }
  // The parent's loop owns the events: release them untouched (freeing one would unregister
  // the parent's descriptor from the epoll set both processes share).
  for (Input &input : inputs_) {
    (void)input.recovery.release();
    input.read.reset();
    input.write.reset();
  }
  (void)acceptEvent_.release();
  (void)retryTimer_.release();
  ends.listener = std::move(listener_);
  pending_.clear();
  return ends;
}

void LineDispatcher::onAcceptable() {
  if (!pending_.empty()) {
    pauseAccepting(kChannelRetry);
    return;
  }
  if (hooks_.lineFull()) {
    pauseAccepting(kFullLineRetry);
    return;
  }
  for (int round = 0; round < kAcceptRounds && accepting_; ++round) {
    std::vector<UniqueFd> batch;
    acceptBatch(batch);
    if (batch.empty()) {
      return;
    }
    bool whole = batch.size() == maxBatch_;
    pending_.push_back(Batch{std::move(batch)});
    flush();
    if (!pending_.empty()) {
      pauseAccepting(kChannelRetry);
      return;
    }
    if (!whole) {
      return;
    }
  }
}

void LineDispatcher::acceptBatch(std::vector<UniqueFd> &batch) {
  while (batch.size() < maxBatch_) {
    UniqueFd fd(calls_.accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (fd) {
      batch.push_back(std::move(fd));
      continue;
    }
    int code = errno;
    if (code == EINTR || code == ECONNABORTED) {
      continue;
    }
    if (outOfDescriptors(code)) {
      // Not a spin: the connections wait in the backlog until descriptors are free again.
      if (auto heldBack = acceptFaults_.admit(calls_.now())) {
        spdlog::warn("Failed to accept on the line's listener: {}; pausing accepts for {} ms{}",
                     std::strerror(code), kDescriptorRetry.count(), heldBackSuffix(*heldBack));
      }
      pauseAccepting(kDescriptorRetry);
    } else if (code != EAGAIN && code != EWOULDBLOCK) {
      spdlog::error("Failed to accept on the line's listener: {}", std::strerror(code));
    }
    return;
  }
}

void LineDispatcher::flush() {
  const bool held = !pending_.empty();
  while (!pending_.empty() && sendToLine(pending_.front())) {
    sequence_ += pending_.front().fds.size();
    pending_.pop_front(); // the worker holds its own copies now
  }
  if (held && pending_.empty() && hooks_.emptied) {
    hooks_.emptied();
  }
}

// To the head, or past it: a worker whose input is full (frozen, stuck) is passed over for the
// next one, which decides as if the connections had come through it (a choice behind it is
// kept, so the one passed over is not chosen). False when no input of the line took it.
bool LineDispatcher::sendToLine(Batch &batch) {
  std::optional<uint32_t> target = hooks_.head();
  for (uint32_t tried = 0; target && tried < SD_MAX_WORKERS; ++tried) {
    if (inputWriteEnd(*target) < 0) {
      return false;
    }
    auto sent =
        handToInput(scoreboard_, *target, inputWriteEnd(*target),
                    LineMessage::make(LineMessageType::kConnections, sequence_), batch.fds, *sys_);
    if (sent) {
      return true;
    }
    if (!inputFull(sent.error())) {
      spdlog::error("worker {}'s line input: {}", *target, sent.error().message());
    } else if (auto heldBack = passedOver_.admit(std::chrono::steady_clock::now())) {
      // Back-pressure, not a fault: a worker that reads slower than the line fills its input
      // under a burst too. `status` shows one that stays behind (its `queued`).
      spdlog::info("worker {}'s line input takes nothing ({}): passing connections to the next "
                   "worker{}",
                   *target, sent.error().message(), heldBackSuffix(*heldBack));
    }
    target = hooks_.successor(*target);
  }
  return false; // kept here; offered again by the retry timer
}

void LineDispatcher::pauseAccepting(std::chrono::milliseconds retry) {
  if (accepting_) {
    event_del(acceptEvent_.get());
    accepting_ = false;
  }
  if (retryTimer_ && evtimer_pending(retryTimer_.get(), nullptr) == 0) {
    timeval when = toTimeval(retry);
    evtimer_add(retryTimer_.get(), &when);
  }
}

void LineDispatcher::enableAccepting() {
  if (!accepting_ && !stopped_ && acceptEvent_) {
    event_add(acceptEvent_.get(), nullptr);
    accepting_ = true;
  }
}

void LineDispatcher::resume() {
  flush();
  if (!pending_.empty()) {
    pauseAccepting(kChannelRetry);
    return;
  }
  if (stopped_) {
    return;
  }
  if (hooks_.lineFull()) {
    pauseAccepting(kFullLineRetry);
    return;
  }
  enableAccepting();
}

void LineDispatcher::stopAccepting(std::chrono::milliseconds handshakeBound) {
  if (stopped_) {
    return;
  }
  if (accepting_) {
    event_del(acceptEvent_.get());
    accepting_ = false;
  }
  stopped_ = true;
  acceptEvent_.reset();
  if (listener_) {
    // What the kernel completes until no handshake is in progress goes down the line.
    size_t reset = drainHandshakes(listener_.get(), handshakeBound, [this] {
      for (;;) {
        std::vector<UniqueFd> batch;
        acceptBatch(batch);
        if (batch.empty()) {
          break;
        }
        pending_.push_back(Batch{std::move(batch)});
      }
      flush();
    });
    if (reset > 0) {
      spdlog::warn("{} handshake{} still in progress {} ms into the stop: reset", reset,
                   reset == 1 ? "" : "s", handshakeBound.count());
    }
  }
  // The workers hold copies of the listener (for a takeover): closing ours would leave it
  // listening, completing handshakes nobody accepts. Shut down, it stops listening for all
  // of them at once, as closing the last copy would.
  if (listener_ && ::shutdown(listener_.get(), SHUT_RD) != 0) {
    spdlog::warn("Failed to shut the listener down: {}", std::strerror(errno));
  }
  listener_.reset();
  flush();
  if (!pending_.empty()) {
    pauseAccepting(kChannelRetry);
  }
}

size_t LineDispatcher::answerLeftovers() {
  for (uint32_t slot = 0; slot < inputs_.size(); ++slot) {
    if (inputs_[slot].read) {
      inputs_[slot].recovery.reset();
      onRecoverable(slot);
    }
  }
  size_t answered = 0;
  for (Batch &batch : pending_) {
    for (UniqueFd &fd : batch.fds) {
      (void)::send(fd.get(), kUnavailable.data(), kUnavailable.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ::shutdown(fd.get(), SHUT_WR);
      ++answered;
    }
  }
  pending_.clear();
  return answered;
}

} // namespace sockdispatch
