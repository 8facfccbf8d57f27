// The master's part of the line fallback: which worker is the head of the line, which one
// each worker passes to, and telling them when that changes. The line is the workers in slot
// order, the same order the policies count positions in (linePosition()), so the decisions
// the workers make match the kernel program's.
#include "master.h"

#include <spdlog/spdlog.h>

namespace sockdispatch {

namespace {

constexpr timeval kRelinkRetry{0, 10'000};

} // namespace

// A worker takes new connections from the line while it runs (or starts) and is not leaving.
bool Master::takesConnections(const WorkerProcess &worker) const {
  return worker.pid != 0 && !worker.retiring && !stopping_;
}

std::optional<uint32_t> Master::lineSuccessorOf(uint32_t slot) const {
  for (uint32_t next = slot + 1; next < workers_.size(); ++next) {
    if (takesConnections(workers_[next])) {
      return next;
    }
  }
  return std::nullopt;
}

std::optional<uint32_t> Master::lineHead() const {
  for (const auto &worker : workers_) {
    if (takesConnections(worker)) {
      return worker.slot;
    }
  }
  // Stopping: any worker still running keeps what reaches it (and answers it with close).
  for (const auto &worker : workers_) {
    if (worker.pid != 0) {
      return worker.slot;
    }
  }
  return std::nullopt;
}

bool Master::lineFull() const {
  const uint64_t limit = options_->maxConnections;
  if (limit == 0) {
    return false;
  }
  bool anyWorker = false;
  for (const auto &worker : workers_) {
    if (!takesConnections(worker)) {
      continue;
    }
    anyWorker = true;
    if (scoreboard_.snapshot(worker.slot).open < limit) {
      return false;
    }
  }
  return anyWorker;
}

void Master::relinkLine() {
  bool retry = false;
  for (auto &worker : workers_) {
    if (worker.pid == 0 || !worker.channel) {
      continue;
    }
    std::optional<uint32_t> wanted = lineSuccessorOf(worker.slot);
    if (wanted == worker.successor) {
      continue;
    }
    std::vector<int> fds;
    if (wanted) {
      fds.push_back(line_->inputWriteEnd(*wanted));
    }
    auto sent = sendFds(worker.channel.get(), LineMessage::make(LineMessageType::kSuccessor), fds);
    if (!sent && (sent.error().code == EPIPE || sent.error().code == ECONNRESET)) {
      continue; // it is exiting: the reaper re-links the line around it
    }
    if (!sent) {
      // Until it is told, the worker passes to its old successor: whatever reaches a slot
      // whose worker is gone is recovered from its input, so nothing is lost meanwhile.
      spdlog::warn("worker {}: {}; re-linking again shortly", worker.slot, sent.error().message());
      retry = true;
      continue;
    }
    spdlog::debug("line: worker {} passes to {}", worker.slot,
                  wanted ? std::to_string(*wanted) : std::string("nobody (last)"));
    worker.successor = wanted;
  }
  if (!retry) {
    return;
  }
  if (!relinkTimer_) {
    relinkTimer_.reset(evtimer_new(
        base_.get(),
        [](evutil_socket_t, short, void *ctx) { static_cast<Master *>(ctx)->relinkLine(); }, this));
  }
  evtimer_add(relinkTimer_.get(), &kRelinkRetry);
}

void Master::answerLineLeftovers() {
  if (!line_) {
    return;
  }
  if (size_t answered = line_->answerLeftovers(); answered > 0) {
    spdlog::warn("{} connection{} reached the line after every worker had left: answered 503",
                 answered, answered == 1 ? "" : "s");
  }
}

} // namespace sockdispatch
