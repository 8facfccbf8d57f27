#pragma once

#include <string>

namespace sockdispatch {

// spdlog to stderr; every line tagged with the process role ("master", "worker 2") and pid.
// `verbose` turns on debug lines (and libbpf's own log).
void setupLogging(const std::string &role, bool verbose);

} // namespace sockdispatch
