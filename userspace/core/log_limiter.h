#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace sockdispatch {

// How often a fault that repeats (an accept out of descriptors, a map update refused) is
// logged: the first at once, then at most one line per interval, which says how many were
// held back since the last. A fault that lasts is seen, and a loop retrying it every 100 ms
// cannot flood the log.
inline constexpr std::chrono::seconds kFaultLogInterval{10};

class LogLimiter {
public:
  explicit LogLimiter(std::chrono::steady_clock::duration interval = kFaultLogInterval)
      : interval_(interval) {}

  // Whether to log the fault that happened `now`: nullopt to hold it back (it is counted),
  // otherwise how many were held back since the last line logged.
  std::optional<uint64_t> admit(std::chrono::steady_clock::time_point now);

  // All the faults seen, logged or not.
  [[nodiscard]] uint64_t seen() const { return seen_; }

private:
  std::chrono::steady_clock::duration interval_;
  std::optional<std::chrono::steady_clock::time_point> last_;
  uint64_t heldBack_ = 0;
  uint64_t seen_ = 0;
};

// The end of a rate-limited line: "" for none held back, else " (N more since the last report)".
std::string heldBackSuffix(uint64_t heldBack);

} // namespace sockdispatch
