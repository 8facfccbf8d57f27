// HttpConnection: the state machine between the request reader and the response writer:
// reading the socket, phases and their timer, answering in order (now or deferred),
// keep-alive, draining and closing.
#include "http/http_connection.h"

#include "core/timeval.h"

#include <event2/buffer.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <exception>

namespace sockdispatch {

// The Deferral a handler receives for one request: defer() marks the connection as waiting
// and hands out a token for this request's sequence number.
class HttpConnection::RequestDeferral : public Deferral {
public:
  explicit RequestDeferral(HttpConnection &connection) : connection_(connection) {}
  PendingResponse defer() override {
    HttpConnection &c = connection_;
    if (c.awaiting_) {
      spdlog::error("a handler deferred the same request twice");
      return {};
    }
    c.awaiting_ = true;
    ++c.deferredSequence_;
    return PendingResponse(c.anchor_, c.deferredSequence_);
  }

private:
  HttpConnection &connection_;
};

HttpConnection::HttpConnection(event_base *base, int fd, const Handler &handler,
                               const WorkerIdentity &who, const HttpLimits &limits, Hooks hooks)
    : fd_(fd), input_(evbuffer_new()), handler_(handler), limits_(limits), hooks_(std::move(hooks)),
      reader_(limits, *this), writer_(base, fd, who, limits, *this),
      anchor_(std::make_shared<DeferredSink *>(static_cast<DeferredSink *>(this))) {
  readEvent_.reset(event_new(
      base, fd, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) {
        static_cast<HttpConnection *>(ctx)->readAndAnswer();
      },
      this));
  timer_.reset(evtimer_new(
      base,
      [](evutil_socket_t, short, void *ctx) { static_cast<HttpConnection *>(ctx)->onTimer(); },
      this));
  readDeadline_ = Clock::now() + limits_.idleTimeout;
  armTimer();
}

HttpConnection::~HttpConnection() = default;

// When the client's first request is in the socket by the time it is accepted, it is read and
// answered now, before asking the loop for readiness. A connection answered and closed here (a
// client that sent Connection: close) never touches epoll; a keep-alive one registers after
// its answer.
bool HttpConnection::start(bool readFirst) {
  bool found = readFirst && readAndAnswer();
  if (!closed_ && !closeAfterWrite_ && !peerClosed_ && !answerPending() && !waitingForDrain_) {
    startReading();
  }
  return found;
}

void HttpConnection::phaseEntered(Phase phase) {
  if (phase == phase_) {
    return;
  }
  phase_ = phase;
  std::chrono::milliseconds timeout = phase == Phase::idle   ? idleWait()
                                      : phase == Phase::head ? limits_.headerTimeout
                                                             : limits_.bodyTimeout;
  readDeadline_ = Clock::now() + timeout;
  armTimer();
}

void HttpConnection::continueExpected() {
  writer_.writeContinue();
  writer_.flush();
}

std::chrono::milliseconds HttpConnection::idleWait() const {
  return draining_ ? std::min(limits_.idleTimeout, limits_.drainLinger) : limits_.idleTimeout;
}

// Arms the one timer for the deadline that governs now: the write deadline while answers
// wait for the client, else the deadline of the read phase.
void HttpConnection::armTimer() {
  if (closed_) {
    return;
  }
  if (!writer_.blocked() && (closeAfterWrite_ || answerPending())) {
    event_del(timer_.get()); // nothing to read until the answer is written
    return;
  }
  timeval left = toTimeval((writer_.blocked() ? writer_.deadline() : readDeadline_) - Clock::now());
  event_add(timer_.get(), &left);
}

void HttpConnection::onTimer() {
  Clock::time_point now = Clock::now();
  if (writer_.blocked()) {
    if (now < writer_.deadline()) {
      armTimer(); // writes made progress since the timer was armed: wait for the new deadline
      return;
    }
    finishClose(); // the client stopped reading its answers
    return;
  }
  if (closeAfterWrite_ || answerPending()) {
    return;
  }
  if (phase_ == Phase::idle) {
    finishClose(); // nothing asked within the keep-alive timeout: close quietly
    return;
  }
  rejectAndClose(408); // the head or the body did not arrive whole in time
}

void HttpConnection::startReading() {
  if (!reading_ && !closed_) {
    reading_ = true;
    event_add(readEvent_.get(), nullptr);
  }
}

void HttpConnection::stopReading() {
  if (reading_) {
    reading_ = false;
    event_del(readEvent_.get());
  }
}

// Takes up the pipelined requests still buffered, on the next loop turn.
void HttpConnection::resumeReadingSoon() {
  startReading();
  event_active(readEvent_.get(), EV_READ, 0);
}

bool HttpConnection::readAndAnswer() {
  size_t before = evbuffer_get_length(input_.get());
  if (!readSocket()) {
    return true; // a reset: the read found the connection's end
  }
  bool found = peerClosed_ || evbuffer_get_length(input_.get()) > before;
  processInput();
  if (peerClosed_ && !closed_) {
    scheduleClose(); // the client half-closed: deliver what it asked for, then close
  }
  return found;
}

bool HttpConnection::readSocket() {
  constexpr size_t kReadChunk = 16384;
  for (int round = 0; round < 4; ++round) {
    evbuffer_iovec space{};
    if (evbuffer_reserve_space(input_.get(), kReadChunk, &space, 1) < 1) {
      finishClose();
      return false;
    }
    ssize_t n = ::recv(fd_.get(), space.iov_base, space.iov_len, 0);
    if (n > 0) {
      space.iov_len = static_cast<size_t>(n);
      evbuffer_commit_space(input_.get(), &space, 1);
      if (static_cast<size_t>(n) < kReadChunk) {
        return true;
      }
      continue;
    }
    evbuffer_commit_space(input_.get(), &space, 0);
    if (n == 0) {
      peerClosed_ = true;
      stopReading();
      return true;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return true;
    }
    if (errno != EINTR) {
      finishClose(); // reset by peer and the like
      return false;
    }
  }
  return true;
}

void HttpConnection::processInput() {
  evbuffer *input = input_.get();
  while (!closeAfterWrite_ && !closed_ && !answerPending()) {
    if (writer_.backlogged()) {
      writer_.flush();
      if (closed_ || !writer_.backlogged()) {
        continue;
      }
      // The client is not reading its answers: read no more until they drain.
      waitingForDrain_ = true;
      stopReading();
      return;
    }
    evbuffer_iovec chunk{};
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1 || chunk.iov_len == 0) {
      break;
    }
    HttpRequestReader::Fed fed =
        reader_.feed(static_cast<const char *>(chunk.iov_base), chunk.iov_len);
    if (fed.rejection != 0) {
      evbuffer_drain(input, evbuffer_get_length(input));
      rejectAndClose(fed.rejection);
      return;
    }
    evbuffer_drain(input, fed.consumed);
    if (fed.request) {
      answer();
    }
  }
  writer_.flush();
}

void HttpConnection::answer() {
  const Request &request = reader_.request();
  Response response;
  RequestDeferral later(*this);
  try {
    handler_.respond(request, response, later);
  } catch (const std::exception &error) {
    spdlog::error("handler failed on {} {}: {}", request.method, request.target, error.what());
    response = simpleResponse(500, reasonPhrase(500));
    awaiting_ = false;
    ++deferredSequence_; // a token it handed out before throwing answers nothing
  } catch (...) {
    spdlog::error("handler failed on {} {}: unknown exception", request.method, request.target);
    response = simpleResponse(500, reasonPhrase(500));
    awaiting_ = false;
    ++deferredSequence_;
  }
  if (awaiting_) {
    stopReading(); // the socket pushes back on the client until the answer is written
    armTimer();
    return;
  }
  sendAnswer(response);
}

void HttpConnection::sendAnswer(Response &response) {
  const Request &request = reader_.request();
  ++requestsAnswered_;
  bool lastAllowed = limits_.maxRequestsPerConnection != 0 &&
                     requestsAnswered_ >= limits_.maxRequestsPerConnection;
  // An upgrade is not taken: answer, then close, as the protocol switch never happened.
  // An HTTP/1.0 client learns a streamed body's end from the close.
  bool closeDelimited = response.stream != nullptr && request.versionMinor == 0 &&
                        !request.isHead() && !statusHasNoBody(response.status);
  bool keepAlive = request.keepAlive && !response.close && !draining_ && !lastAllowed &&
                   !reader_.upgradeRequested() && !closeDelimited;
  writer_.writeResponse(response, request.versionMinor, request.isHead(), keepAlive);
  if (writer_.streaming()) {
    stopReading(); // the requests behind it wait, and the socket pushes back on the client
  }
  if (hooks_.requestAnswered) {
    hooks_.requestAnswered();
  }
  if (!keepAlive) {
    scheduleClose();
  }
}

bool HttpConnection::completeDeferred(uint64_t sequence, Response response) {
  if (closed_ || !awaiting_ || sequence != deferredSequence_) {
    return false;
  }
  awaiting_ = false;
  sendAnswer(response);
  if (closed_) {
    return true;
  }
  if (closeAfterWrite_ || answerPending()) {
    writer_.flush(); // closes once the answer is written; a streamed answer resumes reading
    return true;
  }
  // Waiting for the next request from now; take up what the client pipelined meanwhile.
  readDeadline_ = Clock::now() + idleWait();
  armTimer();
  startReading();
  processInput();
  if (peerClosed_ && !closed_ && !answerPending()) {
    scheduleClose();
  }
  return true;
}

void HttpConnection::writeFailed() {
  finishClose();
}

void HttpConnection::writeBlocked() {
  armTimer(); // the write deadline governs now
}

void HttpConnection::writeDrained(bool wasBlocked) {
  if (wasBlocked) {
    if (phase_ == Phase::idle) {
      readDeadline_ = Clock::now() + limits_.idleTimeout; // idle from now on
    }
    armTimer();
  }
  if (closeAfterWrite_ && !answerPending()) {
    finishClose();
    return;
  }
  if (waitingForDrain_) {
    waitingForDrain_ = false; // answers drained: read the pipelined requests again
    resumeReadingSoon();
  }
}

void HttpConnection::streamEnded(bool failed) {
  if (failed) {
    closeAfterWrite_ = true; // the head is sent: only a cut-short body can say it failed
    return;
  }
  if (!closeAfterWrite_ && !closed_) {
    resumeReadingSoon();
  }
}

void HttpConnection::rejectAndClose(int status) {
  Response response = simpleResponse(status, reasonPhrase(status));
  writer_.writeResponse(response, 1, false, false);
  scheduleClose();
}

void HttpConnection::scheduleClose() {
  closeAfterWrite_ = true;
  stopReading();
  writer_.flush(); // closes once everything answered is written
}

void HttpConnection::finishClose() {
  if (closed_) {
    return;
  }
  closed_ = true;
  stopReading();
  writer_.stop();
  event_del(timer_.get());
  hooks_.closed(this); // the owner frees this object later, outside our callbacks
}

void HttpConnection::closeWhenIdle() {
  draining_ = true;
  if (requestsAnswered_ == 0) {
    return; // a client that just connected is sending its first request: it gets an answer
  }
  if (phase_ == Phase::idle && reading_ && !closeAfterWrite_ && !closed_) {
    // Take what the client already sent: a request that has arrived is answered, not dropped.
    if (!readSocket()) {
      return;
    }
    processInput();
  }
  if (closed_ || closeAfterWrite_ || phase_ != Phase::idle) {
    return; // closed, closing, or finishing a request whose answer says Connection: close
  }
  // Idle: one more request within the drain linger is answered, then it closes.
  readDeadline_ = std::min(readDeadline_, Clock::now() + idleWait());
  armTimer();
}

} // namespace sockdispatch
