#pragma once

#include "bpf/scoreboard.h"
#include "config/options.h"
#include "dispatch/dispatch.h"

#include <csignal>
#include <cstdint>

namespace sockdispatch {

// What runs in a worker process, once the master has forked it, handed it its sockets and
// dropped its privileges: the second axis beside the dispatch mode. Our own worker is one
// kind (NativeWorkerKind); a program exec'd with its listener, or a process adopted with its
// listeners, are others, and the master drives each the same way.
class WorkerKind {
public:
  virtual ~WorkerKind() = default;
  // Runs in the child until the worker stops; returns the process exit code
  // (kExitFatalConfig: do not respawn). `mode` names the dispatch mode ("ebpf", "line").
  virtual int runInChild(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
                         Scoreboard scoreboard, const char *mode) = 0;
  // Whether the worker reads its control channel (then a leaving worker is asked to stop
  // gracefully over it); one that does not is sent stopSignal() instead.
  [[nodiscard]] virtual bool readsControlChannel() const = 0;
  // The signal that asks the worker to stop: finish what it has, then exit.
  [[nodiscard]] virtual int stopSignal(const AttachOptions &options) const = 0;
};

// The built-in worker: a libevent loop serving HTTP with the built-in page, the static files
// of --root or the library's handlers (Worker).
class NativeWorkerKind final : public WorkerKind {
public:
  int runInChild(const AttachOptions &options, uint32_t slot, WorkerSockets sockets,
                 Scoreboard scoreboard, const char *mode) override;
  [[nodiscard]] bool readsControlChannel() const override { return true; }
  [[nodiscard]] int stopSignal(const AttachOptions & /*options*/) const override { return SIGTERM; }
};

} // namespace sockdispatch
