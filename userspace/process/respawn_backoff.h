#pragma once

#include <chrono>

namespace sockdispatch {

// How the master paces the respawn of a worker that keeps crashing (nginx respawns at once,
// systemd's StartLimit stops for good; we respawn forever, slower and slower). An exit less
// than kQuickCrash after the start is a quick crash; the first is respawned at once, the
// second after 100 ms, and the delay doubles from there up to kMaxDelay. One exit after a longer
// life resets it.
class RespawnBackoff {
public:
  static constexpr auto kQuickCrash = std::chrono::seconds(5);
  static constexpr auto kMaxDelay = std::chrono::seconds(10);

  // Records an exit `lived` after the worker's start; returns the delay before its respawn.
  std::chrono::milliseconds afterExit(std::chrono::steady_clock::duration lived);
  void reset() { quickCrashes_ = 0; }

  [[nodiscard]] int quickCrashes() const { return quickCrashes_; }
  // Whether this exit deserves its own line in the log: any exit after a long life, and the
  // first two of a run of quick crashes (a crash loop is not logged per crash).
  [[nodiscard]] bool worthLogging() const;
  // Whether the crash loop is worth a warning: the delay is not zero and the count of quick
  // crashes has just doubled.
  [[nodiscard]] bool loopWorthLogging() const;

private:
  int quickCrashes_ = 0; // consecutive quick crashes
};

} // namespace sockdispatch
