#pragma once

#include "core/event_ptr.h"
#include "core/unique_fd.h"
#include "http/http_message.h"
#include "http/http_request_reader.h"
#include "http/http_response_writer.h"
#include "library/handler.h"
#include "library/pending_response.h"

#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>

namespace sockdispatch {

// One client connection: the state machine between its request reader (HttpRequestReader:
// llhttp in strict mode, framing, limits) and its response writer (HttpResponseWriter). It
// answers requests in order through the Handler (pipelined requests included), keeps the
// connection alive when HTTP allows it, and answers malformed input with the reader's
// status before closing.
//
// Timeouts: one timer per connection, re-armed when the connection changes phase (waiting
// for a request, reading its head, reading its body, waiting for the client to take its
// answers), never per byte, so a client trickling bytes cannot keep a deadline moving.
//
// I/O is done directly on the socket: answers are written as soon as they are made, and a
// write event is armed only when the socket pushes back. This saves the epoll_ctl calls and
// the extra loop turn per response that a bufferevent would cost.
//
// Deferred answers: a handler may take a request's answer out of its call
// (Handler::respond, Deferral::defer) and complete it later on the loop. Until then the
// connection reads and parses nothing more (pipelined requests keep their order, the socket
// pushes back on the client) and no read timeout runs; the answer's write timeout applies as
// usual once it is written. The token holds the connection weakly. Like a deferred answer, a
// streamed body holds back the requests behind it until it ends.
class HttpConnection : private DeferredSink,
                       private HttpRequestReader::Events,
                       private HttpResponseWriter::Events {
public:
  struct Hooks {
    // The connection is done: the owner must free it, but not from inside this call.
    std::function<void(HttpConnection *)> closed;
    std::function<void()> requestAnswered; // scoreboard counter
  };

  HttpConnection(event_base *base, int fd, const Handler &handler, const WorkerIdentity &who,
                 const HttpLimits &limits, Hooks hooks);
  ~HttpConnection() override;
  HttpConnection(const HttpConnection &) = delete;
  HttpConnection &operator=(const HttpConnection &) = delete;

  // Starts serving: with `readFirst`, reads what the client already sent and answers it
  // (FirstReadGate says when that pays), then waits for the socket to be readable. Call once,
  // after the owner holds the connection (its `closed` hook may run from here). Whether the
  // first read found bytes (false when not tried).
  bool start(bool readFirst = true);

  // Answers nothing more: closes once what was already answered has been written. A
  // connection that has not been answered yet is not idle: its first request (which the
  // client may still be sending) is answered with Connection: close, then it closes.
  void closeWhenIdle();

private:
  using Clock = std::chrono::steady_clock;
  using Phase = RequestPhase;

  // HttpRequestReader::Events
  void phaseEntered(Phase phase) override;
  void continueExpected() override;
  // HttpResponseWriter::Events
  void writeFailed() override;
  void writeBlocked() override;
  void writeDrained(bool wasBlocked) override;
  void streamEnded(bool failed) override;

  void armTimer();
  // How long an idle connection waits for its next request (shorter while draining).
  [[nodiscard]] std::chrono::milliseconds idleWait() const;
  void onTimer();

  // Reads the socket and answers what it completes; whether the read found bytes or the end.
  bool readAndAnswer();
  bool readSocket(); // false when the connection is closed
  void processInput();
  void answer();
  void sendAnswer(Response &response);
  bool completeDeferred(uint64_t sequence, Response response) override;
  class RequestDeferral;
  [[nodiscard]] bool answerPending() const { return awaiting_ || writer_.streaming(); }
  void rejectAndClose(int status);
  void scheduleClose();
  void finishClose();
  void stopReading();
  void startReading();
  void resumeReadingSoon();

  UniqueFd fd_;
  EvbufferPtr input_;
  EventPtr readEvent_;
  EventPtr timer_;
  const Handler &handler_;
  const HttpLimits &limits_;
  Hooks hooks_;
  HttpRequestReader reader_;
  HttpResponseWriter writer_;

  uint32_t requestsAnswered_ = 0;
  Phase phase_ = Phase::idle;
  Clock::time_point readDeadline_; // of the current phase
  bool closeAfterWrite_ = false;
  bool waitingForDrain_ = false;
  bool reading_ = false;
  bool peerClosed_ = false;
  bool closed_ = false;
  bool draining_ = false; // answer the request in progress with Connection: close
  // Deferred answers: the token's weak anchor, and which request waits (if any).
  std::shared_ptr<DeferredSink *> anchor_;
  uint64_t deferredSequence_ = 0;
  bool awaiting_ = false;
};

} // namespace sockdispatch
