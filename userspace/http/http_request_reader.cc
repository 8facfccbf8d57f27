// HttpRequestReader: the llhttp callbacks that build a Request and hold every limit on it.
#include "http/http_request_reader.h"

#include <strings.h>

#include <cctype>
#include <string_view>

namespace sockdispatch {

namespace {

HttpRequestReader &self(llhttp_t *parser) {
  return *static_cast<HttpRequestReader *>(parser->data);
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

HttpRequestReader::HttpRequestReader(const HttpLimits &limits, Events &events)
    : limits_(limits), events_(events) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
}

void HttpRequestReader::reset() {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  framing_.reset();
  request_ = Request{};
  headerField_.clear();
  headerValue_.clear();
  headerBytes_ = 0;
  hostFields_ = 0;
  pendingStatus_ = 0;
  messageReady_ = false;
}

HttpRequestReader::Fed HttpRequestReader::feed(const char *data, size_t length) {
  Fed fed;
  fed.consumed = length;
  // The head's line framing is checked before llhttp sees the bytes (HeadFraming).
  if (!framing_.headDone() && framing_.feed(data, length) != HeadFraming::Verdict::ok) {
    fed.rejection = 400;
    return fed;
  }
  llhttp_errno error = llhttp_execute(&parser_, data, length);
  if (error == HPE_PAUSED) {
    fed.consumed = static_cast<size_t>(llhttp_get_error_pos(&parser_) - data);
    llhttp_resume(&parser_);
  } else if (error != HPE_OK) {
    fed.rejection = rejectionFor(error, data);
    return fed;
  }
  if (messageReady_) {
    messageReady_ = false;
    fed.request = true;
  }
  return fed;
}

int HttpRequestReader::rejectionFor(llhttp_errno error, const char *data) {
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
  return status;
}

const llhttp_settings_t &HttpRequestReader::settings() {
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

int HttpRequestReader::onMessageBegin(llhttp_t *parser) {
  HttpRequestReader &r = self(parser);
  r.request_ = Request{};
  r.headerBytes_ = 0;
  r.hostFields_ = 0;
  r.events_.phaseEntered(RequestPhase::head);
  return HPE_OK;
}

int HttpRequestReader::failWith(int status, const char *reason) {
  pendingStatus_ = status;
  llhttp_set_error_reason(&parser_, reason);
  return HPE_USER;
}

int HttpRequestReader::countHeaderBytes(size_t length) {
  headerBytes_ += length;
  if (headerBytes_ > limits_.maxHeaderBytes) {
    return failWith(431, "request headers too large");
  }
  return HPE_OK;
}

int HttpRequestReader::onUrl(llhttp_t *parser, const char *at, size_t length) {
  HttpRequestReader &r = self(parser);
  r.request_.target.append(at, length);
  if (r.request_.target.size() > r.limits_.maxTargetBytes) {
    return r.failWith(414, "request target too long");
  }
  return r.countHeaderBytes(length);
}

int HttpRequestReader::onHeaderField(llhttp_t *parser, const char *at, size_t length) {
  HttpRequestReader &r = self(parser);
  r.headerField_.append(at, length);
  return r.countHeaderBytes(length);
}

int HttpRequestReader::onHeaderValue(llhttp_t *parser, const char *at, size_t length) {
  HttpRequestReader &r = self(parser);
  r.headerValue_.append(at, length);
  return r.countHeaderBytes(length);
}

int HttpRequestReader::onHeaderFieldComplete(llhttp_t *parser) {
  HttpRequestReader &r = self(parser);
  // RFC 9112 5.1: no whitespace between a field name and its colon; names are tokens.
  if (!isToken(r.headerField_)) {
    return r.failWith(400, "invalid header field name");
  }
  if (r.request_.headers.size() >= r.limits_.maxHeaderFields) {
    return r.failWith(431, "too many header fields");
  }
  return HPE_OK;
}

int HttpRequestReader::onHeaderValueComplete(llhttp_t *parser) {
  HttpRequestReader &r = self(parser);
  // RFC 9112 3.2: more than one Host field, or one whose value is not a host, is answered 400.
  if (r.headerField_.size() == 4 && ::strncasecmp(r.headerField_.data(), "host", 4) == 0) {
    if (++r.hostFields_ > 1) {
      return r.failWith(400, "more than one Host header field");
    }
    if (!isValidHost(trimmed(r.headerValue_))) {
      return r.failWith(400, "invalid Host header field");
    }
  }
  r.request_.headers.emplace_back(std::move(r.headerField_), std::move(r.headerValue_));
  r.headerField_.clear();
  r.headerValue_.clear();
  return HPE_OK;
}

int HttpRequestReader::onHeadersComplete(llhttp_t *parser) {
  HttpRequestReader &r = self(parser);
  Request &request = r.request_;
  request.versionMajor = llhttp_get_http_major(parser);
  request.versionMinor = llhttp_get_http_minor(parser);
  if (request.versionMajor != 1 || request.versionMinor > 1) {
    return r.failWith(505, "unsupported HTTP version");
  }
  if (request.versionMinor == 1 && r.hostFields_ == 0) {
    return r.failWith(400, "HTTP/1.1 request without a Host header field");
  }
  request.method = llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(parser)));
  request.keepAlive = llhttp_should_keep_alive(parser) != 0;
  if (int status = transferEncodingStatus(request); status != 0) {
    return r.failWith(status, "unsupported Transfer-Encoding");
  }
  if (parser->content_length > r.limits_.maxBodyBytes && (parser->flags & F_CONTENT_LENGTH) != 0) {
    return r.failWith(413, "request body too large");
  }
  if (request.versionMinor == 1 && request.header("Expect") == "100-continue") {
    r.events_.continueExpected();
  }
  if ((parser->flags & F_CHUNKED) != 0 || parser->content_length > 0) {
    r.events_.phaseEntered(RequestPhase::body); // a request without a body goes back to idle
  }
  return HPE_OK;
}

int HttpRequestReader::onBody(llhttp_t *parser, const char *at, size_t length) {
  HttpRequestReader &r = self(parser);
  if (r.request_.body.size() + length > r.limits_.maxBodyBytes) {
    return r.failWith(413, "request body too large");
  }
  r.request_.body.append(at, length);
  return HPE_OK;
}

int HttpRequestReader::onMessageComplete(llhttp_t *parser) {
  HttpRequestReader &r = self(parser);
  r.messageReady_ = true;
  r.framing_.reset();
  r.events_.phaseEntered(RequestPhase::idle);
  // Stop after each message: the next pipelined one is parsed only once this one is answered.
  return HPE_PAUSED;
}

} // namespace sockdispatch
