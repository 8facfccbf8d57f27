#pragma once

#include "http/http_framing.h"
#include "http/http_message.h"

#include <llhttp.h>

#include <cstddef>
#include <string>

namespace sockdispatch {

// Where a connection is in reading a request; each phase has its own timeout (HttpLimits).
enum class RequestPhase { idle, head, body };

// Turns a connection's bytes into Requests, one at a time: llhttp in strict mode behind the
// head's line framing checks (HeadFraming), with every limit on a request held here (target,
// header bytes and fields, body, Host). It answers with a complete Request, a rejection
// status, or a wish for more bytes; it never touches the socket.
//
// feed() stops at the end of each request: the bytes after it (pipelined requests) are left
// for the caller to feed again once that request is answered.
class HttpRequestReader {
public:
  // What the connection hears while a request is read, at the moment it happens.
  class Events {
  public:
    // A request's head began, its body began, or the request ended (idle again).
    virtual void phaseEntered(RequestPhase phase) = 0;
    // An HTTP/1.1 client waits for "100 Continue" before it sends the body.
    virtual void continueExpected() = 0;

  protected:
    ~Events() = default;
  };

  struct Fed {
    size_t consumed = 0;  // bytes taken from the front of the input
    bool request = false; // a complete request is ready: request()
    int rejection = 0;    // when not 0, the status to answer before closing; nothing more is read
  };

  HttpRequestReader(const HttpLimits &limits, Events &events);
  HttpRequestReader(const HttpRequestReader &) = delete;
  HttpRequestReader &operator=(const HttpRequestReader &) = delete;

  Fed feed(const char *data, size_t length);
  // Ready for a new connection's first request, as if just made.
  void reset();

  // The request feed() last completed (or the one being read).
  [[nodiscard]] const Request &request() const { return request_; }
  // Whether the request asked for a protocol upgrade (never taken).
  [[nodiscard]] bool upgradeRequested() const { return parser_.upgrade != 0; }

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
  int rejectionFor(llhttp_errno error, const char *data);

  const HttpLimits &limits_;
  Events &events_;
  llhttp_t parser_{};
  HeadFraming framing_;
  Request request_;
  std::string headerField_;
  std::string headerValue_;
  size_t headerBytes_ = 0;
  size_t hostFields_ = 0; // Host fields of the request being read (RFC 9112 3.2: exactly one)
  int pendingStatus_ = 0; // status chosen by a callback that failed the parse
  bool messageReady_ = false;
};

} // namespace sockdispatch
