// HttpConnection: the state machine between the request reader and the response writer:
// reading the socket, phases and their timer, answering in order (now or deferred),
// keep-alive (idle in the context's queue, without an exchange), draining and closing.
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
    if (!c.anchor_) {
      c.anchor_ = std::make_shared<DeferredSink *>(static_cast<DeferredSink *>(&c));
    }
    c.awaiting_ = true;
    ++c.deferredSequence_;
    return PendingResponse(c.anchor_, c.deferredSequence_);
  }

private:
  HttpConnection &connection_;
};

// One call into the connection from outside (the loop, the owner, a deferred answer). The
// outermost one settles it on the way out: a connection left idle gives its exchange back
// only once no call of its reader or writer is on the stack.
class HttpConnection::Entry {
public:
  explicit Entry(HttpConnection &connection) : connection_(connection) { ++connection_.depth_; }
  ~Entry() {
    if (--connection_.depth_ == 0) {
      connection_.settle();
    }
  }
  Entry(const Entry &) = delete;
  Entry &operator=(const Entry &) = delete;

private:
  HttpConnection &connection_;
};

HttpConnection::HttpConnection(ConnectionContext &context, int fd) : context_(context), fd_(fd) {
  event_assign(
      &readEvent_, context.base(), fd, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) {
        auto &connection = *static_cast<HttpConnection *>(ctx);
        Entry entry(connection);
        connection.readAndAnswer();
      },
      this);
}

HttpConnection::~HttpConnection() {
  event_del(&readEvent_);
  context_.idle().remove(*this);
}

// When the client's first request is in the socket by the time it is accepted, it is read and
// answered now, before asking the loop for readiness. A connection answered and closed here (a
// client that sent Connection: close) never touches epoll; a keep-alive one registers after
// its answer.
bool HttpConnection::start(bool readFirst) {
  Entry entry(*this);
  bool found = readFirst && readAndAnswer();
  if (!closed_ &&
      (!exchange_ ||
       (!exchange_->closeAfterWrite && !exchange_->peerClosed && !exchange_->waitingForDrain)) &&
      !answerPending()) {
    startReading();
  }
  return found;
}

HttpExchange &HttpConnection::exchange() {
  if (!exchange_) {
    exchange_ = context_.takeExchange(*this, fd_.get());
    exchange_->readDeadline = idleLink_.linked ? idleLink_.deadline : Clock::now() + idleWait();
  }
  return *exchange_;
}

void HttpConnection::settle() {
  if (closed_) {
    return;
  }
  if (exchange_) {
    if (awaiting_ || !reading_ || !exchange_->settled()) {
      armTimer(); // still busy: the deadline that governs now (phaseEntered only notes it)
      return;
    }
    event_del(exchange_->timer.get());
    context_.giveBack(std::move(exchange_));
  } else if (!reading_) {
    return; // not started yet
  }
  // Waiting from now, or still from when it went idle if no request began since.
  bool lingering = draining_ && context_.limits().drainLinger < context_.limits().idleTimeout;
  if (idleLink_.linked && (!lingering || idleLink_.queue == IdleConnections::kDraining)) {
    return;
  }
  Clock::time_point deadline = Clock::now() + idleWait();
  if (!idleLink_.linked || deadline < idleLink_.deadline) {
    context_.idle().add(*this, deadline,
                        lingering ? IdleConnections::kDraining : IdleConnections::kKeepAlive);
  }
}

void HttpConnection::idleExpired() {
  finishClose(); // nothing asked within the keep-alive timeout: close quietly
}

void HttpConnection::phaseEntered(Phase phase) {
  HttpExchange &x = *exchange_;
  if (phase == x.phase) {
    return;
  }
  x.phase = phase;
  if (phase == Phase::head) {
    // A request begins: it leaves the idle queue (no-op unless it waited there). Bytes before
    // it (empty lines) leave it where it is, so they cannot move its keep-alive deadline.
    context_.idle().remove(*this);
  }
  const HttpLimits &limits = context_.limits();
  std::chrono::milliseconds timeout = phase == Phase::idle   ? idleWait()
                                      : phase == Phase::head ? limits.headerTimeout
                                                             : limits.bodyTimeout;
  // The timer is armed for it when the call into the connection ends still busy (settle()):
  // a request answered at once never arms it.
  x.readDeadline = Clock::now() + timeout;
}

void HttpConnection::continueExpected() {
  exchange_->writer.writeContinue();
  exchange_->writer.flush();
}

std::chrono::milliseconds HttpConnection::idleWait() const {
  const HttpLimits &limits = context_.limits();
  return draining_ ? std::min(limits.idleTimeout, limits.drainLinger) : limits.idleTimeout;
}

bool HttpConnection::answerPending() const {
  return awaiting_ || (exchange_ && exchange_->writer.streaming());
}

// Arms the one timer for the deadline that governs now: the write deadline while answers
// wait for the client, else the deadline of the read phase.
void HttpConnection::armTimer() {
  if (closed_ || !exchange_) {
    return;
  }
  HttpExchange &x = *exchange_;
  if (!x.writer.blocked() && (x.closeAfterWrite || answerPending())) {
    event_del(x.timer.get()); // nothing to read until the answer is written
    return;
  }
  timeval left =
      toTimeval((x.writer.blocked() ? x.writer.deadline() : x.readDeadline) - Clock::now());
  event_add(x.timer.get(), &left);
}

void HttpConnection::onTimer() {
  HttpExchange &x = *exchange_;
  Clock::time_point now = Clock::now();
  if (x.writer.blocked()) {
    if (now < x.writer.deadline()) {
      armTimer(); // writes made progress since the timer was armed: wait for the new deadline
      return;
    }
    finishClose(); // the client stopped reading its answers
    return;
  }
  if (x.closeAfterWrite || answerPending()) {
    return;
  }
  if (x.phase == Phase::idle) {
    finishClose(); // nothing asked within the keep-alive timeout: close quietly
    return;
  }
  rejectAndClose(408); // the head or the body did not arrive whole in time
}

void HttpConnection::startReading() {
  if (!reading_ && !closed_) {
    reading_ = true;
    event_add(&readEvent_, nullptr);
  }
}

void HttpConnection::stopReading() {
  if (reading_) {
    reading_ = false;
    event_del(&readEvent_);
  }
}

// Takes up the pipelined requests still buffered, on the next loop turn.
void HttpConnection::resumeReadingSoon() {
  startReading();
  event_active(&readEvent_, EV_READ, 0);
}

bool HttpConnection::readAndAnswer() {
  HttpExchange &x = exchange();
  size_t before = evbuffer_get_length(x.input.get());
  if (!readSocket()) {
    return true; // a reset: the read found the connection's end
  }
  bool found = x.peerClosed || evbuffer_get_length(x.input.get()) > before;
  processInput();
  if (x.peerClosed && !closed_) {
    scheduleClose(); // the client half-closed: deliver what it asked for, then close
  }
  return found;
}

bool HttpConnection::readSocket() {
  constexpr size_t kReadChunk = 16384;
  evbuffer *input = exchange_->input.get();
  for (int round = 0; round < 4; ++round) {
    evbuffer_iovec space{};
    if (evbuffer_reserve_space(input, kReadChunk, &space, 1) < 1) {
      finishClose();
      return false;
    }
    ssize_t n = ::recv(fd_.get(), space.iov_base, space.iov_len, 0);
    if (n > 0) {
      space.iov_len = static_cast<size_t>(n);
      evbuffer_commit_space(input, &space, 1);
      if (static_cast<size_t>(n) < kReadChunk) {
        return true;
      }
      continue;
    }
    evbuffer_commit_space(input, &space, 0);
    if (n == 0) {
      exchange_->peerClosed = true;
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
  HttpExchange &x = *exchange_;
  evbuffer *input = x.input.get();
  while (!x.closeAfterWrite && !closed_ && !answerPending()) {
    if (x.writer.backlogged()) {
      x.writer.flush();
      if (closed_ || !x.writer.backlogged()) {
        continue;
      }
      // The client is not reading its answers: read no more until they drain.
      x.waitingForDrain = true;
      stopReading();
      return;
    }
    evbuffer_iovec chunk{};
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1 || chunk.iov_len == 0) {
      break;
    }
    HttpRequestReader::Fed fed =
        x.reader.feed(static_cast<const char *>(chunk.iov_base), chunk.iov_len);
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
  x.writer.flush();
}

void HttpConnection::answer() {
  const Request &request = exchange_->reader.request();
  Response response;
  RequestDeferral later(*this);
  try {
    context_.handler().respond(request, response, later);
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
  HttpExchange &x = *exchange_;
  const Request &request = x.reader.request();
  const HttpLimits &limits = context_.limits();
  ++requestsAnswered_;
  bool lastAllowed =
      limits.maxRequestsPerConnection != 0 && requestsAnswered_ >= limits.maxRequestsPerConnection;
  // An upgrade is not taken: answer, then close, as the protocol switch never happened.
  // An HTTP/1.0 client learns a streamed body's end from the close.
  bool closeDelimited = response.stream != nullptr && request.versionMinor == 0 &&
                        !request.isHead() && !statusHasNoBody(response.status);
  bool keepAlive = request.keepAlive && !response.close && !draining_ && !lastAllowed &&
                   !x.reader.upgradeRequested() && !closeDelimited;
  x.writer.writeResponse(response, request.versionMinor, request.isHead(), keepAlive);
  if (x.writer.streaming()) {
    stopReading(); // the requests behind it wait, and the socket pushes back on the client
  }
  if (context_.hooks().requestAnswered) {
    context_.hooks().requestAnswered();
  }
  if (!keepAlive) {
    scheduleClose();
  }
}

bool HttpConnection::completeDeferred(uint64_t sequence, Response response) {
  if (closed_ || !awaiting_ || sequence != deferredSequence_) {
    return false;
  }
  Entry entry(*this);
  awaiting_ = false;
  sendAnswer(response);
  if (closed_) {
    return true;
  }
  HttpExchange &x = *exchange_;
  if (x.closeAfterWrite || answerPending()) {
    x.writer.flush(); // closes once the answer is written; a streamed answer resumes reading
    return true;
  }
  // Waiting for the next request from now; take up what the client pipelined meanwhile.
  x.readDeadline = Clock::now() + idleWait();
  armTimer();
  startReading();
  processInput();
  if (!closed_ && x.peerClosed && !answerPending()) {
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
  HttpExchange &x = *exchange_;
  if (wasBlocked) {
    if (x.phase == Phase::idle) {
      x.readDeadline = Clock::now() + context_.limits().idleTimeout; // idle from now on
    }
    armTimer();
  }
  if (x.closeAfterWrite && !answerPending()) {
    finishClose();
    return;
  }
  if (x.waitingForDrain) {
    x.waitingForDrain = false; // answers drained: read the pipelined requests again
    resumeReadingSoon();
  } else if (wasBlocked && reading_) {
    // From the write event, inside the writer: the read event's next turn settles it (or
    // reads what the client sent meanwhile).
    event_active(&readEvent_, EV_READ, 0);
  }
}

void HttpConnection::streamEnded(bool failed) {
  if (failed) {
    exchange_->closeAfterWrite = true; // the head is sent: only a cut-short body can say it failed
    return;
  }
  if (!exchange_->closeAfterWrite && !closed_) {
    resumeReadingSoon();
  }
}

void HttpConnection::rejectAndClose(int status) {
  Response response = simpleResponse(status, reasonPhrase(status));
  exchange_->writer.writeResponse(response, 1, false, false);
  scheduleClose();
}

void HttpConnection::scheduleClose() {
  context_.idle().remove(*this);
  exchange_->closeAfterWrite = true;
  stopReading();
  exchange_->writer.flush(); // closes once everything answered is written
}

void HttpConnection::finishClose() {
  if (closed_) {
    return;
  }
  closed_ = true;
  stopReading();
  context_.idle().remove(*this);
  if (exchange_) {
    exchange_->writer.stop();
    event_del(exchange_->timer.get());
  }
  context_.hooks().closed(this); // the owner frees this object later, outside our callbacks
}

void HttpConnection::closeWhenIdle() {
  Entry entry(*this);
  draining_ = true;
  if (requestsAnswered_ == 0) {
    return; // a client that just connected is sending its first request: it gets an answer
  }
  bool idle = !exchange_ || (exchange_->phase == Phase::idle && !exchange_->closeAfterWrite);
  if (idle && reading_ && !closed_) {
    // Take what the client already sent: a request that has arrived is answered, not dropped.
    exchange();
    if (!readSocket()) {
      return;
    }
    processInput();
  }
  if (closed_ || !exchange_ || exchange_->closeAfterWrite || exchange_->phase != Phase::idle) {
    return; // closed, closing, or finishing a request whose answer says Connection: close
  }
  // Idle: one more request within the drain linger is answered, then it closes (settle()
  // moves an idle one to the lingering queue).
  exchange_->readDeadline = std::min(exchange_->readDeadline, Clock::now() + idleWait());
  armTimer();
}

} // namespace sockdispatch
