#pragma once

#include "support/load.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace sockdispatch::test {

// An open-loop load on 127.0.0.1:port: request i is due at start + i / perSecond whatever
// became of the earlier ones, each on a new connection (Connection: close). A pool of
// `senders` threads keeps the schedule, so a stalled server does not slow the arrivals down
// as a closed loop's clients would (they would wait for their answers first). A request
// whose sender was free only later than its due time is still sent, and counted as late.
// Bounded: it stops when told, or after `limit`.
class OpenLoopLoad {
public:
  OpenLoopLoad(uint16_t port, int perSecond, std::chrono::seconds limit = std::chrono::seconds(60),
               int senders = 32);
  ~OpenLoopLoad();
  OpenLoopLoad(const OpenLoopLoad &) = delete;
  OpenLoopLoad &operator=(const OpenLoopLoad &) = delete;

  // Requests completed so far (successes and failures).
  [[nodiscard]] uint64_t completed() const { return completed_.load(); }
  // Waits until at least `more` further requests completed (or `timeout`).
  bool waitFor(uint64_t more, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // Stops sending, lets the requests in flight finish and returns the tally.
  LoadTally stop();
  // Requests sent more than 100 ms after they were due (every sender was busy).
  [[nodiscard]] uint64_t late() const { return late_.load(); }

private:
  void run();

  uint16_t port_;
  std::chrono::nanoseconds interval_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<uint64_t> next_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> completed_{0};
  std::atomic<uint64_t> late_{0};
  std::mutex mutex_;
  LoadTally tally_;
  std::vector<std::thread> threads_;
};

} // namespace sockdispatch::test
