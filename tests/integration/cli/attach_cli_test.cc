// `sockdispatch attach` as an operator runs it: the real binary, real sockets, the real
// kernel program. Checks the printed port, the pinned state's life cycle, and that every
// bad flag is refused with exit code 2 and a message naming the bad value.
#include "bpf/pin_dir.h"
#include "bpf/scoreboard.h"
#include "control/pinned_attachment.h"
#include "sockdispatch/abi.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <thread>

namespace sockdispatch::test {
namespace {

bool exists(const std::string &path) {
  return ::access(path.c_str(), F_OK) == 0;
}

using AttachCli = BpfTest;

/*
 * attach 0 binds an ephemeral port, prints it once every worker serves, answers on it with
 * the built-in page, pins its state, and on SIGTERM exits 0 and removes the pins.
 */
TEST_F(AttachCli, EphemeralPortIsPrintedServedAndCleanedUp) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_NE(attachment, nullptr);
  ASSERT_NE(attachment->port(), 0);
  std::string pins = pinDirFor(attachment->port());
  for (const char *pin : {kPinSlots, kPinConfig, kPinVerdicts, kPinSockets, kPinProgram}) {
    EXPECT_TRUE(exists(pins + "/" + pin)) << pins << "/" << pin;
  }
  auto reply = fetch(attachment->port());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_NE(reply->body.find("in ebpf mode"), std::string::npos) << reply->body;
  EXPECT_EQ(reply->header("content-type"), "text/html; charset=utf-8");

  EXPECT_EQ(attachment->stop(), 0) << attachment->process().stderrText();
  EXPECT_FALSE(exists(pins)) << "pins left behind in " << pins;
  EXPECT_FALSE(TcpClient::connect(attachment->port()).has_value()) << "port still open";
}

/* A second attach of a port that a live master holds is refused, naming that master. */
TEST_F(AttachCli, SecondAttachOfTheSamePortIsRefused) {
  auto first = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(first, nullptr);
  auto second = runSockdispatch(
      {"attach", std::to_string(first->port()), "--bind", "127.0.0.1", "--workers", "1"});
  EXPECT_EQ(second.code, 2) << second.err;
  EXPECT_NE(second.err.find("already attached"), std::string::npos) << second.err;
  EXPECT_NE(second.err.find("master pid " + std::to_string(first->process().pid())),
            std::string::npos)
      << second.err;
  // The first attachment is untouched.
  auto reply = fetch(first->port());
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
}

/*
 * State left by a master that was killed, with no worker left serving, is detected as stale,
 * cleaned, and the port reused. (Workers that still serve are taken over: takeover_test.cc.)
 */
// Kills the master of `first` (started with --orphan-timeout 0) and waits until the port is
// free: its state stays behind, as a killed master leaves it, and its worker stops with it.
void killLeavingState(Attachment &first) {
  first.process().signal(SIGKILL);
  ASSERT_TRUE(first.process().wait(5s).has_value());
  ASSERT_TRUE(exists(pinDirFor(first.port()))) << "a killed master cannot clean up after itself";
  ASSERT_TRUE(eventually([&] { return !TcpClient::connect(first.port()).has_value(); }, 10s));
}

TEST_F(AttachCli, StaleStateOfAKilledMasterIsReplaced) {
  auto first =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1", "--orphan-timeout", "0"});
  ASSERT_NE(first, nullptr);
  uint16_t port = first->port();
  ASSERT_NO_FATAL_FAILURE(killLeavingState(*first));

  auto second = Attachment::start({std::to_string(port), "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(second, nullptr);
  EXPECT_NE(second->process().stderrText().find("stale"), std::string::npos);
  auto reply = fetch(port);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
}

/*
 * The same when another map ABI version wrote the state (a master of an older build, killed,
 * then the package upgraded): this build cannot open it, but its master is gone and nothing
 * listens on the port, so the state is removed rather than holding the port for good.
 */
TEST_F(AttachCli, StaleStateOfAnotherMapAbiIsReplaced) {
  auto first =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1", "--orphan-timeout", "0"});
  ASSERT_NE(first, nullptr);
  uint16_t port = first->port();
  {
    auto pinned = PinnedAttachment::open(port, true);
    ASSERT_TRUE(pinned) << pinned.error().message();
    storeRelease<__u32>(pinned->scoreboard().config()->abi_version, SD_ABI_VERSION - 1);
  }
  ASSERT_NO_FATAL_FAILURE(killLeavingState(*first));
  ASSERT_FALSE(PinnedAttachment::open(port, false)) << "this build cannot read the state";

  auto second = Attachment::start({std::to_string(port), "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(second, nullptr);
  std::string err = second->process().stderrText();
  EXPECT_NE(err.find("removing stale state of port " + std::to_string(port)), std::string::npos)
      << err;
  EXPECT_NE(err.find("map ABI is version " + std::to_string(SD_ABI_VERSION - 1)), std::string::npos)
      << err;
  auto reply = fetch(port);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
}

/* Another version's state whose master still runs is not touched: the start is refused. */
TEST_F(AttachCli, StateOfAnotherMapAbiWithALiveMasterIsKept) {
  auto first = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(first, nullptr);
  uint16_t port = first->port();
  auto pinned = PinnedAttachment::open(port, true);
  ASSERT_TRUE(pinned) << pinned.error().message();
  storeRelease<__u32>(pinned->scoreboard().config()->abi_version, SD_ABI_VERSION + 1);
  auto second = runSockdispatch({"attach", std::to_string(port), "--bind", "127.0.0.1"});
  storeRelease<__u32>(pinned->scoreboard().config()->abi_version, SD_ABI_VERSION);
  EXPECT_EQ(second.code, 1);
  EXPECT_NE(second.err.find("map ABI is version " + std::to_string(SD_ABI_VERSION + 1)),
            std::string::npos)
      << second.err;
  auto reply = fetch(port);
  ASSERT_TRUE(reply.has_value()) << "the first attachment still serves";
  EXPECT_EQ(reply->status, 200);
}

TEST_F(AttachCli, ServesOverIpv6) {
  auto attachment = Attachment::start({"0", "--bind", "::1", "--workers", "2"});
  ASSERT_NE(attachment, nullptr);
  auto client = TcpClient::connect(attachment->port(), true);
  ASSERT_TRUE(client.has_value());
  ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto reply = client->readReply();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
}

/* --root serves files over real TCP: the 13-byte body the benchmarks use, and a 404. */
TEST_F(AttachCli, ServesStaticFilesFromRoot) {
  char base[] = "/tmp/sockdispatch-root-XXXXXX";
  ASSERT_NE(::mkdtemp(base), nullptr);
  std::filesystem::path root(base);
  std::ofstream(root / "index.html") << "Hello, World!";
  std::ofstream(root / "big.bin") << std::string(3 * 1024 * 1024, 'z');
  {
    auto attachment =
        Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2", "--root", base});
    ASSERT_NE(attachment, nullptr);
    auto index = fetch(attachment->port(), "/");
    ASSERT_TRUE(index.has_value());
    EXPECT_EQ(index->status, 200);
    EXPECT_EQ(index->body, "Hello, World!");
    auto big = fetch(attachment->port(), "/big.bin");
    ASSERT_TRUE(big.has_value());
    EXPECT_EQ(big->body.size(), 3U * 1024 * 1024);
    auto missing = fetch(attachment->port(), "/missing.txt");
    ASSERT_TRUE(missing.has_value());
    EXPECT_EQ(missing->status, 404);
  }
  std::filesystem::remove_all(root);
}

/* --policy picks the policy the attachment starts with; status shows it. */
TEST_F(AttachCli, PolicyFlagSetsTheStartingPolicy) {
  auto attachment =
      Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "3", "--policy", "round_robin"});
  ASSERT_NE(attachment, nullptr);
  auto status = runSockdispatch({"status", std::to_string(attachment->port())});
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_NE(status.out.find("policy round_robin"), std::string::npos) << status.out;
  std::vector<int> slots;
  for (int i = 0; i < 6; ++i) {
    auto reply = fetch(attachment->port());
    ASSERT_TRUE(reply);
    slots.push_back(reply->workerSlot());
  }
  EXPECT_EQ(slots, (std::vector<int>{0, 1, 2, 0, 1, 2})) << "each worker in turn";
  EXPECT_EQ(attachment->stop(), 0);
}

/* Dotfiles are hidden (404) by default; --dotfiles serves them. */
TEST_F(AttachCli, DotfilesAreServedOnlyWithTheFlag) {
  TempDir root;
  (void)root.write(".env", "SECRET=1");
  (void)root.write("index.html", "Hello, World!");
  for (bool serve : {false, true}) {
    std::vector<std::string> args{"0", "--bind", "127.0.0.1", "--workers",
                                  "1", "--root", root.path()};
    if (serve) {
      args.emplace_back("--dotfiles");
    }
    auto attachment = Attachment::start(args);
    ASSERT_NE(attachment, nullptr);
    auto reply = fetch(attachment->port(), "/.env");
    ASSERT_TRUE(reply) << "--dotfiles " << serve;
    EXPECT_EQ(reply->status, serve ? 200 : 404);
    EXPECT_EQ(reply->body.find("SECRET") != std::string::npos, serve) << reply->body;
    EXPECT_EQ(attachment->stop(), 0);
  }
}

/*
 * A small file is answered from the worker's memory: by default only after a stat shows it
 * unchanged, so an edit is answered at once; with --file-cache-valid S the copy is trusted
 * for S seconds. Files changed in the last 2 s are never kept, so the test first lets its
 * files age past that (the one wait on time itself).
 */
TEST_F(AttachCli, SmallFilesAreCachedAndAChangeIsSeenAsTheFlagSays) {
  TempDir root;
  (void)root.write("exact.txt", "first");
  (void)root.write("trusted.txt", "first");
  auto written = std::chrono::steady_clock::now();
  for (const char *valid : {"0", "3600"}) {
    std::string name = std::string(valid) == "0" ? "/exact.txt" : "/trusted.txt";
    auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1", "--root",
                                         root.path(), "--file-cache-valid", valid});
    ASSERT_NE(attachment, nullptr);
    std::this_thread::sleep_until(written + std::chrono::milliseconds(2200));
    auto first = fetch(attachment->port(), name);
    ASSERT_TRUE(first);
    EXPECT_EQ(first->body, "first");
    (void)root.write(name.substr(1), "second, longer");
    auto second = fetch(attachment->port(), name);
    ASSERT_TRUE(second);
    EXPECT_EQ(second->body, std::string(valid) == "0" ? "second, longer" : "first")
        << "--file-cache-valid " << valid;
    EXPECT_EQ(attachment->stop(), 0);
  }
}

struct BadFlags {
  const char *name;
  std::vector<std::string> args;
  std::vector<std::string> mentions; // each must appear in the message
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const BadFlags &c, std::ostream *os) {
  *os << c.name;
}

class AttachRejects : public testing::TestWithParam<BadFlags> {};

/* Bad input exits 2 before anything is bound or loaded, and names the bad value. */
TEST_P(AttachRejects, WithExitCode2NamingTheValue) {
  auto done = runSockdispatch(GetParam().args);
  EXPECT_EQ(done.code, 2) << done.err;
  for (const auto &mention : GetParam().mentions) {
    EXPECT_NE(done.err.find(mention), std::string::npos)
        << "message should name '" << mention << "': " << done.err;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, AttachRejects,
    testing::Values(
        BadFlags{"zero_workers", {"attach", "0", "--workers", "0"}, {"--workers", "0"}},
        BadFlags{"negative_file_cache_valid",
                 {"attach", "0", "--file-cache-valid", "-1"},
                 {"--file-cache-valid", "-1"}},
        BadFlags{"negative_defer_accept",
                 {"attach", "0", "--defer-accept", "-1"},
                 {"--defer-accept", "-1"}},
        BadFlags{"defer_accept_too_long",
                 {"attach", "0", "--defer-accept", "601"},
                 {"--defer-accept", "601"}},
        BadFlags{"too_many_workers", {"attach", "0", "--workers", "129"}, {"--workers", "129"}},
        BadFlags{"bad_address", {"attach", "0", "--bind", "999.1.1.1"}, {"--bind", "999.1.1.1"}},
        BadFlags{"host_name", {"attach", "0", "--bind", "localhost"}, {"localhost"}},
        BadFlags{"missing_root",
                 {"attach", "0", "--root", "/nonexistent/sockdispatch"},
                 {"--root", "/nonexistent/sockdispatch"}},
        BadFlags{"zero_header_fields",
                 {"attach", "0", "--max-header-fields", "0"},
                 {"--max-header-fields", "0"}},
        BadFlags{"header_fields_not_a_number",
                 {"attach", "0", "--max-header-fields", "many"},
                 {"--max-header-fields", "many"}},
        BadFlags{"unknown_stop_signal",
                 {"attach", "0", "--stop-signal", "KILL", "--", "/bin/true"},
                 {"--stop-signal", "KILL"}},
        BadFlags{"command_in_line_mode",
                 {"attach", "0", "--mode", "line", "--", "/bin/true"},
                 {"--mode line"}},
        BadFlags{
            "command_with_root", {"attach", "0", "--root", "/tmp", "--", "/bin/true"}, {"--root"}},
        BadFlags{"port_out_of_range", {"attach", "70000"}, {"70000"}},
        BadFlags{"port_not_a_number", {"attach", "http"}, {"http"}},
        BadFlags{"missing_port", {"attach"}, {"port"}},
        BadFlags{"unknown_flag", {"attach", "0", "--turbo"}, {"--turbo"}},
        BadFlags{"no_subcommand", {}, {"subcommand"}},
        BadFlags{"unknown_subcommand", {"launch"}, {"launch"}}),
    [](const testing::TestParamInfo<BadFlags> &p) { return p.param.name; });

TEST(VersionCli, PrintsVersionAndAbi) {
  auto done = runSockdispatch({"version"});
  EXPECT_EQ(done.code, 0);
  EXPECT_NE(done.out.find("sockdispatch "), std::string::npos) << done.out;
  EXPECT_NE(done.out.find("map ABI " + std::to_string(SD_ABI_VERSION)), std::string::npos)
      << done.out;
}

} // namespace
} // namespace sockdispatch::test

namespace sockdispatch::test {
namespace {

/*
 * SIGTERM while a request is half sent: the worker stops accepting but waits for it, answers
 * it with Connection: close, and the master exits 0 once the worker is done. An idle
 * keep-alive connection is closed at once.
 */
TEST_F(AttachCli, StopFinishesTheRequestInFlight) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "1"});
  ASSERT_NE(attachment, nullptr);
  auto idle = TcpClient::connect(attachment->port());
  ASSERT_TRUE(idle.has_value());
  ASSERT_TRUE(idle->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(idle->readReply().has_value());
  auto busy = TcpClient::connect(attachment->port());
  ASSERT_TRUE(busy.has_value());
  ASSERT_TRUE(busy->send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234"));

  attachment->process().signal(SIGTERM);
  EXPECT_TRUE(idle->waitForClose(5s)) << "the idle connection is closed at stop";
  EXPECT_FALSE(attachment->process().wait(300ms).has_value()) << "waits for the busy request";
  ASSERT_TRUE(busy->send("56789"));
  auto reply = busy->readReply();
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->header("connection"), "close");
  EXPECT_NE(reply->body.find("10 bytes"), std::string::npos) << reply->body;
  EXPECT_EQ(attachment->process().wait(10s), 0) << attachment->process().stderrText();
}

} // namespace
} // namespace sockdispatch::test
