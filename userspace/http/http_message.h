#pragma once

#include "core/unique_fd.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sockdispatch {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// One parsed request. Header names keep the client's case; look them up with header().
struct Request {
  std::string method;
  std::string target;
  uint8_t versionMajor = 1;
  uint8_t versionMinor = 1;
  HeaderList headers;
  std::string body;
  bool keepAlive = true;

  // The first header with this name (ASCII case-insensitive), or "" when absent.
  [[nodiscard]] std::string_view header(std::string_view name) const;
  [[nodiscard]] bool isHead() const { return method == "HEAD"; }
};

// The next piece of a streamed body, pulled on the loop thread whenever the socket has room;
// nullopt at the end. It must not block.
using BodyStream = std::function<std::optional<std::string>()>;

// What a handler answers. The body comes from memory, zero-copy from a file, or streamed.
struct Response {
  int status = 200;
  HeaderList headers;
  std::string body;
  UniqueFd file; // when valid, the body is fileLength bytes of it from fileOffset
  off_t fileOffset = 0;
  uint64_t fileLength = 0;
  BodyStream stream;  // when set, the body: chunked (HTTP/1.1) or up to the close (HTTP/1.0)
  bool close = false; // close the connection after this response

  void setHeader(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
  [[nodiscard]] uint64_t contentLength() const { return file.valid() ? fileLength : body.size(); }
};

// Limits one connection enforces; each maps to the status the client receives. Every one is
// an `attach` flag (docs/operations.md).
struct HttpLimits {
  size_t maxTargetBytes = 8UL * 1024;       // 414 above
  size_t maxHeaderBytes = 32UL * 1024;      // 431 above (request line and headers together)
  size_t maxHeaderFields = 100;             // 431 above (Apache's LimitRequestFields)
  size_t maxBodyBytes = 1024UL * 1024;      // 413 above
  size_t maxPendingOutput = 1024UL * 1024;  // stop reading pipelined requests above this
  uint32_t maxRequestsPerConnection = 1000; // the last one is answered with Connection: close
  // One timer per connection, armed when the connection changes phase (never per byte).
  std::chrono::milliseconds headerTimeout{10000}; // first byte to end of headers, else 408
  std::chrono::milliseconds bodyTimeout{30000};   // end of headers to end of body, else 408
  std::chrono::milliseconds idleTimeout{60000};   // keep-alive wait for the next request
  std::chrono::milliseconds writeTimeout{30000};  // answers pending with no progress: close
  // While its worker stops, an idle keep-alive connection waits this long for one more
  // request (answered with Connection: close) before it closes: a busy client's next request,
  // already on its way, is answered instead of meeting a closed connection.
  std::chrono::milliseconds drainLinger{1000};
};

// Whether a Host field's value is `uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2): a
// bracketed IP literal or a reg-name (IPv4 included), then an optional port of digits. Empty,
// a path, userinfo or white space inside is not.
bool isValidHost(std::string_view value);

// "OK", "Not Found", ...; "Unknown" for a code we never send.
std::string_view reasonPhrase(int status);

// Whether responses with this status carry no body (1xx, 204, 304).
bool statusHasNoBody(int status);

// `text` without the optional white space (SP, HTAB) around a header field's value.
std::string_view trimmed(std::string_view text);

// The IMF-fixdate for now, cached per second ("Tue, 24 Nov 2026 11:25:17 GMT").
std::string_view httpDateNow();
std::string httpDate(time_t when);

// A complete response with a body from memory, for errors the connection answers itself.
Response simpleResponse(int status, std::string_view text);

} // namespace sockdispatch
