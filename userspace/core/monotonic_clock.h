#pragma once

#include <cstdint>
#include <ctime>

namespace sockdispatch {

// CLOCK_MONOTONIC in nanoseconds: the clock of the slots' busy_since, which the kernel program
// reads as bpf_ktime_get_ns(). One vDSO call, no syscall.
inline uint64_t monotonicNs() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
}

} // namespace sockdispatch
