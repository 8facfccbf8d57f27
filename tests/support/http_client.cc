#include "support/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace sockdispatch::test {

int HttpReply::workerSlot() const {
  std::string value = header("x-sockdispatch-worker");
  return value.empty() ? -1 : std::stoi(value);
}

std::optional<HttpReply> takeReply(std::string &buffer, bool eof, bool headRequest) {
  for (;;) {
    auto headerEnd = buffer.find("\r\n\r\n");
    if (headerEnd == std::string::npos) {
      return std::nullopt;
    }
    HttpReply reply;
    std::string head = buffer.substr(0, headerEnd);
    auto lineEnd = head.find("\r\n");
    std::string statusLine = head.substr(0, lineEnd);
    if (statusLine.rfind("HTTP/1.", 0) != 0 || statusLine.size() < 12) {
      return std::nullopt;
    }
    reply.status = std::stoi(statusLine.substr(9, 3));
    size_t pos = lineEnd == std::string::npos ? head.size() : lineEnd + 2;
    while (pos < head.size()) {
      auto end = head.find("\r\n", pos);
      std::string line = head.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
      pos = end == std::string::npos ? head.size() : end + 2;
      auto colon = line.find(':');
      if (colon == std::string::npos) {
        continue;
      }
      std::string name = line.substr(0, colon);
      std::transform(name.begin(), name.end(), name.begin(),
                     [](unsigned char c) { return std::tolower(c); });
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      reply.headers[name] = value;
    }
    size_t bodyStart = headerEnd + 4;
    if (reply.status >= 100 && reply.status < 200) {
      buffer.erase(0, bodyStart); // interim response: skip it
      continue;
    }
    bool noBody = headRequest || reply.status == 204 || reply.status == 304;
    if (noBody) {
      buffer.erase(0, bodyStart);
      return reply;
    }
    std::string length = reply.header("content-length");
    if (!length.empty()) {
      size_t bytes = std::stoul(length);
      if (buffer.size() < bodyStart + bytes) {
        return std::nullopt;
      }
      reply.body = buffer.substr(bodyStart, bytes);
      buffer.erase(0, bodyStart + bytes);
      return reply;
    }
    if (!eof) {
      return std::nullopt;
    }
    reply.body = buffer.substr(bodyStart);
    buffer.clear();
    return reply;
  }
}

std::optional<TcpClient> TcpClient::connect(uint16_t port, bool ipv6) {
  UniqueFd fd(::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return std::nullopt;
  }
  int result = 0;
  if (ipv6) {
    sockaddr_in6 address{};
    address.sin6_family = AF_INET6;
    address.sin6_port = htons(port);
    address.sin6_addr = in6addr_loopback;
    result = ::connect(fd.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address));
  } else {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    result = ::connect(fd.get(), reinterpret_cast<sockaddr *>(&address), sizeof(address));
  }
  if (result != 0) {
    return std::nullopt;
  }
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return TcpClient(std::move(fd));
}

bool TcpClient::send(const std::string &bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

bool TcpClient::fill(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  if (left.count() <= 0 || eof_) {
    return false;
  }
  pollfd pfd{fd_.get(), POLLIN, 0};
  int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
  if (ready <= 0) {
    return false;
  }
  char chunk[16384];
  ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), 0);
  if (n <= 0) {
    eof_ = true;
    return n == 0;
  }
  buffer_.append(chunk, static_cast<size_t>(n));
  return true;
}

std::optional<HttpReply> TcpClient::readReply(std::chrono::milliseconds timeout, bool headRequest) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (auto reply = takeReply(buffer_, eof_, headRequest)) {
      return reply;
    }
    if (eof_ || !fill(deadline)) {
      return takeReply(buffer_, true, headRequest);
    }
  }
}

std::string TcpClient::readUntilClose(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_ && fill(deadline)) {
  }
  return std::exchange(buffer_, {});
}

bool TcpClient::waitForClose(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!eof_ && fill(deadline)) {
  }
  return eof_;
}

std::optional<HttpReply> fetch(uint16_t port, const std::string &target) {
  auto client = TcpClient::connect(port);
  if (!client) {
    return std::nullopt;
  }
  if (!client->send("GET " + target +
                    " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")) {
    return std::nullopt;
  }
  return client->readReply();
}

} // namespace sockdispatch::test
