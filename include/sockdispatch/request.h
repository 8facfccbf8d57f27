#pragma once

/// @file
/// The request a handler receives: a read-only view of one parsed HTTP/1.1 request.

#include <string_view>
#include <utility>
#include <vector>

namespace sockdispatch {

struct Request; // the connection's parsed request (internal)

/// A read-only view of one parsed request.
///
/// It refers to the connection's buffers: it is valid only while the handler that received
/// it runs. Work handed to the offload pool must copy what it needs (the path, a header,
/// the body) into its closure.
class HttpRequest {
public:
  /// Wraps the connection's request (done by the server, not by handlers).
  explicit HttpRequest(const Request &request) : request_(&request) {}

  /// The method as sent: "GET", "POST", ...
  [[nodiscard]] std::string_view method() const;
  /// The request target as sent, query included: "/api/items?limit=10".
  [[nodiscard]] std::string_view target() const;
  /// The target up to its query: "/api/items". Not percent-decoded.
  [[nodiscard]] std::string_view path() const;
  /// What follows '?' in the target, "" when there is none.
  [[nodiscard]] std::string_view query() const;
  /// The first header with this name (ASCII case-insensitive), "" when absent.
  [[nodiscard]] std::string_view header(std::string_view name) const;
  /// Every header in the order received, names as the client spelled them.
  [[nodiscard]] std::vector<std::pair<std::string_view, std::string_view>> headers() const;
  /// The body, de-chunked; "" when the request has none.
  [[nodiscard]] std::string_view body() const;
  /// 0 for HTTP/1.0, 1 for HTTP/1.1.
  [[nodiscard]] int versionMinor() const;
  /// Whether the client asked to keep the connection open after this request.
  [[nodiscard]] bool keepAlive() const;

private:
  const Request *request_;
};

} // namespace sockdispatch
