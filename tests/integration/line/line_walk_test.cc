// The line fallback's units working together across real processes: a shared scoreboard
// file, SEQPACKET channels between forked workers, real loopback TCP connections passed
// down the line, and each worker's keep-or-pass decision.
#include "line/balancer.h"
#include "line/fd_channel.h"
#include "line/line_balancer.h"
#include "line/shared_scoreboard.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace sockdispatch {
namespace {

constexpr uint16_t kPort = 18124;
constexpr int kConnections = 40;

struct WalkCase {
  const char *name;
  uint32_t workers;
  uint32_t policy;
  std::vector<uint32_t> draining;
};

void PrintTo(const WalkCase &c, std::ostream *os) {
  *os << c.name;
}

// One forked worker: reads its input channel, keeps or passes each connection, answers the
// kept ones with its slot and holds them open, forwards the rest in one message. Exits 0
// when its predecessor closes the channel; any failure is a distinct exit code.
[[noreturn]] void runWorker(Scoreboard board, uint32_t slot, UniqueFd input, UniqueFd output) {
  ::alarm(30); // bounded, whatever happens to the parent
  std::vector<UniqueFd> kept;
  for (;;) {
    pollfd readable{input.get(), POLLIN, 0};
    if (::poll(&readable, 1, 10000) <= 0) {
      ::_exit(5);
    }
    auto got = receive(input.get());
    if (!got) {
      ::_exit(6);
    }
    if (got->peerClosed) {
      ::_exit(0);
    }
    std::vector<int> pass;
    for (size_t i = 0; i < got->fds.size(); ++i) {
      LineStep step{slot, output.valid(), 0, got->message.sequence + i, got->message.hops};
      if (decideOnLine(board, step) == LineVerdict::kKeep) {
        board.connectionOpened(slot);
        std::string answer = "slot " + std::to_string(slot) + "\n";
        if (::write(got->fds[i].get(), answer.data(), answer.size()) !=
            static_cast<ssize_t>(answer.size())) {
          ::_exit(7);
        }
        kept.push_back(std::move(got->fds[i]));
      } else {
        pass.push_back(got->fds[i].get());
      }
    }
    if (!pass.empty()) {
      auto message = LineMessage::make(LineMessageType::kConnections, got->message.sequence,
                                       got->message.hops + 1);
      if (!output.valid() || !sendFds(output.get(), message, pass)) {
        ::_exit(8);
      }
    }
  }
}

class LineWalk : public testing::TestWithParam<WalkCase> {
protected:
  void SetUp() override {
    std::array<char, 64> dir{};
    std::string pattern = "/tmp/sockdispatch-line-XXXXXX";
    std::copy(pattern.begin(), pattern.end(), dir.begin());
    ASSERT_NE(::mkdtemp(dir.data()), nullptr) << "mkdtemp";
    temp_ = dir.data();
    ASSERT_EQ(::setenv("SOCKDISPATCH_RUN_ROOT", temp_.c_str(), 1), 0);
  }
  void TearDown() override {
    ::rmdir(runDirFor(kPort).c_str());
    EXPECT_EQ(::rmdir(temp_.c_str()), 0) << "the scoreboard's owner removed its file";
    ::unsetenv("SOCKDISPATCH_RUN_ROOT");
  }
  std::string temp_;
};

/*
 * The parent plays the master: it accepts 40 loopback connections one at a time and sends
 * each to the first worker. The client reads which worker answered. With every connection
 * kept open, loads grow unevenly; each answer must be the slot the C++ reference of the
 * kernel program chooses for the same counters, and afterwards the shared `skipped` and
 * `selected` counters equal the reference's. Closing the head of the line stops the workers
 * one after the other (EOF travels down the line); each exits 0.
 */
TEST_P(LineWalk, ForkedWorkersChooseWhatTheReferenceChooses) {
  const WalkCase &c = GetParam();
  sd_config config{};
  config.policy = c.policy;
  config.nr_slots = c.workers;
  auto created = SharedScoreboard::create(kPort, config);
  ASSERT_TRUE(created.ok()) << created.error().message();
  SharedScoreboard owner = std::move(created.value());
  Scoreboard board = owner.writer();
  for (uint32_t slot = 0; slot < c.workers; ++slot) {
    board.prepareSlot(slot, 1);
    board.setState(slot, SD_SLOT_RUNNING);
  }
  for (uint32_t slot : c.draining) {
    board.setDraining(slot, true);
  }
  std::vector<SlotSnapshot> reference = board.snapshotAll();

  // channels[k]: first = write end (held by k's predecessor), second = read end (worker k).
  std::vector<std::pair<UniqueFd, UniqueFd>> channels;
  for (uint32_t slot = 0; slot < c.workers; ++slot) {
    auto pair = makeChannelPair();
    ASSERT_TRUE(pair.ok()) << pair.error().message();
    channels.push_back(std::move(pair.value()));
  }
  std::vector<pid_t> workers;
  for (uint32_t slot = 0; slot < c.workers; ++slot) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0) << "fork worker " << slot;
    if (child == 0) {
      UniqueFd input = std::move(channels[slot].second);
      UniqueFd output;
      if (slot + 1 < c.workers) {
        output = std::move(channels[slot + 1].first);
      }
      channels.clear(); // every other end closed, so EOF can travel down the line
      runWorker(board, slot, std::move(input), std::move(output));
    }
    workers.push_back(child);
  }
  UniqueFd head = std::move(channels[0].first);
  channels.clear();

  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr *>(&address), length), 0);
  ASSERT_EQ(::listen(listener.get(), 64), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&address), &length), 0);

  std::vector<UniqueFd> clients;
  for (int i = 0; i < kConnections; ++i) {
    UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr *>(&address), length), 0)
        << "connect " << i;
    {
      UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
      ASSERT_TRUE(accepted.valid()) << "accept " << i;
      std::array<int, 1> fds{accepted.get()};
      auto sent = sendFds(head.get(), LineMessage::make(LineMessageType::kConnections, i), fds);
      ASSERT_TRUE(sent.ok()) << sent.error().message();
    } // the master's copy closes; the line holds the connection

    pollfd readable{client.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&readable, 1, 5000), 1) << "an answer to connection " << i;
    std::array<char, 32> answer{};
    ASSERT_GT(::read(client.get(), answer.data(), answer.size() - 1), 0) << "read " << i;
    std::optional<uint32_t> expected = c.policy == SD_POLICY_LEAST_CONN
                                           ? leastConnChoose(reference, 0, static_cast<uint64_t>(i))
                                           : skipLoadChoose(reference);
    ASSERT_TRUE(expected.has_value());
    EXPECT_EQ(std::string(answer.data()), "slot " + std::to_string(*expected) + "\n")
        << "connection " << i;
    reference[*expected].open += 1;
    reference[*expected].selected += 1;
    clients.push_back(std::move(client));
  }

  head.reset();
  for (size_t slot = 0; slot < workers.size(); ++slot) {
    int status = 0;
    ASSERT_EQ(::waitpid(workers[slot], &status, 0), workers[slot]) << "waitpid " << slot;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "worker " << slot << " status " << status;
  }
  for (const SlotSnapshot &slot : board.snapshotAll()) {
    EXPECT_EQ(slot.open, reference[slot.slot].open) << "open of slot " << slot.slot;
    EXPECT_EQ(slot.skipped, reference[slot.slot].skipped) << "skipped of slot " << slot.slot;
    EXPECT_EQ(slot.selected, reference[slot.slot].selected) << "selected of slot " << slot.slot;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, LineWalk,
    testing::Values(WalkCase{"four_workers_skip_load", 4, SD_POLICY_SKIP_LOAD, {}},
                    WalkCase{"five_workers_second_draining", 5, SD_POLICY_SKIP_LOAD, {1}},
                    WalkCase{"three_workers_least_conn", 3, SD_POLICY_LEAST_CONN, {}}),
    [](const testing::TestParamInfo<WalkCase> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
