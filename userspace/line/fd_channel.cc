#include "line/fd_channel.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <string>

namespace sockdispatch {

namespace {

// EINTR is retried, but not forever: a signal storm surfaces as an error.
constexpr int kMaxInterruptedTries = 16;

constexpr size_t kRightsSpace = CMSG_SPACE(kMaxFdsPerMessage * sizeof(int));
// Room for SCM_RIGHTS and one more control message (SO_PASSCRED credentials), so a stray
// control message is seen and reported rather than truncating the descriptors.
constexpr size_t kReceiveControlSpace = kRightsSpace + CMSG_SPACE(sizeof(ucred));

class SystemChannelSyscalls final : public ChannelSyscalls {
public:
  ssize_t sendMessage(int fd, const msghdr *message, int flags) override {
    return ::sendmsg(fd, message, flags);
  }
  ssize_t receiveMessage(int fd, msghdr *message, int flags) override {
    return ::recvmsg(fd, message, flags);
  }
};

Error protocolError(std::string context, std::string detail) {
  return Error{EPROTO, std::move(context), std::move(detail)};
}

const char *typeName(uint32_t raw) {
  switch (static_cast<LineMessageType>(raw)) {
  case LineMessageType::kConnections: return "connections";
  case LineMessageType::kSuccessor: return "successor";
  case LineMessageType::kStopGracefully: return "stop";
  case LineMessageType::kReload: return "reload";
  case LineMessageType::kReady: return "ready";
  case LineMessageType::kReturned: return "returned";
  case LineMessageType::kHoldExit: return "hold exit";
  case LineMessageType::kMayExit: return "may exit";
  }
  return "unknown";
}

std::string closedNote(size_t count) {
  return count == 0 ? std::string()
                    : "; " + std::to_string(count) + " fds that came with it closed";
}

// Takes ownership of every descriptor in SCM_RIGHTS control messages, whatever else is wrong
// with the message, so that an early return closes them. Returns a description of the first
// control message that is not well-formed SCM_RIGHTS, or an empty string.
std::string adoptDescriptors(msghdr &header, std::vector<UniqueFd> &fds) {
  std::string stray;
  for (cmsghdr *cmsg = CMSG_FIRSTHDR(&header); cmsg != nullptr; cmsg = CMSG_NXTHDR(&header, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) {
      if (stray.empty()) {
        stray = "unexpected control message (level " + std::to_string(cmsg->cmsg_level) +
                ", type " + std::to_string(cmsg->cmsg_type) + ")";
      }
      continue;
    }
    size_t payload = cmsg->cmsg_len - CMSG_LEN(0);
    size_t count = payload / sizeof(int);
    const unsigned char *data = CMSG_DATA(cmsg);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd);
    }
    if (payload % sizeof(int) != 0 && stray.empty()) {
      stray = "SCM_RIGHTS payload of " + std::to_string(payload) +
              " bytes is not a whole number of fds";
    }
  }
  return stray;
}

// The protocol checks on a complete, untruncated message: an empty string when it is valid.
std::string validate(const LineMessage &message, size_t arrived) {
  if (message.magic != kLineMagic) {
    char text[64];
    std::snprintf(text, sizeof(text), "bad magic 0x%08x (expected 0x%08x)", message.magic,
                  kLineMagic);
    return text;
  }
  if (!knownMessageType(message.type)) {
    return "unknown message type " + std::to_string(message.type);
  }
  size_t allowed = maxFdsFor(message.messageType());
  std::string type = typeName(message.type);
  if (allowed == 0 && arrived > 0) {
    return std::to_string(arrived) + " fds arrived on a " + type + " message, which carries none";
  }
  if (message.count > allowed) {
    return "a " + type + " message announces " + std::to_string(message.count) +
           " fds, it carries at most " + std::to_string(allowed);
  }
  if (arrived > message.count) {
    return std::to_string(arrived - message.count) + " fds beyond the announced " +
           std::to_string(message.count) + " arrived on a " + type + " message";
  }
  if (arrived < message.count) {
    return "a " + type + " message announces " + std::to_string(message.count) + " fds, " +
           std::to_string(arrived) + " arrived";
  }
  return {};
}

} // namespace

size_t maxFdsFor(LineMessageType type) {
  switch (type) {
  case LineMessageType::kConnections:
  case LineMessageType::kReturned: return kMaxFdsPerMessage;
  case LineMessageType::kSuccessor: return 1;
  case LineMessageType::kStopGracefully:
  case LineMessageType::kReload:
  case LineMessageType::kReady:
  case LineMessageType::kHoldExit:
  case LineMessageType::kMayExit: return 0;
  }
  return 0;
}

bool knownMessageType(uint32_t raw) {
  return raw >= static_cast<uint32_t>(LineMessageType::kConnections) &&
         raw <= static_cast<uint32_t>(LineMessageType::kMayExit);
}

ChannelSyscalls &systemChannelSyscalls() {
  static SystemChannelSyscalls system;
  return system;
}

Result<std::pair<UniqueFd, UniqueFd>> makeChannelPair() {
  std::array<int, 2> ends{-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ends.data()) != 0) {
    return osError("create a line channel socketpair");
  }
  return std::pair<UniqueFd, UniqueFd>{UniqueFd(ends[0]), UniqueFd(ends[1])};
}

Result<void> sendFds(int fd, LineMessage message, std::span<const int> fds, ChannelSyscalls &sys) {
  // Built only on failure: the data plane allocates nothing per message.
  auto context = [&] {
    return "send a " + std::string(typeName(message.type)) + " message on fd " + std::to_string(fd);
  };
  if (!knownMessageType(message.type)) {
    return Error{EINVAL, context(), "unknown message type " + std::to_string(message.type)};
  }
  size_t allowed = maxFdsFor(message.messageType());
  if (fds.size() > allowed) {
    return Error{EINVAL, context(),
                 std::to_string(fds.size()) + " fds given, it carries at most " +
                     std::to_string(allowed)};
  }
  message.magic = kLineMagic;
  message.count = static_cast<uint32_t>(fds.size());

  iovec iov{&message, sizeof(message)};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  alignas(cmsghdr) std::array<unsigned char, kRightsSpace> control{};
  if (!fds.empty()) {
    header.msg_control = control.data();
    header.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr *cmsg = CMSG_FIRSTHDR(&header);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), fds.data(), fds.size() * sizeof(int));
  }

  ssize_t sent = -1;
  for (int attempt = 1;; ++attempt) {
    sent = sys.sendMessage(fd, &header, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0 || errno != EINTR || attempt == kMaxInterruptedTries) {
      break;
    }
  }
  if (sent < 0) {
    int code = errno; // before building the message can touch it
    return osError(code, context());
  }
  if (static_cast<size_t>(sent) != sizeof(message)) {
    return Error{EIO, context(),
                 "sent " + std::to_string(sent) + " of " + std::to_string(sizeof(message)) +
                     " bytes"};
  }
  return {};
}

Result<Received> receive(int fd, ChannelSyscalls &sys) {
  auto context = [fd] { return "receive a line message on fd " + std::to_string(fd); };
  Received received;
  iovec iov{&received.message, sizeof(received.message)};
  msghdr header{};
  header.msg_iov = &iov;
  header.msg_iovlen = 1;
  alignas(cmsghdr) std::array<unsigned char, kReceiveControlSpace> control{};
  header.msg_control = control.data();
  header.msg_controllen = control.size();

  ssize_t got = -1;
  for (int attempt = 1;; ++attempt) {
    got = sys.receiveMessage(fd, &header, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got >= 0 || errno != EINTR || attempt == kMaxInterruptedTries) {
      break;
    }
  }
  if (got < 0) {
    int code = errno; // before building the message can touch it
    return osError(code, context());
  }

  std::string stray = adoptDescriptors(header, received.fds);
  size_t arrived = received.fds.size();
  if ((header.msg_flags & MSG_CTRUNC) != 0) {
    return protocolError(context(),
                         "control data truncated (MSG_CTRUNC): " + std::to_string(arrived) +
                             " fds arrived and were closed, the kernel dropped the rest");
  }
  if (got == 0 && arrived == 0 && stray.empty()) {
    received.peerClosed = true;
    return received;
  }
  if (!stray.empty()) {
    return protocolError(context(), stray + closedNote(arrived));
  }
  if ((header.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(got) != sizeof(LineMessage)) {
    std::string size = (header.msg_flags & MSG_TRUNC) != 0 ? "more than " + std::to_string(got)
                                                           : std::to_string(got);
    return protocolError(context(), "a message of " + size + " bytes (expected " +
                                        std::to_string(sizeof(LineMessage)) + ")" +
                                        closedNote(arrived));
  }
  if (std::string invalid = validate(received.message, arrived); !invalid.empty()) {
    return protocolError(context(), invalid + closedNote(arrived));
  }
  return received;
}

} // namespace sockdispatch
