// Idle connections set aside (ParkedConnections) over real socketpairs and a real libevent
// loop: an HttpConnection idle since a moment is parked and taken up again by its next
// request with its count of answers kept; a parked connection closes at its keep-alive
// deadline, in deadline order, whatever the order it was parked in; wakeAll hands every one
// back; a connection with unread input, an answer pending or a request half read is not
// idle.
#include "core/event_ptr.h"
#include "http/http_connection.h"
#include "http/parked_connections.h"
#include "support/http_client.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sockdispatch {
namespace {

using namespace std::chrono_literals;
using Clock = HttpConnection::Clock;

class Answering : public Handler {
public:
  void handle(const Request &request, Response &response) const override {
    response.body = "seen " + request.target;
  }
};

struct Pair {
  UniqueFd server;
  UniqueFd client;
};

Pair makePair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// Whether the peer of `client` closed (read returns 0) within `timeout`.
bool closedWithin(int client, std::chrono::milliseconds timeout) {
  pollfd ready{client, POLLIN, 0};
  if (::poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) {
    return false;
  }
  char byte = 0;
  return ::read(client, &byte, 1) == 0;
}

class Parked : public testing::Test {
protected:
  Parked() : base_(event_base_new()) {
    limits_.idleTimeout = 60s;
    ParkedConnections::Hooks hooks;
    hooks.wake = [this](HttpConnection::Idle idle) {
      woken_.push_back(idle.requestsAnswered);
      connections_.push_back(std::make_unique<HttpConnection>(
          base_.get(), std::move(idle), handler_, who_, limits_, connectionHooks()));
    };
    hooks.expired = [this] { ++expired_; };
    parked_ = std::make_unique<ParkedConnections>(base_.get(), std::move(hooks));
  }

  HttpConnection::Hooks connectionHooks() {
    HttpConnection::Hooks hooks;
    hooks.closed = [this](HttpConnection *) { ++closed_; };
    return hooks;
  }

  std::unique_ptr<HttpConnection> open(int fd) {
    return std::make_unique<HttpConnection>(base_.get(), fd, handler_, who_, limits_,
                                            connectionHooks());
  }

  // Runs the loop until `done` holds (at most 2 s).
  template <typename F> bool runUntil(F done) {
    auto deadline = Clock::now() + 2s;
    while (Clock::now() < deadline) {
      if (done()) {
        return true;
      }
      event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }

  std::optional<test::HttpReply> ask(int client, const std::string &target) {
    std::string request = "GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n";
    EXPECT_EQ(::write(client, request.data(), request.size()),
              static_cast<ssize_t>(request.size()));
    std::string input;
    std::optional<test::HttpReply> reply;
    runUntil([&] {
      char buffer[4096];
      ssize_t got = ::read(client, buffer, sizeof(buffer));
      if (got > 0) {
        input.append(buffer, static_cast<size_t>(got));
      }
      if (!reply) {
        reply = test::takeReply(input, false);
      }
      return reply.has_value();
    });
    return reply;
  }

  EventBasePtr base_;
  Answering handler_;
  WorkerIdentity who_{"test", 0, 1};
  HttpLimits limits_;
  std::unique_ptr<ParkedConnections> parked_;
  std::vector<std::unique_ptr<HttpConnection>> connections_;
  std::vector<uint32_t> woken_;
  int expired_ = 0;
  int closed_ = 0;
};

TEST_F(Parked, AnIdleConnectionIsTakenUpAgainByItsNextRequest) {
  Pair pair = makePair();
  auto connection = open(pair.server.release());
  auto first = ask(pair.client.get(), "/one");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->body, "seen /one");

  ASSERT_TRUE(connection->idleSince(Clock::now()));
  EXPECT_FALSE(connection->idleSince(Clock::now() - 1h)) << "idle since before it was";
  std::vector<HttpConnection::Idle> idle;
  idle.push_back(connection->setAside());
  connection.reset(); // its buffers, parser and events go with it
  parked_->park(std::move(idle));
  EXPECT_EQ(parked_->size(), 1U);
  EXPECT_EQ(closed_, 0) << "setting aside is not closing";

  auto second = ask(pair.client.get(), "/two");
  ASSERT_TRUE(second) << "the parked connection did not answer its next request";
  EXPECT_EQ(second->body, "seen /two");
  EXPECT_EQ(parked_->size(), 0U);
  ASSERT_EQ(woken_.size(), 1U);
  EXPECT_EQ(woken_[0], 1U) << "the count of answers it had";
}

TEST_F(Parked, AConnectionWithSomethingInHandIsNotIdle) {
  Pair pair = makePair();
  auto connection = open(pair.server.release());
  const std::string half = "GET /half HTTP/1.1\r\nHost:";
  ASSERT_EQ(::write(pair.client.get(), half.data(), half.size()),
            static_cast<ssize_t>(half.size()));
  auto until = Clock::now() + 100ms;
  runUntil([&] { return Clock::now() >= until; }); // it reads the half request meanwhile
  EXPECT_FALSE(connection->idleSince(Clock::now())) << "a request half read";
}

TEST_F(Parked, ParkedConnectionsCloseAtTheirDeadlinesInOrder) {
  std::vector<Pair> pairs;
  std::vector<HttpConnection::Idle> idle;
  const auto now = Clock::now();
  // Parked out of order: 300 ms, 100 ms, 200 ms, and one far off.
  for (auto after : {300ms, 100ms, 200ms, 60000ms}) {
    pairs.push_back(makePair());
    idle.push_back(HttpConnection::Idle{std::move(pairs.back().server), now + after, 1});
  }
  parked_->park(std::move(idle));
  ASSERT_EQ(parked_->size(), 4U);

  std::vector<int> order;
  ASSERT_TRUE(runUntil([&] {
    for (int i = 0; i < 3; ++i) {
      if (std::find(order.begin(), order.end(), i) == order.end() &&
          closedWithin(pairs[static_cast<size_t>(i)].client.get(), 0ms)) {
        order.push_back(i);
      }
    }
    return order.size() == 3;
  })) << "closed: "
      << order.size();
  EXPECT_EQ(order, (std::vector<int>{1, 2, 0}));
  EXPECT_EQ(expired_, 3);
  EXPECT_EQ(parked_->size(), 1U) << "the one far off stays";
  EXPECT_FALSE(closedWithin(pairs[3].client.get(), 0ms));
}

TEST_F(Parked, WakeAllHandsEveryOneBack) {
  std::vector<Pair> pairs;
  std::vector<HttpConnection::Idle> idle;
  for (uint32_t i = 0; i < 5; ++i) {
    pairs.push_back(makePair());
    idle.push_back(HttpConnection::Idle{std::move(pairs.back().server), Clock::now() + 60s, i});
  }
  parked_->park(std::move(idle));
  parked_->wakeAll();
  EXPECT_EQ(parked_->size(), 0U);
  EXPECT_EQ(woken_.size(), 5U);
  EXPECT_EQ(connections_.size(), 5U);
  EXPECT_EQ(expired_, 0);
  // Each one serves: the last was parked with 4 answers.
  auto reply = ask(pairs[4].client.get(), "/after");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->body, "seen /after");
}

TEST_F(Parked, AClientThatClosesWhileParkedIsClosedHere) {
  Pair pair = makePair();
  std::vector<HttpConnection::Idle> idle;
  idle.push_back(HttpConnection::Idle{std::move(pair.server), Clock::now() + 60s, 1});
  parked_->park(std::move(idle));
  pair.client.reset();
  ASSERT_TRUE(runUntil([&] { return closed_ == 1; }))
      << "the connection taken up for the close did not close";
  EXPECT_EQ(parked_->size(), 0U);
}

} // namespace
} // namespace sockdispatch
