// A worker's part of the line fallback (docs/design/line.md): connections arrive on its input
// channel, in batches; for each one the worker decides with the attachment's policy
// (decideOnLine, skip_load by default: the function the kernel program runs) whether it keeps
// the connection or passes it to its successor. Connections it passes on travel in one message
// per run of consecutive tickets, so every worker down the line sees each connection's number.
#include "line_balancer.h"
#include "worker.h"

#include <spdlog/spdlog.h>

namespace sockdispatch {

namespace {

// Messages read per readiness before the loop serves its connections again.
constexpr int kMessagesPerTurn = 64;

} // namespace

bool Worker::startLine() {
  lineInputEvent_.reset(event_new(
      base_.get(), lineInput_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<Worker *>(ctx)->onLineInput(); }, this));
  if (!lineInputEvent_ || event_add(lineInputEvent_.get(), nullptr) != 0) {
    spdlog::error("Failed to watch the line input of slot {}", slot_);
    return false;
  }
  return true;
}

void Worker::onLineInput() {
  for (int turn = 0; turn < kMessagesPerTurn; ++turn) {
    auto received = receive(lineInput_.get());
    if (!received) {
      if (wouldBlock(received.error())) {
        return;
      }
      // A message that breaks the protocol: its descriptors are closed already.
      spdlog::error("{}", received.error().message());
      continue;
    }
    if (received->peerClosed) {
      event_del(lineInputEvent_.get()); // the master holds the other end: it is gone
      return;
    }
    if (received->message.messageType() == LineMessageType::kConnections) {
      takeFromLine(*received);
    } else {
      spdlog::warn("ignored a line message of type {}", received->message.type);
    }
  }
}

void Worker::takeFromLine(Received &received) {
  const LineMessage &message = received.message;
  std::vector<UniqueFd> run;
  uint64_t runStart = 0;
  auto passRun = [&] {
    if (!run.empty()) {
      passOn(LineMessage::make(LineMessageType::kConnections, runStart, message.hops + 1),
             std::move(run));
      run.clear();
    }
  };
  for (size_t i = 0; i < received.fds.size(); ++i) {
    LineStep step;
    step.slot = slot_;
    step.hasSuccessor = static_cast<bool>(lineSuccessor_);
    step.maxConnections = maxConnections_;
    step.ticket = message.sequence + i;
    step.hops = message.hops;
    if (decideOnLine(scoreboard_, step) == LineVerdict::kKeep) {
      passRun();
      onAccept(received.fds[i].release());
      continue;
    }
    if (run.empty()) {
      runStart = step.ticket;
    }
    run.push_back(std::move(received.fds[i]));
  }
  passRun();
}

// Never waits: when the successor's channel is full (or broken) the worker keeps the
// connections itself. A slightly uneven choice beats holding a client back, and nothing is
// ever queued in a process that could die with it.
void Worker::passOn(LineMessage message, std::vector<UniqueFd> fds) {
  if (lineSuccessor_) {
    std::vector<int> raw;
    raw.reserve(fds.size());
    for (const UniqueFd &fd : fds) {
      raw.push_back(fd.get());
    }
    auto sent = sendFds(lineSuccessor_.get(), message, raw);
    if (sent) {
      return; // the successor holds its own copies; ours close here
    }
    if (!wouldBlock(sent.error()) && sent.error().code != ETOOMANYREFS) {
      spdlog::warn("{}; keeping {} connections", sent.error().message(), fds.size());
    }
  }
  for (UniqueFd &fd : fds) {
    onAccept(fd.release());
  }
}

void Worker::onSuccessor(Received &received) {
  if (received.fds.empty()) {
    lineSuccessor_.reset();
    spdlog::debug("line: last worker now");
    return;
  }
  lineSuccessor_ = std::move(received.fds.front());
  spdlog::debug("line: new successor");
}

} // namespace sockdispatch
