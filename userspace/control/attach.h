#pragma once

#include "config/options.h"
#include "process/master.h"

namespace sockdispatch {

// `sockdispatch attach`: binds the group, loads and attaches the dispatch program, pins its
// state under pinDirFor(port), runs the master until SIGTERM/SIGINT, then removes the pins.
// Prints "listening on ADDRESS:PORT ..." on stdout once every worker serves.
// `reloadOptions` gives the options again on SIGHUP (re-reading the configuration file).
// Returns the process exit code (kExitUsage for a port attached already).
int runAttach(const AttachOptions &options, const Master::OptionsLoader &reloadOptions);

} // namespace sockdispatch
