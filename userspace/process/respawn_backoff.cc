#include "process/respawn_backoff.h"

#include <algorithm>

namespace sockdispatch {

namespace {

bool powerOfTwo(int n) {
  return n > 0 && (n & (n - 1)) == 0;
}

} // namespace

std::chrono::milliseconds RespawnBackoff::afterExit(std::chrono::steady_clock::duration lived) {
  quickCrashes_ = lived < kQuickCrash ? quickCrashes_ + 1 : 0;
  if (quickCrashes_ <= 1) {
    return std::chrono::milliseconds(0);
  }
  int exponent = std::min(quickCrashes_ - 2, 10);
  return std::min<std::chrono::milliseconds>(std::chrono::milliseconds(100L << exponent),
                                             kMaxDelay);
}

bool RespawnBackoff::worthLogging() const {
  return quickCrashes_ <= 2;
}

bool RespawnBackoff::loopWorthLogging() const {
  return quickCrashes_ > 1 && powerOfTwo(quickCrashes_); // a delay, at a doubling
}

} // namespace sockdispatch
