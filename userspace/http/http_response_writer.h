#pragma once

#include "core/event_ptr.h"
#include "http/http_message.h"
#include "library/handler.h"

#include <event2/buffer.h>
#include <event2/event.h>

#include <chrono>
#include <memory>

namespace sockdispatch {

struct EvbufferDeleter {
  void operator()(evbuffer *buffer) const { evbuffer_free(buffer); }
};
using EvbufferPtr = std::unique_ptr<evbuffer, EvbufferDeleter>;

// Writes a connection's answers to its socket: serialises each response (status line,
// headers, a body from memory, from a file by sendfile, or streamed chunked or up to the
// close) into one output buffer and writes it straight away (one writev); a write event is
// armed only while the socket pushes back, and the write deadline moves on with progress.
//
// Streamed bodies: pieces are pulled while the output holds less than a window, so a slow
// client pushes back on the producer and other connections get their turn between pulls;
// the write event stays armed until the stream ends.
//
// It does not own the socket and never closes it: what the connection must do about a write
// (close, re-arm its timer, read again) it hears through Events.
class HttpResponseWriter {
public:
  class Events {
  public:
    virtual void writeFailed() = 0;  // the client went away: nothing more can be written
    virtual void writeBlocked() = 0; // the socket pushed back: the write deadline now runs
    // Everything answered so far is written (wasBlocked: the socket had pushed back).
    virtual void writeDrained(bool wasBlocked) = 0;
    // A streamed body ended: whole, or cut short because its producer failed.
    virtual void streamEnded(bool failed) = 0;

  protected:
    ~Events() = default;
  };

  using Clock = std::chrono::steady_clock;

  HttpResponseWriter(event_base *base, int fd, const WorkerIdentity &who, const HttpLimits &limits,
                     Events &events);
  HttpResponseWriter(const HttpResponseWriter &) = delete;
  HttpResponseWriter &operator=(const HttpResponseWriter &) = delete;

  // Adds one response to the output (written by the next flush). `versionMinor` is the
  // request's HTTP/1.x: it chooses chunked or close-delimited streaming and keep-alive.
  void writeResponse(Response &response, int versionMinor, bool head, bool keepAlive);
  // The interim answer to "Expect: 100-continue".
  void writeContinue();
  // Pulls a stream's pieces into the window, writes what the socket takes, arms or disarms
  // the write event; also run whenever the socket becomes writable.
  void flush();
  // Writes nothing more and drops the write event (the connection closes).
  void stop();
  // Writes to `fd` from now on (another connection's socket). Only when it holds nothing:
  // not streaming, nothing left to write, its write event not armed.
  void attach(int fd);
  // Everything answered is written, and nothing is streaming.
  [[nodiscard]] bool done() const;

  [[nodiscard]] bool streaming() const { return stream_ != nullptr; }
  // Whether the output holds more than the pending-output window (HttpLimits).
  [[nodiscard]] bool backlogged() const;
  // Whether the socket pushed back, and until when it may take no progress.
  [[nodiscard]] bool blocked() const { return armed_; }
  [[nodiscard]] Clock::time_point deadline() const { return deadline_; }

private:
  static void onWritable(evutil_socket_t fd, short what, void *ctx);
  void pullStream();

  int fd_;
  const WorkerIdentity &who_;
  const HttpLimits &limits_;
  Events &events_;
  EvbufferPtr output_;
  EventPtr writeEvent_;
  Clock::time_point deadline_; // moved on by every write that makes progress
  bool armed_ = false;
  bool stopped_ = false;
  BodyStream stream_; // a streamed body being sent
  bool streamChunked_ = false;
};

} // namespace sockdispatch
