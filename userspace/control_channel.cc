#include "control_channel.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace sockdispatch {

Result<std::pair<UniqueFd, UniqueFd>> makeControlPair() {
  int fds[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    return osError("create a worker control channel");
  }
  return std::make_pair(UniqueFd(fds[0]), UniqueFd(fds[1]));
}

Result<void> sendControl(int fd, ControlType type) {
  ControlMessage message{kControlMagic, static_cast<uint32_t>(type)};
  ssize_t sent = ::send(fd, &message, sizeof(message), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (sent != static_cast<ssize_t>(sizeof(message))) {
    return osError(sent < 0 ? errno : EMSGSIZE, "send a control message to the worker");
  }
  return {};
}

ControlRead receiveControl(int fd, ControlType &type) {
  ControlMessage message{};
  // One byte more than a message: a longer datagram is truncated, and so detected.
  char buffer[sizeof(ControlMessage) + 1];
  ssize_t got = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
  if (got == 0) {
    return ControlRead::kEof;
  }
  if (got < 0) {
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? ControlRead::kNone
                                                                     : ControlRead::kEof;
  }
  if (got != static_cast<ssize_t>(sizeof(message))) {
    return ControlRead::kMalformed;
  }
  std::memcpy(&message, buffer, sizeof(message));
  if (message.magic != kControlMagic) {
    return ControlRead::kMalformed;
  }
  type = static_cast<ControlType>(message.type);
  return ControlRead::kMessage;
}

} // namespace sockdispatch
