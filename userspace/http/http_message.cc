#include "http/http_message.h"

#include <strings.h>

#include <algorithm>
#include <ctime>

namespace sockdispatch {

std::string_view Request::header(std::string_view name) const {
  for (const auto &[key, value] : headers) {
    if (key.size() == name.size() && ::strncasecmp(key.data(), name.data(), name.size()) == 0) {
      return value;
    }
  }
  return {};
}

namespace {

bool isHexDigit(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// RFC 3986 unreserved / sub-delims.
bool isUnreservedOrSubDelim(char c) {
  bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return alnum || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

// RFC 3986 reg-name: unreserved / pct-encoded / sub-delims (an IPv4 address is one too).
bool isRegName(std::string_view name) {
  for (size_t i = 0; i < name.size(); ++i) {
    if (isUnreservedOrSubDelim(name[i])) {
      continue;
    }
    if (name[i] == '%' && i + 2 < name.size() && isHexDigit(name[i + 1]) &&
        isHexDigit(name[i + 2])) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

// The inside of "[...]": an IPv6 address (hex digits and ':', perhaps a dotted IPv4 tail) or
// an IPvFuture ("v" 1*HEXDIG "." 1*( unreserved / sub-delims / ":" )).
bool isIpLiteral(std::string_view inside) {
  if (!inside.empty() && (inside[0] == 'v' || inside[0] == 'V')) {
    size_t dot = inside.find('.');
    if (dot == std::string_view::npos || dot < 2 || dot + 1 == inside.size()) {
      return false;
    }
    std::string_view version = inside.substr(1, dot - 1);
    std::string_view rest = inside.substr(dot + 1);
    return std::all_of(version.begin(), version.end(), isHexDigit) &&
           std::all_of(rest.begin(), rest.end(),
                       [](char c) { return c == ':' || isUnreservedOrSubDelim(c); });
  }
  return inside.find(':') != std::string_view::npos &&
         std::all_of(inside.begin(), inside.end(),
                     [](char c) { return isHexDigit(c) || c == ':' || c == '.'; });
}

bool isPort(std::string_view port) {
  return std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
}

} // namespace

bool isValidHost(std::string_view value) {
  if (value.empty()) {
    return false;
  }
  std::string_view host = value;
  std::string_view port;
  if (value.front() == '[') {
    size_t close = value.find(']');
    if (close == std::string_view::npos || !isIpLiteral(value.substr(1, close - 1))) {
      return false;
    }
    std::string_view after = value.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return false;
    }
    return isPort(after.empty() ? after : after.substr(1));
  }
  if (size_t colon = value.find(':'); colon != std::string_view::npos) {
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
  }
  return !host.empty() && isRegName(host) && isPort(port);
}

std::string_view reasonPhrase(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 204: return "No Content";
  case 206: return "Partial Content";
  case 301: return "Moved Permanently";
  case 304: return "Not Modified";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 411: return "Length Required";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 416: return "Range Not Satisfiable";
  case 417: return "Expectation Failed";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

bool statusHasNoBody(int status) {
  return status < 200 || status == 204 || status == 304;
}

std::string httpDate(time_t when) {
  tm parts{};
  ::gmtime_r(&when, &parts);
  char text[64];
  size_t length = std::strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &parts);
  return std::string(text, length);
}

std::string_view httpDateNow() {
  static time_t cachedSecond = -1;
  static std::string cached;
  time_t now = ::time(nullptr);
  if (now != cachedSecond) {
    cachedSecond = now;
    cached = httpDate(now);
  }
  return cached;
}

Response simpleResponse(int status, std::string_view text) {
  Response response;
  response.status = status;
  response.body = std::string(text) + "\n";
  response.setHeader("Content-Type", "text/plain; charset=utf-8");
  return response;
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  return text;
}

} // namespace sockdispatch
