#pragma once

#include "event_ptr.h"
#include "handler.h"
#include "http_framing.h"
#include "http_message.h"
#include "pending_response.h"
#include "unique_fd.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>

#include <chrono>
#include <functional>
#include <memory>

namespace sockdispatch {

struct EvbufferDeleter {
  void operator()(evbuffer *buffer) const { evbuffer_free(buffer); }
};
using EvbufferPtr = std::unique_ptr<evbuffer, EvbufferDeleter>;

// One client connection: reads requests with llhttp (strict mode), answers them in order
// through the Handler (pipelined requests included), keeps the connection alive when
// HTTP allows it, and answers malformed input with the precise status before closing.
//
// Timeouts: one timer per connection, re-armed when the connection changes phase (waiting
// for a request, reading its head, reading its body, waiting for the client to take its
// answers), never per byte, so a client trickling bytes cannot keep a deadline moving.
//
// I/O is done directly on the socket: answers are written as soon as they are made (one
// writev, or sendfile for large files), and a write event is armed only when the socket
// pushes back. This saves the epoll_ctl calls and the extra loop turn per response that a
// bufferevent would cost.
//
// Deferred answers (http_connection_async.cc): a handler may take a request's answer out of
// its call (Handler::respond, Deferral::defer) and complete it later on the loop. Until then
// the connection reads and parses nothing more (pipelined requests keep their order, the
// socket pushes back on the client) and no read timeout runs; the answer's write timeout
// applies as usual once it is written. The token holds the connection weakly.
//
// Streamed bodies (http_connection_stream.cc): the body's pieces are pulled while the output
// holds less than a window, and sent as chunks; the write event stays armed until the
// stream ends, so a slow client pushes back on the producer and other connections get their
// turn between pulls. Like a deferred answer, a stream holds back the requests behind it.
class HttpConnection : private DeferredSink {
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

  // Answers nothing more: closes once what was already answered has been written. A
  // connection that has not been answered yet is not idle: its first request (which the
  // client may still be sending) is answered with Connection: close, then it closes.
  void closeWhenIdle();

private:
  static int onMessageBegin(llhttp_t *parser);
  static int onUrl(llhttp_t *parser, const char *at, size_t length);
  static int onHeaderField(llhttp_t *parser, const char *at, size_t length);
  static int onHeaderValue(llhttp_t *parser, const char *at, size_t length);
  static int onHeaderFieldComplete(llhttp_t *parser);
  static int onHeaderValueComplete(llhttp_t *parser);
  static int onHeadersComplete(llhttp_t *parser);
  static int onBody(llhttp_t *parser, const char *at, size_t length);
  static int onMessageComplete(llhttp_t *parser);
  static const llhttp_settings_t &settings();

  int failWith(int status, const char *reason);
  int countHeaderBytes(size_t length);

  using Clock = std::chrono::steady_clock;
  // What the connection waits for; each phase has its own timeout (HttpLimits).
  enum class Phase { idle, head, body };
  void enterPhase(Phase phase);
  void armTimer();
  // How long an idle connection waits for its next request (shorter while draining).
  [[nodiscard]] std::chrono::milliseconds idleWait() const;
  void onTimer();

  void onReadable();
  void onWritable();
  bool readSocket(); // false when the connection is closed
  void flush();
  void processInput();
  bool checkFraming(const char *data, size_t length);
  void answer();
  void sendAnswer(Response &response);
  bool completeDeferred(uint64_t sequence, Response response) override;
  class RequestDeferral;
  [[nodiscard]] bool answerPending() const { return awaiting_ || stream_ != nullptr; }
  void startStream(BodyStream stream, bool chunked);
  void pullStream();
  void writeResponse(Response &response, bool head, bool keepAlive);
  void rejectAndClose(int status);
  void scheduleClose();
  void finishClose();
  void stopReading();
  void startReading();

  UniqueFd fd_;
  EvbufferPtr input_;
  EvbufferPtr output_;
  EventPtr readEvent_;
  EventPtr writeEvent_;
  EventPtr timer_;
  const Handler &handler_;
  const WorkerIdentity &who_;
  const HttpLimits &limits_;
  Hooks hooks_;
  llhttp_t parser_{};
  HeadFraming framing_;

  Request request_;
  std::string headerField_;
  std::string headerValue_;
  size_t headerBytes_ = 0;
  size_t hostFields_ = 0; // Host fields of the request being read (RFC 9112 3.2: exactly one)
  uint32_t requestsAnswered_ = 0;
  Phase phase_ = Phase::idle;
  Clock::time_point readDeadline_;  // of the current phase
  Clock::time_point writeDeadline_; // moved on by every write that makes progress
  bool messageReady_ = false;
  int pendingStatus_ = 0; // status chosen by a callback that failed the parse
  bool closeAfterWrite_ = false;
  bool waitingForDrain_ = false;
  bool writeArmed_ = false;
  bool reading_ = false;
  bool peerClosed_ = false;
  bool closed_ = false;
  bool draining_ = false; // answer the request in progress with Connection: close
  // Deferred answers: the token's weak anchor, and which request waits (if any).
  std::shared_ptr<DeferredSink *> anchor_;
  uint64_t deferredSequence_ = 0;
  bool awaiting_ = false;
  // A streamed body being sent, and whether it is chunked (HTTP/1.1).
  BodyStream stream_;
  bool streamChunked_ = false;
};

} // namespace sockdispatch
