#include "core/listener_diag.h"

#include "core/unique_fd.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <array>
#include <cstring>
#include <set>
#include <string>

namespace sockdispatch {

namespace {

// A dump request: the header, the inet request, and one attribute holding the bytecode
// "source port == port" (an S_EQ operation and the operation that carries the port).
struct DumpRequest {
  nlmsghdr header;
  inet_diag_req_v2 request;
  nlattr bytecodeAttr;
  std::array<inet_diag_bc_op, 2> bytecode;
};
static_assert(sizeof(DumpRequest) == NLMSG_LENGTH(sizeof(inet_diag_req_v2)) + NLA_HDRLEN + 8,
              "no padding between the parts of the request");

DumpRequest dumpRequest(int family, uint16_t port, uint32_t sequence, uint32_t states) {
  DumpRequest out{};
  out.header.nlmsg_len = sizeof(DumpRequest);
  out.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  out.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  out.header.nlmsg_seq = sequence;
  out.request.sdiag_family = static_cast<uint8_t>(family);
  out.request.sdiag_protocol = IPPROTO_TCP;
  out.request.idiag_states = states;
  out.bytecodeAttr.nla_len = NLA_HDRLEN + sizeof(out.bytecode);
  out.bytecodeAttr.nla_type = INET_DIAG_REQ_BYTECODE;
  // The kernel walks the program: a true condition jumps `yes` bytes on, a false one `no`; the
  // socket matches when the walk ends exactly at the end. `yes` skips both operations (match),
  // `no` jumps past the end (no match).
  constexpr size_t kLength = sizeof(out.bytecode);
  out.bytecode[0] = inet_diag_bc_op{INET_DIAG_BC_S_EQ, static_cast<uint8_t>(kLength),
                                    static_cast<uint16_t>(kLength + 4)};
  out.bytecode[1] = inet_diag_bc_op{0, 0, port}; // the port, in host order, in `no`
  return out;
}

SocketAddress localAddress(const inet_diag_msg &message) {
  SocketAddress address;
  if (message.idiag_family == AF_INET6) {
    auto *v6 = reinterpret_cast<sockaddr_in6 *>(&address.storage);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = message.id.idiag_sport;
    std::memcpy(&v6->sin6_addr, message.id.idiag_src, sizeof(v6->sin6_addr));
    v6->sin6_scope_id = message.id.idiag_if;
    address.length = sizeof(sockaddr_in6);
  } else {
    auto *v4 = reinterpret_cast<sockaddr_in *>(&address.storage);
    v4->sin_family = AF_INET;
    v4->sin_port = message.id.idiag_sport;
    std::memcpy(&v4->sin_addr, message.id.idiag_src, sizeof(v4->sin_addr));
    address.length = sizeof(sockaddr_in);
  }
  return address;
}

ListenerInfo listenerFrom(const inet_diag_msg &message) {
  ListenerInfo info;
  info.inode = message.idiag_inode;
  info.cookie = static_cast<uint64_t>(message.id.idiag_cookie[0]) |
                (static_cast<uint64_t>(message.id.idiag_cookie[1]) << 32);
  info.local = localAddress(message);
  info.uid = message.idiag_uid;
  info.acceptQueue = message.idiag_rqueue;
  info.backlog = message.idiag_wqueue;
  return info;
}

// Reads the answers to request `sequence` until NLMSG_DONE, appending the sockets found.
Result<void> readDump(int fd, uint32_t sequence, const char *what, std::vector<ListenerInfo> &out) {
  // 32 KiB: the most the kernel puts in one dump message, whatever the receiver offers.
  alignas(nlmsghdr) std::array<char, 32768> buffer{};
  for (;;) {
    ssize_t got = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (got < 0) {
      if (errno == EINTR) {
        continue;
      }
      return osError(std::string("read the dump of ") + what);
    }
    auto remaining = static_cast<int>(got);
    for (auto *header = reinterpret_cast<nlmsghdr *>(buffer.data()); NLMSG_OK(header, remaining);
         header = NLMSG_NEXT(header, remaining)) {
      if (header->nlmsg_seq != sequence) {
        continue; // an answer to an earlier request of this socket
      }
      if (header->nlmsg_type == NLMSG_DONE) {
        return {};
      }
      if (header->nlmsg_type == NLMSG_ERROR) {
        const auto *error = static_cast<const nlmsgerr *>(NLMSG_DATA(header));
        if (header->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)) || error->error == 0) {
          return logicError(std::string("dump ") + what, "malformed netlink error");
        }
        return osError(-error->error, std::string("dump ") + what);
      }
      if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
          header->nlmsg_len < NLMSG_LENGTH(sizeof(inet_diag_msg))) {
        continue;
      }
      out.push_back(listenerFrom(*static_cast<const inet_diag_msg *>(NLMSG_DATA(header))));
    }
  }
}

// One dump per family of the TCP sockets on local port `port` in `states` (a bit per state).
Result<std::vector<ListenerInfo>> dumpTcp(uint16_t port, int family, uint32_t states,
                                          const char *kind) {
  if (family != AF_UNSPEC && family != AF_INET && family != AF_INET6) {
    return osError(EAFNOSUPPORT, std::string("dump TCP ") + kind + " of address family " +
                                     std::to_string(family));
  }
  UniqueFd fd(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG));
  if (!fd) {
    return osError("open a NETLINK_SOCK_DIAG socket");
  }
  // The kernel answers a dump at once; bound the wait anyway, so status never hangs on it.
  timeval timeout{1, 0};
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0) {
    return osError("set a receive timeout on the NETLINK_SOCK_DIAG socket");
  }
  std::vector<ListenerInfo> sockets;
  uint32_t sequence = 0;
  for (int dumped : {AF_INET, AF_INET6}) {
    if (family != AF_UNSPEC && family != dumped) {
      continue;
    }
    std::string what = std::string(dumped == AF_INET ? "IPv4" : "IPv6") + " TCP " + kind +
                       " on port " + std::to_string(port);
    DumpRequest request = dumpRequest(dumped, port, ++sequence, states);
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    if (::sendto(fd.get(), &request, sizeof(request), 0, reinterpret_cast<sockaddr *>(&kernel),
                 sizeof(kernel)) != static_cast<ssize_t>(sizeof(request))) {
      return osError("request a dump of " + what);
    }
    if (auto read = readDump(fd.get(), sequence, what.c_str(), sockets); !read) {
      return read.error();
    }
  }
  return sockets;
}

} // namespace

Result<std::vector<ListenerInfo>> dumpTcpListeners(uint16_t port, int family) {
  return dumpTcp(port, family, 1U << TCP_LISTEN, "listeners");
}

Result<std::set<uint64_t>> liveConnectionInodes(uint16_t port, int family) {
  auto sockets =
      dumpTcp(port, family, (1U << TCP_ESTABLISHED) | (1U << TCP_CLOSE_WAIT), "connections");
  if (!sockets) {
    return sockets.error();
  }
  std::set<uint64_t> inodes;
  for (const ListenerInfo &socket : sockets.value()) {
    if (socket.inode != 0) {
      inodes.insert(socket.inode);
    }
  }
  return inodes;
}

Result<size_t> handshakesInProgress(uint16_t port, int family) {
  auto sockets = dumpTcp(port, family, 1U << TCP_SYN_RECV, "handshakes");
  if (!sockets) {
    return sockets.error();
  }
  return sockets->size();
}

} // namespace sockdispatch
