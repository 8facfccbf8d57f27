#pragma once

namespace sockdispatch {

// Sets TCP_NODELAY on `fd`; whether it took. On a listener it is inherited by every socket
// accepted from it (one call per listener instead of one per connection).
bool setNoDelay(int fd);

} // namespace sockdispatch
