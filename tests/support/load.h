#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sockdispatch::test {

// What a bounded load saw. Every request either succeeded (2xx) or is counted as a failure
// by kind; nothing is dropped from the tally.
struct LoadTally {
  uint64_t ok = 0;
  uint64_t non2xx = 0;
  uint64_t connectFailures = 0; // connect() refused or failed
  uint64_t noAnswer = 0;        // sent a request, got no (whole) response: reset, timeout, EOF
  // A reused keep-alive connection found closed before the request was answered, and the
  // request was sent again on a new connection (what HTTP clients do for idempotent
  // requests, RFC 9112 section 9.3.1). Not a failure: the server never took the request.
  uint64_t retriedOnNewConnection = 0;
  std::map<std::string, uint64_t> byPid; // who answered: the pid in the built-in page

  [[nodiscard]] uint64_t failures() const { return non2xx + connectFailures + noAnswer; }
  [[nodiscard]] std::string describe() const;
  void add(const LoadTally &other);
};

// Waits until `completed` has grown by at least `more` (true), or `timeout` passed (false).
bool waitForMore(const std::atomic<uint64_t> &completed, uint64_t more,
                 std::chrono::milliseconds timeout);

// One request on a new connection (Connection: close) to 127.0.0.1:port, counted in `tally`.
void sendOnNewConnection(uint16_t port, LoadTally &tally);

// A steady load on 127.0.0.1:port from client threads: `keepAlive` threads reuse one
// connection for many requests, `fresh` threads open a new connection per request. Bounded:
// it stops when told, after `maxRequests` requests per thread, or after `limit`, whichever
// comes first.
class Load {
public:
  Load(uint16_t port, int keepAlive, int fresh, uint64_t maxRequests = 200000,
       std::chrono::seconds limit = std::chrono::seconds(60));
  ~Load();
  Load(const Load &) = delete;
  Load &operator=(const Load &) = delete;

  // Requests completed so far (successes and failures).
  [[nodiscard]] uint64_t completed() const { return completed_.load(); }
  // Waits until at least `more` further requests completed (or `timeout`).
  bool waitFor(uint64_t more, std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // Stops every thread and returns the tally.
  LoadTally stop();

private:
  void run(bool keepAlive);
  void record(const LoadTally &local);

  uint16_t port_;
  uint64_t maxRequests_;
  std::chrono::steady_clock::time_point deadline_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> completed_{0};
  std::mutex mutex_;
  LoadTally tally_;
  std::vector<std::thread> threads_;
};

} // namespace sockdispatch::test
