#pragma once

#include "core/address.h"
#include "core/result.h"
#include "core/unique_fd.h"

#include <vector>

namespace sockdispatch {

// One SO_REUSEPORT listening socket per worker, all bound to the same address. When the
// address's port is 0, the first bind picks an ephemeral port and the others follow it.
struct ListenerGroup {
  SocketAddress address; // with the port actually bound
  std::vector<UniqueFd> sockets;
};

// Creates and binds the sockets; listenAll() then makes them listen. Between the two is the
// moment to attach a reuseport program, so that no SYN is hashed before it is in place.
Result<ListenerGroup> bindReuseportGroup(const SocketAddress &address, int count);
Result<void> listenAll(ListenerGroup &group, int backlog);

// One more listening socket on `address` (its port already bound by the group): it joins
// the same SO_REUSEPORT group, and so the program attached to that group. For the workers
// of a new generation.
Result<UniqueFd> openGroupListener(const SocketAddress &address, int backlog);

// Whether any TCP socket listens on `port` now (any address), read from /proc/net/tcp{,6}.
// Guards against joining another program's SO_REUSEPORT group by accident.
bool portHasListener(uint16_t port);

} // namespace sockdispatch
