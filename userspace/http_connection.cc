#include "http_connection.h"

#include <event2/buffer.h>

#include <cctype>
#include <string>

namespace sockdispatch {

namespace {

HttpConnection &self(llhttp_t *parser) {
  return *static_cast<HttpConnection *>(parser->data);
}

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

// RFC 9110 5.6.2 tchar.
bool isToken(std::string_view text) {
  if (text.empty()) {
    return false;
  }
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) == 0 &&
        std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

int statusForParseError(llhttp_errno error) {
  switch (error) {
  case HPE_INVALID_TRANSFER_ENCODING: return 501;
  case HPE_INVALID_VERSION: return 505;
  default: return 400;
  }
}

timeval toTimeval(std::chrono::seconds seconds) {
  return timeval{static_cast<time_t>(seconds.count()), 0};
}

} // namespace

const llhttp_settings_t &HttpConnection::settings() {
  static const llhttp_settings_t table = [] {
    llhttp_settings_t s;
    llhttp_settings_init(&s);
    s.on_message_begin = onMessageBegin;
    s.on_url = onUrl;
    s.on_header_field = onHeaderField;
    s.on_header_value = onHeaderValue;
    s.on_header_field_complete = onHeaderFieldComplete;
    s.on_header_value_complete = onHeaderValueComplete;
    s.on_headers_complete = onHeadersComplete;
    s.on_body = onBody;
    s.on_message_complete = onMessageComplete;
    return s;
  }();
  return table;
}

HttpConnection::HttpConnection(event_base *base, int fd, const Handler &handler,
                               const WorkerIdentity &who, const HttpLimits &limits, Hooks hooks)
    : bev_(bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE)), handler_(handler), who_(who),
      limits_(limits), hooks_(std::move(hooks)) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  bufferevent_setcb(
      bev_.get(),
      [](bufferevent *, void *ctx) { static_cast<HttpConnection *>(ctx)->onReadable(); },
      [](bufferevent *, void *ctx) { static_cast<HttpConnection *>(ctx)->onWritable(); },
      [](bufferevent *, short what, void *ctx) {
        static_cast<HttpConnection *>(ctx)->onEvent(what);
      },
      this);
  armTimeout();
  bufferevent_enable(bev_.get(), EV_READ | EV_WRITE);
}

HttpConnection::~HttpConnection() = default;

void HttpConnection::armTimeout() {
  timeval read = toTimeval(inMessage_ ? limits_.requestTimeout : limits_.idleTimeout);
  timeval write = toTimeval(limits_.idleTimeout);
  bufferevent_set_timeouts(bev_.get(), &read, &write);
}

int HttpConnection::onMessageBegin(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  c.request_ = Request{};
  c.headerBytes_ = 0;
  c.inMessage_ = true;
  c.armTimeout();
  return HPE_OK;
}

int HttpConnection::failWith(int status, const char *reason) {
  pendingStatus_ = status;
  llhttp_set_error_reason(&parser_, reason);
  return HPE_USER;
}

int HttpConnection::countHeaderBytes(size_t length) {
  headerBytes_ += length;
  if (headerBytes_ > limits_.maxHeaderBytes) {
    return failWith(431, "request headers too large");
  }
  return HPE_OK;
}

int HttpConnection::onUrl(llhttp_t *parser, const char *at, size_t length) {
  HttpConnection &c = self(parser);
  c.request_.target.append(at, length);
  if (c.request_.target.size() > c.limits_.maxTargetBytes) {
    return c.failWith(414, "request target too long");
  }
  return c.countHeaderBytes(length);
}

int HttpConnection::onHeaderField(llhttp_t *parser, const char *at, size_t length) {
  HttpConnection &c = self(parser);
  c.headerField_.append(at, length);
  return c.countHeaderBytes(length);
}

int HttpConnection::onHeaderValue(llhttp_t *parser, const char *at, size_t length) {
  HttpConnection &c = self(parser);
  c.headerValue_.append(at, length);
  return c.countHeaderBytes(length);
}

int HttpConnection::onHeaderFieldComplete(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  // RFC 9112 5.1: no whitespace between a field name and its colon; names are tokens.
  if (!isToken(c.headerField_)) {
    return c.failWith(400, "invalid header field name");
  }
  return HPE_OK;
}

int HttpConnection::onHeaderValueComplete(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  c.request_.headers.emplace_back(std::move(c.headerField_), std::move(c.headerValue_));
  c.headerField_.clear();
  c.headerValue_.clear();
  return HPE_OK;
}

int HttpConnection::onHeadersComplete(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  Request &r = c.request_;
  r.versionMajor = llhttp_get_http_major(parser);
  r.versionMinor = llhttp_get_http_minor(parser);
  if (r.versionMajor != 1 || r.versionMinor > 1) {
    return c.failWith(505, "unsupported HTTP version");
  }
  r.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(parser)));
  r.keepAlive = llhttp_should_keep_alive(parser) != 0;
  if (parser->content_length > c.limits_.maxBodyBytes && (parser->flags & F_CONTENT_LENGTH) != 0) {
    return c.failWith(413, "request body too large");
  }
  if (r.versionMinor == 1 && r.header("Expect") == "100-continue") {
    evbuffer_add_printf(bufferevent_get_output(c.bev_.get()), "HTTP/1.1 100 Continue\r\n\r\n");
  }
  return HPE_OK;
}

int HttpConnection::onBody(llhttp_t *parser, const char *at, size_t length) {
  HttpConnection &c = self(parser);
  if (c.request_.body.size() + length > c.limits_.maxBodyBytes) {
    return c.failWith(413, "request body too large");
  }
  c.request_.body.append(at, length);
  return HPE_OK;
}

int HttpConnection::onMessageComplete(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  c.messageReady_ = true;
  c.inMessage_ = false;
  // Stop after each message: the next pipelined one is parsed only once this one is answered.
  return HPE_PAUSED;
}

void HttpConnection::onReadable() {
  processInput();
}

void HttpConnection::processInput() {
  evbuffer *input = bufferevent_get_input(bev_.get());
  evbuffer *output = bufferevent_get_output(bev_.get());
  while (!closeAfterWrite_) {
    if (evbuffer_get_length(output) > limits_.maxPendingOutput) {
      // The client is not reading its answers: read no more until they drain.
      waitingForDrain_ = true;
      bufferevent_disable(bev_.get(), EV_READ);
      return;
    }
    evbuffer_iovec chunk{};
    if (evbuffer_peek(input, -1, nullptr, &chunk, 1) < 1 || chunk.iov_len == 0) {
      break;
    }
    const char *data = static_cast<const char *>(chunk.iov_base);
    llhttp_errno error = llhttp_execute(&parser_, data, chunk.iov_len);
    size_t consumed = chunk.iov_len;
    if (error == HPE_PAUSED) {
      consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
      llhttp_resume(&parser_);
    } else if (error != HPE_OK) {
      int status = pendingStatus_;
      if (status == 0) {
        const char *end = llhttp_get_error_pos(&parser_);
        status = error == HPE_INVALID_METHOD && looksLikeMethod(data, end ? end : data)
                     ? 501
                     : statusForParseError(error);
      }
      evbuffer_drain(input, chunk.iov_len);
      rejectAndClose(status);
      return;
    }
    evbuffer_drain(input, consumed);
    if (messageReady_) {
      messageReady_ = false;
      answer();
    }
  }
  if (!closed_) {
    armTimeout();
  }
}

void HttpConnection::answer() {
  Response response;
  handler_.handle(request_, response);
  bool keepAlive = request_.keepAlive && !response.close && !draining_;
  writeResponse(response, request_.isHead(), keepAlive);
  if (hooks_.requestAnswered) {
    hooks_.requestAnswered();
  }
  if (!keepAlive) {
    scheduleClose();
  }
}

void HttpConnection::writeResponse(Response &response, bool head, bool keepAlive) {
  evbuffer *output = bufferevent_get_output(bev_.get());
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
  if (!noBody) {
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
  if (response.file.valid()) {
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
  bufferevent_disable(bev_.get(), EV_READ);
  if (evbuffer_get_length(bufferevent_get_output(bev_.get())) == 0) {
    finishClose();
  }
}

void HttpConnection::finishClose() {
  if (closed_) {
    return;
  }
  closed_ = true;
  bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  hooks_.closed(this); // the owner frees this object later, outside our callbacks
}

void HttpConnection::closeWhenIdle() {
  draining_ = true;
  if (inMessage_) {
    return; // finish the request being read; its answer will carry Connection: close
  }
  scheduleClose();
}

void HttpConnection::onWritable() {
  // Called when the output buffer has drained completely (write low-water mark 0).
  if (closeAfterWrite_) {
    finishClose();
    return;
  }
  if (waitingForDrain_) {
    waitingForDrain_ = false;
    bufferevent_enable(bev_.get(), EV_READ);
    processInput();
  }
}

void HttpConnection::onEvent(short what) {
  if ((what & BEV_EVENT_TIMEOUT) != 0 && (what & BEV_EVENT_READING) != 0 && inMessage_ &&
      !closeAfterWrite_) {
    rejectAndClose(408);
    return;
  }
  if ((what & BEV_EVENT_EOF) != 0 && !closeAfterWrite_ &&
      evbuffer_get_length(bufferevent_get_output(bev_.get())) > 0) {
    scheduleClose(); // the client half-closed: deliver what it asked for, then close
    return;
  }
  finishClose();
}

} // namespace sockdispatch
