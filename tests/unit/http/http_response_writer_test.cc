// The response writer on its own, over a socketpair and a real event loop: what it puts on
// the wire for each kind of body and version, the events it tells the connection, and how a
// peer that does not read pushes back (write event armed, deadline set, producer held back).
#include "core/unique_fd.h"
#include "http/http_response_writer.h"

#include <event2/event.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace sockdispatch {
namespace {

class RecordingEvents final : public HttpResponseWriter::Events {
public:
  void writeFailed() override { ++failed; }
  void writeBlocked() override { ++blocked; }
  void writeDrained(bool wasBlocked) override {
    ++drained;
    lastDrainWasBlocked = wasBlocked;
  }
  void streamEnded(bool failedStream) override {
    ++streamsEnded;
    lastStreamFailed = failedStream;
  }

  int failed = 0;
  int blocked = 0;
  int drained = 0;
  bool lastDrainWasBlocked = false;
  int streamsEnded = 0;
  bool lastStreamFailed = false;
};

struct EventBaseDeleter {
  void operator()(event_base *base) const { event_base_free(base); }
};

class ResponseWriterTest : public testing::Test {
protected:
  void SetUp() override {
    std::signal(SIGPIPE, SIG_IGN); // a write to a closed peer must be EPIPE, as in a worker
    int fds[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    ours_.reset(fds[0]);
    peer_.reset(fds[1]);
    base_.reset(event_base_new());
    ASSERT_NE(base_, nullptr);
    who_.mode = "ebpf";
    who_.slot = 3;
    writer_ =
        std::make_unique<HttpResponseWriter>(base_.get(), ours_.get(), who_, limits_, events_);
  }

  // Everything the peer can read now.
  std::string readPeer() {
    std::string bytes;
    char buffer[65536];
    for (;;) {
      ssize_t n = ::read(peer_.get(), buffer, sizeof(buffer));
      if (n <= 0) {
        return bytes;
      }
      bytes.append(buffer, static_cast<size_t>(n));
    }
  }

  // Runs the loop (write events) until the writer has nothing left or `turns` pass, reading
  // the peer between turns.
  std::string drainThroughLoop(int turns) {
    std::string bytes;
    for (int turn = 0; turn < turns && writer_->blocked(); ++turn) {
      bytes += readPeer();
      event_base_loop(base_.get(), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    return bytes + readPeer();
  }

  static Response textResponse(int status, std::string body) {
    Response response;
    response.status = status;
    response.setHeader("Content-Type", "text/plain");
    response.body = std::move(body);
    return response;
  }

  UniqueFd ours_;
  UniqueFd peer_;
  std::unique_ptr<event_base, EventBaseDeleter> base_;
  WorkerIdentity who_;
  HttpLimits limits_;
  RecordingEvents events_;
  std::unique_ptr<HttpResponseWriter> writer_;
};

// The head up to its blank line, and what follows it.
struct Split {
  std::string head;
  std::string body;
};
Split splitHead(const std::string &bytes) {
  size_t end = bytes.find("\r\n\r\n");
  if (end == std::string::npos) {
    return {bytes, ""};
  }
  return {bytes.substr(0, end + 4), bytes.substr(end + 4)};
}

TEST_F(ResponseWriterTest, ABodyFromMemoryGoesOutWithItsLengthInOneFlush) {
  auto response = textResponse(200, "hello");
  writer_->writeResponse(response, 1, false, true);
  writer_->flush();
  auto [head, body] = splitHead(readPeer());
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK\r\n", 0), 0U) << head;
  EXPECT_NE(head.find("\r\nServer: sockdispatch\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nDate: "), std::string::npos);
  EXPECT_NE(head.find("\r\nX-Sockdispatch-Worker: 3\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nContent-Type: text/plain\r\n"), std::string::npos);
  EXPECT_NE(head.find("\r\nContent-Length: 5\r\n"), std::string::npos);
  EXPECT_EQ(head.find("Connection:"), std::string::npos) << "HTTP/1.1 keeps alive by default";
  EXPECT_EQ(body, "hello");
  EXPECT_EQ(events_.drained, 1);
  EXPECT_FALSE(events_.lastDrainWasBlocked);
  EXPECT_EQ(events_.blocked, 0);
  EXPECT_FALSE(writer_->blocked());
}

TEST_F(ResponseWriterTest, ConnectionHeaderFollowsVersionAndKeepAlive) {
  auto keep10 = textResponse(200, "a");
  writer_->writeResponse(keep10, 0, false, true);
  writer_->flush();
  EXPECT_NE(splitHead(readPeer()).head.find("\r\nConnection: keep-alive\r\n"), std::string::npos)
      << "an HTTP/1.0 client is told the connection stays";

  auto close11 = textResponse(200, "b");
  writer_->writeResponse(close11, 1, false, false);
  writer_->flush();
  EXPECT_NE(splitHead(readPeer()).head.find("\r\nConnection: close\r\n"), std::string::npos);
}

TEST_F(ResponseWriterTest, HeadAndBodilessStatusesSendNoBody) {
  auto head = textResponse(200, "twelve bytes");
  writer_->writeResponse(head, 1, true, true);
  writer_->flush();
  auto headOnly = readPeer();
  EXPECT_NE(headOnly.find("\r\nContent-Length: 12\r\n"), std::string::npos)
      << "HEAD tells the length GET would send";
  EXPECT_EQ(splitHead(headOnly).body, "");

  for (int status : {204, 304}) {
    auto none = textResponse(status, "ignored");
    writer_->writeResponse(none, 1, false, true);
    writer_->flush();
    auto bytes = readPeer();
    EXPECT_EQ(bytes.find("Content-Length"), std::string::npos) << status;
    EXPECT_EQ(splitHead(bytes).body, "") << status;
  }
}

TEST_F(ResponseWriterTest, PipelinedAnswersGoOutInOrderAfterTheInterimContinue) {
  writer_->writeContinue();
  auto first = textResponse(200, "one");
  auto second = textResponse(404, "two");
  writer_->writeResponse(first, 1, false, true);
  writer_->writeResponse(second, 1, false, true);
  writer_->flush();
  auto bytes = readPeer();
  EXPECT_EQ(bytes.rfind("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n", 0), 0U) << bytes;
  size_t one = bytes.find("\r\n\r\none");
  size_t notFound = bytes.find("HTTP/1.1 404 Not Found\r\n");
  ASSERT_NE(one, std::string::npos);
  ASSERT_NE(notFound, std::string::npos);
  EXPECT_LT(one, notFound);
  EXPECT_EQ(bytes.substr(bytes.size() - 3), "two");
}

TEST_F(ResponseWriterTest, AFileBodySendsExactlyItsRange) {
  char path[] = "/tmp/sockdispatch-writer-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string content = "0123456789abcdefghij";
  ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  ::unlink(path);
  Response response;
  response.file.reset(fd);
  response.fileOffset = 5;
  response.fileLength = 7;
  writer_->writeResponse(response, 1, false, true);
  EXPECT_FALSE(response.file.valid()) << "the output owns the file from here";
  writer_->flush();
  auto [head, body] = splitHead(readPeer());
  EXPECT_NE(head.find("\r\nContent-Length: 7\r\n"), std::string::npos);
  EXPECT_EQ(body, "56789ab");
}

TEST_F(ResponseWriterTest, AStreamIsChunkedForHttp11AndEmptyPiecesDoNotEndIt) {
  std::vector<std::optional<std::string>> pieces{"ab", "", "cde", std::nullopt};
  size_t next = 0;
  Response response;
  response.stream = [&]() { return pieces.at(next++); };
  writer_->writeResponse(response, 1, false, true);
  EXPECT_TRUE(writer_->streaming());
  writer_->flush();
  auto [head, body] = splitHead(readPeer());
  EXPECT_NE(head.find("\r\nTransfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_EQ(head.find("Content-Length"), std::string::npos);
  EXPECT_EQ(body, "2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n");
  EXPECT_EQ(events_.streamsEnded, 1);
  EXPECT_FALSE(events_.lastStreamFailed);
  EXPECT_FALSE(writer_->streaming());
  EXPECT_EQ(events_.drained, 1);
}

TEST_F(ResponseWriterTest, AStreamForHttp10IsDelimitedByTheClose) {
  std::vector<std::optional<std::string>> pieces{"raw ", "bytes", std::nullopt};
  size_t next = 0;
  Response response;
  response.stream = [&]() { return pieces.at(next++); };
  writer_->writeResponse(response, 0, false, false);
  writer_->flush();
  auto [head, body] = splitHead(readPeer());
  EXPECT_EQ(head.find("Transfer-Encoding"), std::string::npos);
  EXPECT_EQ(head.find("Content-Length"), std::string::npos);
  EXPECT_NE(head.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_EQ(body, "raw bytes");
}

TEST_F(ResponseWriterTest, AFailingProducerCutsTheBodyShortWithoutTheLastChunk) {
  int calls = 0;
  Response response;
  response.stream = [&]() -> std::optional<std::string> {
    if (++calls == 2) {
      throw std::runtime_error("disk gone");
    }
    return std::string("part");
  };
  writer_->writeResponse(response, 1, false, true);
  writer_->flush();
  auto body = splitHead(readPeer()).body;
  EXPECT_EQ(body, "4\r\npart\r\n") << "no 0-chunk: the client can tell the body is incomplete";
  EXPECT_EQ(events_.streamsEnded, 1);
  EXPECT_TRUE(events_.lastStreamFailed);
}

TEST_F(ResponseWriterTest, APeerThatDoesNotReadArmsTheWriteEventUntilItDrains) {
  int small = 4096;
  ASSERT_EQ(setsockopt(ours_.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  limits_.maxPendingOutput = 64UL * 1024;
  std::string big(2UL * 1024 * 1024, 'x');
  auto response = textResponse(200, big);
  auto before = HttpResponseWriter::Clock::now();
  writer_->writeResponse(response, 1, false, true);
  writer_->flush();
  EXPECT_EQ(events_.blocked, 1);
  EXPECT_TRUE(writer_->blocked());
  EXPECT_TRUE(writer_->backlogged()) << "most of 2 MiB is still ours";
  EXPECT_GE(writer_->deadline(), before + limits_.writeTimeout);
  EXPECT_EQ(events_.drained, 0);

  writer_->flush(); // a second flush with no progress is not a second block
  EXPECT_EQ(events_.blocked, 1);

  auto bytes = drainThroughLoop(100000);
  EXPECT_EQ(splitHead(bytes).body.size(), big.size());
  EXPECT_FALSE(writer_->blocked());
  EXPECT_FALSE(writer_->backlogged());
  EXPECT_EQ(events_.drained, 1);
  EXPECT_TRUE(events_.lastDrainWasBlocked);
}

TEST_F(ResponseWriterTest, ASlowPeerHoldsBackAnEndlessProducer) {
  int small = 4096;
  ASSERT_EQ(setsockopt(ours_.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  size_t pulled = 0;
  Response response;
  response.stream = [&]() -> std::optional<std::string> {
    ++pulled;
    return std::string(1024, 'y'); // would go on for ever
  };
  writer_->writeResponse(response, 1, false, true);
  for (int i = 0; i < 50; ++i) {
    writer_->flush();
  }
  // The window is 64 KiB over what the socket holds; 50 flushes with no reader pull no more.
  EXPECT_GT(pulled, 0U);
  EXPECT_LT(pulled * 1024, 1024UL * 1024) << "pulled " << pulled << " KiB";
  EXPECT_TRUE(writer_->blocked()) << "an unfinished stream keeps the write event armed";
  EXPECT_EQ(events_.streamsEnded, 0);
}

TEST_F(ResponseWriterTest, APeerThatWentAwayIsAFailedWrite) {
  peer_.reset();
  auto response = textResponse(200, "lost");
  writer_->writeResponse(response, 1, false, true);
  writer_->flush();
  EXPECT_EQ(events_.failed, 1);
  EXPECT_EQ(events_.drained, 0);
}

TEST_F(ResponseWriterTest, AfterStopNothingMoreIsWritten) {
  writer_->stop();
  auto response = textResponse(200, "never");
  writer_->writeResponse(response, 1, false, true);
  writer_->flush();
  EXPECT_EQ(readPeer(), "");
  EXPECT_EQ(events_.drained, 0);
  EXPECT_EQ(events_.failed, 0);
}

} // namespace
} // namespace sockdispatch
