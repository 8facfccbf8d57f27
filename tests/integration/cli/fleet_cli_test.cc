// The fleet's flags on the command line and in the configuration file: every bad value exits
// 2 before anything is bound, naming the flag and the value; `status --weight` and
// `--keepalived` on a port that is not attached; an agent port that cannot be bound refuses
// the start before any worker runs.
#include "support/nginx.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

struct BadFleetFlags {
  const char *name;
  std::vector<std::string> args;
  std::vector<std::string> mentions; // each must appear in the message
};

void PrintTo(const BadFleetFlags &c, std::ostream *os) {
  *os << c.name;
}

class FleetFlagsRejected : public testing::TestWithParam<BadFleetFlags> {};

TEST_P(FleetFlagsRejected, WithExitCode2NamingTheValue) {
  auto done = runSockdispatch(GetParam().args);
  EXPECT_EQ(done.code, 2) << done.err;
  for (const auto &mention : GetParam().mentions) {
    EXPECT_NE(done.err.find(mention), std::string::npos)
        << "message should name '" << mention << "': " << done.err;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, FleetFlagsRejected,
    testing::Values(
        BadFleetFlags{"agent_port_out_of_range",
                      {"attach", "0", "--agent-port", "70000"},
                      {"--agent-port", "70000"}},
        BadFleetFlags{"agent_port_not_a_number",
                      {"attach", "0", "--agent-port", "haproxy"},
                      {"--agent-port", "haproxy"}},
        BadFleetFlags{"agent_port_is_the_served_port",
                      {"attach", "8080", "--agent-port", "8080"},
                      {"--agent-port 8080 is the served port"}},
        BadFleetFlags{"agent_bind_not_numeric",
                      {"attach", "0", "--agent-port", "9100", "--agent-bind", "lb.example"},
                      {"--agent-bind", "lb.example"}},
        BadFleetFlags{"agent_bind_without_agent_port",
                      {"attach", "0", "--agent-bind", "127.0.0.1"},
                      {"--agent-bind 127.0.0.1 needs --agent-port"}},
        BadFleetFlags{"negative_drain_grace",
                      {"attach", "0", "--agent-port", "9100", "--drain-grace", "-1"},
                      {"--drain-grace", "-1"}},
        BadFleetFlags{"drain_grace_too_long",
                      {"attach", "0", "--agent-port", "9100", "--drain-grace", "3601"},
                      {"--drain-grace", "3601"}},
        BadFleetFlags{"agent_capacity_not_a_number",
                      {"attach", "0", "--agent-capacity", "lots"},
                      {"--agent-capacity", "lots"}},
        BadFleetFlags{"weight_without_port", {"status", "--weight"}, {"--weight needs a PORT"}},
        BadFleetFlags{
            "keepalived_without_port", {"status", "--keepalived"}, {"--keepalived needs a PORT"}},
        BadFleetFlags{"weight_with_json", {"status", "8080", "--weight", "--json"}, {"--weight"}}),
    [](const testing::TestParamInfo<BadFleetFlags> &p) { return p.param.name; });

/* The configuration file's keys are checked by the same ranges, naming file, line and key. */
TEST(FleetConfig, BadKeysNameTheLineAndKey) {
  TempDir dir;
  std::string path = dir.write("fleet.toml", "port = 8080\nagent-port = 123456\n");
  auto done = runSockdispatch({"check-config", path});
  EXPECT_EQ(done.code, 2) << done.err;
  EXPECT_NE(done.err.find("line 2: key 'agent-port': 123456 is not in range 0 to 65535"),
            std::string::npos)
      << done.err;
}

/* A port that is not attached: --weight says so (exit 2), --keepalived answers "down" (1). */
TEST(FleetStatus, WeightOfAPortNotAttached) {
  uint16_t port = unusedPort();
  auto weight = runSockdispatch({"status", std::to_string(port), "--weight"});
  EXPECT_EQ(weight.code, 2) << weight.err;
  EXPECT_NE(weight.err.find("is not attached"), std::string::npos) << weight.err;
  auto keepalived = runSockdispatch({"status", std::to_string(port), "--keepalived"});
  EXPECT_EQ(keepalived.code, 1) << "misc_dynamic: 1 is a failed check";
}

/* An agent port already taken refuses the start, before any worker runs, naming the port. */
TEST(FleetAttach, AgentPortInUseRefusesTheStart) {
  if (!haveBpfPrivileges()) {
    GTEST_SKIP() << "needs root (attach loads the program or writes /run)";
  }
  UniqueFd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address)), 0)
      << "bind";
  ASSERT_EQ(::listen(taken.get(), 4), 0) << "listen";
  socklen_t length = sizeof(address);
  ASSERT_EQ(::getsockname(taken.get(), reinterpret_cast<sockaddr *>(&address), &length), 0);
  std::string agentPort = std::to_string(ntohs(address.sin_port));
  auto done = runSockdispatch({"attach", "0", "--bind", "127.0.0.1", "--workers", "2",
                               "--agent-port", agentPort, "--agent-bind", "127.0.0.1"});
  EXPECT_EQ(done.code, 1) << done.err;
  EXPECT_NE(done.err.find("Failed to bind the agent port 127.0.0.1:" + agentPort),
            std::string::npos)
      << done.err;
  EXPECT_EQ(done.out.find("listening on"), std::string::npos) << "no worker may have served";
}

} // namespace
} // namespace sockdispatch::test
