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
  Worker(const AttachOptions &options, uint32_t slot, UniqueFd listener, Scoreboard scoreboard,
         std::string mode);
  ~Worker() = default;
  Worker(const Worker &) = delete;
  Worker &operator=(const Worker &) = delete;

  // Runs until SIGTERM/SIGINT (then finishes in-flight requests, bounded by the shutdown
  // timeout). Returns the process exit code.
  int run();

private:
  void onAccept(int fd);
  void onConnectionClosed(HttpConnection *connection);
  void beginStop();
  void reapClosed();

  const AttachOptions &options_;
  uint32_t slot_;
  UniqueFd listenerFd_;
  Scoreboard scoreboard_;
  WorkerIdentity identity_;
  std::unique_ptr<Handler> handler_;
  // Declared before every libevent object below, so it is freed after all of them.
  EventBasePtr base_;
  ListenerPtr listener_;
  std::unique_ptr<SignalSet> signals_;
  EventPtr stopDeadline_;
  EventPtr reaper_; // frees closed connections outside their own callbacks
  std::unordered_map<HttpConnection *, std::unique_ptr<HttpConnection>> connections_;
  std::vector<std::unique_ptr<HttpConnection>> closed_;
  bool stopping_ = false;
};

} // namespace sockdispatch
