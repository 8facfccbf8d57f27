// HttpConnection: the llhttp callbacks that build a Request and hold every limit on it.
#include "http_connection.h"

#include <event2/buffer.h>
#include <strings.h>

#include <cctype>
#include <string>
#include <string_view>

namespace sockdispatch {

namespace {

HttpConnection &self(llhttp_t *parser) {
  return *static_cast<HttpConnection *>(parser->data);
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

int HttpConnection::onMessageBegin(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  c.request_ = Request{};
  c.headerBytes_ = 0;
  c.hostFields_ = 0;
  c.enterPhase(Phase::head);
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
  if (c.request_.headers.size() >= c.limits_.maxHeaderFields) {
    return c.failWith(431, "too many header fields");
  }
  return HPE_OK;
}

int HttpConnection::onHeaderValueComplete(llhttp_t *parser) {
  HttpConnection &c = self(parser);
  // RFC 9112 3.2: more than one Host field, or one whose value is not a host, is answered 400.
  if (c.headerField_.size() == 4 && ::strncasecmp(c.headerField_.data(), "host", 4) == 0) {
    if (++c.hostFields_ > 1) {
      return c.failWith(400, "more than one Host header field");
    }
    if (!isValidHost(trimmed(c.headerValue_))) {
      return c.failWith(400, "invalid Host header field");
    }
  }
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
  if (r.versionMinor == 1 && c.hostFields_ == 0) {
    return c.failWith(400, "HTTP/1.1 request without a Host header field");
  }
  r.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(parser)));
  r.keepAlive = llhttp_should_keep_alive(parser) != 0;
  if (int status = transferEncodingStatus(r); status != 0) {
    return c.failWith(status, "unsupported Transfer-Encoding");
  }
  if (parser->content_length > c.limits_.maxBodyBytes && (parser->flags & F_CONTENT_LENGTH) != 0) {
    return c.failWith(413, "request body too large");
  }
  if (r.versionMinor == 1 && r.header("Expect") == "100-continue") {
    evbuffer_add_printf(c.output_.get(), "HTTP/1.1 100 Continue\r\n\r\n");
    c.flush();
  }
  if ((parser->flags & F_CHUNKED) != 0 || parser->content_length > 0) {
    c.enterPhase(Phase::body); // a request without a body goes straight back to idle
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
  c.framing_.reset();
  c.enterPhase(Phase::idle);
  // Stop after each message: the next pipelined one is parsed only once this one is answered.
  return HPE_PAUSED;
}

} // namespace sockdispatch
