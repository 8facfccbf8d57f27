#include "core/log_limiter.h"

namespace sockdispatch {

std::optional<uint64_t> LogLimiter::admit(std::chrono::steady_clock::time_point now) {
  ++seen_;
  if (last_ && now - *last_ < interval_) {
    ++heldBack_;
    return std::nullopt;
  }
  last_ = now;
  uint64_t heldBack = heldBack_;
  heldBack_ = 0;
  return heldBack;
}

std::string heldBackSuffix(uint64_t heldBack) {
  if (heldBack == 0) {
    return "";
  }
  return " (" + std::to_string(heldBack) + " more since the last report)";
}

} // namespace sockdispatch
