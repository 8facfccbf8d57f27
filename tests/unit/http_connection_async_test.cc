// HttpConnection's deferred answers over a real socketpair and a real libevent loop: a
// deferred request holds back the pipelined ones behind it, its answer completes later in
// order, the idle timeout does not fire while it waits, a token completed after the
// connection closed or was freed does nothing, a dropped token answers 500, and a handler
// that throws after deferring answers 500 without the late completion writing anything.
#include "event_ptr.h"
#include "http_connection.h"
#include "support/http_client.h"

#include <event2/event.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <vector>

namespace sockdispatch {
namespace {

using test::HttpReply;
using test::takeReply;

// Defers "/later" and "/throw-later" (the second throws after deferring), answers the rest.
class DeferringHandler : public Handler {
public:
  void handle(const Request &request, Response &response) const override {
    response.body = "now " + request.target;
  }
  void respond(const Request &request, Response &response, Deferral &later) const override {
    if (request.target == "/later" || request.target == "/throw-later") {
      tokens.push_back(later.defer());
      if (request.target == "/throw-later") {
        throw std::runtime_error("after deferring");
      }
      return;
    }
    handle(request, response);
  }
  mutable std::vector<PendingResponse> tokens;
};

Response textResponse(std::string body) {
  Response response;
  response.body = std::move(body);
  return response;
}

class HttpConnectionAsyncTest : public testing::Test {
protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    peer_.reset(fds[1]);
    base_.reset(event_base_new());
    HttpConnection::Hooks hooks;
    hooks.closed = [this](HttpConnection *) { closed_ = true; };
    connection_ = std::make_unique<HttpConnection>(base_.get(), fds[0], handler_, who_, limits_,
                                                   std::move(hooks));
  }

  void TearDown() override {
    handler_.tokens.clear();
    connection_.reset();
    base_.reset();
  }

  void send(const std::string &bytes) {
    ASSERT_EQ(::send(peer_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

  // Runs the loop for `duration`, collecting the replies that arrive.
  std::vector<HttpReply> run(std::chrono::milliseconds duration) {
    std::vector<HttpReply> out;
    auto deadline = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_.get(), EVLOOP_NONBLOCK);
      char chunk[65536];
      ssize_t n = 0;
      while ((n = ::recv(peer_.get(), chunk, sizeof(chunk), 0)) > 0) {
        buffer_.append(chunk, static_cast<size_t>(n));
      }
      eof_ = eof_ || n == 0;
      while (auto reply = takeReply(buffer_, eof_)) {
        out.push_back(*reply);
      }
      pollfd pfd{peer_.get(), POLLIN, 0};
      ::poll(&pfd, 1, 2);
    }
    return out;
  }

  DeferringHandler handler_;
  WorkerIdentity who_{"test", 1, 7};
  HttpLimits limits_;
  UniqueFd peer_;
  EventBasePtr base_;
  std::unique_ptr<HttpConnection> connection_;
  std::string buffer_;
  bool eof_ = false;
  bool closed_ = false;
};

TEST_F(HttpConnectionAsyncTest, PipelinedRequestsWaitForTheDeferredAnswer) {
  send("GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(run(std::chrono::milliseconds(50)).empty()) << "answered out of order";
  ASSERT_EQ(handler_.tokens.size(), 1U);
  EXPECT_TRUE(handler_.tokens[0].complete(textResponse("done later")));
  auto got = run(std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].body, "done later");
  EXPECT_EQ(got[1].body, "now /next");
  EXPECT_FALSE(handler_.tokens[0].complete(textResponse("twice"))) << "a token completes once";
}

TEST_F(HttpConnectionAsyncTest, TheIdleTimeoutDoesNotRunWhileAnAnswerIsPending) {
  limits_.idleTimeout = std::chrono::milliseconds(50);
  TearDown();
  SetUp();
  send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(run(std::chrono::milliseconds(200)).empty());
  EXPECT_FALSE(closed_);
  ASSERT_EQ(handler_.tokens.size(), 1U);
  EXPECT_TRUE(handler_.tokens[0].complete(textResponse("late")));
  auto got = run(std::chrono::milliseconds(20));
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "late");
  run(std::chrono::milliseconds(150));
  EXPECT_TRUE(closed_) << "idle again after the answer: the idle timeout applies";
}

TEST_F(HttpConnectionAsyncTest, ACompletionAfterTheConnectionIsGoneDoesNothing) {
  send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  run(std::chrono::milliseconds(20));
  ASSERT_EQ(handler_.tokens.size(), 1U);
  PendingResponse token = std::move(handler_.tokens[0]);
  EXPECT_TRUE(token.pending());
  connection_.reset(); // the worker freed it (client gone, worker stopping)
  EXPECT_FALSE(token.pending());
  EXPECT_FALSE(token.complete(textResponse("to nobody")));
}

TEST_F(HttpConnectionAsyncTest, ADroppedTokenAnswers500) {
  send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  run(std::chrono::milliseconds(20));
  ASSERT_EQ(handler_.tokens.size(), 1U);
  handler_.tokens.clear();
  auto got = run(std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].status, 500);
}

TEST_F(HttpConnectionAsyncTest, AHandlerThatThrowsAfterDeferringAnswers500Once) {
  send("GET /throw-later HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  auto got = run(std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[0].status, 500);
  EXPECT_EQ(got[1].body, "now /next");
  ASSERT_EQ(handler_.tokens.size(), 1U);
  EXPECT_FALSE(handler_.tokens[0].complete(textResponse("stale"))) << "its token is void";
  EXPECT_TRUE(run(std::chrono::milliseconds(20)).empty());
}

TEST_F(HttpConnectionAsyncTest, AClientHalfCloseWaitsForThePendingAnswer) {
  send("GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
  run(std::chrono::milliseconds(20));
  ASSERT_EQ(::shutdown(peer_.get(), SHUT_WR), 0);
  run(std::chrono::milliseconds(20));
  EXPECT_FALSE(closed_);
  ASSERT_EQ(handler_.tokens.size(), 1U);
  EXPECT_TRUE(handler_.tokens[0].complete(textResponse("for a half-closed client")));
  auto got = run(std::chrono::milliseconds(50));
  ASSERT_EQ(got.size(), 1U);
  EXPECT_EQ(got[0].body, "for a half-closed client");
  EXPECT_TRUE(closed_);
}

} // namespace
} // namespace sockdispatch
