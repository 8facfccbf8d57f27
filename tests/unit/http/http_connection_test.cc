// HttpConnection over a real socketpair and a real libevent loop: keep-alive, pipelining,
// HEAD, bodies (Content-Length and chunked), Connection: close, and malformed input.
#include "core/event_ptr.h"
#include "core/unique_fd.h"
#include "http/http_connection.h"
#include "support/http_client.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <ostream>
#include <vector>

namespace sockdispatch {
namespace {

using test::HttpReply;
using test::takeReply;

// Answers with what it understood of the request.
class EchoHandler : public Handler {
public:
  void handle(const Request &request, Response &response) const override {
    response.status = 200;
    response.setHeader("X-Method", request.method);
    response.setHeader("X-Target", request.target);
    response.setHeader("X-Version", std::to_string(request.versionMajor) + "." +
                                        std::to_string(request.versionMinor));
    response.body = request.body.empty() ? "target=" + request.target : "body=" + request.body;
    if (request.target == "/close") {
      response.close = true;
    }
    if (request.target == "/pad") {
      response.body.assign(8UL * 1024, 'p'); // pipelining backlog tests
    }
    if (request.target == "/big") {
      response.body.assign(4UL * 1024 * 1024, 'b'); // more than any socket buffer holds
    }
  }
};

class HttpConnectionTest : public testing::Test {
protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer_.reset(fds[1]);
    base_.reset(event_base_new());
    HttpConnection::Hooks hooks;
    hooks.closed = [this](HttpConnection *) { closed_ = true; };
    hooks.requestAnswered = [this] { ++answered_; };
    context_ =
        std::make_unique<ConnectionContext>(base_.get(), handler_, who_, limits_, std::move(hooks));
    connection_ = std::make_unique<HttpConnection>(*context_, fds[0]);
    connection_->start();
  }

  void TearDown() override {
    connection_.reset();
    context_.reset();
    base_.reset();
  }

  void send(const std::string &bytes) {
    ASSERT_EQ(::send(peer_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

  // Runs the loop and reads from the peer until `count` replies parse, the server closes,
  // or two seconds pass.
  std::vector<HttpReply> replies(size_t count, bool head = false) {
    std::vector<HttpReply> out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (out.size() < count && std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_.get(), EVLOOP_NONBLOCK);
      pump();
      while (out.size() < count) {
        auto reply = takeReply(buffer_, eof_, head);
        if (!reply) {
          break;
        }
        out.push_back(*reply);
      }
      if (out.size() < count && (eof_ || closed_)) {
        pump();
        while (auto reply = takeReply(buffer_, true, head)) {
          out.push_back(*reply);
        }
        break;
      }
      pollfd pfd{peer_.get(), POLLIN, 0};
      ::poll(&pfd, 1, 5);
    }
    return out;
  }

  void pump() {
    char chunk[65536];
    for (;;) {
      ssize_t n = ::recv(peer_.get(), chunk, sizeof(chunk), 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        eof_ = true;
      }
      return;
    }
  }

  EchoHandler handler_;
  WorkerIdentity who_{"test", 3, 42};
  HttpLimits limits_;
  UniqueFd peer_;
  EventBasePtr base_;
  std::unique_ptr<ConnectionContext> context_;
  std::unique_ptr<HttpConnection> connection_;
  std::string buffer_;
  bool eof_ = false;
  bool closed_ = false;
  int answered_ = 0;
};

TEST_F(HttpConnectionTest, AnswersAGetAndStampsTheWorker) {
  send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, 200);
  EXPECT_EQ(got[0].body, "target=/hello");
  EXPECT_EQ(got[0].workerSlot(), 3);
  EXPECT_EQ(got[0].header("server"), "sockdispatch");
  EXPECT_FALSE(got[0].header("date").empty());
  EXPECT_FALSE(closed_);
  EXPECT_EQ(answered_, 1);
}

TEST_F(HttpConnectionTest, KeepAliveServesSeveralRequests) {
  for (int i = 0; i < 3; ++i) {
    send("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto got = replies(1);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].body, "target=/r" + std::to_string(i));
  }
  EXPECT_FALSE(closed_);
}

// Idle between requests, a connection holds no exchange: it went back to the context, and
// the next request borrows it again (the same one: the context made no second).
TEST_F(HttpConnectionTest, AnIdleKeepAliveConnectionHoldsNoExchange) {
  for (int i = 0; i < 3; ++i) {
    send("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    auto got = replies(1);
    ASSERT_EQ(got.size(), 1U);
    EXPECT_EQ(got[0].body, "target=/r" + std::to_string(i));
    EXPECT_FALSE(connection_->busy()) << "request " << i;
    EXPECT_EQ(context_->spare(), 1U);
    EXPECT_EQ(context_->idle().size(), 1U);
  }
  // A head sent in two pieces: busy (its reader holds the first) until it is answered.
  send("GET /split HTTP/1.1\r\nHo");
  replies(0);
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  EXPECT_TRUE(connection_->busy());
  EXPECT_EQ(context_->idle().size(), 0U);
  send("st: x\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "target=/split");
  EXPECT_FALSE(connection_->busy());
}

// An exchange given back serves another connection as if new: nothing of the first one's
// request (a head cut short by the limits, a body) reaches the second.
TEST_F(HttpConnectionTest, AnExchangeGivenBackServesTheNextConnectionAsNew) {
  send("POST /first HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "body=abc");
  ASSERT_EQ(context_->spare(), 1U);

  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  UniqueFd secondPeer(fds[1]);
  auto second = std::make_unique<HttpConnection>(*context_, fds[0]);
  second->start();
  EXPECT_EQ(context_->spare(), 1U) << "a connection waiting for its first request borrows none";
  std::string request = "GET /second HTTP/1.0\r\n\r\n";
  ASSERT_EQ(::send(secondPeer.get(), request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string answer;
  for (int i = 0; i < 200 && answer.find("target=/second") == std::string::npos; ++i) {
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    char chunk[4096];
    ssize_t n = ::recv(secondPeer.get(), chunk, sizeof(chunk), 0);
    if (n > 0) {
      answer.append(chunk, static_cast<size_t>(n));
    }
    ::usleep(2000);
  }
  EXPECT_NE(answer.find("HTTP/1.1 200"), std::string::npos) << answer;
  EXPECT_NE(answer.find("X-Version: 1.0"), std::string::npos) << answer;
  EXPECT_NE(answer.find("target=/second"), std::string::npos) << answer;
  second.reset();

  // The first connection goes on as before.
  send("GET /again HTTP/1.1\r\nHost: x\r\n\r\n");
  got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "target=/again");
}

// An answer the socket could not take at once keeps the exchange (its writer holds the rest);
// once the client has read it all, the connection is idle and gives it back.
TEST_F(HttpConnectionTest, AnAnswerLeftToWriteKeepsTheExchangeUntilWritten) {
  send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  EXPECT_TRUE(connection_->busy()) << "4 MiB cannot have gone out at once";
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body.size(), 4UL * 1024 * 1024);
  for (int i = 0; i < 100 && connection_->busy(); ++i) {
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    ::usleep(1000);
  }
  EXPECT_FALSE(connection_->busy());
  EXPECT_EQ(context_->idle().size(), 1U);
  EXPECT_FALSE(closed_);
}

TEST_F(HttpConnectionTest, PipelinedRequestsAreAnsweredInOrder) {
  std::string batch;
  for (int i = 0; i < 20; ++i) {
    batch += "GET /p" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  send(batch);
  auto got = replies(20);
  ASSERT_EQ(got.size(), 20U);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(got[i].body, "target=/p" + std::to_string(i));
  }
}

TEST_F(HttpConnectionTest, HeadHasLengthButNoBody) {
  send("HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
  auto head = replies(1, true);
  ASSERT_EQ(head.size(), 1U);
  EXPECT_EQ(head[0].header("x-method"), "HEAD");
  EXPECT_EQ(head[0].header("content-length"), "9"); // the GET body "target=/h"
  auto after = replies(1);
  ASSERT_EQ(after.size(), 1U);
  EXPECT_EQ(after[0].body, "target=/after"); // nothing of HEAD's body leaked in between
}

TEST_F(HttpConnectionTest, ContentLengthBodyIsRead) {
  send("POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "body=hello world");
}

TEST_F(HttpConnectionTest, ChunkedBodyIsReassembled) {
  send("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
       "GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = replies(2);
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].body, "body=hello world");
  EXPECT_EQ(got[1].body, "target=/next");
}

TEST_F(HttpConnectionTest, BodySplitAcrossWrites) {
  send("POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
  EXPECT_TRUE(replies(1).empty());
  send("56789");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "body=0123456789");
}

TEST_F(HttpConnectionTest, ConnectionCloseClosesAfterTheAnswer) {
  send("GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].header("connection"), "close");
  replies(1);
  EXPECT_TRUE(closed_);
}

TEST_F(HttpConnectionTest, HandlerCanAskToClose) {
  send("GET /close HTTP/1.1\r\nHost: x\r\n\r\nGET /ignored HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = replies(2);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].header("connection"), "close");
  EXPECT_TRUE(closed_);
}

TEST_F(HttpConnectionTest, Http10ClosesUnlessAskedToKeepAlive) {
  send("GET /old HTTP/1.0\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].header("x-version"), "1.0");
  replies(1);
  EXPECT_TRUE(closed_);
}

TEST_F(HttpConnectionTest, Http10KeepAliveIsHonoured) {
  send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].header("connection"), "keep-alive");
  EXPECT_FALSE(closed_);
}

TEST_F(HttpConnectionTest, ExpectContinueGetsAnInterimAnswer) {
  send("POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  ::usleep(10000);
  pump();
  EXPECT_EQ(buffer_.rfind("HTTP/1.1 100 Continue\r\n\r\n", 0), 0U);
  send("abc");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "body=abc");
}

TEST_F(HttpConnectionTest, CloseWhenIdleFinishesTheRequestInProgress) {
  send("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab");
  connection_->closeWhenIdle(); // reads what arrived: a request is in progress
  EXPECT_FALSE(closed_);
  send("cd");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "body=abcd");
  EXPECT_EQ(got[0].header("connection"), "close");
  replies(1);
  EXPECT_TRUE(closed_);
}

TEST_F(HttpConnectionTest, CloseWhenIdleAnswersARequestThatAlreadyArrived) {
  send("GET /arrived HTTP/1.1\r\nHost: x\r\n\r\n");
  connection_->closeWhenIdle();
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "target=/arrived");
  EXPECT_EQ(got[0].header("connection"), "close");
  EXPECT_TRUE(closed_);
}

TEST_F(HttpConnectionTest, CloseWhenIdleClosesAnIdleKeepAliveConnectionAfterTheLinger) {
  limits_.drainLinger = std::chrono::milliseconds(50);
  send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].header("connection"), "");
  connection_->closeWhenIdle();
  EXPECT_FALSE(closed_) << "closed before the linger";
  for (int i = 0; i < 100 && !closed_; ++i) {
    ::usleep(5000);
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  }
  EXPECT_TRUE(closed_);
}

// The next request of a busy keep-alive client crosses the stop: it is answered, with
// Connection: close, instead of meeting a closed connection.
TEST_F(HttpConnectionTest, CloseWhenIdleAnswersARequestArrivingDuringTheLinger) {
  send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(replies(1).size(), 1U);
  connection_->closeWhenIdle();
  send("GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "target=/next");
  EXPECT_EQ(got[0].header("connection"), "close");
  replies(1);
  EXPECT_TRUE(closed_);
}

// A client that has just connected is about to send its first request: closing it now would
// lose that request, so it is answered (with Connection: close) first.
TEST_F(HttpConnectionTest, CloseWhenIdleStillAnswersTheFirstRequestOfANewConnection) {
  connection_->closeWhenIdle();
  EXPECT_FALSE(closed_);
  send("GET /late HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "target=/late");
  EXPECT_EQ(got[0].header("connection"), "close");
  replies(1);
  EXPECT_TRUE(closed_);
}

/*
 * Limits beyond one request: the keep-alive request budget, the phase timeouts, and the
 * pipelining backlog.
 */
class HttpConnectionLimits : public HttpConnectionTest {
protected:
  // Runs the loop for up to `seconds`, calling `tick` every ~20 ms, until the server closes.
  template <typename F> void runUntilClosed(double seconds, F tick) {
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int>(seconds * 1000));
    while (!closed_ && std::chrono::steady_clock::now() < deadline) {
      tick();
      event_base_loop(base_.get(), EVLOOP_NONBLOCK);
      pump();
      ::usleep(20000);
      event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    }
    pump();
  }
};

TEST_F(HttpConnectionLimits, LastRequestOfTheBudgetSaysClose) {
  limits_.maxRequestsPerConnection = 3;
  std::string batch;
  for (int i = 0; i < 4; ++i) {
    batch += "GET /k" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  send(batch);
  auto got = replies(4);
  ASSERT_EQ(got.size(), 3U);
  EXPECT_EQ(got[0].header("connection"), "");
  EXPECT_EQ(got[1].header("connection"), "");
  EXPECT_EQ(got[2].header("connection"), "close");
  EXPECT_TRUE(closed_);
}

// Header fields are bounded by count as well as by bytes: exactly the limit is served, one
// more is 431 (each under --max-header-bytes).
std::string requestWithFields(size_t fields) {
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (size_t i = 1; i < fields; ++i) {
    request += "X-" + std::to_string(i) + ": v\r\n";
  }
  return request + "\r\n";
}

TEST_F(HttpConnectionLimits, HeaderFieldsAtTheLimitAreServed) {
  limits_.maxHeaderFields = 5;
  send(requestWithFields(5));
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, 200);
}

TEST_F(HttpConnectionLimits, OneHeaderFieldPastTheLimitIs431) {
  limits_.maxHeaderFields = 5;
  send(requestWithFields(6));
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, 431);
  EXPECT_EQ(got[0].header("connection"), "close");
}

TEST_F(HttpConnectionLimits, TwoThousandSmallFieldsAreRefusedByTheDefault) {
  ASSERT_EQ(limits_.maxHeaderFields, 100U);
  std::string request = requestWithFields(2000);
  ASSERT_LT(request.size(), limits_.maxHeaderBytes); // the count refuses it, not the bytes
  send(request);
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, 431);
}

TEST_F(HttpConnectionLimits, Http10WithoutHostIsServed) {
  send("GET / HTTP/1.0\r\n\r\n");
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, 200);
}

TEST_F(HttpConnectionLimits, HeaderTimeoutIsNotMovedByTricklingBytes) {
  limits_.headerTimeout = std::chrono::milliseconds(300);
  limits_.maxHeaderFields = 100000; // the trickle below sends ~150 fields
  send("GET / HTTP/1.1\r\n");
  int line = 0;
  // A header line every ~20 ms: a timer re-armed per read would never fire.
  runUntilClosed(3.0, [&] {
    std::string header = "X-" + std::to_string(line++) + ": y\r\n";
    ::send(peer_.get(), header.data(), header.size(), MSG_NOSIGNAL);
  });
  EXPECT_TRUE(closed_);
  auto reply = takeReply(buffer_, true);
  ASSERT_TRUE(reply.has_value()) << buffer_;
  EXPECT_EQ(reply->status, 408);
  EXPECT_EQ(reply->header("connection"), "close");
}

TEST_F(HttpConnectionLimits, BodyTimeoutAnswers408) {
  limits_.bodyTimeout = std::chrono::milliseconds(200);
  send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab");
  runUntilClosed(3.0, [] {});
  EXPECT_TRUE(closed_);
  auto reply = takeReply(buffer_, true);
  ASSERT_TRUE(reply.has_value()) << buffer_;
  EXPECT_EQ(reply->status, 408);
}

TEST_F(HttpConnectionLimits, IdleKeepAliveClosesQuietly) {
  limits_.idleTimeout = std::chrono::milliseconds(200);
  send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(replies(1).size(), 1U);
  runUntilClosed(3.0, [] {});
  EXPECT_TRUE(closed_);
  EXPECT_TRUE(buffer_.empty()) << "an idle close sends nothing: " << buffer_;
}

// Many idle connections of one loop wait in its queue, with one timer: each closes once its
// keep-alive timeout has passed, quietly, and not before.
TEST_F(HttpConnectionLimits, ManyIdleConnectionsCloseAtTheirDeadlineWithOneTimer) {
  limits_.idleTimeout = std::chrono::milliseconds(300);
  constexpr int kConnections = 50;
  std::vector<UniqueFd> peers;
  std::vector<std::unique_ptr<HttpConnection>> connections;
  int closedCount = 0;
  ConnectionHooks hooks;
  hooks.closed = [&closedCount](HttpConnection *) { ++closedCount; };
  ConnectionContext context(base_.get(), handler_, who_, limits_, std::move(hooks));
  const std::string request = "GET /idle HTTP/1.1\r\nHost: x\r\n\r\n";
  // Each one's deadline runs from its answer, which comes after this.
  const auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < kConnections; ++i) {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peers.emplace_back(fds[1]);
    connections.push_back(std::make_unique<HttpConnection>(context, fds[0]));
    ASSERT_EQ(::send(fds[1], request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    connections.back()->start();
  }
  event_base_loop(base_.get(), EVLOOP_NONBLOCK);
  EXPECT_EQ(context.idle().size(), static_cast<size_t>(kConnections));
  EXPECT_EQ(context.spare(), 1U) << "one exchange served them all, one after the other";
  while (closedCount < kConnections &&
         std::chrono::steady_clock::now() - began < std::chrono::seconds(3)) {
    ::usleep(10000);
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    if (closedCount > 0) {
      EXPECT_GE(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(300))
          << "closed before its keep-alive timeout";
    }
  }
  EXPECT_EQ(closedCount, kConnections);
  EXPECT_EQ(context.idle().size(), 0U);
  for (UniqueFd &peer : peers) {
    char chunk[4096];
    ssize_t n = ::recv(peer.get(), chunk, sizeof(chunk), 0);
    EXPECT_GT(n, 0) << "its answer";
  }
  connections.clear();
}

// Empty lines between requests (RFC 9112 2.2 lets a server ignore them) begin no request, so
// they do not move the keep-alive deadline: a client sending one every 50 ms is still closed
// once the timeout has passed since its last answer.
TEST_F(HttpConnectionLimits, EmptyLinesDoNotMoveTheKeepAliveDeadline) {
  limits_.idleTimeout = std::chrono::milliseconds(300);
  send("GET /first HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_EQ(replies(1).size(), 1U);
  buffer_.clear();
  const auto answered = std::chrono::steady_clock::now();
  runUntilClosed(3.0, [this] {
    if (!closed_) {
      ::send(peer_.get(), "\r\n", 2, MSG_NOSIGNAL);
    }
  });
  EXPECT_TRUE(closed_);
  EXPECT_LT(std::chrono::steady_clock::now() - answered, std::chrono::milliseconds(1500))
      << "the empty lines kept it open";
  EXPECT_TRUE(buffer_.empty()) << "an idle close sends nothing: " << buffer_;
}

TEST_F(HttpConnectionLimits, WriteTimeoutClosesAClientThatStopsReading) {
  limits_.writeTimeout = std::chrono::milliseconds(200);
  send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  // The peer never reads: the answer cannot drain.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  while (!closed_ && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    ::usleep(20000);
  }
  EXPECT_TRUE(closed_);
}

TEST_F(HttpConnectionLimits, PipelinedBacklogStopsReadingUntilAnswersDrain) {
  limits_.maxPendingOutput = 4096;
  limits_.maxRequestsPerConnection = 0; // no budget: this test is about the backlog alone
  constexpr int kRequests = 2000;       // 16 MiB of answers: far beyond the socket buffers
  std::string batch;
  for (int i = 0; i < kRequests; ++i) {
    batch += "GET /pad HTTP/1.1\r\nHost: x\r\n\r\n";
  }
  size_t sent = 0;
  for (int round = 0; round < 50; ++round) {
    ssize_t n = ::send(peer_.get(), batch.data() + sent, batch.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
    }
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    ::usleep(2000);
  }
  // Nothing was read by the client: the server answered what fits and stopped there.
  EXPECT_GT(answered_, 0);
  EXPECT_LT(answered_, kRequests / 4) << "answers piled up instead of reading stopping";
  int stalled = answered_;
  for (int round = 0; round < 20; ++round) {
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    ::usleep(2000);
  }
  EXPECT_EQ(answered_, stalled) << "the server kept reading with its backlog full";
  // The client reads: everything is answered, in order, nothing lost.
  std::vector<HttpReply> got;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (got.size() < static_cast<size_t>(kRequests) &&
         std::chrono::steady_clock::now() < deadline) {
    if (sent < batch.size()) {
      ssize_t n = ::send(peer_.get(), batch.data() + sent, batch.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      }
    }
    event_base_loop(base_.get(), EVLOOP_NONBLOCK);
    pump();
    while (auto reply = takeReply(buffer_, false)) {
      got.push_back(*reply);
    }
  }
  ASSERT_EQ(got.size(), static_cast<size_t>(kRequests));
  EXPECT_EQ(got.back().body.size(), 8U * 1024);
  EXPECT_FALSE(closed_);
}

struct BadCase {
  const char *name;
  std::string request;
  int status;
};

// Names the case in test listings instead of dumping its bytes.
void PrintTo(const BadCase &c, std::ostream *os) {
  *os << c.name;
}

class HttpConnectionRejects : public HttpConnectionTest,
                              public testing::WithParamInterface<BadCase> {
protected:
  void SetUp() override {
    limits_.maxTargetBytes = 64;
    limits_.maxHeaderBytes = 256;
    limits_.maxBodyBytes = 16;
    HttpConnectionTest::SetUp();
  }
};

TEST_P(HttpConnectionRejects, WithThePreciseStatusThenCloses) {
  send(GetParam().request);
  auto got = replies(1);
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, GetParam().status);
  EXPECT_EQ(got[0].header("connection"), "close");
  replies(1);
  EXPECT_TRUE(closed_);
}

INSTANTIATE_TEST_SUITE_P(
    Table, HttpConnectionRejects,
    testing::Values(
        BadCase{"garbage", "\x01\x02\x03 nonsense\r\n\r\n", 400},
        BadCase{"unknown_method", "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n", 501},
        BadCase{"http_2_version", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        BadCase{"http_1_2_version", "GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505},
        BadCase{"target_too_long", "GET /" + std::string(100, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n",
                414},
        BadCase{"headers_too_large",
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(300, 'b') + "\r\n\r\n", 431},
        BadCase{"body_too_large_by_length",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n", 413},
        BadCase{"chunked_body_too_large",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" +
                    std::string(32, 'c') + "\r\n0\r\n\r\n",
                413},
        BadCase{"bad_chunk_size",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
        BadCase{
            "length_and_chunked",
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400},
        BadCase{"bad_content_length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                400},
        BadCase{"space_before_colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
        BadCase{"bare_lf_request_line", "GET / HTTP/1.1\nHost: x\r\n\r\n", 400},
        BadCase{"bare_lf_header", "GET / HTTP/1.1\r\nHost: x\nA: b\r\n\r\n", 400},
        BadCase{"bare_lf_end_of_head", "GET / HTTP/1.1\r\nHost: x\r\n\n", 400},
        BadCase{"bare_cr_header", "GET / HTTP/1.1\r\nHost: x\rA: b\r\n\r\n", 400},
        BadCase{"obs_fold", "GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n c\r\n\r\n", 400},
        BadCase{"te_gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
        BadCase{"te_gzip_then_chunked",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
                501},
        BadCase{"te_chunked_twice",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                400},
        BadCase{
            "chunked_then_length",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400},
        BadCase{"content_length_conflict",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                400},
        BadCase{"content_length_repeated",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na",
                400},
        BadCase{"content_length_list",
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\na", 400},
        BadCase{
            "chunk_without_crlf",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
            400},
        BadCase{"chunk_size_hex_prefix",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
                "chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
                400},
        BadCase{
            "chunk_size_overflow",
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
            400},
        BadCase{"missing_host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400},
        BadCase{"duplicate_host", "GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n", 400},
        BadCase{"duplicate_host_other_case", "GET / HTTP/1.1\r\nHost: x\r\nhOsT: y\r\n\r\n", 400},
        BadCase{"duplicate_host_http_1_0", "GET / HTTP/1.0\r\nHost: x\r\nHost: y\r\n\r\n", 400},
        BadCase{"empty_host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
        BadCase{"blank_host", "GET / HTTP/1.1\r\nHost:   \r\n\r\n", 400},
        BadCase{"host_with_path", "GET / HTTP/1.1\r\nHost: example.com/index.html\r\n\r\n", 400},
        BadCase{"host_with_userinfo", "GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", 400},
        BadCase{"host_with_space", "GET / HTTP/1.1\r\nHost: exa mple.com\r\n\r\n", 400},
        BadCase{"host_bad_port", "GET / HTTP/1.1\r\nHost: example.com:80a\r\n\r\n", 400},
        BadCase{"tab_after_method", "GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        BadCase{"tab_after_target", "GET /\tHTTP/1.1\r\nHost: x\r\n\r\n", 400},
        BadCase{"two_spaces_after_method", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
        BadCase{"http_1_0_chunked",
                "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400}),
    [](const testing::TestParamInfo<BadCase> &p) { return p.param.name; });

} // namespace
} // namespace sockdispatch
