#include "respawn_backoff.h"

#include <algorithm>

namespace sockdispatch {

namespace {

bool powerOfTwo(int n) {
  return n > 0 && (n & (n - 1)) == 0;
}

} // namespace

std::chrono::milliseconds RespawnBackoff::afterExit(std::chrono::steady_clock::duration lived) {
  quickCrashes_ = lived < kQuickCrash ? quickCrashes_ + 1 : 0;
  delay_ = std::chrono::milliseconds(0);
  if (quickCrashes_ > 1) {
    int exponent = std::min(quickCrashes_ - 2, 10);
    delay_ =
        std::min<std::chrono::milliseconds>(std::chrono::milliseconds(100L << exponent), kMaxDelay);
  }
  return delay_;
}

bool RespawnBackoff::worthLogging() const {
  return quickCrashes_ <= 2;
}

bool RespawnBackoff::loopWorthLogging() const {
  return delay_.count() > 0 && powerOfTwo(quickCrashes_);
}

} // namespace sockdispatch
