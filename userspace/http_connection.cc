// HttpConnection: reading the socket, pipelining, answering, deadlines and closing. The
// parser callbacks are in http_connection_parse.cc, deferred answers in _async, streamed
// bodies in _stream.
#include "http_connection.h"

#include "timeval.h"

#include <event2/buffer.h>

#include <cctype>
#include <string>

namespace sockdispatch {

namespace {

// An unknown method is 501 when it is a well-formed token, 400 when it is garbage.
bool looksLikeMethod(const char *begin, const char *end) {
  if (begin == end) {
    return false;
  }
  for (const char *p = begin; p < end; ++p) {
    if (*p == ' ') {
      return p != begin;
    }
    if (std::isupper(static_cast<unsigned char>(*p)) == 0 && *p != '-' && *p != '_') {
      return false;
    }
  }
  return true;
}

int statusForParseError(llhttp_errno error) {
  switch (error) {
  case HPE_INVALID_VERSION: return 505;
  default: return 400;
  }
}

} // namespace

HttpConnection::HttpConnection(event_base *base, int fd, const Handler &handler,
                               const WorkerIdentity &who, const HttpLimits &limits, Hooks hooks)
    : fd_(fd), input_(evbuffer_new()), output_(evbuffer_new()), handler_(handler), who_(who),
      limits_(limits), hooks_(std::move(hooks)),
      anchor_(std::make_shared<DeferredSink *>(static_cast<DeferredSink *>(this))) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  // Lets file segments go out with sendfile(2) instead of being mmapped into the buffer.
  evbuffer_set_flags(output_.get(), EVBUFFER_FLAG_DRAINS_TO_FD);
  readEvent_.reset(event_new(
      base, fd, EV_READ | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<HttpConnection *>(ctx)->onReadable(); },
      this));
  writeEvent_.reset(event_new(
      base, fd, EV_WRITE | EV_PERSIST,
      [](evutil_socket_t, short, void *ctx) { static_cast<HttpConnection *>(ctx)->onWritable(); },
      this));
  timer_.reset(evtimer_new(
      base,
      [](evutil_socket_t, short, void *ctx) { static_cast<HttpConnection *>(ctx)->onTimer(); },
      this));
  startReading();
  readDeadline_ = Clock::now() + limits_.idleTimeout;
  armTimer();
}

HttpConnection::~HttpConnection() = default;

void HttpConnection::enterPhase(Phase phase) {
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

std::chrono::milliseconds HttpConnection::idleWait() const {
  return draining_ ? std::min(limits_.idleTimeout, limits_.drainLinger) : limits_.idleTimeout;
}

// Arms the one timer for the deadline that governs now: the write deadline while answers
// wait for the client, else the deadline of the read phase.
void HttpConnection::armTimer() {
  if (closed_) {
    return;
  }
  if (!writeArmed_ && (closeAfterWrite_ || answerPending())) {
    event_del(timer_.get()); // nothing to read until the answer is written
    return;
  }
  timeval left = toTimeval((writeArmed_ ? writeDeadline_ : readDeadline_) - Clock::now());
  event_add(timer_.get(), &left);
}

void HttpConnection::onTimer() {
  Clock::time_point now = Clock::now();
  if (writeArmed_) {
    if (now < writeDeadline_) {
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

void HttpConnection::onReadable() {
  if (!readSocket()) {
    return;
  }
  processInput();
  if (peerClosed_ && !closed_) {
    scheduleClose(); // the client half-closed: deliver what it asked for, then close
  }
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
    if (evbuffer_get_length(output_.get()) > limits_.maxPendingOutput) {
      flush();
      if (closed_ || evbuffer_get_length(output_.get()) <= limits_.maxPendingOutput) {
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
    const char *data = static_cast<const char *>(chunk.iov_base);
    if (!checkFraming(data, chunk.iov_len)) {
      return;
    }
    llhttp_errno error = llhttp_execute(&parser_, data, chunk.iov_len);
    size_t consumed = chunk.iov_len;
    if (error == HPE_PAUSED) {
      consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
    } else if (error != HPE_OK) {
      int status = pendingStatus_;
      if (status == 0 && error == HPE_INVALID_TRANSFER_ENCODING) {
        request_.versionMinor = llhttp_get_http_minor(&parser_);
        status = transferEncodingStatus(request_);
      }
      if (status == 0) {
        const char *end = llhttp_get_error_pos(&parser_);
        status = error == HPE_INVALID_METHOD && looksLikeMethod(data, end ? end : data)
                     ? 501
                     : statusForParseError(error);
      }
      evbuffer_drain(input, evbuffer_get_length(input));
      rejectAndClose(status);
      return;
    }
    evbuffer_drain(input, consumed);
    if (messageReady_) {
      messageReady_ = false;
      answer();
    }
  }
  flush();
}

// The head's line framing, checked before llhttp sees the bytes (HeadFraming).
bool HttpConnection::checkFraming(const char *data, size_t length) {
  if (framing_.headDone()) {
    return true;
  }
  HeadFraming::Verdict verdict = framing_.feed(data, length);
  if (verdict == HeadFraming::Verdict::ok) {
    return true;
  }
  evbuffer_drain(input_.get(), evbuffer_get_length(input_.get()));
  rejectAndClose(400);
  return false;
}

void HttpConnection::flush() {
  if (stream_) {
    pullStream();
  }
  size_t before = evbuffer_get_length(output_.get());
  while (!closed_ && evbuffer_get_length(output_.get()) > 0) {
    int n = evbuffer_write(output_.get(), fd_.get());
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      }
      finishClose(); // the client went away
      return;
    }
  }
  if (closed_) {
    return;
  }
  size_t left = evbuffer_get_length(output_.get());
  if (left > 0 || stream_) {
    if (!writeArmed_) {
      writeArmed_ = true;
      writeDeadline_ = Clock::now() + limits_.writeTimeout;
      event_add(writeEvent_.get(), nullptr);
      armTimer();
    } else if (left < before) {
      // Progress: move the deadline on; the timer notices when it fires (no re-arm per write).
      writeDeadline_ = Clock::now() + limits_.writeTimeout;
    }
    return;
  }
  if (writeArmed_) {
    writeArmed_ = false;
    event_del(writeEvent_.get());
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
    // Answers drained: take up the pipelined requests still buffered, on the next loop turn.
    waitingForDrain_ = false;
    startReading();
    event_active(readEvent_.get(), EV_READ, 0);
  }
}

void HttpConnection::writeResponse(Response &response, bool head, bool keepAlive) {
  evbuffer *output = output_.get();
  std::string text;
  text.reserve(256);
  text += "HTTP/1.1 ";
  text += std::to_string(response.status);
  text += ' ';
  text += reasonPhrase(response.status);
  text += "\r\nServer: sockdispatch\r\nDate: ";
  text += httpDateNow();
  text += "\r\nX-Sockdispatch-Worker: ";
  text += std::to_string(who_.slot);
  text += "\r\n";
  for (const auto &[name, value] : response.headers) {
    text += name;
    text += ": ";
    text += value;
    text += "\r\n";
  }
  bool noBody = statusHasNoBody(response.status);
  bool streamed = response.stream != nullptr && !noBody;
  if (streamed) {
    if (request_.versionMinor == 1) {
      text += "Transfer-Encoding: chunked\r\n";
    }
  } else if (!noBody) {
    text += "Content-Length: ";
    text += std::to_string(response.contentLength());
    text += "\r\n";
  }
  if (!keepAlive) {
    text += "Connection: close\r\n";
  } else if (request_.versionMinor == 0) {
    text += "Connection: keep-alive\r\n";
  }
  text += "\r\n";
  evbuffer_add(output, text.data(), text.size());
  if (head || noBody) {
    return;
  }
  if (streamed) {
    startStream(std::move(response.stream), request_.versionMinor == 1);
  } else if (response.file.valid()) {
    // The evbuffer owns the fd from here; libevent sends it with sendfile().
    evbuffer_add_file(output, response.file.release(), response.fileOffset,
                      static_cast<ev_off_t>(response.fileLength));
  } else {
    evbuffer_add(output, response.body.data(), response.body.size());
  }
}

void HttpConnection::rejectAndClose(int status) {
  Response response = simpleResponse(status, reasonPhrase(status));
  request_.versionMinor = 1;
  writeResponse(response, false, false);
  scheduleClose();
}

void HttpConnection::scheduleClose() {
  closeAfterWrite_ = true;
  stopReading();
  flush(); // closes once everything answered is written
}

void HttpConnection::finishClose() {
  if (closed_) {
    return;
  }
  closed_ = true;
  stopReading();
  event_del(writeEvent_.get());
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

void HttpConnection::onWritable() {
  flush();
}

} // namespace sockdispatch
