#pragma once

/// @file
/// The response a handler produces.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sockdispatch {

/// What a handler answers: a status, headers, and a body from memory, from a file, or
/// streamed in pieces.
///
/// The server adds Date, Server, Content-Length, Connection and X-Sockdispatch-Worker (the
/// slot of the worker that answered). A file body is sent with sendfile(2), zero-copy.
/// Move-only: it may own a file descriptor.
class HttpResponse {
public:
  HttpResponse() = default;
  /// A response with this status and a body from memory.
  explicit HttpResponse(int status, std::string body = {},
                        std::string_view contentType = "text/plain; charset=utf-8");
  ~HttpResponse();
  HttpResponse(HttpResponse &&other) noexcept;
  HttpResponse &operator=(HttpResponse &&other) noexcept;
  HttpResponse(const HttpResponse &) = delete;
  HttpResponse &operator=(const HttpResponse &) = delete;

  /// Sets the status code (200 unless set).
  HttpResponse &setStatus(int status);
  [[nodiscard]] int status() const { return status_; }

  /// Adds a header (several with one name are allowed). Do not set the headers the server
  /// adds itself (see the class comment).
  HttpResponse &addHeader(std::string name, std::string value);
  /// The headers added so far, in order.
  [[nodiscard]] const std::vector<std::pair<std::string, std::string>> &headers() const {
    return headers_;
  }

  /// Sets the body from memory, and its Content-Type when `contentType` is not empty.
  /// Replaces a file body.
  HttpResponse &setBody(std::string body, std::string_view contentType = {});
  [[nodiscard]] const std::string &body() const { return body_; }

  /// Sends `length` bytes of the open file `fd` from `offset` as the body. The response
  /// takes ownership of `fd` (closed when sent or dropped). Replaces a memory body.
  HttpResponse &setFileBody(int fd, off_t offset, uint64_t length);
  /// Opens `path` read-only and sends it whole as the body. Returns false (and leaves the
  /// response unchanged) when it cannot be opened or is not a regular file; errno says why.
  bool setFileBody(const std::string &path);
  [[nodiscard]] bool hasFileBody() const { return fileFd_ >= 0; }

  /// The next piece of a streamed body, or std::nullopt at its end.
  using BodyStream = std::function<std::optional<std::string>()>;
  /// Streams the body: `next` is called on the worker's loop thread whenever the connection
  /// has room for more (so a slow client slows the calls down), until it returns
  /// std::nullopt. It must not block; empty pieces are skipped. The body goes out with
  /// Transfer-Encoding: chunked (to an HTTP/1.0 client: delimited by closing the
  /// connection). If `next` throws, the body is cut short and the connection closed.
  /// Replaces a memory or file body.
  HttpResponse &setStreamedBody(BodyStream next);
  [[nodiscard]] bool hasStreamedBody() const { return static_cast<bool>(stream_); }

  /// Closes the connection after this response (Connection: close).
  HttpResponse &closeConnection();
  [[nodiscard]] bool closesConnection() const { return close_; }

private:
  friend struct ResponseAccess;
  int status_ = 200;
  std::vector<std::pair<std::string, std::string>> headers_;
  std::string body_;
  int fileFd_ = -1;
  off_t fileOffset_ = 0;
  uint64_t fileLength_ = 0;
  BodyStream stream_;
  bool close_ = false;
};

} // namespace sockdispatch
