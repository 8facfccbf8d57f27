// HttpConnection's deferred answers over a real socketpair and a real libevent loop: a
// deferred request holds back the pipelined ones behind it, its answer completes later in
// order, the idle timeout does not fire while it waits, a token completed after the
// connection closed or was freed does nothing, a dropped token answers 500, and a handler
// that throws after deferring answers 500 without the late completion writing anything.
// Streamed bodies: chunked in order with the requests behind them, through a socket that
// pushes back; close-delimited for HTTP/1.0; cut short (and closed) when the stream throws.
#include "core/event_ptr.h"
#include "http/http_connection.h"
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

// Defers "/later" and "/throw-later" (the second throws after deferring), streams
// "/stream" (256 pieces of 4 KiB, piece i filled with 'a' + i % 26) and "/stream-throws"
// (throws after two pieces), answers the rest.
class DeferringHandler : public Handler {
public:
  void handle(const Request &request, Response &response) const override {
    response.body = "now " + request.target;
    if (request.target == "/stream" || request.target == "/stream-throws") {
      bool throws = request.target == "/stream-throws";
      response.stream = [next = 0, throws]() mutable -> std::optional<std::string> {
        if (throws && next == 2) {
          throw std::runtime_error("the stream failed");
        }
        if (next == 256) {
          return std::nullopt;
        }
        char fill = static_cast<char>('a' + next % 26);
        ++next;
        return std::string(4096, fill);
      };
    }
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

std::string expectedStream() {
  std::string body;
  for (int i = 0; i < 256; ++i) {
    body.append(4096, static_cast<char>('a' + i % 26));
  }
  return body;
}

// Takes one chunked response off the front of `buffer`: its head and its de-chunked body,
// or nullopt while incomplete.
std::optional<std::pair<std::string, std::string>> takeChunked(std::string &buffer) {
  size_t headEnd = buffer.find("\r\n\r\n");
  if (headEnd == std::string::npos) {
    return std::nullopt;
  }
  std::string body;
  size_t at = headEnd + 4;
  for (;;) {
    size_t lineEnd = buffer.find("\r\n", at);
    if (lineEnd == std::string::npos) {
      return std::nullopt;
    }
    size_t size = std::stoul(buffer.substr(at, lineEnd - at), nullptr, 16);
    if (buffer.size() < lineEnd + 2 + size + 2) {
      return std::nullopt;
    }
    if (size == 0) {
      std::pair<std::string, std::string> out{buffer.substr(0, headEnd), std::move(body)};
      buffer.erase(0, lineEnd + 4);
      return out;
    }
    body.append(buffer, lineEnd + 2, size);
    at = lineEnd + 2 + size + 2;
  }
}

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
    context_ =
        std::make_unique<ConnectionContext>(base_.get(), handler_, who_, limits_, std::move(hooks));
    connection_ = std::make_unique<HttpConnection>(*context_, fds[0]);
    connection_->start();
  }

  void TearDown() override {
    handler_.tokens.clear();
    connection_.reset();
    context_.reset();
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

  // Runs the loop for `duration`, reading at most `perTurn` bytes a turn (a slow client).
  void runRaw(std::chrono::milliseconds duration, size_t perTurn = 65536) {
    auto deadline = std::chrono::steady_clock::now() + duration;
    while (std::chrono::steady_clock::now() < deadline) {
      event_base_loop(base_.get(), EVLOOP_NONBLOCK);
      std::string chunk(perTurn, '\0');
      ssize_t n = ::recv(peer_.get(), chunk.data(), chunk.size(), 0);
      if (n > 0) {
        buffer_.append(chunk, 0, static_cast<size_t>(n));
      }
      eof_ = eof_ || n == 0;
      pollfd pfd{peer_.get(), POLLIN, 0};
      ::poll(&pfd, 1, 1);
    }
  }

  DeferringHandler handler_;
  WorkerIdentity who_{"test", 1, 7};
  HttpLimits limits_;
  UniqueFd peer_;
  EventBasePtr base_;
  std::unique_ptr<ConnectionContext> context_;
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

TEST_F(HttpConnectionAsyncTest, AStreamedBodyIsChunkedAndKeepsThePipelineInOrder) {
  send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  // A slow reader (8 KiB a turn): the 1 MiB body goes through a socket that pushes back.
  runRaw(std::chrono::milliseconds(1500), 8192);
  auto streamed = takeChunked(buffer_);
  ASSERT_TRUE(streamed.has_value()) << buffer_.size() << " bytes, no whole response";
  EXPECT_NE(streamed->first.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_EQ(streamed->first.find("Content-Length"), std::string::npos);
  EXPECT_TRUE(streamed->second == expectedStream()) << streamed->second.size() << " bytes";
  auto next = takeReply(buffer_, eof_);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->body, "now /next");
  EXPECT_FALSE(closed_);
}

TEST_F(HttpConnectionAsyncTest, AStreamedBodyToHttp10IsDelimitedByTheClose) {
  send("GET /stream HTTP/1.0\r\n\r\n");
  runRaw(std::chrono::milliseconds(500));
  EXPECT_TRUE(closed_);
  size_t headEnd = buffer_.find("\r\n\r\n");
  ASSERT_NE(headEnd, std::string::npos);
  EXPECT_EQ(buffer_.find("chunked"), std::string::npos);
  EXPECT_NE(buffer_.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(buffer_.substr(headEnd + 4) == expectedStream());
}

TEST_F(HttpConnectionAsyncTest, AStreamThatThrowsIsCutShortAndClosed) {
  send("GET /stream-throws HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
  runRaw(std::chrono::milliseconds(200));
  EXPECT_TRUE(closed_);
  EXPECT_FALSE(takeChunked(buffer_).has_value()) << "no terminating chunk";
  EXPECT_EQ(buffer_.find("now /next"), std::string::npos);
}

} // namespace
} // namespace sockdispatch
