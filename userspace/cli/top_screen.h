#pragma once

#include "control/top_view.h"

#include <chrono>
#include <functional>
#include <vector>

namespace sockdispatch::cli {

// The full-screen view of `sockdispatch top` (ncurses): frames redrawn every `interval`, keys
// q (quit), p (cycle the sort), ? (help). `refresh` takes a new sample, `frames` draws the
// latest two in a sort order (a new sort re-orders the same numbers). Returns the exit code
// (0 on q). The terminal is restored however it ends.
int runTopScreen(const std::function<void()> &refresh,
                 const std::function<std::vector<TopFrame>(TopSort)> &frames,
                 std::chrono::milliseconds interval);

} // namespace sockdispatch::cli
