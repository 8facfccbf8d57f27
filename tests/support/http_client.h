#pragma once

#include "core/unique_fd.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace sockdispatch::test {

// One HTTP/1.1 response as a strict client sees it. Header names are lower-cased.
struct HttpReply {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;

  [[nodiscard]] std::string header(const std::string &name) const {
    auto found = headers.find(name);
    return found == headers.end() ? std::string{} : found->second;
  }
  // The slot of the worker that answered (X-Sockdispatch-Worker), -1 when absent.
  [[nodiscard]] int workerSlot() const;
};

// Parses one response from the front of `buffer` (Content-Length or close-delimited when
// `eof`). Returns it and removes its bytes, or nullopt when more bytes are needed.
// `headRequest`: the response has no body whatever Content-Length says.
std::optional<HttpReply> takeReply(std::string &buffer, bool eof, bool headRequest = false);

// A blocking TCP client on loopback with a deadline on every read.
class TcpClient {
public:
  // Connects to 127.0.0.1:port (or ::1 when `ipv6`). Fails the current test on error.
  static std::optional<TcpClient> connect(uint16_t port, bool ipv6 = false);

  bool send(const std::string &bytes);
  // Reads until one whole response is parsed or the deadline passes.
  std::optional<HttpReply> readReply(std::chrono::milliseconds timeout = std::chrono::seconds(5),
                                     bool headRequest = false);
  // Reads everything until the peer closes (or the deadline). Returns what arrived.
  std::string readUntilClose(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Whether the server closed the connection (EOF) within the timeout.
  bool waitForClose(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void close() { fd_.reset(); }
  // The peer closed (or reset) the connection, and nothing it sent is left unread.
  [[nodiscard]] bool closedWithNothingPending() const { return eof_ && buffer_.empty(); }
  [[nodiscard]] int fd() const { return fd_.get(); }

private:
  explicit TcpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  bool fill(std::chrono::steady_clock::time_point deadline);
  UniqueFd fd_;
  std::string buffer_;
  bool eof_ = false;
};

// One request, one response, on a fresh connection with Connection: close.
std::optional<HttpReply> fetch(uint16_t port, const std::string &target = "/");

} // namespace sockdispatch::test
