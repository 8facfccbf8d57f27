#pragma once

#include "bpf/scoreboard.h"
#include "config/options.h"
#include "core/event_ptr.h"
#include "core/signal_set.h"
#include "core/unique_fd.h"
#include "dispatch/dispatch.h"
#include "dispatch/intake.h"
#include "http/first_read_gate.h"
#include "http/http_connection.h"
#include "library/handler.h"
#include "line/fd_channel.h"

#include <memory>
#include <unordered_map>
#include <vector>

namespace sockdispatch {

// One worker process: a libevent loop taking connections from its intake (its own listener
// on the reuseport path, its input on the line), serving HTTP, and mirroring its load into
// its scoreboard slot.
class Worker final : private IntakeSink {
public:
  Worker(const AttachOptions &options, uint32_t slot, WorkerSockets sockets, Scoreboard scoreboard,
         std::string mode);
  ~Worker() override = default;
  Worker(const Worker &) = delete;
  Worker &operator=(const Worker &) = delete;

  // Runs until asked to stop (a control message, SIGTERM/SIGINT, or its master gone for
  // longer than --orphan-timeout): then it takes what is already queued for it, stops taking
  // more, and finishes the requests in flight, bounded by the shutdown timeout. Returns the
  // process exit code.
  int run();

private:
  // IntakeSink: the one connection start, whatever the intake.
  void takeConnection(int fd) override;
  void setPaused(bool paused) override;
  // --max-conns and descriptor shortages: a full worker is chosen by no policy.
  void updateFull();
  void onControl();
  // The master's end of the channel closed: the master died. A worker that can serve without
  // it (servesAsOrphan_) serves on for --orphan-timeout, for a restarted master to take it
  // over (docs/design/takeover.md); a line worker accepts on the line's listener meanwhile.
  void onMasterGone();
  void onConnectionClosed(HttpConnection *connection);
  void beginStop();
  // Leaves the loop once stopping, with no connection left and no exit held.
  void exitWhenDone();
  void reapClosed();

  const AttachOptions &options_;
  uint32_t slot_;
  // It can serve without its master: from a listener of its own (reuseport), or from its
  // copy of the line's listener (orphanListener_), which it accepts on once the master is gone.
  bool servesAsOrphan_;
  UniqueFd orphanListener_;
  UniqueFd channel_;
  Scoreboard scoreboard_;
  WorkerIdentity identity_;
  // Declared before every libevent object below, so it is freed after all of them.
  EventBasePtr base_;
  // Freed after the connections and before the loop: it may own loop objects (ServerHooks).
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<Intake> intake_;       // its events live on base_
  std::unique_ptr<Intake> orphanIntake_; // the line's listener, once the master is gone
  std::unique_ptr<SignalSet> signals_;
  EventPtr controlEvent_;
  EventPtr stopDeadline_;
  EventPtr orphanDeadline_;
  EventPtr reaper_; // frees closed connections outside their own callbacks
  // What the connections share (their spare exchanges, the idle queue): freed after them.
  std::unique_ptr<ConnectionContext> connectionContext_;
  std::unordered_map<HttpConnection *, std::unique_ptr<HttpConnection>> connections_;
  std::vector<std::unique_ptr<HttpConnection>> closed_;
  uint64_t maxConnections_ = 0; // 0: no limit
  bool stopping_ = false;
  // The master holds this worker's exit during a line stop (kHoldExit) until nothing more
  // can reach its input (kMayExit): docs/design/line.md, "Stopping the attachment".
  bool exitHeld_ = false;
  bool full_ = false;
  bool noDelayInherited_ = false; // every intake's listener has TCP_NODELAY
  FirstReadGate firstReads_;
  bool paused_ = false; // out of descriptors
};

} // namespace sockdispatch
