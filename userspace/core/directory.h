#pragma once

#include "core/result.h"

#include <sys/types.h>

#include <string>

namespace sockdispatch {

// Creates the directory `path` with exactly `mode`: the process's umask (the unit's UMask=0027)
// does not narrow it, so a directory the monitoring group must search stays searchable. An
// existing directory is left as it is.
Result<void> makeDirectory(const std::string &path, mode_t mode);

// Each missing level of the absolute `path` in turn, each with `mode`.
Result<void> makeDirectories(const std::string &path, mode_t mode);

} // namespace sockdispatch
