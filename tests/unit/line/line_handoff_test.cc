// Handing connections along the line (userspace/line/line_handoff.cc, line_intake.cc,
// line_dispatcher.cc) over real SOCK_SEQPACKET channels, with the channel's syscall seam making
// one input refuse: EAGAIN (its worker is frozen and the input is full), ENOBUFS, ETOOMANYREFS.
// No connection is lost (the worker keeps what its successor's input refuses; the master
// passes a refusing head over), `queued` counts exactly what waits in each input, and a
// refusal recurring per message is logged once per interval.
#include "core/event_ptr.h"
#include "line/line_dispatcher.h"
#include "line/line_handoff.h"
#include "line/line_intake.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

// A scoreboard in plain memory, every slot running.
class Board {
public:
  Board(uint32_t slots, uint32_t policy) {
    config_.abi_version = SD_ABI_VERSION;
    config_.policy = policy;
    config_.nr_slots = slots;
    for (uint32_t i = 0; i < slots; ++i) {
      slots_[i].state = SD_SLOT_RUNNING;
      slots_[i].weight = 1;
    }
  }
  Scoreboard board() { return Scoreboard(slots_.data(), &config_); }
  uint64_t queued(uint32_t slot) { return board().snapshot(slot).queued; }
  uint64_t open(uint32_t slot) { return board().snapshot(slot).open; }

private:
  std::array<sd_slot, SD_MAX_WORKERS> slots_{};
  sd_config config_{};
};

// The kernel's syscalls, except that sends on the `refused` descriptors fail with `code`.
class RefusingSends : public ChannelSyscalls {
public:
  explicit RefusingSends(int code) : code_(code) {}
  void refuse(int fd) { refused_.insert(fd); }
  ssize_t sendMessage(int fd, const msghdr *message, int flags) override {
    if (refused_.count(fd) != 0) {
      ++refusals;
      errno = code_;
      return -1;
    }
    return ::sendmsg(fd, message, flags);
  }
  ssize_t receiveMessage(int fd, msghdr *message, int flags) override {
    return ::recvmsg(fd, message, flags);
  }
  int refusals = 0;

private:
  int code_;
  std::set<int> refused_;
};

// What a worker does with a connection it keeps: owns it, counts it open (and one off queued).
class CountingSink : public IntakeSink {
public:
  CountingSink(Scoreboard board, uint32_t slot) : board_(board), slot_(slot) {}
  void takeConnection(int fd) override {
    taken.emplace_back(fd);
    board_.connectionOpened(slot_);
  }
  void setPaused(bool /*paused*/) override {}
  std::vector<UniqueFd> taken;

private:
  Scoreboard board_;
  uint32_t slot_;
};

// Log lines, while it lives, from the default logger.
class LogCapture {
public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(text_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto &sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture &) = delete;
  LogCapture &operator=(const LogCapture &) = delete;
  size_t count(const std::string &needle) const {
    std::string all = text_.str();
    size_t found = 0;
    for (size_t at = all.find(needle); at != std::string::npos; at = all.find(needle, at + 1)) {
      ++found;
    }
    return found;
  }

private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

struct Channel {
  UniqueFd write;
  UniqueFd read;
};

Channel channel() {
  auto pair = makeChannelPair();
  EXPECT_TRUE(pair.ok()) << (pair.ok() ? "" : pair.error().message());
  return {std::move(pair->first), std::move(pair->second)};
}

std::vector<UniqueFd> memfds(size_t count) {
  std::vector<UniqueFd> fds;
  for (size_t i = 0; i < count; ++i) {
    fds.emplace_back(::memfd_create("handoff-test", MFD_CLOEXEC));
    EXPECT_TRUE(fds.back().valid()) << "memfd_create: " << std::strerror(errno);
  }
  return fds;
}

bool allOpen(const std::vector<UniqueFd> &fds) {
  return std::all_of(fds.begin(), fds.end(),
                     [](const UniqueFd &fd) { return ::fcntl(fd.get(), F_GETFD) >= 0; });
}

class RefusedInput : public testing::TestWithParam<int> {};

/*
 * handToInput counts a batch queued for the slot from before its send; a refused send leaves
 * the count as it was and the connections with the sender; a received batch is taken off.
 */
TEST_P(RefusedInput, OnlyWhatWasSentIsCountedQueued) {
  Board board(2, SD_POLICY_LEAST_CONN);
  Scoreboard view = board.board();
  Channel input = channel();
  RefusingSends refusing(GetParam());
  refusing.refuse(input.write.get());
  std::vector<UniqueFd> fds = memfds(3);

  auto refused = handToInput(view, 1, input.write.get(),
                             LineMessage::make(LineMessageType::kConnections), fds, refusing);
  ASSERT_FALSE(refused) << "the seam refuses";
  EXPECT_EQ(refused.error().code, GetParam());
  EXPECT_TRUE(inputFull(refused.error()));
  EXPECT_EQ(board.queued(1), 0U);
  EXPECT_TRUE(allOpen(fds)) << "the sender still owns them";

  auto sent = handToInput(view, 1, input.write.get(),
                          LineMessage::make(LineMessageType::kConnections), fds);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(board.queued(1), 3U);
  auto received = receive(input.read.get());
  ASSERT_TRUE(received) << received.error().message();
  EXPECT_EQ(received->fds.size(), 3U);
  receivedFromInput(view, 1, received->fds.size());
  EXPECT_EQ(board.queued(1), 0U);
}

/*
 * Worker 0 of two under round_robin keeps even tickets and passes odd ones. Its successor's
 * input refuses every send: the worker keeps all 10 connections of 5 messages, none is lost
 * or counted queued anywhere, its own open is 10, and the refusal is logged once.
 */
TEST_P(RefusedInput, AWorkerKeepsWhatItsSuccessorsInputRefuses) {
  Board board(2, SD_POLICY_ROUND_ROBIN);
  Scoreboard view = board.board();
  Channel input = channel();
  Channel successor = channel();
  RefusingSends refusing(GetParam());
  refusing.refuse(successor.write.get());
  EventBasePtr base(event_base_new());
  ASSERT_NE(base, nullptr);
  CountingSink sink(view, 0);
  LogCapture log;
  LineIntake intake(std::move(input.read), std::move(successor.write), 1, 0, view, 0, refusing);
  ASSERT_TRUE(intake.start(base.get(), sink));

  for (uint64_t message = 0; message < 5; ++message) {
    auto sent =
        handToInput(view, 0, input.write.get(),
                    LineMessage::make(LineMessageType::kConnections, 2 * message), memfds(2));
    ASSERT_TRUE(sent) << sent.error().message();
  }
  EXPECT_EQ(board.queued(0), 10U) << "sent to worker 0, not yet read";
  intake.drain();

  EXPECT_EQ(sink.taken.size(), 10U) << "every connection is kept, none lost";
  EXPECT_EQ(refusing.refusals, 5) << "one pass tried per message";
  EXPECT_EQ(board.queued(0), 0U);
  EXPECT_EQ(board.queued(1), 0U) << "nothing reached the successor";
  EXPECT_EQ(board.open(0), 10U);
  EXPECT_EQ(log.count("keeping the connections"), 1U) << "logged once per interval";
  EXPECT_FALSE(receive(successor.read.get())) << "the successor's input is empty";
}

/*
 * The master's head (slot 0) refuses: a batch (recovered from slot 2's input, as from a worker
 * that died) goes to slot 1 instead, counted queued there and nowhere else, with its
 * connections' numbers. When every input refuses, the batch stays with the master.
 */
TEST_P(RefusedInput, TheMasterPassesARefusingHeadOver) {
  Board board(3, SD_POLICY_LEAST_CONN);
  Scoreboard view = board.board();
  EventBasePtr base(event_base_new());
  ASSERT_NE(base, nullptr);
  LineDispatcher::Hooks hooks;
  hooks.head = [] { return std::optional<uint32_t>(0); };
  hooks.successor = [](uint32_t slot) {
    return slot + 1 < 3 ? std::optional<uint32_t>(slot + 1) : std::nullopt;
  };
  hooks.lineFull = [] { return false; };
  RefusingSends refusing(GetParam());
  LogCapture log;
  LineDispatcher dispatcher(base.get(), UniqueFd(::socket(AF_INET, SOCK_STREAM, 0)),
                            kMaxFdsPerMessage, view, std::move(hooks), refusing);
  for (uint32_t slot = 0; slot < 3; ++slot) {
    ASSERT_TRUE(dispatcher.ensureChannel(slot));
  }
  refusing.refuse(dispatcher.inputWriteEnd(0));

  for (int batch = 0; batch < 2; ++batch) {
    ASSERT_TRUE(handToInput(view, 2, dispatcher.inputWriteEnd(2),
                            LineMessage::make(LineMessageType::kConnections), memfds(2)));
  }
  EXPECT_EQ(board.queued(2), 4U);
  dispatcher.recoverFrom(2);
  EXPECT_EQ(board.queued(2), 0U) << "read back by the master";
  EXPECT_EQ(board.queued(0), 0U) << "the refusing head got nothing";
  EXPECT_EQ(board.queued(1), 4U) << "both batches went past it";
  EXPECT_EQ(dispatcher.dispatched(), 4U);
  EXPECT_EQ(refusing.refusals, 2);
  EXPECT_EQ(log.count("takes nothing"), 1U) << "logged once per interval";

  refusing.refuse(dispatcher.inputWriteEnd(1));
  refusing.refuse(dispatcher.inputWriteEnd(2));
  ASSERT_TRUE(handToInput(view, 2, dispatcher.inputWriteEnd(2),
                          LineMessage::make(LineMessageType::kConnections), memfds(1)));
  dispatcher.recoverFrom(2);
  EXPECT_EQ(dispatcher.dispatched(), 4U) << "no input took it: the master holds it";
  EXPECT_EQ(board.queued(0) + board.queued(2), 0U);
  EXPECT_EQ(board.queued(1), 4U);

  // Read as worker 1 would, in a child: takeInChild leaves the parent's events to the parent
  // (released, not freed). Exit 0: two messages holding connections 0-1 and 2-3.
  pid_t child = ::fork();
  ASSERT_GE(child, 0) << "fork";
  if (child == 0) {
    LineDispatcher::WorkerEnds ends = dispatcher.takeInChild(1, std::nullopt);
    uint64_t passed = 0;
    for (int message = 0; message < 2; ++message) {
      auto received = receive(ends.input.get());
      if (!received || received->peerClosed || received->message.sequence != passed) {
        ::_exit(10 + message);
      }
      passed += received->fds.size();
    }
    ::_exit(passed == 4 ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10/11: message 0/1 missing or out of order (the connections keep their numbers); "
         "2: not 4 connections";
}

INSTANTIATE_TEST_SUITE_P(Codes, RefusedInput, testing::Values(EAGAIN, ENOBUFS, ETOOMANYREFS),
                         [](const auto &param) {
                           switch (param.param) {
                           case EAGAIN: return std::string("EAGAIN");
                           case ENOBUFS: return std::string("ENOBUFS");
                           default: return std::string("ETOOMANYREFS");
                           }
                         });

} // namespace
} // namespace sockdispatch
