#include "http_message.h"

#include <strings.h>

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
