#pragma once

#include "core/result.h"

#include <chrono>
#include <cstddef>
#include <functional>

namespace sockdispatch {

// The end of the line's listener at a stop, without resetting handshakes in progress
// (docs/design/line.md, "Stopping without resetting handshakes"). A listener that stops
// listening resets every handshake still in SYN-RECV when its final ACK (or the client's first
// data) arrives; so first the listener refuses new handshakes (a classic BPF socket filter
// drops pure SYNs: the client retries in a second and finds the port closed, or a new
// listener), then what is in progress completes into the accept queue and is taken.

// Drops every pure SYN reaching `listener` from now on; segments of handshakes in progress and
// of connections pass. Needs no privilege (SO_ATTACH_FILTER).
Result<void> refuseNewHandshakes(int listener);

// Refuses new handshakes on `listener`, then calls `takeCompleted` (accept everything queued
// and hand it on) until no handshake of the listener's port is in progress, waking as soon as
// one completes, at most `bound`. Returns how many were still in progress at the bound (0:
// none will be reset). When the filter cannot be attached (a kernel that wants CAP_NET_ADMIN
// for it) it says so and waits all the same, new handshakes beginning meanwhile; when the
// count cannot be had it says why and returns at once, as a stop did before.
size_t drainHandshakes(int listener, std::chrono::milliseconds bound,
                       const std::function<void()> &takeCompleted);

} // namespace sockdispatch
