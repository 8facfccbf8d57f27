#pragma once

#include "core/unique_fd.h"
#include "http/connection_context.h"
#include "http/http_exchange.h"
#include "http/http_message.h"
#include "http/idle_connections.h"
#include "library/handler.h"
#include "library/pending_response.h"

#include <event2/event.h>
#include <event2/event_struct.h>

#include <chrono>
#include <cstdint>
#include <memory>

namespace sockdispatch {

// One client connection: the state machine between its request reader (HttpRequestReader:
// llhttp in strict mode, framing, limits) and its response writer (HttpResponseWriter). It
// answers requests in order through the Handler (pipelined requests included), keeps the
// connection alive when HTTP allows it, and answers malformed input with the reader's
// status before closing.
//
// Timeouts: each phase (waiting for a request, reading its head, reading its body, waiting
// for the client to take its answers) has a deadline set when the phase begins, never moved
// per byte, so a client trickling bytes cannot keep it moving. A busy connection's one timer
// (its exchange's) is armed for it when a call into the connection ends with it still busy;
// an idle one waits in the loop's queue, which has one timer for all.
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
//
// Idle keep-alive connections are light: once everything asked is answered and written, the
// connection gives its HttpExchange (reader, writer, buffer, timer) back to the
// ConnectionContext and waits in its IdleConnections with only its socket, its read event
// (registered once, for its whole life: going idle and busy costs no epoll_ctl), and its
// place in the idle queue, about 230 bytes; docs/design/idle-connections.md.
class HttpConnection : private DeferredSink {
public:
  using Hooks = ConnectionHooks;

  // Serves `fd` (taken: closed with the connection) on the context's loop, which outlives it.
  HttpConnection(ConnectionContext &context, int fd);
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

  // Whether it holds an exchange now: false while it waits idle.
  [[nodiscard]] bool busy() const { return exchange_ != nullptr; }

private:
  friend class HttpExchange;    // its reader's and writer's events
  friend class IdleConnections; // idleLink_, idleExpired()
  using Clock = std::chrono::steady_clock;
  using Phase = RequestPhase;
  class Entry;
  class RequestDeferral;

  // From the exchange's reader and writer.
  void phaseEntered(Phase phase);
  void continueExpected();
  void writeFailed();
  void writeBlocked();
  void writeDrained(bool wasBlocked);
  void streamEnded(bool failed);
  void onTimer();
  // From IdleConnections: the keep-alive deadline passed with nothing asked.
  void idleExpired();

  HttpExchange &exchange();
  // Idle again (nothing pending): gives the exchange back, and waits in the idle queue.
  void settle();
  void armTimer();
  // How long an idle connection waits for its next request (shorter while draining).
  [[nodiscard]] std::chrono::milliseconds idleWait() const;

  // Reads the socket and answers what it completes; whether the read found bytes or the end.
  bool readAndAnswer();
  bool readSocket(); // false when the connection is closed
  void processInput();
  void answer();
  void sendAnswer(Response &response);
  bool completeDeferred(uint64_t sequence, Response response) override;
  [[nodiscard]] bool answerPending() const;
  void rejectAndClose(int status);
  void scheduleClose();
  void finishClose();
  void stopReading();
  void startReading();
  void resumeReadingSoon();

  ConnectionContext &context_;
  event readEvent_{};                      // registered while reading_, from start() to the close
  std::unique_ptr<HttpExchange> exchange_; // while busy
  IdleLink idleLink_;                      // while idle
  UniqueFd fd_;
  uint32_t requestsAnswered_ = 0;
  uint8_t depth_ = 0; // calls into the connection in progress (Entry)
  bool reading_ = false;
  bool closed_ = false;
  bool draining_ = false; // answer the request in progress with Connection: close
  bool awaiting_ = false; // a deferred answer
  // Deferred answers: the token's weak anchor (made on the first deferral) and the sequence.
  std::shared_ptr<DeferredSink *> anchor_;
  uint64_t deferredSequence_ = 0;
};

} // namespace sockdispatch
