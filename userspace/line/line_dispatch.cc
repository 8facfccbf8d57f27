#include "line/line_dispatch.h"

#include "core/socket_options.h"
#include "line/fd_channel.h"
#include "sockdispatch/abi.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace sockdispatch {

namespace {

constexpr timeval kRelinkRetry{0, 10'000};
// How long a stop waits for handshakes in progress to complete: past the server's first
// SYN-ACK retransmission (1 s), which a client whose final ACK was lost answers again.
constexpr std::chrono::milliseconds kHandshakeBound(2000);

} // namespace

LineDispatch::LineDispatch(ListenerGroup listeners, Scoreboard scoreboard)
    : address_(listeners.address), listener_(std::move(listeners.sockets.at(0))),
      scoreboard_(scoreboard), toldSuccessor_(SD_MAX_WORKERS), exitHeld_(SD_MAX_WORKERS, false) {}

uint32_t LineDispatch::firstGenerationSize(const AttachOptions &options) const {
  return static_cast<uint32_t>(initialWorkers(options));
}

void LineDispatch::connect(event_base *base, const WorkerRoster &roster) {
  base_ = base;
  roster_ = &roster;
  LineDispatcher::Hooks hooks;
  hooks.head = [this] { return firstFrom(0); };
  hooks.successor = [this](uint32_t slot) { return firstFrom(slot + 1); };
  hooks.lineFull = [this] { return full(); };
  hooks.emptied = [this] {
    if (stopping_) {
      releaseExits(); // what it held back reached the line
    }
  };
  // The line's workers are built-in ones (a COMMAND cannot take part in the line).
  if (!setDeferAccept(listener_.get(), roster.options().deferAccept)) {
    spdlog::warn("Failed to set TCP_DEFER_ACCEPT on the line's listener: {}", std::strerror(errno));
  }
  dispatcher_ = std::make_unique<LineDispatcher>(base, std::move(listener_),
                                                 static_cast<size_t>(roster.options().lineBatch),
                                                 scoreboard_, std::move(hooks));
}

Result<void> LineDispatch::start() {
  return dispatcher_->start();
}

Result<void> LineDispatch::openSlot(uint32_t slot, const AttachOptions & /*options*/) {
  return dispatcher_->ensureChannel(slot);
}

Result<void> LineDispatch::beforeFork(uint32_t slot) {
  if (auto made = dispatcher_->ensureChannel(slot); !made) {
    return made;
  }
  dispatcher_->handOver(slot); // the worker reads its input from now on
  toldSuccessor_[slot] = successorOf(slot);
  return {};
}

void LineDispatch::forkFailed(uint32_t slot) {
  dispatcher_->recoverFrom(slot);
}

void LineDispatch::forked(uint32_t /*slot*/) {
  relink(); // its predecessor passes to it from now on
}

WorkerSockets LineDispatch::takeInChild(uint32_t slot) {
  auto ends = dispatcher_->takeInChild(slot, toldSuccessor_[slot]);
  WorkerSockets sockets;
  sockets.lineInput = std::move(ends.input);
  sockets.lineSuccessor = std::move(ends.successor);
  sockets.lineSuccessorSlot = toldSuccessor_[slot].value_or(0);
  sockets.lineListener = std::move(ends.listener);
  return sockets;
}

void LineDispatch::exited(uint32_t slot) {
  // Its predecessor passes around it; what was already queued for it is sent again.
  toldSuccessor_[slot].reset();
  exitHeld_[slot] = false;
  relink();
  dispatcher_->recoverFrom(slot);
  if (stopping_) {
    releaseExits(); // after what it left was handed to the line
  }
}

void LineDispatch::retiring(uint32_t /*slot*/) {
  relink(); // nothing new is passed to it
}

void LineDispatch::stopping() {
  stopping_ = true;
  // What the kernel already queued goes down the line; nothing more is accepted.
  dispatcher_->stopAccepting(kHandshakeBound);
  relink(); // every worker keeps what reaches it now
  holdExits();
  releaseExits();
}

void LineDispatch::holdExits() {
  for (uint32_t slot = 0; slot < roster_->slotCount(); ++slot) {
    if (roster_->running(slot) && roster_->controlChannel(slot) >= 0) {
      tell(slot, LineMessageType::kHoldExit);
      exitHeld_[slot] = true;
    }
  }
}

void LineDispatch::releaseExits() {
  if (dispatcher_->holdsBack()) {
    return; // it goes to the first running worker, which waits for it
  }
  // Only the first running worker: each one after it has a predecessor that may still pass.
  for (uint32_t slot = 0; slot < roster_->slotCount(); ++slot) {
    if (!roster_->running(slot)) {
      continue;
    }
    if (exitHeld_[slot]) {
      tell(slot, LineMessageType::kMayExit);
      exitHeld_[slot] = false;
    }
    return;
  }
}

void LineDispatch::tell(uint32_t slot, LineMessageType type) {
  auto sent = sendFds(roster_->controlChannel(slot), LineMessage::make(type), {});
  if (!sent && sent.error().code != EPIPE && sent.error().code != ECONNRESET) {
    // Its stop deadline still bounds a hold it never hears lifted.
    spdlog::warn("worker {}: {}", slot, sent.error().message());
  }
}

void LineDispatch::stopped() {
  if (size_t answered = dispatcher_->answerLeftovers(); answered > 0) {
    spdlog::warn("{} connection{} reached the line after every worker had left: answered 503",
                 answered, answered == 1 ? "" : "s");
  }
}

std::optional<uint32_t> LineDispatch::successorOf(uint32_t slot) const {
  for (uint32_t next = slot + 1; next < roster_->slotCount(); ++next) {
    if (roster_->takesConnections(next)) {
      return next;
    }
  }
  return std::nullopt;
}

std::optional<uint32_t> LineDispatch::firstFrom(uint32_t from) const {
  bool anyTakes = false;
  for (uint32_t slot = 0; slot < roster_->slotCount(); ++slot) {
    anyTakes = anyTakes || roster_->takesConnections(slot);
  }
  for (uint32_t slot = from; slot < roster_->slotCount(); ++slot) {
    // Stopping: any worker still running keeps what reaches it (and answers it with close).
    if (anyTakes ? roster_->takesConnections(slot) : roster_->running(slot)) {
      return slot;
    }
  }
  return std::nullopt;
}

bool LineDispatch::full() const {
  const uint64_t limit = roster_->options().maxConnections;
  if (limit == 0) {
    return false;
  }
  bool anyWorker = false;
  for (uint32_t slot = 0; slot < roster_->slotCount(); ++slot) {
    if (!roster_->takesConnections(slot)) {
      continue;
    }
    anyWorker = true;
    if (scoreboard_.snapshot(slot).open < limit) {
      return false;
    }
  }
  return anyWorker;
}

void LineDispatch::relink() {
  bool retry = false;
  for (uint32_t slot = 0; slot < roster_->slotCount(); ++slot) {
    int channel = roster_->controlChannel(slot);
    if (!roster_->running(slot) || channel < 0) {
      continue;
    }
    std::optional<uint32_t> wanted = successorOf(slot);
    if (wanted == toldSuccessor_[slot]) {
      continue;
    }
    std::vector<int> fds;
    if (wanted) {
      fds.push_back(dispatcher_->inputWriteEnd(*wanted));
    }
    // The successor's slot rides in `sequence`: the worker counts what it passes in its queued.
    auto sent =
        sendFds(channel, LineMessage::make(LineMessageType::kSuccessor, wanted.value_or(0)), fds);
    if (!sent && (sent.error().code == EPIPE || sent.error().code == ECONNRESET)) {
      continue; // it is exiting: the reaper re-links the line around it
    }
    if (!sent) {
      // Until it is told, the worker passes to its old successor: whatever reaches a slot
      // whose worker is gone is recovered from its input, so nothing is lost meanwhile.
      spdlog::warn("worker {}: {}; re-linking again shortly", slot, sent.error().message());
      retry = true;
      continue;
    }
    spdlog::debug("line: worker {} passes to {}", slot,
                  wanted ? std::to_string(*wanted) : std::string("nobody (last)"));
    toldSuccessor_[slot] = wanted;
  }
  if (!retry) {
    return;
  }
  if (!relinkTimer_) {
    relinkTimer_.reset(evtimer_new(
        base_,
        [](evutil_socket_t, short, void *ctx) { static_cast<LineDispatch *>(ctx)->relink(); },
        this));
  }
  evtimer_add(relinkTimer_.get(), &kRelinkRetry);
}

} // namespace sockdispatch
