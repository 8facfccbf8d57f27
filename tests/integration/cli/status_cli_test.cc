// `sockdispatch status` against a live attachment: the JSON the CLI prints is parsed and
// checked against what the workers themselves reported to the test's clients.
#include "support/http_client.h"
#include "support/process.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/utsname.h>

#include <map>

namespace sockdispatch::test {
namespace {

using StatusCli = BpfTest;

/*
 * Three workers, 12 keep-alive connections of 1 to 3 requests each, all closed. status --json
 * must show, per slot, the accepted connections and requests the workers' own
 * X-Sockdispatch-Worker headers attributed to them, and as many `selected` verdicts as
 * connections.
 */
TEST_F(StatusCli, JsonMatchesWhatTheWorkersAnswered) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "3"});
  ASSERT_NE(attachment, nullptr);
  std::map<int, int> connections;
  std::map<int, int> requests;
  for (int c = 0; c < 12; ++c) {
    auto client = TcpClient::connect(attachment->port());
    ASSERT_TRUE(client.has_value());
    int slot = -1;
    for (int r = 0; r <= c % 3; ++r) {
      ASSERT_TRUE(client->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
      auto reply = client->readReply();
      ASSERT_TRUE(reply.has_value());
      slot = reply->workerSlot();
      ++requests[slot];
    }
    ++connections[slot];
    client->close();
  }
  nlohmann::json status;
  ASSERT_TRUE(eventually([&] {
    auto done = runSockdispatch({"status", std::to_string(attachment->port()), "--json"});
    if (done.code != 0) {
      return false;
    }
    status = nlohmann::json::parse(done.out);
    int open = 0;
    for (const auto &w : status["workers"]) {
      open += w["open"].get<int>();
    }
    return open == 0;
  })) << "status never showed the connections closed";

  EXPECT_EQ(status["port"], attachment->port());
  EXPECT_EQ(status["mode"], "ebpf");
  EXPECT_EQ(status["policy"], "least_conn") << "the default";
  EXPECT_EQ(status["master_pid"], attachment->process().pid());
  EXPECT_EQ(status["stale"], false);
  EXPECT_GT(status["program"]["id"].get<int>(), 0);
  ASSERT_EQ(status["workers"].size(), 3U);
  for (const auto &w : status["workers"]) {
    int slot = w["slot"];
    EXPECT_EQ(w["state"], "running");
    EXPECT_EQ(w["accepted"], connections[slot]) << "slot " << slot;
    EXPECT_EQ(w["requests"], requests[slot]) << "slot " << slot;
    EXPECT_EQ(w["selected"], connections[slot]) << "slot " << slot;
    EXPECT_EQ(w["load_source"], "worker") << "our workers keep their own load";
    EXPECT_FALSE(w.contains("accept_queue")) << "no listener dump for our workers";
  }
  EXPECT_EQ(status["verdicts"]["selected"], 12);
}

TEST_F(StatusCli, TableAndPrometheusListTheAttachment) {
  auto attachment = Attachment::start({"0", "--bind", "127.0.0.1", "--workers", "2"});
  ASSERT_NE(attachment, nullptr);
  std::string port = std::to_string(attachment->port());
  auto table = runSockdispatch({"status"});
  EXPECT_EQ(table.code, 0) << table.err;
  EXPECT_NE(table.out.find("port " + port + "  mode ebpf"), std::string::npos) << table.out;
  // The kernel's features, probed as root: everything the program uses is there (it serves).
  utsname name{};
  ASSERT_EQ(::uname(&name), 0) << "uname";
  EXPECT_NE(table.out.find(std::string("kernel ") + name.release +
                           ": reuseport yes, migrate yes, bpf_loop yes, mmapable maps yes"),
            std::string::npos)
      << table.out;
  auto metrics = runSockdispatch({"status", port, "--prometheus"});
  EXPECT_EQ(metrics.code, 0) << metrics.err;
  EXPECT_NE(metrics.out.find("sockdispatch_worker_up{port=\"" + port + "\",slot=\"1\"} 1"),
            std::string::npos)
      << metrics.out;
}

TEST_F(StatusCli, UnknownPortIsAUsageError) {
  auto done = runSockdispatch({"status", "9"});
  EXPECT_EQ(done.code, 2);
  EXPECT_NE(done.err.find("port 9 is not attached"), std::string::npos) << done.err;
  auto both = runSockdispatch({"status", "--json", "--prometheus"});
  EXPECT_EQ(both.code, 2);
  EXPECT_NE(both.err.find("--prometheus"), std::string::npos) << both.err;
}

} // namespace
} // namespace sockdispatch::test
