#pragma once

#include "core/result.h"

#include <sys/types.h>

#include <optional>
#include <string>

namespace sockdispatch {

// The group whose members may read attachments (`status` without root): the pinned state and
// a line's scoreboard are root's to write and the group's to read.
inline constexpr const char *kMonitoringGroup = "sockdispatch";

// The group's gid, or nullopt when no such group exists.
Result<std::optional<gid_t>> monitoringGroup();

// Gives `path` (owned by the caller) to `group` with mode `shared`; with no group, leaves it
// root's with mode `unshared`. Needs no CAP_CHOWN: for the one chown the calling thread's
// file-system gid is the group's (setfsgid, which needs CAP_SETGID), and an owner may give a
// file to a group it is in.
Result<void> shareWithGroup(const std::string &path, std::optional<gid_t> group, mode_t shared,
                            mode_t unshared);

} // namespace sockdispatch
