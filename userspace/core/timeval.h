#pragma once

#include <sys/time.h>

#include <chrono>

namespace sockdispatch {

// A span of time as the timeval libevent's timers take; a span already past is zero.
template <class Rep, class Period> timeval toTimeval(std::chrono::duration<Rep, Period> span) {
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(span).count();
  if (micros < 0) {
    micros = 0;
  }
  return timeval{static_cast<time_t>(micros / 1000000), static_cast<suseconds_t>(micros % 1000000)};
}

} // namespace sockdispatch
