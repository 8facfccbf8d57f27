// A fleet on one machine: three hosts, each a network namespace of its own with a veth link,
// each running `sockdispatch attach 8080 --agent-port 9100` (two in eBPF mode, one in line
// mode: both read their scoreboard for the agent), and Debian's HAProxy in the root namespace
// in front of them with `agent-check`. The scenarios: all three serve, each namespace sees its
// own attachment of the same port; a host whose workers are all stopped answers weight 0 and
// HAProxy sends new requests elsewhere, then takes it back; `detach` of a host under steady
// keep-alive and new-connection load through HAProxy fails no request. Every answer read from
// an agent port is parsed as HAProxy reads it. Traffic goes to loopback and the test's
// namespaces only; everything is bounded.
#include "support/agent_syntax.h"
#include "support/fleet.h"
#include "support/load.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>

#include <set>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

constexpr uint16_t kPort = 8080;
constexpr uint16_t kAgentPort = 9100;
constexpr int kHosts = 3;

class FleetTest : public testing::Test {
protected:
  void SetUp() override {
    if (!haveBpfPrivileges()) {
      GTEST_SKIP() << "needs root: network namespaces, veth links, the BPF program";
    }
    if (!haveHaproxy()) {
      GTEST_SKIP() << "needs Debian's haproxy and iproute2 (packaging/install-deps.sh)";
    }
    std::vector<Haproxy::Server> servers;
    for (int i = 0; i < kHosts; ++i) {
      auto host = NetnsHost::create(i);
      ASSERT_NE(host, nullptr);
      std::vector<std::string> args{
          std::to_string(kPort),      "--workers",     "2", "--agent-port",
          std::to_string(kAgentPort), "--drain-grace", "2", "--mode",
          i == 2 ? "line" : "ebpf"};
      ASSERT_TRUE(host->attach(args)) << "host " << i;
      servers.push_back({"host" + std::to_string(i), host->address(), kPort, kAgentPort});
      hosts_.push_back(std::move(host));
    }
    proxy_ = Haproxy::start(servers, Haproxy::Settings{});
    ASSERT_NE(proxy_, nullptr);
    ASSERT_TRUE(eventually(
        [&] {
          auto views = proxy_->servers();
          if (views.size() != kHosts) {
            return false;
          }
          for (const auto &[name, view] : views) {
            if (view.operatingState != 2 || view.weight != 100) {
              return false;
            }
          }
          return true;
        },
        std::chrono::seconds(10)))
        << proxy_->command("show servers state hosts");
  }

  // Which host a worker pid belongs to (-1: none of them).
  [[nodiscard]] int hostOf(const std::string &pid) const {
    for (size_t i = 0; i < hosts_.size(); ++i) {
      for (pid_t worker : hosts_[i]->workerPids()) {
        if (std::to_string(worker) == pid) {
          return static_cast<int>(i);
        }
      }
    }
    return -1;
  }

  // How many of `tally`'s answers each host gave.
  [[nodiscard]] std::vector<uint64_t> answersByHost(const LoadTally &tally) const {
    std::vector<uint64_t> counts(hosts_.size() + 1, 0); // the last: none of the hosts
    for (const auto &[pid, n] : tally.byPid) {
      int host = hostOf(pid);
      counts[host < 0 ? hosts_.size() : static_cast<size_t>(host)] += n;
    }
    return counts;
  }

  // The agent port's answer, parsed as HAProxy parses it (a failed parse fails the test).
  [[nodiscard]] std::string agentAnswer(int host) const {
    auto text = hosts_[host]->askAgent(kAgentPort);
    if (!text) {
      return "<unreachable>";
    }
    std::string problem;
    EXPECT_TRUE(parseAgentReply(*text, &problem)) << *text << ": " << problem;
    return *text;
  }

  [[nodiscard]] LoadTally newConnections(int requests) const {
    LoadTally tally;
    for (int i = 0; i < requests; ++i) {
      sendOnNewConnection(proxy_->port(), tally);
    }
    return tally;
  }

  std::vector<std::unique_ptr<NetnsHost>> hosts_; // destroyed after the proxy
  std::unique_ptr<Haproxy> proxy_;
};

/* All three serve through HAProxy; the same port is attached in three namespaces, and each
   namespace's `status` finds its own master (pins per namespace, found by later commands). */
TEST_F(FleetTest, AllThreeHostsServeAndEachNamespaceSeesItsOwnAttachment) {
  for (int i = 0; i < kHosts; ++i) {
    EXPECT_EQ(agentAnswer(i), "up ready 100%\n") << "host " << i;
    Completed status = hosts_[i]->run({"status", std::to_string(kPort), "--json"});
    ASSERT_EQ(status.code, 0) << status.err;
    auto json = nlohmann::json::parse(status.out);
    EXPECT_EQ(json["master_pid"], hosts_[i]->master()->pid()) << "host " << i;
    EXPECT_EQ(json["mode"], i == 2 ? "line" : "ebpf") << "host " << i;
    Completed weight = hosts_[i]->run({"status", std::to_string(kPort), "--weight"});
    EXPECT_EQ(weight.code, 0) << weight.err;
    EXPECT_EQ(weight.out, "100\n") << "host " << i;
    Completed keepalived = hosts_[i]->run({"status", std::to_string(kPort), "--keepalived"});
    EXPECT_EQ(keepalived.code, 102) << "misc_dynamic: 2 + weight 100";
  }
  LoadTally tally = newConnections(90);
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  std::vector<uint64_t> byHost = answersByHost(tally);
  for (int i = 0; i < kHosts; ++i) {
    EXPECT_GT(byHost[i], 0U) << "host " << i << " served nothing: " << tally.describe();
  }
  EXPECT_EQ(byHost[kHosts], 0U) << "answers from no known worker";
}

/* A host whose workers are all stopped answers weight 0 at once (its master still answers);
   HAProxy takes the weight and sends new requests to the other two; once the workers run
   again, the host gets its weight back. */
TEST_F(FleetTest, StoppedWorkersMoveNewRequestsToTheOtherHosts) {
  std::vector<pid_t> workers = hosts_[0]->workerPids();
  ASSERT_EQ(workers.size(), 2U);
  for (pid_t worker : workers) {
    ASSERT_TRUE(freeze(worker)) << "SIGSTOP " << worker;
  }
  EXPECT_TRUE(
      eventually([&] { return agentAnswer(0) == "up ready 0%\n"; }, std::chrono::seconds(1)))
      << agentAnswer(0);
  ASSERT_TRUE(
      eventually([&] { return proxy_->servers()["host0"].weight == 0; }, std::chrono::seconds(5)))
      << proxy_->command("show servers state hosts");
  LoadTally tally = newConnections(60);
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  std::vector<uint64_t> byHost = answersByHost(tally);
  EXPECT_EQ(byHost[0], 0U) << "a stopped host got new requests: " << tally.describe();
  EXPECT_EQ(byHost[1] + byHost[2], 60U) << tally.describe();

  for (pid_t worker : workers) {
    ASSERT_EQ(::kill(worker, SIGCONT), 0) << "SIGCONT " << worker;
  }
  EXPECT_TRUE(
      eventually([&] { return proxy_->servers()["host0"].weight == 100; }, std::chrono::seconds(5)))
      << proxy_->command("show servers state hosts");
  EXPECT_EQ(agentAnswer(0), "up ready 100%\n");
}

/* `detach` of one host while keep-alive and new-connection clients run through HAProxy: the
   host answers drain for its grace (HAProxy drains it), then stops and exits; no request
   fails, and the other hosts carry the load after. `detach` runs inside the host's namespace
   and finds the attachment a different `ip netns exec` made. */
TEST_F(FleetTest, DetachOfAHostUnderLoadFailsNoRequest) {
  Load load(proxy_->port(), 2, 2, 200000, std::chrono::seconds(60));
  ASSERT_TRUE(load.waitFor(300)) << "the load did not start";
  auto detach = hosts_[0]->start({"detach", std::to_string(kPort)});
  ASSERT_NE(detach, nullptr);
  EXPECT_TRUE(eventually([&] { return agentAnswer(0) == "drain\n"; }, std::chrono::seconds(1)))
      << agentAnswer(0);
  EXPECT_TRUE(
      eventually([&] { return proxy_->servers()["host0"].drained; }, std::chrono::seconds(5)))
      << proxy_->command("show servers state hosts");
  auto code = detach->wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.has_value()) << "detach did not finish";
  EXPECT_EQ(*code, 0) << detach->stderrText();
  EXPECT_EQ(hosts_[0]->master()->wait(std::chrono::seconds(10)), 0)
      << hosts_[0]->master()->stderrText();
  ASSERT_TRUE(load.waitFor(300)) << "the load stopped after the detach";
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  EXPECT_GT(tally.ok, 600U) << tally.describe();
  Completed status = hosts_[0]->run({"status", std::to_string(kPort), "--weight"});
  EXPECT_EQ(status.code, 2) << "detached: not attached any more; " << status.err;
}

} // namespace
} // namespace sockdispatch::test
