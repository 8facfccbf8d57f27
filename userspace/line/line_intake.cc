#include "line/line_intake.h"

#include "line/line_balancer.h"
#include "line/line_handoff.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

namespace sockdispatch {

namespace {

// One message per readiness: most readiness brings one (a connection or a small batch), and
// reading on until the input says EAGAIN cost a recvmsg(2) per message for nothing. More
// queued keeps the input readable, so the loop comes back for it after serving the rest.
constexpr int kMessagesPerReadiness = 1;
// A stop takes everything already queued (bounded, as a stuck sender cannot feed it forever).
constexpr int kMessagesPerDrain = 4096;
// A line worker keeps this many descriptors in reserve below its RLIMIT_NOFILE: one whole
// message of connections, and room for the files it serves.
constexpr uint64_t kDescriptorReserve = kMaxFdsPerMessage + 64;

uint64_t descriptorLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) {
    return 0;
  }
  return limit.rlim_cur > kDescriptorReserve ? limit.rlim_cur - kDescriptorReserve : 1;
}

// recvmsg installs descriptors only while the limit allows and drops the rest: a line worker
// counts itself full before it gets there.
uint64_t lineConnectionLimit(uint64_t configured) {
  uint64_t limit = descriptorLimit();
  if (limit != 0 && (configured == 0 || configured > limit)) {
    return limit;
  }
  return configured;
}

} // namespace

LineIntake::LineIntake(UniqueFd input, UniqueFd successor, uint32_t successorSlot, uint32_t slot,
                       Scoreboard scoreboard, uint64_t maxConnections, ChannelSyscalls &sys)
    : input_(std::move(input)), successor_(std::move(successor)), successorSlot_(successorSlot),
      slot_(slot), scoreboard_(scoreboard), maxConnections_(lineConnectionLimit(maxConnections)),
      sys_(&sys) {}

bool LineIntake::start(event_base *base, IntakeSink &sink) {
  sink_ = &sink;
  inputEvent_.reset(event_new(
      base, input_.get(), EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) {
        static_cast<LineIntake *>(ctx)->onInput(kMessagesPerReadiness);
      },
      this));
  if (!inputEvent_ || event_add(inputEvent_.get(), nullptr) != 0) {
    spdlog::error("Failed to watch the line input of slot {}", slot_);
    return false;
  }
  return true;
}

// What the line already sent is kept or passed on before anything closes; what arrives later
// (the master re-links the line so that every worker keeps what reaches it) is still taken.
void LineIntake::drain() {
  onInput(kMessagesPerDrain);
}

void LineIntake::onInput(int messages) {
  for (int turn = 0; turn < messages; ++turn) {
    auto received = receive(input_.get(), *sys_);
    if (!received) {
      if (wouldBlock(received.error())) {
        return;
      }
      // A message that breaks the protocol: its descriptors are closed already.
      spdlog::error("{}", received.error().message());
      continue;
    }
    if (received->peerClosed) {
      event_del(inputEvent_.get()); // the master holds the other end: it is gone
      return;
    }
    if (received->message.messageType() == LineMessageType::kConnections) {
      take(*received);
    } else {
      spdlog::warn("ignored a line message of type {}", received->message.type);
    }
  }
}

void LineIntake::take(Received &received) {
  // In hand now, no longer queued: the decisions below see this worker's load without them,
  // as the kernel program sees a worker's without the connection it is placing.
  receivedFromInput(scoreboard_, slot_, received.fds.size());
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
    step.hasSuccessor = static_cast<bool>(successor_);
    step.maxConnections = maxConnections_;
    step.ticket = message.sequence + i;
    step.hops = message.hops;
    if (decideOnLine(scoreboard_, step) == LineVerdict::kKeep) {
      passRun();
      keep(std::move(received.fds[i]));
      continue;
    }
    if (run.empty()) {
      runStart = step.ticket;
    }
    run.push_back(std::move(received.fds[i]));
  }
  passRun();
}

// Never waits: when the successor's input is full (its worker frozen or stuck, or the kernel
// short of buffers) or broken, the worker keeps the connections itself, even past
// --max-conns (its descriptor reserve holds one whole message). A slightly uneven choice
// beats holding a client back, and nothing is ever parked in a process that could die with
// it. The full input is logged at most once per interval: under load it recurs per message.
void LineIntake::passOn(LineMessage message, std::vector<UniqueFd> fds) {
  if (successor_) {
    auto sent = handToInput(scoreboard_, successorSlot_, successor_.get(), message, fds, *sys_);
    if (sent) {
      return; // the successor holds its own copies; ours close here
    }
    if (auto heldBack = unpassed_.admit(std::chrono::steady_clock::now())) {
      // A full input is back-pressure (the successor reads slower than this worker passes);
      // anything else is a fault.
      spdlog::log(inputFull(sent.error()) ? spdlog::level::info : spdlog::level::warn,
                  "{}; keeping the connections{}", sent.error().message(),
                  heldBackSuffix(*heldBack));
    }
  }
  for (UniqueFd &fd : fds) {
    keep(std::move(fd));
  }
}

// connectionOpened takes one off `queued`, as an accept from the listen queue does on the eBPF
// path; the connection was taken off when it was read, so it is counted back for that moment.
void LineIntake::keep(UniqueFd fd) {
  scoreboard_.addQueued(slot_, 1);
  sink_->takeConnection(fd.release());
}

void LineIntake::changeSuccessor(Received &received) {
  if (received.fds.empty()) {
    successor_.reset();
    spdlog::debug("line: last worker now");
    return;
  }
  successor_ = std::move(received.fds.front());
  successorSlot_ = static_cast<uint32_t>(received.message.sequence);
  spdlog::debug("line: new successor {}", successorSlot_);
}

} // namespace sockdispatch
