// `attach --status-port`: the master serves the status page, /status.json and /metrics on
// its own loop. What it answers (the same document as `status --json`, Prometheus text a
// parser reads), what it refuses, and that bad or slow clients cost it nothing.
#include "support/http_client.h"
#include "support/load.h"
#include "support/nginx.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace sockdispatch::test {
namespace {

// A running attachment with a status port: its own port, the status port, its workers' pids.
struct WithStatusPort {
  std::unique_ptr<Attachment> attachment;
  uint16_t statusPort = 0;
};

WithStatusPort startWithStatusPort(std::vector<std::string> extra = {}) {
  WithStatusPort started;
  started.statusPort = unusedPort();
  std::vector<std::string> args{"0",
                                "--bind",
                                "127.0.0.1",
                                "--workers",
                                "3",
                                "--status-port",
                                std::to_string(started.statusPort)};
  args.insert(args.end(), extra.begin(), extra.end());
  started.attachment = Attachment::start(args);
  return started;
}

nlohmann::json statusJson(uint16_t port) {
  Completed done = runSockdispatch({"status", std::to_string(port), "--json"});
  EXPECT_EQ(done.code, 0) << done.err;
  return nlohmann::json::parse(done.out, nullptr, false);
}

// The socket inodes a process holds (its /proc/PID/fd links "socket:[N]").
std::set<std::string> socketInodes(pid_t pid) {
  std::set<std::string> inodes;
  std::error_code error;
  for (const auto &entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", error)) {
    std::string target = std::filesystem::read_symlink(entry.path(), error).string();
    if (target.rfind("socket:[", 0) == 0) {
      inodes.insert(target.substr(8, target.size() - 9));
    }
  }
  return inodes;
}

// The inode of the socket listening on 127.0.0.1:port (/proc/net/tcp), or "".
std::string listenerInode(uint16_t port) {
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line); // header
  char local[32];
  std::snprintf(local, sizeof(local), "0100007F:%04X", port);
  while (std::getline(tcp, line)) {
    std::istringstream fields(line);
    std::string slot, address, remote, state, queues, timer, retransmits, uid, timeout, inode;
    fields >> slot >> address >> remote >> state >> queues >> timer >> retransmits >> uid >>
        timeout >> inode;
    if (address == local && state == "0A") {
      return inode;
    }
  }
  return "";
}

class StatusPage : public BpfTest {};

TEST_F(StatusPage, ServesThePageTheStatusDocumentAndPrometheusText) {
  WithStatusPort live = startWithStatusPort();
  ASSERT_TRUE(live.attachment);
  const uint16_t port = live.attachment->port();

  auto page = fetch(live.statusPort, "/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("/status.js"), std::string::npos);
  EXPECT_EQ(page->header("x-sockdispatch-worker"), "") << "answered by the master, no worker";
  auto script = fetch(live.statusPort, "/status.js");
  ASSERT_TRUE(script);
  EXPECT_EQ(script->status, 200);

  // Nothing moves while no client talks to the attachment: the two reads are equal.
  auto served = fetch(live.statusPort, "/status.json");
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200);
  EXPECT_EQ(served->header("content-type"), "application/json");
  nlohmann::json fromPage = nlohmann::json::parse(served->body, nullptr, false);
  ASSERT_FALSE(fromPage.is_discarded()) << served->body;
  nlohmann::json fromCli = statusJson(port);
  EXPECT_EQ(fromPage, fromCli);
  EXPECT_EQ(fromPage["port"], port);
  EXPECT_EQ(fromPage["workers"].size(), 3U);

  auto metrics = fetch(live.statusPort, "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_EQ(metrics->header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  // Read by the Prometheus project's own text-format parser (python3-prometheus-client).
  TempDir dir;
  std::string file = dir.write("metrics.txt", metrics->body);
  Completed parsed = runCommand(
      {"/usr/bin/python3", "-c",
       "import sys\n"
       "from prometheus_client.parser import text_string_to_metric_families\n"
       "families = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n"
       "samples = [s for f in families for s in f.samples]\n"
       "open_ = [s for s in samples if s.name == 'sockdispatch_worker_open_connections']\n"
       "print(len(families), len(open_))\n",
       file});
  ASSERT_EQ(parsed.code, 0) << parsed.err;
  int families = 0;
  int openSamples = 0;
  std::istringstream(parsed.out) >> families >> openSamples;
  EXPECT_GT(families, 5) << parsed.out;
  EXPECT_EQ(openSamples, 3) << "one per worker: " << metrics->body;
}

TEST_F(StatusPage, TheDocumentFollowsTheLoadAndTheLineModeToo) {
  WithStatusPort live = startWithStatusPort({"--mode", "line"});
  ASSERT_TRUE(live.attachment);
  Load load(live.attachment->port(), 2, 1, 200000, 60s);
  ASSERT_TRUE(load.waitFor(300));
  auto first = fetch(live.statusPort, "/status.json");
  ASSERT_TRUE(first);
  ASSERT_TRUE(load.waitFor(300));
  auto second = fetch(live.statusPort, "/status.json");
  ASSERT_TRUE(second);
  LoadTally tally = load.stop();
  EXPECT_EQ(tally.failures(), 0U) << tally.describe();
  auto requests = [](const std::string &body) {
    uint64_t total = 0;
    const nlohmann::json document = nlohmann::json::parse(body);
    for (const auto &worker : document["workers"]) {
      total += worker["requests"].get<uint64_t>();
    }
    return total;
  };
  EXPECT_EQ(nlohmann::json::parse(first->body)["mode"], "line");
  EXPECT_GE(requests(second->body), requests(first->body) + 300);
}

TEST_F(StatusPage, BadRequestsAreAnsweredAndSlowClientsDoNotHoldTheMaster) {
  WithStatusPort live = startWithStatusPort();
  ASSERT_TRUE(live.attachment);
  const uint16_t status = live.statusPort;

  auto unknown = fetch(status, "/does-not-exist");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);

  auto post = TcpClient::connect(status);
  ASSERT_TRUE(post);
  post->send("POST /status.json HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  auto refused = post->readReply();
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 405);
  EXPECT_EQ(refused->header("allow"), "GET, HEAD");

  auto huge = TcpClient::connect(status);
  ASSERT_TRUE(huge);
  huge->send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 * 1024, 'a') + "\r\n\r\n");
  auto tooBig = huge->readReply();
  ASSERT_TRUE(tooBig);
  EXPECT_EQ(tooBig->status, 431);
  EXPECT_TRUE(huge->waitForClose());

  auto garbage = TcpClient::connect(status);
  ASSERT_TRUE(garbage);
  garbage->send("\x16\x03\x01 not http at all\r\n\r\n");
  auto malformed = garbage->readReply();
  ASSERT_TRUE(malformed);
  EXPECT_EQ(malformed->status, 400);

  // A slow client sends half a head and stops; clients past the cap only connect. Meanwhile
  // the master keeps answering, its workers keep serving, and the slow one is timed out.
  auto slow = TcpClient::connect(status);
  ASSERT_TRUE(slow);
  slow->send("GET /status.json HTTP/1.1\r\nHo");
  std::vector<TcpClient> idle;
  for (int i = 0; i < 70; ++i) {
    auto client = TcpClient::connect(status);
    ASSERT_TRUE(client);
    idle.push_back(std::move(*client));
  }
  // The slow client holds one of the 64 places (and the POST's kept-alive connection may):
  // at least 70 + 1 - 64 of the idle ones are closed on arrival.
  std::vector<bool> closed(idle.size(), false);
  size_t refusedAtCap = 0;
  EXPECT_TRUE(eventually(
      [&] {
        for (size_t i = 0; i < idle.size(); ++i) {
          if (!closed[i] && idle[i].waitForClose(std::chrono::milliseconds(10))) {
            closed[i] = true;
            ++refusedAtCap;
          }
        }
        return refusedAtCap >= 70U + 1U - 64U;
      },
      5s))
      << refusedAtCap << " closed: beyond 64 at once, new clients are closed";
  auto served = fetch(live.attachment->port(), "/");
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200) << "the workers serve whatever the status port holds";
  idle.clear();
  EXPECT_TRUE(eventually(
      [&] {
        auto answer = fetch(status, "/status.json");
        return answer && answer->status == 200;
      },
      5s))
      << "the status port answers again once the idle clients are gone";
  auto timedOut = slow->readReply(10s);
  ASSERT_TRUE(timedOut) << "the half-sent head is answered when its time is up";
  EXPECT_EQ(timedOut->status, 408);
}

TEST_F(StatusPage, BoundToLoopbackByDefaultAndNotHeldByWorkers) {
  WithStatusPort live = startWithStatusPort();
  ASSERT_TRUE(live.attachment);
  std::string inode = listenerInode(live.statusPort);
  ASSERT_FALSE(inode.empty()) << "listening on 127.0.0.1:" << live.statusPort;
  EXPECT_TRUE(socketInodes(live.attachment->process().pid()).count(inode) == 1);
  const nlohmann::json status = statusJson(live.attachment->port());
  for (const auto &worker : status["workers"]) {
    auto pid = static_cast<pid_t>(worker["pid"].get<uint32_t>());
    EXPECT_EQ(socketInodes(pid).count(inode), 0U)
        << "worker " << pid << " must not hold the status port's socket";
  }
}

TEST_F(StatusPage, BadValuesAreUsageErrorsAndAPortInUseRefusesTheStart) {
  for (const auto &args : std::vector<std::vector<std::string>>{
           {"attach", "0", "--status-port", "70000"},
           {"attach", "0", "--status-port", "-1"},
           {"attach", "0", "--status-port", "abc"},
           {"attach", "0", "--status-port", "1", "--status-bind", "localhost"},
           {"attach", "0", "--status-port", "1", "--status-bind", "1.2.3.4.5"}}) {
    Completed done = runSockdispatch(args);
    EXPECT_EQ(done.code, 2) << args.back() << ": " << done.err;
    EXPECT_NE(done.err.find("status-"), std::string::npos) << done.err;
  }
  // Someone else listens on the status port: nothing starts, no pins remain.
  int taken = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr *>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t length = sizeof(address);
  ::getsockname(taken, reinterpret_cast<sockaddr *>(&address), &length);
  uint16_t statusPort = ntohs(address.sin_port);
  uint16_t port = unusedPort();
  Completed done = runSockdispatch({"attach", std::to_string(port), "--bind", "127.0.0.1",
                                    "--status-port", std::to_string(statusPort)});
  ::close(taken);
  EXPECT_EQ(done.code, 1) << done.err;
  EXPECT_NE(done.err.find("bind the status port 127.0.0.1:" + std::to_string(statusPort)),
            std::string::npos)
      << done.err;
  Completed after = runSockdispatch({"status", std::to_string(port)});
  EXPECT_EQ(after.code, 2) << "not attached: " << after.out << after.err;
}

} // namespace
} // namespace sockdispatch::test
