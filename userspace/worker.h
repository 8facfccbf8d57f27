#pragma once

#include "event_ptr.h"
#include "fd_channel.h"
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

// What a worker is handed at fork.
struct WorkerSockets {
  UniqueFd listener;      // eBPF mode: its slot's socket in the reuseport group
  UniqueFd control;       // its end of the control channel to the master
  UniqueFd lineInput;     // line mode: where connections arrive (read end)
  UniqueFd lineSuccessor; // line mode: where it passes them (write end); none when last
};

// One worker process: a libevent loop taking connections (accepting on its own listener in
// eBPF mode, receiving them from the line in line mode), serving HTTP, and mirroring its
// load into its scoreboard slot.
class Worker {
public:
  Worker(const AttachOptions &options, uint32_t slot, WorkerSockets sockets, Scoreboard scoreboard,
         std::string mode);
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
  // Line mode (worker_line.cc).
  bool startLine();
  void onLineInput();
  void takeFromLine(Received &received);
  void passOn(LineMessage message, std::vector<UniqueFd> fds);
  void onSuccessor(Received &received);
  // --max-conns and descriptor shortages: a full worker is chosen by no policy.
  void updateFull();
  void pauseAccepting();
  void onControl();
  void drainListener();
  void onConnectionClosed(HttpConnection *connection);
  void beginStop();
  void reapClosed();

  const AttachOptions &options_;
  uint32_t slot_;
  UniqueFd listenerFd_;
  UniqueFd channel_;
  UniqueFd lineInput_;
  UniqueFd lineSuccessor_;
  Scoreboard scoreboard_;
  WorkerIdentity identity_;
  // Declared before every libevent object below, so it is freed after all of them.
  EventBasePtr base_;
  // Freed after the connections and before the loop: it may own loop objects (ServerHooks).
  std::unique_ptr<Handler> handler_;
  ListenerPtr listener_;
  std::unique_ptr<SignalSet> signals_;
  EventPtr controlEvent_;
  EventPtr lineInputEvent_;
  EventPtr acceptPause_; // eBPF mode: accepting resumes after a descriptor shortage
  EventPtr stopDeadline_;
  EventPtr reaper_; // frees closed connections outside their own callbacks
  std::unordered_map<HttpConnection *, std::unique_ptr<HttpConnection>> connections_;
  std::vector<std::unique_ptr<HttpConnection>> closed_;
  uint64_t maxConnections_ = 0; // 0: no limit
  bool stopping_ = false;
  bool full_ = false;
  bool paused_ = false; // eBPF mode: out of descriptors
};

} // namespace sockdispatch
