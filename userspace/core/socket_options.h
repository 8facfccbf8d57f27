#pragma once

#include <chrono>

namespace sockdispatch {

// Sets TCP_NODELAY on `fd`; whether it took. On a listener it is inherited by every socket
// accepted from it (one call per listener instead of one per connection).
bool setNoDelay(int fd);

// Sets TCP_DEFER_ACCEPT on the listener `fd` (0: off): a connection is queued for accept once
// its first data arrives, or once `wait` has passed without any (the kernel then completes it
// at its next SYN-ACK retransmission's ACK). Whether it took.
bool setDeferAccept(int fd, std::chrono::seconds wait);

} // namespace sockdispatch
