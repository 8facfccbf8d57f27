#pragma once

#include "bpf/dispatch_program.h"
#include "dispatch/dispatch.h"
#include "dispatch/listener.h"

#include <functional>
#include <vector>

namespace sockdispatch {

// The eBPF path: one listener per slot, all in one SO_REUSEPORT group, put into the program's
// sockarray by slot, so the kernel program picks the worker for every SYN. The master keeps
// every listener of a running slot open: a worker that dies leaves its accept queue to its
// respawn, and a slot that leaves closes its listener so the kernel migrates the queue
// (sk_reuseport/migrate) to a live one.
class ReuseportDispatch final : public Dispatch {
public:
  // `listeners`: the first generation's sockets, slot 0 first, already in the sockarray.
  ReuseportDispatch(ListenerGroup listeners, DispatchProgram &program);

  // Called for every listener the slots hold now and for each one a slot opens later (the
  // kernel-side load of foreign workers tags them); before any worker takes from it.
  using ListenerObserver = std::function<void(uint32_t slot, int listenerFd)>;
  void observeListeners(ListenerObserver observer);

  [[nodiscard]] const char *name() const override { return "ebpf"; }
  [[nodiscard]] const SocketAddress &address() const override { return address_; }
  [[nodiscard]] uint32_t firstGenerationSize(const AttachOptions &options) const override;
  void connect(event_base *base, const WorkerRoster &roster) override;
  Result<void> start() override { return {}; }
  Result<void> openSlot(uint32_t slot, const AttachOptions &options) override;
  Result<void> beforeFork(uint32_t /*slot*/) override { return {}; }
  void forkFailed(uint32_t /*slot*/) override {}
  void forked(uint32_t /*slot*/) override {}
  WorkerSockets takeInChild(uint32_t slot) override;
  void exited(uint32_t /*slot*/) override {} // its listener waits for the respawn
  void retiring(uint32_t slot) override;
  void released(uint32_t slot) override;
  void stopping() override {}
  void stopped() override {}

private:
  SocketAddress address_;
  DispatchProgram &program_;
  uint32_t firstGeneration_;
  std::vector<UniqueFd> listeners_; // by slot; empty once the slot's worker retires
  ListenerObserver observer_;
};

} // namespace sockdispatch
