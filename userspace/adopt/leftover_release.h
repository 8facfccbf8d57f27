#pragma once

#include "core/result.h"

#include <cstdint>

namespace sockdispatch {

// The steering program an `adopt` left attached to a service's group when it was killed: its
// counts are no longer kept, so `detach` of the stale state takes it off the group too
// (SO_DETACH_REUSEPORT_BPF through a copy of one of the group's listeners). Only the group on
// `port` whose attached program is `programId` is touched. Returns whether it was detached
// (false when no group on the port carries that program any more).
Result<bool> releaseLeftoverSteering(uint16_t port, uint32_t programId);

} // namespace sockdispatch
