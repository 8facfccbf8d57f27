#pragma once

#include "core/address.h"
#include "core/result.h"

#include <sys/socket.h>

#include <cstdint>
#include <set>
#include <vector>

namespace sockdispatch {

// One TCP listener as the kernel's sock_diag reports it.
struct ListenerInfo {
  uint64_t inode = 0;       // the socket's inode (fstat's st_ino of a descriptor of it)
  uint64_t cookie = 0;      // the socket cookie (SO_COOKIE, bpf_get_socket_cookie)
  SocketAddress local;      // the bound address and port
  uint32_t uid = 0;         // the owner's uid, as seen from this user namespace
  uint32_t acceptQueue = 0; // completed connections waiting for accept() (idiag_rqueue)
  uint32_t backlog = 0;     // the queue's limit, listen()'s backlog (idiag_wqueue)
};

// Every TCP listener on `port` in this network namespace, from one NETLINK_SOCK_DIAG dump per
// family: `family` AF_INET or AF_INET6 for one, AF_UNSPEC for both (IPv4 first). State LISTEN
// only, and the port is matched by the kernel, so other listeners cost no copy; the kernel
// still walks its whole listener hash once per family (the dump's main cost). Needs no
// privilege. An IPv6 socket that also accepts IPv4 is an IPv6 listener.
Result<std::vector<ListenerInfo>> dumpTcpListeners(uint16_t port, int family = AF_UNSPEC);

// The inodes of the TCP connections on local port `port` that an application still holds
// open: states ESTABLISHED and CLOSE_WAIT (a connection it closed is in FIN_WAIT or LAST_ACK,
// and an orphan has inode 0). The kernel walks its whole established hash once per family:
// milliseconds on a busy host, so not for a hot path.
Result<std::set<uint64_t>> liveConnectionInodes(uint16_t port, int family = AF_UNSPEC);

// How many handshakes on local port `port` are in progress: request sockets in SYN-RECV, whose
// final ACK has not reached the listener yet. Walks the established hash like
// liveConnectionInodes.
Result<size_t> handshakesInProgress(uint16_t port, int family = AF_UNSPEC);

} // namespace sockdispatch
