#include "dispatch/reuseport_dispatch.h"

#include "sockdispatch/abi.h"

namespace sockdispatch {

ReuseportDispatch::ReuseportDispatch(ListenerGroup listeners, DispatchProgram &program)
    : address_(listeners.address), program_(program),
      firstGeneration_(static_cast<uint32_t>(listeners.sockets.size())),
      listeners_(SD_MAX_WORKERS) {
  for (uint32_t slot = 0; slot < firstGeneration_; ++slot) {
    listeners_[slot] = std::move(listeners.sockets[slot]);
  }
}

uint32_t ReuseportDispatch::firstGenerationSize(const AttachOptions & /*options*/) const {
  return firstGeneration_; // one per prepared listener
}

void ReuseportDispatch::observeListeners(ListenerObserver observer) {
  observer_ = std::move(observer);
  for (uint32_t slot = 0; slot < listeners_.size(); ++slot) {
    if (listeners_[slot]) {
      observer_(slot, listeners_[slot].get());
    }
  }
}

void ReuseportDispatch::connect(event_base * /*base*/, const WorkerRoster & /*roster*/) {}

Result<void> ReuseportDispatch::openSlot(uint32_t slot, const AttachOptions &options) {
  auto listener = openGroupListener(address_, options.backlog);
  if (!listener) {
    return listener.error();
  }
  if (observer_) {
    observer_(slot, listener->get()); // before the sockarray can send it a connection
  }
  if (auto set = program_.setSocket(slot, listener->get()); !set) {
    return set;
  }
  listeners_[slot] = std::move(listener.value());
  return {};
}

WorkerSockets ReuseportDispatch::takeInChild(uint32_t slot) {
  WorkerSockets sockets;
  sockets.listener = std::move(listeners_[slot]);
  for (auto &listener : listeners_) {
    listener.reset();
  }
  return sockets;
}

void ReuseportDispatch::retiring(uint32_t slot) {
  // Closed here now, and by the worker once it has accepted what is queued: then the kernel
  // migrates whatever is left to a live slot.
  listeners_[slot].reset();
}

void ReuseportDispatch::released(uint32_t slot) {
  listeners_[slot].reset();
}

} // namespace sockdispatch
