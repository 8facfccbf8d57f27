#pragma once

#include "event_ptr.h"
#include "handler.h"
#include "http_connection.h"
#include "options.h"
#include "scoreboard.h"
#include "signal_set.h"
#include "unique_fd.h"

#include <memory>
#include <unordered_map>
#include <vector>

namespace sockdispatch {

// One worker process: a libevent loop accepting on its own listener (its slot's socket in
// the reuseport group), serving HTTP, and mirroring its load into its scoreboard slot.
class Worker {
public:
  // `channel`: the worker's end of its control channel to the master.
  Worker(const AttachOptions &options, uint32_t slot, UniqueFd listener, UniqueFd channel,
         Scoreboard scoreboard, std::string mode);
  ~Worker() = default;
  Worker(const Worker &) = delete;
  Worker &operator=(const Worker &) = delete;

  // Runs until asked to stop (a control message, SIGTERM/SIGINT, or the master's end of the
  // channel closing): then it stops accepting, accepts what the kernel already queued for it,
  // closes its listener, and finishes the requests in flight, bounded by the shutdown
  // timeout. Returns the process exit code.
  int run();

private:
  void onAccept(int fd);
  void onControl();
  void drainListener();
  void onConnectionClosed(HttpConnection *connection);
  void beginStop();
  void reapClosed();

  const AttachOptions &options_;
  uint32_t slot_;
  UniqueFd listenerFd_;
  UniqueFd channel_;
  Scoreboard scoreboard_;
  WorkerIdentity identity_;
  // Declared before every libevent object below, so it is freed after all of them.
  EventBasePtr base_;
  // Freed after the connections and before the loop: it may own loop objects (ServerHooks).
  std::unique_ptr<Handler> handler_;
  ListenerPtr listener_;
  std::unique_ptr<SignalSet> signals_;
  EventPtr controlEvent_;
  EventPtr stopDeadline_;
  EventPtr reaper_; // frees closed connections outside their own callbacks
  std::unordered_map<HttpConnection *, std::unique_ptr<HttpConnection>> connections_;
  std::vector<std::unique_ptr<HttpConnection>> closed_;
  bool stopping_ = false;
};

} // namespace sockdispatch
