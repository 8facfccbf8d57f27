#pragma once

#include "core/event_ptr.h"
#include "http/http_message.h"
#include "http/http_request_reader.h"
#include "http/http_response_writer.h"

#include <event2/event.h>

#include <chrono>

namespace sockdispatch {

class HttpConnection;

// The part of a connection that exists only while it is busy: a request being read or
// answered, or answers being written. Its input buffer, its timer, its request reader and its
// response writer, about 1.3 KB with their events and buffers. An idle keep-alive connection
// gives it back (ConnectionContext keeps a few spare), so a connection waiting for its next
// request holds only what HttpConnection holds itself; docs/design/idle-connections.md.
//
// The reader's and the writer's events reach the connection it serves now (bind()).
class HttpExchange final : private HttpRequestReader::Events, private HttpResponseWriter::Events {
public:
  using Clock = std::chrono::steady_clock;

  HttpExchange(event_base *base, int fd, const WorkerIdentity &who, const HttpLimits &limits);
  virtual ~HttpExchange(); // virtual: it has virtual functions (the events it forwards)
  HttpExchange(const HttpExchange &) = delete;
  HttpExchange &operator=(const HttpExchange &) = delete;

  // Serves `owner`, whose socket is `fd`, from now on, as if just made: waiting for a request,
  // nothing read, nothing to write. Only for one given back settled (or just made).
  void bind(HttpConnection &owner, int fd);
  // Nothing read and not taken, nothing to write, nothing streaming, between requests, no
  // close pending: what a connection may go idle with.
  [[nodiscard]] bool settled() const;

  EvbufferPtr input;
  EventPtr timer; // the deadline that governs now (HttpConnection::armTimer)
  HttpRequestReader reader;
  HttpResponseWriter writer;
  RequestPhase phase = RequestPhase::idle;
  Clock::time_point readDeadline; // of the current phase
  bool closeAfterWrite = false;
  bool waitingForDrain = false;
  bool peerClosed = false;

private:
  // HttpRequestReader::Events
  void phaseEntered(RequestPhase phase) override;
  void continueExpected() override;
  // HttpResponseWriter::Events
  void writeFailed() override;
  void writeBlocked() override;
  void writeDrained(bool wasBlocked) override;
  void streamEnded(bool failed) override;

  HttpConnection *owner_ = nullptr;
};

} // namespace sockdispatch
