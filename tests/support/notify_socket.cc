#include "support/notify_socket.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace sockdispatch::test {

NotifySocket::NotifySocket() {
  char base[] = "/tmp/sockdispatch-notify-XXXXXX";
  if (::mkdtemp(base) == nullptr) {
    throw std::runtime_error(std::string("mkdtemp: ") + std::strerror(errno));
  }
  dir_ = base;
  path_ = dir_ + "/notify";
  fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
  int on = 1;
  if (!fd_ || ::setsockopt(fd_.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0 ||
      ::bind(fd_.get(), reinterpret_cast<sockaddr *>(&address), sizeof address) != 0) {
    throw std::runtime_error("bind " + path_ + ": " + std::strerror(errno));
  }
}

NotifySocket::~NotifySocket() {
  std::filesystem::remove_all(dir_);
}

std::optional<Notification> NotifySocket::receive(std::chrono::milliseconds timeout) {
  pollfd ready{fd_.get(), POLLIN, 0};
  if (::poll(&ready, 1, static_cast<int>(timeout.count())) != 1) {
    return std::nullopt;
  }
  char buffer[4096];
  iovec iov{buffer, sizeof buffer};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
  msghdr message{};
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  ssize_t got = ::recvmsg(fd_.get(), &message, MSG_DONTWAIT);
  if (got < 0) {
    ADD_FAILURE() << "recvmsg: " << std::strerror(errno);
    return std::nullopt;
  }
  Notification notification{std::string(buffer, static_cast<size_t>(got)), 0};
  for (cmsghdr *c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
      ucred credentials{};
      std::memcpy(&credentials, CMSG_DATA(c), sizeof credentials);
      notification.sender = credentials.pid;
    }
  }
  return notification;
}

} // namespace sockdispatch::test
