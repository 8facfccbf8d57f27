// The public library API (<sockdispatch/server.h>) end to end: a server built on it alone
// (library_server_main.cc) runs its real master and forked workers on loopback, with the
// real kernel program, and real TCP clients exercise the offload pool: slow work does not
// stall fast requests, a saturated pool answers 503 with Retry-After, a throwing handler
// answers 500 and the worker keeps serving, offloaded work shows in the scoreboard and steers
// least_conn, and a worker stopping with work in flight exits cleanly.
#include "control/pinned_attachment.h"
#include "support/http_client.h"
#include "support/process.h"
#include "support/temp_dir.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace sockdispatch::test {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kSlowRequest = "GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n";
const std::string kFastRequest = "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n";

class Library : public BpfTest {
protected:
  void startServer(const std::vector<std::string> &flags) {
    std::vector<std::string> argv{LIBRARY_TEST_SERVER, "--hook-log", hookLog()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    server_ = Process::start(argv);
    ASSERT_NE(server_, nullptr);
    static const std::regex listening(R"(listening on .*:(\d+) )");
    auto line = server_->readLine(20s);
    std::smatch match;
    ASSERT_TRUE(line && std::regex_search(*line, match, listening))
        << "stdout: " << line.value_or("<none>") << "\nstderr:\n"
        << server_->stderrText();
    port_ = static_cast<uint16_t>(std::stoi(match[1]));
  }

  void TearDown() override {
    if (server_) {
      server_->signal(SIGTERM);
      server_->wait(20s);
      EXPECT_EQ(server_->stderrText().find("AddressSanitizer"), std::string::npos)
          << server_->stderrText();
    }
  }

  std::string hookLog() { return dir_.path() + "/hooks.log"; }
  std::string hookLines() {
    std::ifstream in(hookLog());
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  Scoreboard scoreboard() {
    if (!pinned_) {
      auto pinned = PinnedAttachment::open(port_, true);
      EXPECT_TRUE(pinned) << pinned.error().message();
      pinned_.emplace(std::move(pinned.value()));
    }
    return pinned_->scoreboard();
  }

  // Connects and sends one request; the connection is kept for its reply.
  TcpClient request(const std::string &bytes) {
    auto client = TcpClient::connect(port_);
    EXPECT_TRUE(client.has_value());
    EXPECT_TRUE(client->send(bytes));
    return std::move(*client);
  }

  TempDir dir_;
  std::unique_ptr<Process> server_;
  std::optional<PinnedAttachment> pinned_;
  uint16_t port_ = 0;
};

/* One worker, a pool of 2 threads and a queue of 4, eight 1.5-second calls at once: six are
   taken (two run, four wait) and two are refused with 503 and Retry-After at once. A fast
   request on the same worker is answered while every slow call is still running, and the
   taken calls finish in three rounds of two. */
TEST_F(Library, SlowOffloadedCallsDoNotStallFastRequests) {
  startServer({"--workers", "1", "--threads", "2", "--queue", "4"});
  auto started = Clock::now();
  std::vector<TcpClient> slow;
  for (int i = 0; i < 8; ++i) {
    slow.push_back(request(kSlowRequest));
  }
  // The refusals come first and at once: the pool never grows past 2 + 4.
  int refused = 0;
  std::vector<bool> done(slow.size(), false);
  ASSERT_TRUE(eventually(
      [&] {
        for (size_t i = 0; i < slow.size(); ++i) {
          if (!done[i]) {
            if (auto reply = slow[i].readReply(20ms)) {
              EXPECT_EQ(reply->status, 503);
              EXPECT_EQ(reply->header("retry-after"), "1");
              done[i] = true;
              ++refused;
            }
          }
        }
        return refused == 2;
      },
      5s));
  EXPECT_LT(Clock::now() - started, 1400ms) << "a refusal waited for a slow call";

  auto fast = request(kFastRequest);
  auto fastReply = fast.readReply(5s);
  ASSERT_TRUE(fastReply.has_value());
  EXPECT_EQ(fastReply->status, 200);
  EXPECT_EQ(fastReply->body, "fast");
  EXPECT_EQ(fastReply->workerSlot(), 0);
  // Answered while the slow calls run: none of them has an answer yet.
  for (size_t i = 0; i < slow.size(); ++i) {
    if (!done[i]) {
      EXPECT_FALSE(slow[i].readReply(20ms).has_value()) << "slow call " << i << " ended early";
    }
  }

  int answered = 0;
  for (size_t i = 0; i < slow.size(); ++i) {
    if (done[i]) {
      continue;
    }
    auto reply = slow[i].readReply(15s);
    ASSERT_TRUE(reply.has_value()) << "slow call " << i;
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->body, "slow 1500");
    ++answered;
  }
  EXPECT_EQ(answered, 6);
  // Six 1.5-second calls on two threads take three rounds: the pool size is respected.
  EXPECT_GE(Clock::now() - started, 4400ms);
}

/* On one connection, pipelined requests are answered in order even when the first is
   offloaded and the second is fast; the loop-thread continuation form works too. */
TEST_F(Library, PipelinedAnswersKeepTheirOrder) {
  startServer({"--workers", "1", "--threads", "2", "--queue", "4"});
  auto client = request("GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\n" + kFastRequest +
                        "GET /then?ms=100 HTTP/1.1\r\nHost: x\r\n\r\n" + kFastRequest);
  std::vector<std::string> bodies;
  for (int i = 0; i < 4; ++i) {
    auto reply = client.readReply(10s);
    ASSERT_TRUE(reply.has_value()) << "reply " << i;
    EXPECT_EQ(reply->status, 200);
    bodies.push_back(reply->body);
  }
  EXPECT_EQ(bodies, (std::vector<std::string>{"slow 300", "fast", "then 100", "fast"}));
}

/* A saturated pool (one thread, no queue) refuses the next call with 503 and Retry-After,
   and takes calls again once it has room. */
TEST_F(Library, SaturatedPoolAnswers503WithRetryAfter) {
  startServer({"--workers", "1", "--threads", "1", "--queue", "0"});
  auto running = request(kSlowRequest);
  ASSERT_TRUE(eventually([&] { return scoreboard().snapshot(0).open == 2; }));
  auto refused = request(kSlowRequest).readReply(5s);
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->header("retry-after"), "1");
  auto first = running.readReply(10s);
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->status, 200);
  auto again = request("GET /slow?ms=10 HTTP/1.1\r\nHost: x\r\n\r\n").readReply(10s);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->status, 200);
}

/* A handler that throws, inline or in the pool, is answered 500, and the same worker goes on
   serving the same keep-alive connection. */
TEST_F(Library, ThrowingHandlerAnswers500AndTheWorkerKeepsServing) {
  startServer({"--workers", "1", "--threads", "1", "--queue", "1"});
  auto client = request(kFastRequest);
  auto before = client.readReply(5s);
  ASSERT_TRUE(before.has_value());
  std::string pid = before->header("x-pid");
  for (const char *target : {"/throw", "/throw-offload"}) {
    ASSERT_TRUE(client.send(std::string("GET ") + target + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto failed = client.readReply(5s);
    ASSERT_TRUE(failed.has_value()) << target;
    EXPECT_EQ(failed->status, 500) << target;
    ASSERT_TRUE(client.send(kFastRequest));
    auto after = client.readReply(5s);
    ASSERT_TRUE(after.has_value()) << "after " << target;
    EXPECT_EQ(after->status, 200);
    EXPECT_EQ(after->header("x-pid"), pid) << "the worker was replaced";
  }
  EXPECT_EQ(server_->stderrText().find("respawn"), std::string::npos);
}

/* Routing: 404 for an unknown path, 405 with Allow for a known path and another method, HEAD
   served by the GET route, a POST body read. */
TEST_F(Library, RoutesAnswer404And405) {
  startServer({"--workers", "1"});
  auto missing = fetch(port_, "/nowhere");
  ASSERT_TRUE(missing.has_value());
  EXPECT_EQ(missing->status, 404);
  auto wrongMethod =
      request("DELETE /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").readReply(5s);
  ASSERT_TRUE(wrongMethod.has_value());
  EXPECT_EQ(wrongMethod->status, 405);
  EXPECT_EQ(wrongMethod->header("allow"), "GET");
  auto head = request("HEAD /fast HTTP/1.1\r\nHost: x\r\n\r\n").readReply(5s, true);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->header("content-length"), "4");
  auto echo =
      request("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello").readReply(5s);
  ASSERT_TRUE(echo.has_value());
  EXPECT_EQ(echo->body, "hello");
}

/* A streamed body reaches the client chunked, in order and whole. */
TEST_F(Library, StreamedBodyArrivesChunked) {
  startServer({"--workers", "1"});
  auto client = request("GET /stream?n=1000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  std::string raw = client.readUntilClose(10s);
  size_t headEnd = raw.find("\r\n\r\n");
  ASSERT_NE(headEnd, std::string::npos) << raw;
  EXPECT_NE(raw.find("Transfer-Encoding: chunked"), std::string::npos);
  std::string body;
  size_t at = headEnd + 4;
  for (;;) {
    size_t lineEnd = raw.find("\r\n", at);
    ASSERT_NE(lineEnd, std::string::npos) << "cut short after " << body.size() << " bytes";
    size_t size = std::stoul(raw.substr(at, lineEnd - at), nullptr, 16);
    if (size == 0) {
      break;
    }
    body.append(raw, lineEnd + 2, size);
    at = lineEnd + 2 + size + 2;
  }
  std::string expected;
  for (int i = 0; i < 1000; ++i) {
    expected += "piece " + std::to_string(i) + "\n";
  }
  EXPECT_TRUE(body == expected) << body.size() << " bytes";
}

/* The worker's scoreboard slot counts each outstanding offloaded call as open load, beside
   its open connections, and gives it back when the call is answered. */
TEST_F(Library, ScoreboardCountsOffloadedWork) {
  startServer({"--workers", "1", "--threads", "2", "--queue", "4"});
  std::vector<TcpClient> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(request(kSlowRequest));
  }
  // Three connections and three calls in the pool.
  EXPECT_TRUE(eventually([&] { return scoreboard().snapshot(0).open == 6; }, 1400ms))
      << "open " << scoreboard().snapshot(0).open;
  for (auto &client : clients) {
    ASSERT_TRUE(client.readReply(10s).has_value());
  }
  // The calls are answered; the connections stay open.
  EXPECT_TRUE(eventually([&] { return scoreboard().snapshot(0).open == 3; }))
      << "open " << scoreboard().snapshot(0).open;
  clients.clear();
  EXPECT_TRUE(eventually([&] { return scoreboard().snapshot(0).open == 0; }));
}

/* least_conn with two workers: a connection whose call saturates its worker's pool (one
   thread, no queue) makes that worker the busier one, so the next connection goes to the
   other worker although both hold one connection. */
TEST_F(Library, LeastConnAvoidsAWorkerWithASaturatedPool) {
  startServer({"--workers", "2", "--threads", "1", "--queue", "0"});
  Scoreboard board = scoreboard();
  storeRelease<__u32>(board.config()->policy, SD_POLICY_LEAST_CONN);

  auto busy = request("GET /slow?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n");
  // Find the busy worker from the scoreboard: one connection plus one call.
  int busySlot = -1;
  ASSERT_TRUE(eventually([&] {
    for (uint32_t slot = 0; slot < 2; ++slot) {
      if (board.snapshot(slot).open == 2) {
        busySlot = static_cast<int>(slot);
      }
    }
    return busySlot >= 0;
  }));
  int idleSlot = 1 - busySlot;
  auto idle = request(kFastRequest);
  auto idleReply = idle.readReply(5s);
  ASSERT_TRUE(idleReply.has_value());
  EXPECT_EQ(idleReply->workerSlot(), idleSlot);
  ASSERT_EQ(board.snapshot(static_cast<uint32_t>(idleSlot)).open, 1U);
  ASSERT_EQ(board.snapshot(static_cast<uint32_t>(busySlot)).open, 2U);

  // One connection each: only the offloaded call tells them apart.
  for (int i = 0; i < 3; ++i) {
    auto next = request("GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto reply = next.readReply(5s);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->workerSlot(), idleSlot) << "connection " << i;
    ASSERT_TRUE(next.waitForClose(5s));
    ASSERT_TRUE(
        eventually([&] { return board.snapshot(static_cast<uint32_t>(idleSlot)).open == 1; }));
  }
  auto done = busy.readReply(10s);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->status, 200);
}

/* A worker killed inside a handler call (a slow inline handler, its slot marked busy) never
   clears its own busy mark. The master clears it with the dead worker's other counts, so
   least_conn chooses the respawn like any idle worker: with two idle workers, ties rotate and
   each gets about half of the new connections. */
TEST_F(Library, RespawnOfAWorkerKilledInsideAHandlerIsNotBusy) {
  startServer({"--workers", "2"});
  Scoreboard board = scoreboard();
  storeRelease<__u32>(board.config()->policy, SD_POLICY_LEAST_CONN);

  auto blocked = request("GET /block?ms=20000 HTTP/1.1\r\nHost: x\r\n\r\n");
  int victim = -1;
  ASSERT_TRUE(eventually([&] {
    for (uint32_t slot = 0; slot < 2; ++slot) {
      if (board.snapshot(slot).busySince != 0) {
        victim = static_cast<int>(slot);
      }
    }
    return victim >= 0;
  })) << "no worker marked busy by the blocking handler";
  const auto slot = static_cast<uint32_t>(victim);
  const auto victimPid = static_cast<pid_t>(board.snapshot(slot).pid);
  ASSERT_EQ(::kill(victimPid, SIGKILL), 0);
  ASSERT_TRUE(eventually(
      [&] {
        auto now = board.snapshot(slot);
        return now.state == SD_SLOT_RUNNING && now.pid != 0 &&
               now.pid != static_cast<uint32_t>(victimPid);
      },
      10s))
      << "slot " << slot << " was not respawned";
  EXPECT_EQ(board.snapshot(slot).busySince, 0U) << "the dead worker's busy mark outlived it";

  constexpr int kConnections = 6;
  int toRespawn = 0;
  for (int i = 0; i < kConnections; ++i) {
    auto next = request("GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto reply = next.readReply(5s);
    ASSERT_TRUE(reply.has_value()) << "connection " << i;
    EXPECT_EQ(reply->status, 200);
    toRespawn += reply->workerSlot() == victim ? 1 : 0;
    ASSERT_TRUE(next.waitForClose(5s));
    ASSERT_TRUE(eventually([&] { return board.snapshot(0).open + board.snapshot(1).open == 0; }));
  }
  EXPECT_GE(toRespawn, 2) << "of " << kConnections << " new connections, to the respawned slot";
  EXPECT_LE(toRespawn, kConnections - 2) << "ties between two idle workers rotate";
}

/* Stopping (SIGTERM) with calls in flight: the worker finishes the calls whose clients wait
   (they get their answers, with Connection: close), a call whose client left is answered to
   nobody, the stop hook runs after the pool is done, and everything exits 0. */
TEST_F(Library, StopWaitsForOffloadedWork) {
  startServer({"--workers", "1", "--threads", "1", "--queue", "4"});
  std::vector<TcpClient> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(request("GET /slow?ms=1000 HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  {
    auto leaver = request("GET /slow?ms=1000 HTTP/1.1\r\nHost: x\r\n\r\n");
  } // closed while its call waits in the queue
  // Four connections and four calls (the leaver's close is not seen: it is not read).
  ASSERT_TRUE(eventually([&] { return scoreboard().snapshot(0).open >= 7; }, 1800ms));
  server_->signal(SIGTERM);
  for (auto &client : clients) {
    auto reply = client.readReply(10s);
    ASSERT_TRUE(reply.has_value());
    EXPECT_EQ(reply->status, 200);
    EXPECT_EQ(reply->header("connection"), "close");
  }
  auto code = server_->wait(20s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << server_->stderrText();
  EXPECT_NE(hookLines().find("stop 0"), std::string::npos) << hookLines();
}

/* Stopping with more queued work than the shutdown timeout allows: the running call is
   waited for, the queued ones are cancelled, the worker and the master exit 0 and the stop
   hook runs (under ASan: no leak, no use after free of the connections the calls belonged
   to). */
TEST_F(Library, StopPastTheShutdownTimeoutCancelsQueuedWork) {
  startServer({"--workers", "1", "--threads", "1", "--queue", "8", "--shutdown-timeout", "1"});
  std::vector<TcpClient> clients;
  for (int i = 0; i < 6; ++i) {
    clients.push_back(request("GET /slow?ms=2000 HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  ASSERT_TRUE(eventually([&] { return scoreboard().snapshot(0).open == 12; }, 1800ms));
  auto stopped = Clock::now();
  server_->signal(SIGTERM);
  auto code = server_->wait(20s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << server_->stderrText();
  // The timeout (1 s), then the running call's end (2 s at most); not six calls' worth (12 s).
  EXPECT_LT(Clock::now() - stopped, 6s);
  EXPECT_NE(hookLines().find("stop 0"), std::string::npos) << hookLines();
  int answered = 0;
  for (auto &client : clients) {
    if (auto reply = client.readReply(100ms)) {
      ++answered;
    }
  }
  EXPECT_LT(answered, 6);
}

} // namespace
} // namespace sockdispatch::test
