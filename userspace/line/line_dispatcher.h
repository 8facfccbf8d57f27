#pragma once

#include "bpf/scoreboard.h"
#include "core/event_ptr.h"
#include "core/log_limiter.h"
#include "core/result.h"
#include "core/system_calls.h"
#include "core/unique_fd.h"
#include "line/fd_channel.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <vector>

namespace sockdispatch {

// The master's side of the line fallback (docs/design/line.md): it accepts on the
// attachment's one listener in batches (accept4 until EAGAIN, at most kMaxFdsPerMessage per
// message) and hands each batch to the head of the line over that worker's input channel.
//
// Every slot has one input channel, created on first use and kept for the attachment's
// life. The dispatcher holds both of its ends: a worker gets the read end of its own and the
// write end of its successor's, and whatever is queued on the input of a worker that died
// (or left) stays in the kernel until the dispatcher reads it back and sends it to the head
// again. So nothing in flight on the line is lost when a worker dies.
//
// Every batch handed to a worker's input is counted in that slot's `queued` until the worker
// reads it (line_handoff.h). A head whose input is full (its worker frozen or stuck) is
// passed over: the batch goes to the next worker of the line that takes it.
//
// Back-pressure: while a batch cannot be sent (every input of the line is full, or there is
// no head yet) or the line is full (`lineFull`, e.g. every worker at --max-conns), nothing
// more is accepted: new connections wait in the kernel's listen backlog.
class LineDispatcher {
public:
  struct Hooks {
    // The slot that takes new connections (the first of the line), if any.
    std::function<std::optional<uint32_t>()> head;
    // The slot after `slot` on the line, if any.
    std::function<std::optional<uint32_t>(uint32_t slot)> successor;
    // Whether no worker can take another connection now.
    std::function<bool()> lineFull;
    // Every connection held back (pending) has reached the line; optional.
    std::function<void()> emptied;
  };

  // `maxBatch`: the most connections handed over in one message (1..kMaxFdsPerMessage).
  // `sys`: the channel's syscalls (the kernel's; a test's to make them fail). `calls`: accept4
  // and the clock of its fault log (docs/design/faults.md).
  LineDispatcher(event_base *base, UniqueFd listener, size_t maxBatch, Scoreboard scoreboard,
                 Hooks hooks, ChannelSyscalls &sys = systemChannelSyscalls(),
                 SystemCalls &calls = systemCalls());
  ~LineDispatcher() = default;
  LineDispatcher(const LineDispatcher &) = delete;
  LineDispatcher &operator=(const LineDispatcher &) = delete;

  // Starts accepting.
  Result<void> start();

  // Creates the slot's input channel if it has none yet.
  Result<void> ensureChannel(uint32_t slot);
  // The write end of the slot's input (what its predecessor sends to); -1 when it has none.
  [[nodiscard]] int inputWriteEnd(uint32_t slot) const;

  // Before a worker is forked into `slot`: the dispatcher stops reading its input.
  void handOver(uint32_t slot);
  // The slot's worker is gone: what still reaches its input is read back and re-sent.
  void recoverFrom(uint32_t slot);

  // In a forked worker: the read end of its own input and the write end of `successor`'s
  // (none when it is last), and the listener, to keep (docs/design/takeover.md: it outlives
  // the master in its workers). Every other descriptor the dispatcher holds is closed.
  struct WorkerEnds {
    UniqueFd input;
    UniqueFd successor;
    UniqueFd listener; // none once the dispatcher stopped accepting
  };
  WorkerEnds takeInChild(uint32_t slot, std::optional<uint32_t> successor);

  // The line may have room again (a worker freed a connection, a worker joined): retry what
  // waits, then accept again.
  void resume();

  // Refuses new handshakes, accepts what the kernel completes until no handshake of the port
  // is in progress (at most `handshakeBound`), hands it to the line and shuts the listener
  // down (the workers' copies with it): nothing more is accepted. For stops of any kind
  // (docs/design/line.md, "Stopping without resetting handshakes").
  void stopAccepting(std::chrono::milliseconds handshakeBound);

  // Connections recovered or queued that no worker can take any more (every worker is gone):
  // answered with 503 and closed. Returns how many. For the very end of a stop.
  size_t answerLeftovers();

  [[nodiscard]] uint64_t dispatched() const { return sequence_; }
  // Whether connections wait here for an input that takes them.
  [[nodiscard]] bool holdsBack() const { return !pending_.empty(); }

private:
  struct Batch {
    std::vector<UniqueFd> fds;
  };
  struct Input {
    UniqueFd read;
    UniqueFd write;
    EventPtr recovery; // set while no worker reads this input
  };

  void onAcceptable();
  void acceptBatch(std::vector<UniqueFd> &batch);
  void flush();
  bool sendToLine(Batch &batch);
  void onRecoverable(uint32_t slot);
  void pauseAccepting(std::chrono::milliseconds retry);
  void enableAccepting();

  event_base *base_;
  UniqueFd listener_;
  size_t maxBatch_;
  Scoreboard scoreboard_;
  Hooks hooks_;
  ChannelSyscalls *sys_;
  SystemCalls &calls_;
  LogLimiter passedOver_;     // a full input passed over: logged once per interval
  LogLimiter acceptFaults_;   // out of descriptors: logged once per interval
  std::vector<Input> inputs_; // by slot
  EventPtr acceptEvent_;
  EventPtr retryTimer_;
  std::deque<Batch> pending_;
  uint64_t sequence_ = 0; // the number of the next connection: the policies' ticket
  bool accepting_ = false;
  bool stopped_ = false;
};

} // namespace sockdispatch
