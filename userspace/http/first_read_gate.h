#pragma once

#include <cstdint>

namespace sockdispatch {

// Whether to read a new connection before registering it with the loop. A read that finds
// the request saves the epoll_ctl calls to add and remove the socket and a loop turn; one
// that finds nothing costs a recv(2) for nothing. Which one happens depends on who is faster:
// on loopback a worker accepts the moment the handshake completes, usually before the client
// has written (measured: almost every read missed, in both modes); a client whose request
// rides with the handshake's last ACK, or a slow path to the worker, finds it there.
//
// The gate keeps a score of recent outcomes: a find raises it, a miss lowers it twice as
// much, and reads are tried while it is above zero. At zero, one connection in kProbeEvery is
// still tried, so a change in the traffic is noticed.
class FirstReadGate {
public:
  static constexpr int kMaxScore = 16;
  static constexpr uint32_t kProbeEvery = 32;

  [[nodiscard]] bool worthTrying() { return score_ > 0 || ++sinceProbe_ % kProbeEvery == 0; }
  void record(bool found) {
    score_ = found ? (score_ < kMaxScore ? score_ + 1 : kMaxScore) : (score_ > 2 ? score_ - 2 : 0);
  }
  [[nodiscard]] int score() const { return score_; }

private:
  int score_ = kMaxScore / 2;
  uint32_t sinceProbe_ = 0;
};

} // namespace sockdispatch
