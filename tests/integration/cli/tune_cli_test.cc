// `sockdispatch tune` on a live attachment: the real binary writes the pinned maps and the
// kernel program's next decisions follow, proven by the slot each worker reports. Also the
// raw `bpftool map update` equivalent, a switch under load, and bad input that writes nothing.
#include "bpf/pin_dir.h"
#include "control/pinned_attachment.h"
#include "line/balancer.h"
#include "support/http_client.h"
#include "support/live_attachment.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <ostream>
#include <thread>
#include <vector>

namespace sockdispatch::test {
namespace {

using Predict = std::function<uint32_t(const std::vector<SlotSnapshot> &, const sd_config &config)>;

class TuneCli : public LiveAttachmentTest {
protected:
  Completed tune(std::vector<std::string> args) {
    args.insert(args.begin(), {"tune", std::to_string(attachment_->port())});
    return runSockdispatch(args);
  }

  // Opens `count` connections one at a time, each closed before the next; before each,
  // `predict` names the slot from the live scoreboard; the answering worker must be that slot.
  // Returns how many each slot served.
  std::vector<int> expectSequence(int count, const Predict &predict) {
    std::vector<int> served(4);
    for (int i = 0; i < count; ++i) {
      Scoreboard board = pinned_->scoreboard();
      uint32_t expected = predict(board.snapshotAll(), *board.config());
      auto reply = fetch(attachment_->port());
      EXPECT_TRUE(reply.has_value()) << "step " << i;
      if (!reply) {
        return served;
      }
      EXPECT_EQ(reply->workerSlot(), static_cast<int>(expected)) << "step " << i;
      ++served.at(static_cast<size_t>(reply->workerSlot()));
      EXPECT_TRUE(eventually([&] { return pinned_->scoreboard().snapshot(expected).open == 0; }));
    }
    return served;
  }
};

/* tune --policy round_robin: the next connections walk the slots in order. */
TEST_F(TuneCli, RoundRobinTakesEffectOnTheNextConnection) {
  auto done = tune({"--policy", "round_robin"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("policy: least_conn -> round_robin"), std::string::npos) << done.out;
  EXPECT_NE(done.out.find("generation 1 -> 2"), std::string::npos) << done.out;
  EXPECT_EQ(loadRelaxed(pinned_->config().generation), 2U);
  auto served = expectSequence(8, [](const auto &slots, const sd_config &config) {
    return *roundRobinChoose(slots, loadRelaxed(config.rr_cursor));
  });
  EXPECT_EQ(served, (std::vector<int>{2, 2, 2, 2}));
}

/* Weights and the policy in one command: shares 3, 0, 1, 0 of every four connections. */
TEST_F(TuneCli, WeightedWithWeightsFromOneCommand) {
  auto done = tune({"--policy", "weighted", "--weight", "0=3", "--weight", "1=0", "--weight", "2=1",
                    "--weight", "3=0"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("slot 0: weight 1 -> 3"), std::string::npos) << done.out;
  EXPECT_NE(done.out.find("slot 2: weight 1 (unchanged)"), std::string::npos) << done.out;
  auto served = expectSequence(8, [](const auto &slots, const sd_config &config) {
    return *weightedChoose(slots, loadRelaxed(config.rr_cursor));
  });
  EXPECT_EQ(served, (std::vector<int>{6, 0, 2, 0}));
}

/*
 * least_conn with slots 1 and 2 drained: held connections alternate between 0 and 3; after
 * --undrain 1, slot 1 (now the emptiest) takes the next ones.
 */
TEST_F(TuneCli, DrainAndUndrain) {
  auto done = tune({"--policy", "least_conn", "--drain", "1", "--drain", "2"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("slot 1: draining"), std::string::npos) << done.out;
  std::vector<TcpClient> held;
  std::vector<int> served(4);
  auto open = [&] {
    auto client = TcpClient::connect(attachment_->port());
    ASSERT_TRUE(client.has_value());
    ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto reply = client->readReply();
    ASSERT_TRUE(reply.has_value());
    ++served.at(static_cast<size_t>(reply->workerSlot()));
    held.push_back(std::move(*client));
  };
  for (int i = 0; i < 6; ++i) {
    open();
  }
  EXPECT_EQ(served, (std::vector<int>{3, 0, 0, 3}));
  done = tune({"--undrain", "1"});
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_NE(done.out.find("slot 1: serving"), std::string::npos) << done.out;
  for (int i = 0; i < 3; ++i) {
    open();
  }
  EXPECT_EQ(served, (std::vector<int>{3, 3, 0, 3}));
}

/*
 * The bpftool equivalent from docs/operations.md, run with the real bpftool: the config
 * record read as JSON, byte 4 (policy) set to 3 (round_robin), written back whole; and slot
 * 1's record with byte 12 (draining) set to 1. The program follows as it does after `tune`.
 */
TEST_F(TuneCli, BpftoolMapUpdateHasTheSameEffect) {
  if (::access("/usr/sbin/bpftool", X_OK) != 0) {
    GTEST_SKIP() << "bpftool is not installed";
  }
  const std::string script = R"(set -e
pins=$1
v=($(bpftool -j map lookup pinned $pins/config key hex 00 00 00 00 |
     grep -o '"value":\[[^]]*' | grep -o '0x[0-9a-f]*'))
v[4]=03
bpftool map update pinned $pins/config key hex 00 00 00 00 value hex ${v[@]#0x}
s=($(bpftool -j map lookup pinned $pins/slots key hex 01 00 00 00 |
     grep -o '"value":\[[^]]*' | grep -o '0x[0-9a-f]*'))
s[12]=01
bpftool map update pinned $pins/slots key hex 01 00 00 00 value hex ${s[@]#0x}
)";
  auto process =
      Process::start({"/bin/bash", "-c", script, "bpftool-tune", pinDirFor(attachment_->port())});
  ASSERT_NE(process, nullptr);
  ASSERT_EQ(process->wait(20s), 0) << process->stderrText();
  EXPECT_EQ(loadRelaxed(pinned_->config().policy), SD_POLICY_ROUND_ROBIN);
  EXPECT_EQ(pinned_->scoreboard().snapshot(1).draining, 1U);
  auto served = expectSequence(6, [](const auto &slots, const sd_config &config) {
    return *roundRobinChoose(slots, loadRelaxed(config.rr_cursor));
  });
  EXPECT_EQ(served, (std::vector<int>{2, 0, 2, 2}));
  auto status = runSockdispatch({"status", std::to_string(attachment_->port())});
  EXPECT_NE(status.out.find("policy round_robin"), std::string::npos) << status.out;
  // The maps carry BTF: bpftool shows the field names.
  auto dump = Process::start(
      {"/usr/sbin/bpftool", "map", "dump", "pinned", pinDirFor(attachment_->port()) + "/slots"});
  ASSERT_NE(dump, nullptr);
  std::string text;
  while (auto line = dump->readLine(10s)) {
    text += *line + "\n";
  }
  EXPECT_EQ(dump->wait(10s), 0);
  EXPECT_NE(text.find("\"draining\": 1"), std::string::npos) << text.substr(0, 2000);
}

/*
 * A policy switch under load: three clients (one on a keep-alive connection, two opening a
 * connection per request) for about 2 s; at 1 s `tune` switches skip_load to weighted 3:1:0:0.
 * No request fails, and the connections opened after tune returned follow the new weights.
 */
TEST_F(TuneCli, SwitchUnderLoadLosesNothing) {
  using Clock = std::chrono::steady_clock;
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::atomic<int> answered{0};
  std::atomic<int64_t> switchedAt{INT64_MAX}; // when tune returned, in Clock ticks
  std::mutex lock;
  std::vector<int> after(4);
  std::string firstFailure;
  auto fail = [&](const std::string &what) {
    std::lock_guard<std::mutex> guard(lock);
    if (failures++ == 0) {
      firstFailure = what;
    }
  };
  uint16_t port = attachment_->port();
  auto keepAlive = [&] {
    while (!stop) {
      auto client = TcpClient::connect(port);
      if (!client) {
        fail("keep-alive connect");
        return;
      }
      for (int i = 0; i < 100 && !stop; ++i) {
        if (!client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")) {
          fail("keep-alive send");
          return;
        }
        auto reply = client->readReply();
        if (!reply || reply->status != 200) {
          fail("keep-alive reply");
          return;
        }
        ++answered;
      }
    }
  };
  auto fresh = [&] {
    while (!stop) {
      int64_t started = Clock::now().time_since_epoch().count();
      auto reply = fetch(port);
      if (!reply || reply->status != 200) {
        fail("new connection");
        return;
      }
      ++answered;
      if (started > switchedAt.load()) {
        std::lock_guard<std::mutex> guard(lock);
        ++after.at(static_cast<size_t>(reply->workerSlot()));
      }
    }
  };
  std::vector<std::thread> clients;
  clients.emplace_back(keepAlive);
  clients.emplace_back(fresh);
  clients.emplace_back(fresh);
  std::this_thread::sleep_for(1s);
  int beforeSwitch = answered.load();
  auto done = tune({"--policy", "weighted", "--weight", "0=3", "--weight", "1=1", "--weight", "2=0",
                    "--weight", "3=0"});
  switchedAt = Clock::now().time_since_epoch().count();
  std::this_thread::sleep_for(1s);
  stop = true;
  for (auto &client : clients) {
    client.join();
  }
  ASSERT_EQ(done.code, 0) << done.err;
  EXPECT_EQ(failures.load(), 0) << "first failure: " << firstFailure;
  EXPECT_GT(beforeSwitch, 20) << "the load did not run before the switch";
  int total = after[0] + after[1] + after[2] + after[3];
  ASSERT_GT(total, 20) << "too few new connections after the switch";
  EXPECT_EQ(after[2], 0);
  EXPECT_EQ(after[3], 0);
  double share = static_cast<double>(after[0]) / total;
  EXPECT_NEAR(share, 0.75, 0.1) << after[0] << " of " << total << " on slot 0";
}

/* Pins whose master is gone are not tuned: the change would serve nobody. */
TEST_F(TuneCli, StaleAttachmentIsRefused) {
  uint32_t master = loadRelaxed(pinned_->config().master_pid);
  // A pid no process has: the pins now look like a killed master's.
  storeRelease<__u32>(pinned_->scoreboard().config()->master_pid, 0x3fffffff);
  auto done = tune({"--policy", "hash"});
  storeRelease<__u32>(pinned_->scoreboard().config()->master_pid, master);
  EXPECT_EQ(done.code, 1) << done.err;
  EXPECT_NE(done.err.find("is not running"), std::string::npos) << done.err;
  EXPECT_EQ(loadRelaxed(pinned_->config().policy), SD_POLICY_LEAST_CONN) << "unchanged";
}

struct BadTune {
  const char *name;
  std::vector<std::string> args; // after "tune"; "{port}" stands for the attached port
  std::vector<std::string> mentions;
};

void PrintTo(const BadTune &c, std::ostream *os) {
  *os << c.name;
}

class TuneRejects : public LiveAttachmentTest, public testing::WithParamInterface<BadTune> {};

/* Every bad value exits 2, names the value, and writes nothing: config and slots unchanged. */
TEST_P(TuneRejects, WithExitCode2AndNothingWritten) {
  std::vector<std::string> args{"tune"};
  for (const auto &arg : GetParam().args) {
    args.push_back(arg == "{port}" ? std::to_string(attachment_->port()) : arg);
  }
  Scoreboard board = pinned_->scoreboard();
  sd_config configBefore = *board.config();
  std::vector<SlotSnapshot> slotsBefore = board.snapshotAll();
  ASSERT_EQ(slotsBefore.size(), 4U);
  auto done = runSockdispatch(args);
  EXPECT_EQ(done.code, 2) << done.err;
  for (const auto &mention : GetParam().mentions) {
    EXPECT_NE(done.err.find(mention), std::string::npos)
        << "message should name '" << mention << "': " << done.err;
  }
  EXPECT_EQ(std::memcmp(&configBefore, board.config(), sizeof(sd_config)), 0)
      << "the config record changed";
  for (uint32_t slot = 0; slot < 4; ++slot) {
    auto s = board.snapshot(slot);
    EXPECT_EQ(s.weight, slotsBefore[slot].weight) << "slot " << slot;
    EXPECT_EQ(s.draining, slotsBefore[slot].draining) << "slot " << slot;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, TuneRejects,
    testing::Values(
        BadTune{"unknown_policy", {"{port}", "--policy", "fastest"}, {"--policy", "'fastest'"}},
        BadTune{"drain_out_of_range", {"{port}", "--drain", "4"}, {"--drain", "slot 4"}},
        BadTune{"undrain_not_a_slot", {"{port}", "--undrain", "200"}, {"--undrain", "'200'"}},
        BadTune{"weight_slot_out_of_range", {"{port}", "--weight", "4=1"}, {"--weight", "slot 4"}},
        BadTune{"weight_out_of_range", {"{port}", "--weight", "1=1001"}, {"'1001'", "1000"}},
        BadTune{"weight_without_equals", {"{port}", "--weight", "3"}, {"--weight", "'3'"}},
        BadTune{"weight_slot_not_a_number", {"{port}", "--weight", "a=1"}, {"'a'", "'a=1'"}},
        BadTune{"weight_missing", {"{port}", "--weight", "3="}, {"'3='"}},
        BadTune{"weight_negative", {"{port}", "--weight", "3=-1"}, {"'3=-1'", "'-1'"}},
        BadTune{"drain_and_undrain", {"{port}", "--drain", "1", "--undrain", "1"}, {"slot 1"}},
        BadTune{"nothing_to_change", {"{port}"}, {"nothing to change"}},
        BadTune{"unknown_port", {"9", "--policy", "hash"}, {"port 9 is not attached"}},
        // Good values before a bad one: still nothing is written.
        BadTune{"valid_then_invalid",
                {"{port}", "--policy", "least_conn", "--drain", "1", "--weight", "2=5", "--weight",
                 "9=1"},
                {"--weight", "slot 9"}}),
    [](const testing::TestParamInfo<BadTune> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch::test
