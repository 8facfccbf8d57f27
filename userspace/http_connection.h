#pragma once

#include "handler.h"
#include "http_message.h"

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>

#include <functional>
#include <memory>

namespace sockdispatch {

struct BuffereventDeleter {
  void operator()(bufferevent *bev) const { bufferevent_free(bev); }
};
using BuffereventPtr = std::unique_ptr<bufferevent, BuffereventDeleter>;

// One client connection: reads requests with llhttp (strict mode), answers them in order
// through the Handler (pipelined requests included), keeps the connection alive when
// HTTP allows it, and answers malformed input with the precise status before closing.
class HttpConnection {
public:
  struct Hooks {
    // The connection is done: the owner must free it, but not from inside this call.
    std::function<void(HttpConnection *)> closed;
    std::function<void()> requestAnswered; // scoreboard counter
  };

  HttpConnection(event_base *base, int fd, const Handler &handler, const WorkerIdentity &who,
                 const HttpLimits &limits, Hooks hooks);
  ~HttpConnection();
  HttpConnection(const HttpConnection &) = delete;
  HttpConnection &operator=(const HttpConnection &) = delete;

  // Answers nothing more: closes once what was already answered has been written.
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

  void onReadable();
  void onWritable();
  void onEvent(short what);
  void processInput();
  void answer();
  void writeResponse(Response &response, bool head, bool keepAlive);
  void rejectAndClose(int status);
  void scheduleClose();
  void finishClose();
  void armTimeout();

  BuffereventPtr bev_;
  const Handler &handler_;
  const WorkerIdentity &who_;
  const HttpLimits &limits_;
  Hooks hooks_;
  llhttp_t parser_{};

  Request request_;
  std::string headerField_;
  std::string headerValue_;
  size_t headerBytes_ = 0;
  bool inMessage_ = false;
  bool messageReady_ = false;
  int pendingStatus_ = 0; // status chosen by a callback that failed the parse
  bool closeAfterWrite_ = false;
  bool waitingForDrain_ = false;
  bool closed_ = false;
  bool draining_ = false; // answer the request in progress with Connection: close
};

} // namespace sockdispatch
